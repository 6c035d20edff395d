//! enrol_semco's six functions (MOODLE-REFERENCE.md §3): writes go to the ledger, reads come
//! from the projections.

use sqlx::Row;

use super::{boolean, get, get_i64, get_str, int, opt_str, raw, result_returns, result_value, text, warnings};
use super::{Call, Function};
use super::{ParamsFn, ReturnsFn};
use crate::api::errors::{completions_max, domain_error, COMPLETIONS_IDS_MAX};
use crate::api::wire::encode::WsError;
use crate::api::wire::params::{Desc, Value};
use crate::app::{Outcome, Request};
use crate::domain::DomainError;

pub fn describe(name: &'static str) -> Option<Function> {
    let (params, returns): (ParamsFn, ReturnsFn) = match name {
        "enrol_semco_enrol_user" => (enrol_params, || {
            Some(Desc::single(vec![
                ("enrolid", int("The ID of the created user enrolment")),
                ("userid", int("The user ID")),
                ("courseid", int("The course ID")),
                ("semcobookingid", text("The SEMCO booking ID")),
                ("warnings", warnings()),
            ]))
        }),
        "enrol_semco_unenrol_user" | "enrol_semco_reset_course_completion" => {
            (|| vec![("enrolid", int("The user enrolment ID"))], || Some(result_returns()))
        }
        "enrol_semco_edit_enrolment" => (edit_params, || Some(result_returns())),
        "enrol_semco_get_enrolments" => (
            || vec![("courseid", int("The course ID"))],
            || {
                Some(Desc::multiple(Desc::single(vec![
                    ("enrolid", int("The user enrolment ID")),
                    ("userid", int("The user ID")),
                    ("semcobookingid", text("The SEMCO booking ID")),
                    ("timestart", int("Enrolment start")),
                    ("timeend", int("Enrolment end")),
                    ("suspend", boolean("Whether the enrolment is suspended")),
                ])))
            },
        ),
        "enrol_semco_get_course_completions" => (
            || vec![("enrolmentids", Desc::multiple(int("The user enrolment ID")))],
            || {
                Some(Desc::multiple(Desc::single(vec![
                    ("enrolid", int("The user enrolment ID")),
                    ("userid", int("The user ID")),
                    ("semcobookingid", text("The SEMCO booking ID")),
                    ("canbecompleted", boolean("Whether the course can be completed")),
                    ("completed", boolean("Whether the course is completed")),
                    ("timecompleted", int("Time of completion")),
                    ("finalgrade", raw("Final grade, formatted")),
                    ("finalgraderaw", raw("Final grade, raw")),
                    ("grademinraw", raw("Minimum grade, raw")),
                    ("grademaxraw", raw("Maximum grade, raw")),
                    ("gradepassraw", raw("Grade to pass, raw")),
                    ("passed", boolean("Whether the user passed")),
                ])))
            },
        ),
        _ => return None,
    };
    Some(Function { name, params, returns })
}

fn enrol_params() -> Vec<(&'static str, Desc)> {
    vec![
        ("userid", int("The user ID")),
        ("courseid", int("The course ID")),
        ("semcobookingid", text("The SEMCO booking ID")),
        ("timestart", int("Enrolment start").with_default(Value::Int(0))),
        ("timeend", int("Enrolment end").with_default(Value::Int(0))),
        ("suspend", boolean("Suspend the enrolment").with_default(Value::Bool(false))),
        ("requirerecompletion", boolean("Require course recompletion").with_default(Value::Bool(false))),
    ]
}

fn edit_params() -> Vec<(&'static str, Desc)> {
    vec![
        ("enrolid", int("The user enrolment ID")),
        ("semcobookingid", text("The SEMCO booking ID").with_default(Value::Null)),
        ("timestart", int("Enrolment start").with_default(Value::Null)),
        ("timeend", int("Enrolment end").with_default(Value::Null)),
        ("suspend", boolean("Suspend the enrolment").with_default(Value::Null)),
    ]
}

pub async fn execute(call: &Call<'_>, name: &str, p: Value) -> Result<Value, WsError> {
    match name {
        "enrol_semco_enrol_user" => {
            let request = Request::Enrol {
                user_id: get_i64(&p, "userid"),
                course_id: get_i64(&p, "courseid"),
                booking_id: get_str(&p, "semcobookingid"),
                timestart: get_i64(&p, "timestart"),
                timeend: get_i64(&p, "timeend"),
                suspend: get(&p, "suspend").as_bool().unwrap_or(false),
                require_recompletion: get(&p, "requirerecompletion").as_bool().unwrap_or(false),
            };
            match call.submit(request).await? {
                Outcome::Enrolled { enrolid, user_id, course_id, booking_id } => Ok(Value::Struct(vec![
                    ("enrolid".into(), Value::Int(enrolid)),
                    ("userid".into(), Value::Int(user_id)),
                    ("courseid".into(), Value::Int(course_id)),
                    ("semcobookingid".into(), Value::Str(booking_id)),
                    ("warnings".into(), Value::List(Vec::new())),
                ])),
                other => Err(call.store_error(format!("unexpected outcome {other:?}"))),
            }
        }
        "enrol_semco_unenrol_user" => {
            call.submit(Request::Unenrol { enrolid: get_i64(&p, "enrolid") }).await?;
            Ok(result_value(true))
        }
        "enrol_semco_edit_enrolment" => {
            let request = Request::Edit {
                enrolid: get_i64(&p, "enrolid"),
                booking_id: opt_str(&p, "semcobookingid"),
                timestart: get(&p, "timestart").as_i64(),
                timeend: get(&p, "timeend").as_i64(),
                suspend: get(&p, "suspend").as_bool(),
            };
            call.submit(request).await?;
            Ok(result_value(true))
        }
        "enrol_semco_reset_course_completion" => {
            call.submit(Request::ResetCompletion { enrolid: get_i64(&p, "enrolid") }).await?;
            Ok(result_value(true))
        }
        "enrol_semco_get_enrolments" => get_enrolments(call, get_i64(&p, "courseid")).await,
        "enrol_semco_get_course_completions" => {
            let ids: Vec<i64> =
                get(&p, "enrolmentids").as_list().unwrap_or_default().iter().filter_map(Value::as_i64).collect();
            get_course_completions(call, &ids).await
        }
        _ => Err(WsError::invalid_parameter("Unknown function")),
    }
}

