//! The web-service functions: each one's parameter and return descriptions and its handler.
//! Handlers turn validated parameters into ledger requests (writes) or projection queries
//! (reads); they never decide business rules themselves.

mod core;
mod ledger;
mod semco;

use super::wire::encode::WsError;
use super::wire::params::{Desc, ParamType, Value};
use crate::app::{Ledger, LedgerError, Outcome, Request};
use crate::store::log::Actor;

/// Everything a handler may use.
pub struct Call<'a> {
    pub ledger: &'a Ledger,
    pub tokens: &'a crate::api::tokens::TokenCache,
    pub base_url: &'a str,
    pub actor: Actor,
    pub service: &'a str,
}

impl Call<'_> {
    pub async fn submit(&self, request: Request) -> Result<Outcome, WsError> {
        self.ledger
            .submit(request, self.actor.clone())
            .await
            .map_err(|e: LedgerError| super::errors::ledger_error(&e, self.base_url, &self.actor.request_id))
    }

    /// The `enabled` setting from the projection (enrol_semco's "plugin enabled").
    pub async fn plugin_enabled(&self) -> Result<bool, WsError> {
        let enabled: Option<String> = sqlx::query_scalar("SELECT value FROM ledger_config WHERE name = 'enabled'")
            .fetch_optional(&self.ledger.db.pool)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(enabled.as_deref() != Some("0"))
    }

    pub fn store_error(&self, error: impl std::fmt::Display) -> WsError {
        tracing::error!(request_id = %self.actor.request_id, %error, "read failed");
        WsError::new("dml_read_exception", "dmlreadexception", "Error reading from database")
    }
}

/// Builds a function's parameter description (a top-level single structure).
pub type ParamsFn = fn() -> Vec<(&'static str, Desc)>;
/// Builds a function's return description; `None`: it returns nothing (JSON `null`).
pub type ReturnsFn = fn() -> Option<Desc>;

pub struct Function {
    pub name: &'static str,
    pub params: ParamsFn,
    pub returns: ReturnsFn,
}

pub const NAMES: [&str; 19] = [
    "enrol_semco_enrol_user",
    "enrol_semco_unenrol_user",
    "enrol_semco_edit_enrolment",
    "enrol_semco_get_enrolments",
    "enrol_semco_get_course_completions",
    "enrol_semco_reset_course_completion",
    "core_user_create_users",
    "core_user_update_users",
    "core_user_delete_users",
    "core_user_get_users_by_field",
    "core_course_get_courses_by_field",
    "core_course_create_courses",
    "core_course_update_courses",
    "core_webservice_get_site_info",
    "ledger_set_course_recompletion",
    "ledger_record_course_completion",
    "ledger_set_config",
    "ledger_get_config",
    "ledger_cleanup_orphans",
];

pub fn find(name: &str) -> Option<Function> {
    let name = NAMES.iter().copied().find(|n| *n == name)?;
    semco::describe(name).or_else(|| core::describe(name)).or_else(|| ledger::describe(name))
}

/// Runs a function on validated parameters; returns the value to clean and encode.
pub async fn execute(call: &Call<'_>, name: &str, params: Value) -> Result<Value, WsError> {
    match name {
        n if n.starts_with("enrol_semco_") => semco::execute(call, n, params).await,
        n if n.starts_with("ledger_") => ledger::execute(call, n, params).await,
        n => core::execute(call, n, params).await,
    }
}

// Small builders shared by the descriptions.
pub(crate) fn int(desc: &'static str) -> Desc {
    Desc::value(ParamType::Int, desc)
}
pub(crate) fn text(desc: &'static str) -> Desc {
    Desc::value(ParamType::Text, desc)
}
pub(crate) fn raw(desc: &'static str) -> Desc {
    Desc::value(ParamType::Raw, desc)
}
pub(crate) fn boolean(desc: &'static str) -> Desc {
    Desc::value(ParamType::Bool, desc)
}

/// Moodle's `external_warnings()`.
pub(crate) fn warnings() -> Desc {
    Desc::multiple(Desc::single(vec![
        ("item", text("item").optional()),
        ("itemid", int("item id").optional()),
        ("warningcode", Desc::value(ParamType::AlphaNum, "the warning code can be used by the client app")),
        ("message", raw("untranslated english message to explain the warning")),
    ]))
    .optional()
}

/// `{result, warnings}` as most write functions return it.
pub(crate) fn result_returns() -> Desc {
    Desc::single(vec![("result", boolean("The result")), ("warnings", warnings())])
}

pub(crate) fn result_value(result: bool) -> Value {
    Value::Struct(vec![("result".into(), Value::Bool(result)), ("warnings".into(), Value::List(Vec::new()))])
}

/// Reads a validated field (descriptions guarantee presence and type; absence reads as null).
pub(crate) fn get<'v>(params: &'v Value, key: &str) -> &'v Value {
    params.get(key).unwrap_or(&Value::Null)
}
pub(crate) fn get_i64(params: &Value, key: &str) -> i64 {
    get(params, key).as_i64().unwrap_or_default()
}
pub(crate) fn get_str(params: &Value, key: &str) -> String {
    get(params, key).as_str().unwrap_or_default().to_owned()
}
pub(crate) fn opt_str(params: &Value, key: &str) -> Option<String> {
    get(params, key).as_str().map(str::to_owned)
}
