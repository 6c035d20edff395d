//! The ledger's own functions (WS-CONTRACT.md §3.3).

use super::{get, get_i64, get_str, int, raw, result_returns, result_value, warnings, Call, Function};
use super::{ParamsFn, ReturnsFn};
use crate::api::wire::encode::WsError;
use crate::api::wire::params::{Desc, ParamType, Value};
use crate::app::{Outcome, Request};
use crate::domain::completion::GradeInput;
use crate::domain::config::SETTING_NAMES;

fn float(desc: &'static str) -> Desc {
    Desc::value(ParamType::Float, desc)
}

pub fn describe(name: &'static str) -> Option<Function> {
    let (params, returns): (ParamsFn, ReturnsFn) = match name {
        "ledger_set_course_recompletion" => (
            || {
                vec![
                    ("courseid", int("The course ID")),
                    ("recompletiontype", Desc::value(ParamType::Alpha, "'', period, ondemand or schedule")),
                ]
            },
            || Some(result_returns()),
        ),
        "ledger_record_course_completion" => (
            || {
                vec![
                    ("userid", int("The user ID")),
                    ("courseid", int("The course ID")),
                    ("timecompleted", int("Time of completion, > 0")),
                    ("finalgrade", float("Course total grade").with_default(Value::Null)),
                    ("grademin", float("Minimum grade").with_default(Value::Null)),
                    ("grademax", float("Maximum grade").with_default(Value::Null)),
                    ("gradepass", float("Grade to pass").with_default(Value::Null)),
                ]
            },
            || Some(result_returns()),
        ),
        "ledger_set_config" => (
            || vec![("name", Desc::value(ParamType::AlphaNumExt, "Setting name")), ("value", raw("New value"))],
            || Some(result_returns()),
        ),
        "ledger_get_config" => (Vec::new, || {
            Some(Desc::multiple(Desc::single(vec![("name", raw("Setting name")), ("value", raw("Setting value"))])))
        }),
        "ledger_cleanup_orphans" => {
            (Vec::new, || Some(Desc::single(vec![("removed", int("Instances removed")), ("warnings", warnings())])))
        }
        _ => return None,
    };
    Some(Function { name, params, returns })
}

pub async fn execute(call: &Call<'_>, name: &str, p: Value) -> Result<Value, WsError> {
    match name {
        "ledger_set_course_recompletion" => {
            let request = Request::SetRecompletion {
                course_id: get_i64(&p, "courseid"),
                recompletion_type: get_str(&p, "recompletiontype"),
            };
            call.submit(request).await?;
            Ok(result_value(true))
        }
        "ledger_record_course_completion" => {
            let grade = GradeInput {
                finalgrade: get(&p, "finalgrade").as_f64(),
                grademin: get(&p, "grademin").as_f64(),
                grademax: get(&p, "grademax").as_f64(),
                gradepass: get(&p, "gradepass").as_f64(),
            };
            if [grade.finalgrade, grade.grademin, grade.grademax, grade.gradepass]
                .iter()
                .flatten()
                .any(|g| !g.is_finite())
            {
                return Err(WsError::invalid_parameter("Grades must be finite numbers"));
            }
            let request = Request::RecordCompletion {
                user_id: get_i64(&p, "userid"),
                course_id: get_i64(&p, "courseid"),
                timecompleted: get_i64(&p, "timecompleted"),
                grade,
            };
            call.submit(request).await?;
            Ok(result_value(true))
        }
        "ledger_set_config" => {
            call.submit(Request::SetConfig { name: get_str(&p, "name"), value: get_str(&p, "value") }).await?;
            Ok(result_value(true))
        }
        "ledger_get_config" => {
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
        "ledger_cleanup_orphans" => match call.submit(Request::CleanupOrphans).await? {
            Outcome::Removed(n) => {
                Ok(Value::Struct(vec![("removed".into(), Value::Int(n)), ("warnings".into(), Value::List(Vec::new()))]))
            }
            other => Err(call.store_error(format!("unexpected outcome {other:?}"))),
        },
        _ => Err(WsError::invalid_parameter("Unknown function")),
    }
}
