//! The web-service functions: each one's parameter and return descriptions and its handler.
//! Handlers turn validated parameters into ledger requests (writes) or projection queries
//! (reads); they never decide business rules themselves.

mod core;
pub mod decode;
mod ledger;
mod semco;

use std::collections::HashMap;
use std::sync::OnceLock;

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
/// A handler with its typed parameters decoded and its typed reply encoded (see [`function!`]).
pub type HandlerFn = for<'a> fn(&'a Call<'a>, Value) -> BoxFuture<'a, Result<Value, WsError>>;
/// Decodes a validated tree into the handler's parameter struct, for the table test.
pub type CheckFn = fn(Value) -> Result<(), decode::DecodeError>;
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A function's parameter and return descriptions, built once.
type Descriptions = (Vec<(&'static str, Desc)>, Option<Desc>);

/// One web-service function: everything about it is in this one entry. Built by [`function!`];
/// listed in its module's `FUNCTIONS` and reached through [`all`] / [`find`].
pub struct FunctionDef {
    pub name: &'static str,
    /// The services whose tokens may call it (`services.rs` asks only this).
    pub services: &'static [&'static str],
    params: ParamsFn,
    returns: ReturnsFn,
    handler: HandlerFn,
    check: CheckFn,
    /// A valid call (request variables as a client sends them), for the table test.
    pub sample: &'static [(&'static str, &'static str)],
    descriptions: OnceLock<Descriptions>,
}

impl FunctionDef {
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        services: &'static [&'static str],
        params: ParamsFn,
        returns: ReturnsFn,
        handler: HandlerFn,
        check: CheckFn,
        sample: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self { name, services, params, returns, handler, check, sample, descriptions: OnceLock::new() }
    }

    fn descriptions(&self) -> &Descriptions {
        self.descriptions.get_or_init(|| ((self.params)(), (self.returns)()))
    }

    /// The parameter description, built once.
    pub fn params(&self) -> &[(&'static str, Desc)] {
        &self.descriptions().0
    }

    /// The return description, built once; `None`: the function returns nothing.
    pub fn returns(&self) -> Option<&Desc> {
        self.descriptions().1.as_ref()
    }

    pub fn in_service(&self, service: &str) -> bool {
        self.services.contains(&service)
    }

    /// Runs the handler on validated parameters; returns the value to clean and encode.
    pub async fn execute(&self, call: &Call<'_>, params: Value) -> Result<Value, WsError> {
        (self.handler)(call, params).await
    }

    /// Whether validated parameters decode into the handler's struct.
    ///
    /// # Errors
    /// The struct and the description disagree.
    pub fn check(&self, params: Value) -> Result<(), decode::DecodeError> {
        (self.check)(params)
    }
}

/// Builds a [`FunctionDef`]: `handler` is an `async fn(&Call<'_>, P) -> Result<R, WsError>`
/// where `P: Deserialize` (the typed parameters) and `R: Reply` (the typed answer).
macro_rules! function {
    (
        name: $name:literal,
        services: $services:expr,
        params: $params:expr,
        returns: $returns:expr,
        handler: $handler:path,
        sample: $sample:expr $(,)?
    ) => {{
        fn handler<'a>(
            call: &'a $crate::api::functions::Call<'a>,
            params: $crate::api::wire::params::Value,
        ) -> $crate::api::functions::BoxFuture<
            'a,
            Result<$crate::api::wire::params::Value, $crate::api::wire::encode::WsError>,
        > {
            Box::pin(async move {
                let typed = $crate::api::functions::decode::decode(params)
                    .map_err(|e| $crate::api::functions::undecodable($name, &e))?;
                $handler(call, typed).await.map($crate::api::functions::Reply::into_value)
            })
        }
        fn check(params: $crate::api::wire::params::Value) -> Result<(), $crate::api::functions::decode::DecodeError> {
            $crate::api::functions::decodes_for($handler, params)
        }
        $crate::api::functions::FunctionDef::new($name, $services, $params, $returns, handler, check, $sample)
    }};
}
pub(crate) use function;