/// The plugin's preamble for the read functions: is the plugin enabled?
async fn require_enabled(call: &Call<'_>) -> Result<(), WsError> {
    if !call.plugin_enabled().await? {
        return Err(domain_error(&DomainError::PluginNotEnabled, call.base_url));
    }
    Ok(())
}

async fn get_enrolments(call: &Call<'_>, course: i64) -> Result<Value, WsError> {
    require_enabled(call).await?;
    let pool = &call.ledger.db.pool;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM courses WHERE id = $1")
        .bind(course)
        .fetch_optional(pool)
        .await
        .map_err(|e| call.store_error(e))?;
    if exists.is_none() {
        return Err(domain_error(&DomainError::CourseNotExist(crate::domain::ids::CourseId(course)), call.base_url));
    }
    let rows = sqlx::query(crate::projection::queries::COURSE_ENROLMENTS)
        .bind(course)
        .fetch_all(pool)
        .await
        .map_err(|e| call.store_error(e))?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(Value::Struct(vec![
                ("enrolid".into(), Value::Int(r.try_get(0)?)),
                ("userid".into(), Value::Int(r.try_get(1)?)),
                ("semcobookingid".into(), r.try_get::<Option<String>, _>(2)?.map_or(Value::Null, Value::Str)),
                ("timestart".into(), Value::Int(r.try_get(3)?)),
                ("timeend".into(), Value::Int(r.try_get(4)?)),
                ("suspend".into(), Value::Bool(r.try_get::<i64, _>(5)? == 1)),
            ]))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| call.store_error(e))?;
    Ok(Value::List(list))
}

/// Moodle's raw grade text: five decimals, as numeric(10,5) prints.
fn raw_grade(value: f64) -> Value {
    Value::Str(format!("{value:.5}"))
}

async fn get_course_completions(call: &Call<'_>, ids: &[i64]) -> Result<Value, WsError> {
    if ids.len() > COMPLETIONS_IDS_MAX {
        return Err(completions_max());
    }
    require_enabled(call).await?;
    let mut conn = call.ledger.db.pool.acquire().await.map_err(|e| call.store_error(e))?;
    let mut rows = Vec::with_capacity(ids.len());
    for &id in ids {
        let found = sqlx::query(
            "SELECT ue.userid, e.customchar1, e.courseid, c.enablecompletion, \
                    cc.timecompleted, cc.finalgrade, cc.grademin, cc.grademax, cc.gradepass \
             FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
             LEFT JOIN courses c ON c.id = e.courseid \
             LEFT JOIN course_completions cc ON cc.userid = ue.userid AND cc.course = e.courseid \
             WHERE ue.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| call.store_error(e))?;
        let Some(r) = found else {
            return Err(domain_error(&DomainError::EnrolNoUserInstance(id), call.base_url));
        };
        let read = || -> Result<Value, sqlx::Error> {
            let canbecompleted = r.try_get::<Option<i32>, _>(3)?.unwrap_or(0) != 0;
            let timecompleted: Option<i64> = r.try_get(4)?;
            let grade: Option<(f64, f64, f64, f64)> = match r.try_get::<Option<f64>, _>(5)? {
                Some(finalgrade) => Some((
                    finalgrade,
                    r.try_get::<Option<f64>, _>(6)?.unwrap_or(0.0),
                    r.try_get::<Option<f64>, _>(7)?.unwrap_or(100.0),
                    r.try_get::<Option<f64>, _>(8)?.unwrap_or(0.0),
                )),
                None => None,
            };
            let completed = canbecompleted && timecompleted.is_some_and(|t| t > 0);
            let grade = grade.filter(|_| completed);
            let null = || Value::Null;
            Ok(Value::Struct(vec![
                ("enrolid".into(), Value::Int(id)),
                ("userid".into(), Value::Int(r.try_get(0)?)),
                ("semcobookingid".into(), r.try_get::<Option<String>, _>(1)?.map_or(Value::Null, Value::Str)),
                ("canbecompleted".into(), Value::Bool(canbecompleted)),
                ("completed".into(), Value::Bool(completed)),
                ("timecompleted".into(), timecompleted.filter(|_| completed).map_or(Value::Null, Value::Int)),
                ("finalgrade".into(), grade.map_or_else(null, |g| Value::Str(format!("{:.2}", g.0)))),
                ("finalgraderaw".into(), grade.map_or_else(null, |g| raw_grade(g.0))),
                ("grademinraw".into(), grade.map_or_else(null, |g| raw_grade(g.1))),
                ("grademaxraw".into(), grade.map_or_else(null, |g| raw_grade(g.2))),
                ("gradepassraw".into(), grade.map_or_else(null, |g| raw_grade(g.3))),
                (
                    "passed".into(),
                    // Moodle: no verdict when the pass mark equals the minimum.
                    grade.filter(|g| g.3 != g.1).map_or(Value::Null, |g| Value::Bool(g.0 >= g.3)),
                ),
            ]))
        };
        rows.push(read().map_err(|e| call.store_error(e))?);
    }
    Ok(Value::List(rows))
}
