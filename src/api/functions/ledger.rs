//! The ledger's own functions (WS-CONTRACT.md §3.3).

use serde::Deserialize;

use super::{function, int, raw, result_returns, warnings, Call, Done, FunctionDef, Reply};
use crate::api::services::{LEDGER_ADMIN, LEDGER_LMS};
use crate::api::wire::encode::WsError;
use crate::api::wire::params::{Desc, ParamType, Value};
use crate::app::undo::{UndoError, UndoKind};
use crate::app::Request;
use crate::domain::completion::GradeInput;
use crate::domain::config::SETTING_NAMES;

fn float(desc: &'static str) -> Desc {
    Desc::value(ParamType::Float, desc)
}

pub(super) static FUNCTIONS: [FunctionDef; 8] = [
    function! {
        name: "ledger_set_course_recompletion",
        services: &[LEDGER_ADMIN],
        params: || vec![
            ("courseid", int("The course ID")),
            ("recompletiontype", Desc::value(ParamType::Alpha, "'', period, ondemand or schedule")),
        ],
        returns: || Some(result_returns()),
        handler: set_course_recompletion,
        sample: &[("courseid", "2"), ("recompletiontype", "period")],
    },
    function! {
        name: "ledger_record_course_completion",
        services: &[LEDGER_ADMIN, LEDGER_LMS],
        params: || vec![
            ("userid", int("The user ID")),
            ("courseid", int("The course ID")),
            ("timecompleted", int("Time of completion, > 0")),
            ("finalgrade", float("Course total grade").with_default(Value::Null)),
            ("grademin", float("Minimum grade").with_default(Value::Null)),
            ("grademax", float("Maximum grade").with_default(Value::Null)),
            ("gradepass", float("Grade to pass").with_default(Value::Null)),
        ],
        returns: || Some(result_returns()),
        handler: record_course_completion,
        sample: &[("userid", "3"), ("courseid", "2"), ("timecompleted", "1700000000"), ("finalgrade", "80.5")],
    },
    function! {
        name: "ledger_set_config",
        services: &[LEDGER_ADMIN],
        params: || vec![("name", Desc::value(ParamType::AlphaNumExt, "Setting name")), ("value", raw("New value"))],
        returns: || Some(result_returns()),
        handler: set_config,
        sample: &[("name", "enabled"), ("value", "1")],
    },
    function! {
        name: "ledger_get_config",
        services: &[LEDGER_ADMIN],
        params: Vec::new,
        returns: || Some(Desc::multiple(Desc::single(vec![("name", raw("Setting name")), ("value", raw("Setting value"))]))),
        handler: get_config,
        sample: &[],
    },
    function! {
        name: "ledger_cleanup_orphans",
        services: &[LEDGER_ADMIN],
        params: Vec::new,
        returns: || Some(Desc::single(vec![("removed", int("Instances removed")), ("warnings", warnings())])),
        handler: cleanup_orphans,
        sample: &[],
    },
    function! {
        name: "ledger_reinstate_enrolment",
        services: &[LEDGER_ADMIN],
        params: || vec![
            ("position", int("Log position of the Unenrolled event to undo")),
            ("reason", Desc::value(ParamType::Text, "Why it is undone").with_default(Value::Null)),
        ],
        returns: || Some(Desc::single(vec![("enrolid", int("The reinstated user enrolment")), ("warnings", warnings())])),
        handler: reinstate_enrolment,
        sample: &[("position", "12"), ("reason", "unenrolled by mistake")],
    },
    function! {
        name: "ledger_restore_completion",
        services: &[LEDGER_ADMIN],
        params: || vec![
            ("position", int("Log position of the CompletionReset event to undo")),
            ("reason", Desc::value(ParamType::Text, "Why it is undone").with_default(Value::Null)),
        ],
        returns: || Some(result_returns()),
        handler: restore_completion,
        sample: &[("position", "10")],
    },
    function! {
        name: "ledger_export_user",
        services: &[LEDGER_ADMIN],
        params: || vec![("userid", int("The user ID"))],
        returns: || Some(Desc::single(vec![
            ("userid", int("The user ID")),
            ("export", raw("Every registry row, projection row and log event about the user, as JSON (docs/AUDIT.md)")),
        ])),
        handler: export_user,
        sample: &[("userid", "2")],
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Undo {
    position: i64,
    reason: Option<String>,
}

/// The request undoing the event at `position`, or the Moodle error why it cannot be.
async fn undo_request(call: &Call<'_>, p: Undo, kind: UndoKind) -> Result<Request, WsError> {
    match crate::app::undo::request_for(&call.ledger.db, p.position, kind, p.reason).await {
        Ok(request) => Ok(request),
        Err(UndoError::Ledger(error)) => {
            Err(crate::api::errors::ledger_error(&error, call.base_url, &call.actor.request_id))
        }
        Err(UndoError::Store(error)) => Err(call.store_error(error)),
    }
}

/// `ledger_reinstate_enrolment`'s answer.
struct Reinstated(i64);

impl Reply for Reinstated {
    fn into_value(self) -> Value {
        Value::Struct(vec![("enrolid".into(), Value::Int(self.0)), ("warnings".into(), Value::List(Vec::new()))])
    }
}

async fn reinstate_enrolment(call: &Call<'_>, p: Undo) -> Result<Reinstated, WsError> {
    let request = undo_request(call, p, UndoKind::Reinstate).await?;
    Ok(Reinstated(call.submit(request).await?.enrolid))
}

async fn restore_completion(call: &Call<'_>, p: Undo) -> Result<Done, WsError> {
    let request = undo_request(call, p, UndoKind::Restore).await?;
    call.submit(request).await?;
    Ok(Done)
}

/// The parameters of a function that takes none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRecompletion {
    courseid: i64,
    recompletiontype: String,
}

async fn set_course_recompletion(call: &Call<'_>, p: SetRecompletion) -> Result<Done, WsError> {
    call.submit(Request::SetRecompletion { course_id: p.courseid, recompletion_type: p.recompletiontype }).await?;
    Ok(Done)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordCompletion {
    userid: i64,
    courseid: i64,
    timecompleted: i64,
    finalgrade: Option<f64>,
    grademin: Option<f64>,
    grademax: Option<f64>,
    gradepass: Option<f64>,
}

async fn record_course_completion(call: &Call<'_>, p: RecordCompletion) -> Result<Done, WsError> {
    let grade =
        GradeInput { finalgrade: p.finalgrade, grademin: p.grademin, grademax: p.grademax, gradepass: p.gradepass };
    if [grade.finalgrade, grade.grademin, grade.grademax, grade.gradepass].iter().flatten().any(|g| !g.is_finite()) {
        return Err(WsError::invalid_parameter("Grades must be finite numbers"));
    }
    let request =
        Request::RecordCompletion { user_id: p.userid, course_id: p.courseid, timecompleted: p.timecompleted, grade };
    call.submit(request).await?;
    Ok(Done)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetConfig {
    name: String,
    value: String,
}

async fn set_config(call: &Call<'_>, p: SetConfig) -> Result<Done, WsError> {
    call.submit(Request::SetConfig { name: p.name, value: p.value }).await?;
    Ok(Done)
}

async fn get_config(call: &Call<'_>, _: NoParams) -> Result<Value, WsError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, value FROM ledger_config")
        .fetch_all(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    let list = SETTING_NAMES
        .iter()
        .filter_map(|name| rows.iter().find(|(n, _)| n == name))
        .map(|(n, v)| {
            Value::Struct(vec![("name".into(), Value::Str(n.clone())), ("value".into(), Value::Str(v.clone()))])
        })
        .collect();
    Ok(Value::List(list))
}

/// `ledger_cleanup_orphans`'s answer.
struct Removed(i64);

impl Reply for Removed {
    fn into_value(self) -> Value {
        Value::Struct(vec![("removed".into(), Value::Int(self.0)), ("warnings".into(), Value::List(Vec::new()))])
    }
}

async fn cleanup_orphans(call: &Call<'_>, _: NoParams) -> Result<Removed, WsError> {
    Ok(Removed(call.submit(Request::CleanupOrphans).await?.removed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportUser {
    userid: i64,
}

/// `ledger_export_user`'s answer: the export of `enrol-ledger user export` as one JSON text.
struct Exported(i64, String);

impl Reply for Exported {
    fn into_value(self) -> Value {
        Value::Struct(vec![("userid".into(), Value::Int(self.0)), ("export".into(), Value::Str(self.1))])
    }
}

async fn export_user(call: &Call<'_>, p: ExportUser) -> Result<Exported, WsError> {
    let export = crate::app::erasure::export_user(&call.ledger.db, p.userid).await.map_err(|e| call.store_error(e))?;
    if export.user.is_none() {
        return Err(WsError::invalid_parameter("Invalid user"));
    }
    let json = serde_json::to_string(&export).map_err(|e| call.store_error(e))?;
    Ok(Exported(p.userid, json))
}
