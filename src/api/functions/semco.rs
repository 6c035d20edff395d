//! enrol_semco's six functions (MOODLE-REFERENCE.md §3): writes go to the ledger, reads come
//! from the projections.

use serde::Deserialize;
use sqlx::Row;

use super::{boolean, function, int, raw, result_returns, text, warnings, Call, Done, FunctionDef, Reply};
use crate::api::errors::{completions_max, domain_error, COMPLETIONS_IDS_MAX};
use crate::api::services::{ENROL_SEMCO, LEDGER_ADMIN, LEDGER_AUDIT};
use crate::api::wire::encode::WsError;
use crate::api::wire::params::{Desc, Value};
use crate::app::Request;
use crate::domain::DomainError;

pub(super) static FUNCTIONS: [FunctionDef; 6] = [
    function! {
        name: "enrol_semco_enrol_user",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: enrol_params,
        returns: || Some(Desc::single(vec![
            ("enrolid", int("The ID of the created user enrolment")),
            ("userid", int("The user ID")),
            ("courseid", int("The course ID")),
            ("semcobookingid", text("The SEMCO booking ID")),
            ("warnings", warnings()),
        ])),
        handler: enrol_user,
        sample: &[("userid", "3"), ("courseid", "2"), ("semcobookingid", "B-1")],
    },
    function! {
        name: "enrol_semco_unenrol_user",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: || vec![("enrolid", int("The user enrolment ID"))],
        returns: || Some(result_returns()),
        handler: unenrol_user,
        sample: &[("enrolid", "1")],
    },
    function! {
        name: "enrol_semco_edit_enrolment",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: edit_params,
        returns: || Some(result_returns()),
        handler: edit_enrolment,
        sample: &[("enrolid", "1"), ("timeend", "1700000000")],
    },
    function! {
        name: "enrol_semco_get_enrolments",
        services: &[ENROL_SEMCO, LEDGER_ADMIN, LEDGER_AUDIT],
        params: || vec![("courseid", int("The course ID"))],
        returns: || Some(Desc::multiple(Desc::single(vec![
            ("enrolid", int("The user enrolment ID")),
            ("userid", int("The user ID")),
            ("semcobookingid", text("The SEMCO booking ID")),
            ("timestart", int("Enrolment start")),
            ("timeend", int("Enrolment end")),
            ("suspend", boolean("Whether the enrolment is suspended")),
        ]))),
        handler: get_enrolments,
        sample: &[("courseid", "2")],
    },
    function! {
        name: "enrol_semco_get_course_completions",
        services: &[ENROL_SEMCO, LEDGER_ADMIN, LEDGER_AUDIT],
        params: || vec![("enrolmentids", Desc::multiple(int("The user enrolment ID")))],
        returns: || Some(Desc::multiple(Desc::single(vec![
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
        ]))),
        handler: get_course_completions,
        sample: &[("enrolmentids[0]", "1"), ("enrolmentids[1]", "2")],
    },
    function! {
        name: "enrol_semco_reset_course_completion",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: || vec![("enrolid", int("The user enrolment ID"))],
        returns: || Some(result_returns()),
        handler: reset_course_completion,
        sample: &[("enrolid", "1")],
    },
];

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolUser {
    userid: i64,
    courseid: i64,
    semcobookingid: String,
    timestart: i64,
    timeend: i64,
    suspend: bool,
    requirerecompletion: bool,
}

/// `enrol_semco_enrol_user`'s answer.
struct Enrolled {
    enrolid: i64,
    userid: i64,
    courseid: i64,
    semcobookingid: String,
}

impl Reply for Enrolled {
    fn into_value(self) -> Value {
        Value::Struct(vec![
            ("enrolid".into(), Value::Int(self.enrolid)),
            ("userid".into(), Value::Int(self.userid)),
            ("courseid".into(), Value::Int(self.courseid)),
            ("semcobookingid".into(), Value::Str(self.semcobookingid)),
            ("warnings".into(), Value::List(Vec::new())),
        ])
    }
}

async fn enrol_user(call: &Call<'_>, p: EnrolUser) -> Result<Enrolled, WsError> {
    let request = Request::Enrol {
        user_id: p.userid,
        course_id: p.courseid,
        booking_id: p.semcobookingid.clone(),
        timestart: p.timestart,
        timeend: p.timeend,
        suspend: p.suspend,
        require_recompletion: p.requirerecompletion,
    };
    let outcome = call.submit(request).await?;
    Ok(Enrolled { enrolid: outcome.enrolid, userid: p.userid, courseid: p.courseid, semcobookingid: p.semcobookingid })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolId {
    enrolid: i64,
}

async fn unenrol_user(call: &Call<'_>, p: EnrolId) -> Result<Done, WsError> {
    call.submit(Request::Unenrol { enrolid: p.enrolid }).await?;
    Ok(Done)
}

async fn reset_course_completion(call: &Call<'_>, p: EnrolId) -> Result<Done, WsError> {
    call.submit(Request::ResetCompletion { enrolid: p.enrolid }).await?;
    Ok(Done)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditEnrolment {
    enrolid: i64,
    semcobookingid: Option<String>,
    timestart: Option<i64>,
    timeend: Option<i64>,
    suspend: Option<bool>,
}

async fn edit_enrolment(call: &Call<'_>, p: EditEnrolment) -> Result<Done, WsError> {
    let request = Request::Edit {
        enrolid: p.enrolid,
        booking_id: p.semcobookingid,
        timestart: p.timestart,
        timeend: p.timeend,
        suspend: p.suspend,
    };
    call.submit(request).await?;
    Ok(Done)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CourseId {
    courseid: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolmentIds {
    enrolmentids: Vec<i64>,
}

/// The plugin's preamble for the read functions: is the plugin enabled?
async fn require_enabled(call: &Call<'_>) -> Result<(), WsError> {
    if !call.plugin_enabled().await? {
        return Err(domain_error(&DomainError::PluginNotEnabled, call.base_url));
    }
    Ok(())
}

async fn get_enrolments(call: &Call<'_>, p: CourseId) -> Result<Value, WsError> {
    let course = p.courseid;
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

async fn get_course_completions(call: &Call<'_>, p: EnrolmentIds) -> Result<Value, WsError> {
    let ids = &p.enrolmentids;
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