#[doc(hidden)]
/// Decodes `params` into the parameter type of `handler` (for the table test, through `check`).
pub fn decodes_for<P: serde::de::DeserializeOwned, F>(
    _handler: impl FnOnce(&'static Call<'static>, P) -> F,
    params: Value,
) -> Result<(), decode::DecodeError> {
    decode::decode::<P>(params).map(|_| ())
}

/// A handler's typed answer, encoded into the value tree the return description cleans.
pub trait Reply {
    fn into_value(self) -> Value;
}

impl Reply for Value {
    fn into_value(self) -> Value {
        self
    }
}

/// Functions that return nothing (`null`).
impl Reply for () {
    fn into_value(self) -> Value {
        Value::Null
    }
}

/// `{result: true, warnings: []}`, what most write functions return.
pub struct Done;

impl Reply for Done {
    fn into_value(self) -> Value {
        result_value(true)
    }
}

/// A handler whose parameters did not decode: the description and the struct disagree (a bug
/// the table test catches); answered as Moodle's invalid parameter, logged with the function.
pub fn undecodable(name: &str, error: &decode::DecodeError) -> WsError {
    tracing::error!(function = name, %error, "validated parameters do not fit the handler's struct");
    WsError::invalid_parameter(format!("{name}: {error}"))
}

/// Every function's module table. To add a module, add its `FUNCTIONS` here.
static MODULES: [&[FunctionDef]; 3] = [&semco::FUNCTIONS, &core::FUNCTIONS, &ledger::FUNCTIONS];

/// Every web-service function, in table order.
pub fn all() -> impl Iterator<Item = &'static FunctionDef> {
    MODULES.iter().flat_map(|m| m.iter())
}

/// Every function's name, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    all().map(|f| f.name)
}

pub fn find(name: &str) -> Option<&'static FunctionDef> {
    static INDEX: OnceLock<HashMap<&'static str, &'static FunctionDef>> = OnceLock::new();
    INDEX.get_or_init(|| all().map(|f| (f.name, f)).collect()).get(name).copied()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::services;
    use crate::api::wire::params::validate;
    use crate::api::wire::request::build_tree;

    fn sample_tree(function: &FunctionDef) -> Vec<(String, crate::api::wire::request::ParamTree)> {
        build_tree(function.sample.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect())
    }

    /// Every entry's sample call validates against its description and decodes into its
    /// handler's struct (every struct denies unknown keys, so a misspelt key fails here).
    #[test]
    fn every_function_decodes_its_sample_call() {
        for function in all() {
            let params = validate(function.params(), sample_tree(function))
                .unwrap_or_else(|e| panic!("{}: sample does not validate: {e}", function.name));
            function.check(params).unwrap_or_else(|e| panic!("{}: sample does not decode: {e}", function.name));
        }
    }

    /// The same with no parameters at all: each function either refuses it in validation or
    /// decodes the defaults.
    #[test]
    fn every_function_decodes_its_defaults_or_refuses_them() {
        for function in all() {
            if let Ok(params) = validate(function.params(), Vec::new()) {
                function.check(params).unwrap_or_else(|e| panic!("{}: defaults do not decode: {e}", function.name));
            }
        }
    }

    #[test]
    fn names_are_unique_and_found() {
        let mut names: Vec<&str> = names().collect();
        for name in &names {
            assert_eq!(find(name).map(|f| f.name), Some(*name));
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a function is listed twice");
        assert!(find("no_such_function").is_none());
    }

    /// Service membership comes only from the table: `services` answers exactly what each
    /// entry lists, every entry names known services only, and `ledger_admin` has them all.
    #[test]
    fn service_membership_comes_only_from_the_table() {
        for function in all() {
            for service in function.services {
                assert!(services::ALL.contains(service), "{}: unknown service {service}", function.name);
            }
            assert!(function.in_service(services::LEDGER_ADMIN), "{} is not in ledger_admin", function.name);
            for service in services::ALL {
                assert_eq!(services::allows(service, function.name), function.services.contains(&service));
                assert_eq!(services::functions(service).contains(&function.name), function.services.contains(&service));
            }
        }
        assert!(!services::allows("no_such_service", "core_webservice_get_site_info"));
    }

    #[test]
    fn descriptions_are_built_once() {
        let function = find("enrol_semco_enrol_user").unwrap();
        assert!(std::ptr::eq(function.params(), function.params()));
    }
}
