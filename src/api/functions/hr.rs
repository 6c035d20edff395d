//! The functions HR/LMS integrations call (WS-CONTRACT.md §3.2b, service `ledger_hr`): manual
//! enrolments (writes through the ledger), the core enrolment, course, completion and grade
//! reads (projection and registry SQL), and the ledger's own completion-criteria setter.

use serde::Deserialize;
use sqlx::Row;

use super::core::{user_details, user_value};
use super::{boolean, function, int, raw, result_returns, text, warnings, Call, Done, FunctionDef};
use crate::api::errors;
use crate::api::services::{LEDGER_ADMIN, LEDGER_HR};
use crate::api::wire::encode::WsError;
use crate::api::wire::params::{Desc, ParamType, Value};
use crate::app::command::{ManualEnrolItem, ManualUnenrolItem};
use crate::app::Request;
use crate::domain::column::{Column, GradeValue};
use crate::domain::criteria::{self, Criteria, StatusFacts};
use crate::domain::event::{CourseCompletion, Grade};

const BOTH: &[&str] = &[LEDGER_ADMIN, LEDGER_HR];

fn value(ty: ParamType, desc: &'static str) -> Desc {
    Desc::value(ty, desc)
}

pub(super) static FUNCTIONS: [FunctionDef; 9] = [
    function! {
        name: "enrol_manual_enrol_users",
        services: BOTH,
        params: || vec![(
            "enrolments",
            Desc::multiple(Desc::single(vec![
                ("roleid", int("Role to assign to the user")),
                ("userid", int("The user that is going to be enrolled")),
                ("courseid", int("The course to enrol the user role in")),
                ("timestart", int("Timestamp when the enrolment start").optional()),
                ("timeend", int("Timestamp when the enrolment end").optional()),
                ("suspend", int("set to 1 to suspend the enrolment").optional()),
            ])),
        )],
        returns: || None,
        handler: manual_enrol_users,
        sample: &[
            ("enrolments[0][roleid]", "5"), ("enrolments[0][userid]", "3"), ("enrolments[0][courseid]", "2"),
            ("enrolments[0][timestart]", "0"), ("enrolments[0][timeend]", "0"), ("enrolments[0][suspend]", "0"),
        ],
    },
    function! {
        name: "enrol_manual_unenrol_users",
        services: BOTH,
        params: || vec![(
            "enrolments",
            Desc::multiple(Desc::single(vec![
                ("userid", int("The user that is going to be unenrolled")),
                ("courseid", int("The course to unenrol the user from")),
                ("roleid", int("The user role").optional()),
            ])),
        )],
        returns: || None,
        handler: manual_unenrol_users,
        sample: &[("enrolments[0][userid]", "3"), ("enrolments[0][courseid]", "2"), ("enrolments[0][roleid]", "5")],
    },
    function! {
        name: "core_user_get_users",
        services: BOTH,
        params: || vec![(
            "criteria",
            Desc::multiple(Desc::single(vec![
                ("key", value(ParamType::Alpha, "the user column to search")),
                ("value", raw("the value to search")),
            ])),
        )],
        returns: || Some(Desc::single(vec![("users", Desc::multiple(user_details())), ("warnings", warnings())])),
        handler: get_users,
        sample: &[("criteria[0][key]", "username"), ("criteria[0][value]", "jdoe")],
    },
    function! {
        name: "core_course_get_courses",
        services: BOTH,
        params: || vec![(
            "options",
            Desc::single(vec![("ids", Desc::multiple(int("Course id")).optional())])
                .with_default(Value::Struct(Vec::new())),
        )],
        returns: || Some(Desc::multiple(course_list_item())),
        handler: get_courses,
        sample: &[("options[ids][0]", "2")],
    },
    function! {
        name: "core_enrol_get_enrolled_users",
        services: BOTH,
        params: || vec![
            ("courseid", int("course id")),
            (
                "options",
                Desc::multiple(Desc::single(vec![("name", value(ParamType::AlphaNumExt, "option name")), ("value", raw("option value"))]))
                    .with_default(Value::List(Vec::new())),
            ),
        ],
        returns: || Some(Desc::multiple(enrolled_user())),
        handler: get_enrolled_users,
        sample: &[("courseid", "2"), ("options[0][name]", "onlyactive"), ("options[0][value]", "1")],
    },
    function! {
        name: "core_enrol_get_users_courses",
        services: BOTH,
        params: || vec![
            ("userid", int("user id")),
            ("returnusercount", boolean("Include count of enrolled users for each course?").with_default(Value::Bool(true))),
        ],
        returns: || Some(Desc::multiple(users_course())),
        handler: get_users_courses,
        sample: &[("userid", "3"), ("returnusercount", "1")],
    },
    function! {
        name: "core_completion_get_course_completion_status",
        services: BOTH,
        params: || vec![("courseid", int("Course ID")), ("userid", int("User ID"))],
        returns: || Some(Desc::single(vec![
            (
                "completionstatus",
                Desc::single(vec![
                    ("completed", boolean("true if the course is complete, false otherwise")),
                    ("aggregation", int("aggregation method 1 means all, 2 means any")),
                    (
                        "completions",
                        Desc::multiple(Desc::single(vec![
                            ("type", int("Completion criteria type")),
                            ("title", text("Completion criteria Title")),
                            ("status", value(ParamType::NoTags, "Completion status (Yes/No) a % or number")),
                            ("complete", boolean("Completion status (true/false)")),
                            ("timecompleted", int("Timestamp for criteria completetion")),
                            (
                                "details",
                                Desc::single(vec![
                                    ("type", text("Type description")),
                                    ("criteria", raw("Criteria description")),
                                    ("requirement", text("Requirement description")),
                                    ("status", text("Status description")),
                                ]),
                            ),
                        ])),
                    ),
                ]),
            ),
            ("warnings", warnings()),
        ])),
        handler: course_completion_status,
        sample: &[("courseid", "2"), ("userid", "3")],
    },
    function! {
        name: "gradereport_overview_get_course_grades",
        services: BOTH,
        params: || vec![("userid", int("Get grades for this user (optional, default current)").with_default(Value::Int(0)))],
        returns: || Some(Desc::single(vec![
            (
                "grades",
                Desc::multiple(Desc::single(vec![
                    ("courseid", int("Course id")),
                    ("grade", raw("Grade formatted")),
                    ("rawgrade", raw("Raw grade, not formatted")),
                    ("rank", int("Your rank in the course").optional()),
                ])),
            ),
            ("warnings", warnings()),
        ])),
        handler: course_grades,
        sample: &[("userid", "3")],
    },
    function! {
        name: "ledger_set_course_completion_criteria",
        services: &[LEDGER_ADMIN],
        params: || vec![
            ("courseid", int("The course ID")),
            (
                "gradepass",
                Desc::value(ParamType::Float, "Course grade to pass (criteria type 6); 0 or absent removes it")
                    .with_default(Value::Null),
            ),
        ],
        returns: || Some(result_returns()),
        handler: set_completion_criteria,
        sample: &[("courseid", "2"), ("gradepass", "50")],
    },
];

fn course_list_item() -> Desc {
    Desc::single(vec![
        ("id", int("course id")),
        ("shortname", text("course short name")),
        ("categoryid", int("category id")),
        ("categorysortorder", int("sort order into the category").optional()),
        ("fullname", text("full name")),
        ("displayname", text("course display name")),
        ("idnumber", raw("id number").optional()),
        ("summary", raw("summary")),
        ("summaryformat", int("summary format")),
        ("format", value(ParamType::AlphaNumExt, "course format")),
        ("showgrades", int("1 if grades are shown, otherwise 0").optional()),
        ("newsitems", int("number of recent items appearing on the course page").optional()),
        ("startdate", int("timestamp when the course start")),
        ("enddate", int("timestamp when the course end")),
        ("maxbytes", int("largest size of file that can be uploaded into the course").optional()),
        ("showreports", int("are activity report shown (yes = 1, no =0)").optional()),
        ("visible", int("1: available to student, 0:not available").optional()),
        ("groupmode", int("no group, separate, visible").optional()),
        ("groupmodeforce", int("1: yes, 0: no").optional()),
        ("defaultgroupingid", int("default grouping id").optional()),
        ("timecreated", int("timestamp when the course have been created").optional()),
        ("timemodified", int("timestamp when the course have been modified").optional()),
        ("enablecompletion", int("Enabled, control via completion and activity settings.").optional()),
        ("completionnotify", int("1: yes 0: no").optional()),
        ("lang", value(ParamType::AlphaNumExt, "forced course language").optional()),
        ("forcetheme", value(ParamType::AlphaNumExt, "name of the force theme").optional()),
        ("showactivitydates", boolean("Whether the activity dates are shown or not")),
        ("showcompletionconditions", boolean("Whether the activity completion conditions are shown or not")),
    ])
}

fn enrolled_user() -> Desc {
    Desc::single(vec![
        ("id", int("ID of the user")),
        ("username", raw("Username policy is defined in Moodle security config").optional()),
        ("firstname", value(ParamType::NoTags, "The first name(s) of the user").optional()),
        ("lastname", value(ParamType::NoTags, "The family name of the user").optional()),
        ("fullname", value(ParamType::NoTags, "The fullname of the user")),
        ("email", text("An email address - allow email as root@localhost").optional()),
        ("idnumber", raw("An arbitrary ID code number perhaps from the institution").optional()),
        ("firstaccess", int("first access to the site (0 if never)").optional()),
        ("lastaccess", int("last access to the site (0 if never)").optional()),
        ("lastcourseaccess", int("last access to the course (0 if never)").optional()),
        ("profileimageurlsmall", raw("User image profile URL - small version").optional()),
        ("profileimageurl", raw("User image profile URL - big version").optional()),
    ])
}

fn users_course() -> Desc {
    Desc::single(vec![
        ("id", int("id of course")),
        ("shortname", raw("short name of course")),
        ("fullname", raw("long name of course")),
        ("displayname", raw("course display name for lists.").optional()),
        ("enrolledusercount", int("Number of enrolled users in this course").optional()),
        ("idnumber", raw("id number of course")),
        ("visible", int("1 means visible, 0 means not yet visible course")),
        ("summary", raw("summary").optional()),
        ("summaryformat", int("summary format").optional()),
        ("format", value(ParamType::AlphaNumExt, "course format: weeks, topics, social, site").optional()),
        ("showgrades", boolean("true if grades are shown, otherwise false").optional()),
        ("lang", value(ParamType::Lang, "forced course language").optional()),
        ("enablecompletion", boolean("true if completion is enabled, otherwise false").optional()),
        ("completionhascriteria", boolean("If completion criteria is set.").optional()),
        ("completionusertracked", boolean("If the user is completion tracked.").optional()),
        ("category", int("course category id").optional()),
        ("progress", Desc::value(ParamType::Float, "Progress percentage").optional()),
        ("completed", boolean("Whether the course is completed.").optional()),
        ("startdate", int("Timestamp when the course start").optional()),
        ("enddate", int("Timestamp when the course end").optional()),
        ("marker", int("Course section marker.").optional()),
        ("lastaccess", int("Last access to the course (timestamp).").optional()),
        ("isfavourite", boolean("If the user marked this course a favourite.").optional()),
        ("hidden", boolean("If the user hide the course from the dashboard.").optional()),
        ("showactivitydates", boolean("Whether the activity dates are shown or not").optional()),
        ("showcompletionconditions", boolean("Whether the activity completion conditions are shown or not").optional()),
        ("timemodified", int("Last time course settings were updated (timestamp).").optional()),
    ])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolItem {
    roleid: i64,
    userid: i64,
    courseid: i64,
    timestart: Option<i64>,
    timeend: Option<i64>,
    suspend: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrolments<T> {
    enrolments: Vec<T>,
}

async fn manual_enrol_users(call: &Call<'_>, p: Enrolments<EnrolItem>) -> Result<(), WsError> {
    let items = p
        .enrolments
        .into_iter()
        .map(|e| ManualEnrolItem {
            role_id: e.roleid,
            user_id: e.userid,
            course_id: e.courseid,
            timestart: e.timestart,
            timeend: e.timeend,
            suspend: e.suspend,
        })
        .collect();
    call.submit(Request::ManualEnrol(items)).await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // roleid is accepted and ignored, as Moodle's unenrol ignores it
struct UnenrolItem {
    userid: i64,
    courseid: i64,
    roleid: Option<i64>,
}

async fn manual_unenrol_users(call: &Call<'_>, p: Enrolments<UnenrolItem>) -> Result<(), WsError> {
    let items =
        p.enrolments.into_iter().map(|e| ManualUnenrolItem { user_id: e.userid, course_id: e.courseid }).collect();
    call.submit(Request::ManualUnenrol(items)).await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Criterion {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetUsers {
    criteria: Vec<Criterion>,
}

/// `core_user_get_users`: criteria combined with AND; names and e-mail match case-insensitively
/// with SQL `LIKE` (as Moodle's `sql_like`), the others exactly. An unknown key is a warning.
async fn get_users(call: &Call<'_>, p: GetUsers) -> Result<Value, WsError> {
    let mut conditions = vec!["deleted = 0".to_owned()];
    let mut binds: Vec<Bind> = Vec::new();
    let mut warnings = Vec::new();
    for c in p.criteria {
        let n = binds.len() + 1;
        match c.key.as_str() {
            "id" => {
                let Ok(id) = c.value.parse::<i64>() else {
                    return Err(WsError::invalid_parameter(format!("The field 'id' value is invalid: {}", c.value)));
                };
                conditions.push(format!("id = ${n}"));
                binds.push(Bind::Int(id));
            }
            "idnumber" | "username" | "auth" => {
                conditions.push(format!("{} = ${n}", c.key));
                binds.push(Bind::Text(c.value));
            }
            "firstname" | "lastname" | "email" => {
                conditions.push(format!("LOWER({}) LIKE LOWER(${n})", c.key));
                binds.push(Bind::Text(c.value));
            }
            other => warnings.push(Value::Struct(vec![
                ("item".into(), Value::Str(other.to_owned())),
                ("warningcode".into(), Value::Str("invalidfieldparameter".into())),
                (
                    "message".into(),
                    Value::Str(format!(
                        "The search key '{other}' is not supported, look at the web service documentation"
                    )),
                ),
            ])),
        }
    }
    let users = if warnings.is_empty() {
        let sql = format!("SELECT * FROM users WHERE {} ORDER BY id", conditions.join(" AND "));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&call.ledger.db.pool).await.map_err(|e| call.store_error(e))?;
        let mut users = Vec::new();
        for row in rows {
            users.push(user_value(call, &row).await.map_err(|e| call.store_error(e))?);
        }
        users
    } else {
        // Moodle answers no users when a key is not supported.
        Vec::new()
    };
    Ok(Value::Struct(vec![("users".into(), Value::List(users)), ("warnings".into(), Value::List(warnings))]))
}

enum Bind {
    Int(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CourseIds {
    ids: Option<Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetCourses {
    options: CourseIds,
}

async fn get_courses(call: &Call<'_>, p: GetCourses) -> Result<Value, WsError> {
    let rows = sqlx::query("SELECT * FROM courses ORDER BY id")
        .fetch_all(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    let wanted = p.options.ids.filter(|ids| !ids.is_empty());
    let mut courses = Vec::new();
    for row in rows {
        let read = || -> Result<Option<Value>, sqlx::Error> {
            let id: i64 = row.try_get("id")?;
            if wanted.as_ref().is_some_and(|ids| !ids.contains(&id)) {
                return Ok(None);
            }
            let fullname: String = row.try_get("fullname")?;
            Ok(Some(Value::Struct(vec![
                ("id".into(), Value::Int(id)),
                ("shortname".into(), Value::Str(row.try_get("shortname")?)),
                ("categoryid".into(), Value::Int(row.try_get("categoryid")?)),
                ("categorysortorder".into(), Value::Int(10000)),
                ("fullname".into(), Value::Str(fullname.clone())),
                ("displayname".into(), Value::Str(fullname)),
                ("idnumber".into(), Value::Str(row.try_get("idnumber")?)),
                ("summary".into(), Value::Str(row.try_get("summary")?)),
                ("summaryformat".into(), Value::Int(1)),
                ("format".into(), Value::Str("topics".into())),
                ("showgrades".into(), Value::Int(1)),
                ("newsitems".into(), Value::Int(5)),
                ("startdate".into(), Value::Int(row.try_get("startdate")?)),
                ("enddate".into(), Value::Int(row.try_get("enddate")?)),
                ("maxbytes".into(), Value::Int(0)),
                ("showreports".into(), Value::Int(0)),
                ("visible".into(), Value::Int(i64::from(row.try_get::<i32, _>("visible")?))),
                ("groupmode".into(), Value::Int(0)),
                ("groupmodeforce".into(), Value::Int(0)),
                ("defaultgroupingid".into(), Value::Int(0)),
                ("timecreated".into(), Value::Int(row.try_get("timecreated")?)),
                ("timemodified".into(), Value::Int(row.try_get("timemodified")?)),
                ("enablecompletion".into(), Value::Int(i64::from(row.try_get::<i32, _>("enablecompletion")?))),
                ("completionnotify".into(), Value::Int(0)),
                ("lang".into(), Value::Str(String::new())),
                ("forcetheme".into(), Value::Str(String::new())),
                ("showactivitydates".into(), Value::Bool(true)),
                ("showcompletionconditions".into(), Value::Bool(true)),
            ])))
        };
        if let Some(course) = read().map_err(|e| call.store_error(e))? {
            courses.push(course);
        }
    }
    Ok(Value::List(courses))
}

/// Moodle's "active enrolment" (MOODLE-REFERENCE.md §7.2) as SQL over `ue` and `e`; `$now` is
/// the bind number of the current time.
fn active_sql(now: usize) -> String {
    format!("ue.status = 0 AND e.status = 0 AND ue.timestart < ${now} AND (ue.timeend = 0 OR ue.timeend > ${now})")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

async fn course_exists(call: &Call<'_>, course: i64) -> Result<bool, WsError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM courses WHERE id = $1")
        .bind(course)
        .fetch_optional(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    Ok(found.is_some())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolledUsers {
    courseid: i64,
    options: Vec<NameValue>,
}

/// `core_enrol_get_enrolled_users`: the non-deleted users with a user enrolment of an enabled
/// instance of the course, of any method (SEMCO and manual), ordered by id. Options
/// `onlyactive`, `onlysuspended`, `limitfrom`, `limitnumber` are applied; others are ignored.
async fn get_enrolled_users(call: &Call<'_>, p: EnrolledUsers) -> Result<Value, WsError> {
    if !course_exists(call, p.courseid).await? {
        return Err(errors::course_context_not_valid(p.courseid));
    }
    let (mut onlyactive, mut onlysuspended, mut limitfrom, mut limitnumber) = (false, false, 0i64, 0i64);
    for option in &p.options {
        let int = || option.value.trim().parse::<i64>().unwrap_or(0);
        match option.name.to_lowercase().as_str() {
            "onlyactive" => onlyactive = int() != 0,
            "onlysuspended" => onlysuspended = int() != 0,
            "limitfrom" => limitfrom = int().max(0),
            "limitnumber" => limitnumber = int().max(0),
            _ => {}
        }
    }
    if onlyactive && onlysuspended {
        return Err(WsError::new(
            crate::api::wire::encode::CODING_EXCEPTION,
            "codingerror",
            "Coding error detected, it must be fixed by a programmer: Both onlyactive and onlysuspended are set, this is probably not what you want!",
        ));
    }
    let filter = if onlyactive {
        format!(
            "EXISTS (SELECT 1 FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
             WHERE ue.userid = u.id AND e.courseid = $1 AND {})",
            active_sql(2)
        )
    } else if onlysuspended {
        format!(
            "EXISTS (SELECT 1 FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
             WHERE ue.userid = u.id AND e.courseid = $1 AND e.status = 0) \
             AND NOT EXISTS (SELECT 1 FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
             WHERE ue.userid = u.id AND e.courseid = $1 AND {})",
            active_sql(2)
        )
    } else {
        "EXISTS (SELECT 1 FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
         WHERE ue.userid = u.id AND e.courseid = $1 AND e.status = 0) AND $2 = $2"
            .to_owned()
    };
    let sql = format!("SELECT u.* FROM users u WHERE u.deleted = 0 AND {filter} ORDER BY u.id");
    let rows = sqlx::query(&sql)
        .bind(p.courseid)
        .bind(unix_now())
        .fetch_all(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    let take = if limitnumber > 0 { limitnumber as usize } else { usize::MAX };
    let mut users = Vec::new();
    for row in rows.iter().skip(limitfrom as usize).take(take) {
        let Value::Struct(fields) = user_value(call, row).await.map_err(|e| call.store_error(e))? else {
            continue;
        };
        let keep = ["id", "username", "firstname", "lastname", "fullname", "email", "idnumber"];
        let mut fields: Vec<(String, Value)> = fields.into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect();
        fields.push(("firstaccess".into(), Value::Int(0)));
        fields.push(("lastaccess".into(), Value::Int(0)));
        fields.push(("lastcourseaccess".into(), Value::Int(0)));
        let picture = format!("{}/theme/image.php/boost/core/1/u/f1", call.base_url.trim_end_matches('/'));
        fields.push(("profileimageurlsmall".into(), Value::Str(format!("{picture}2"))));
        fields.push(("profileimageurl".into(), Value::Str(picture)));
        users.push(Value::Struct(fields));
    }
    Ok(Value::List(users))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersCourses {
    userid: i64,
    returnusercount: bool,
}

/// The criteria of a course from `course_completion_criteria`.
async fn criteria_of(call: &Call<'_>, course: i64) -> Result<Criteria, WsError> {
    let pass: Option<f64> =
        sqlx::query_scalar("SELECT gradepass FROM course_completion_criteria WHERE course = $1 AND criteriatype = $2")
            .bind(course)
            .bind(criteria::TYPE_GRADE)
            .fetch_optional(&call.ledger.db.pool)
            .await
            .map_err(|e| call.store_error(e))?;
    Ok(Criteria { grade: pass.and_then(|p| GradeValue::new(Column::GradeGradepass, p).ok()) })
}

/// The completion the LMS recorded for a user in a course.
async fn completion_of(call: &Call<'_>, user: i64, course: i64) -> Result<Option<CourseCompletion>, WsError> {
    let row = sqlx::query(
        "SELECT timecompleted, finalgrade, grademin, grademax, gradepass FROM course_completions \
         WHERE userid = $1 AND course = $2",
    )
    .bind(user)
    .bind(course)
    .fetch_optional(&call.ledger.db.pool)
    .await
    .map_err(|e| call.store_error(e))?;
    let Some(row) = row else { return Ok(None) };
    let read = || -> Result<CourseCompletion, sqlx::Error> {
        let g = |column, name: &str| -> Result<Option<GradeValue>, sqlx::Error> {
            Ok(row.try_get::<Option<f64>, _>(name)?.and_then(|v| GradeValue::new(column, v).ok()))
        };
        let grade = match (
            g(Column::GradeFinalgrade, "finalgrade")?,
            g(Column::GradeGrademin, "grademin")?,
            g(Column::GradeGrademax, "grademax")?,
            g(Column::GradeGradepass, "gradepass")?,
        ) {
            (Some(finalgrade), Some(grademin), Some(grademax), Some(gradepass)) => {
                Some(Grade { finalgrade, grademin, grademax, gradepass })
            }
            _ => None,
        };
        Ok(CourseCompletion { timecompleted: row.try_get("timecompleted")?, grade })
    };
    read().map(Some).map_err(|e| call.store_error(e))
}

/// Whether the user has an active enrolment (any method) in the course: `is_tracked_user`.
async fn is_tracked(call: &Call<'_>, user: i64, course: i64) -> Result<bool, WsError> {
    let sql = format!(
        "SELECT COUNT(*) FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
         JOIN users u ON u.id = ue.userid AND u.deleted = 0 \
         WHERE ue.userid = $1 AND e.courseid = $2 AND {}",
        active_sql(3)
    );
    let count: i64 = sqlx::query_scalar(&sql)
        .bind(user)
        .bind(course)
        .bind(unix_now())
        .fetch_one(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    Ok(count > 0)
}

/// shortname, fullname, idnumber, summary, category, visible, enablecompletion, start, end, modified.
type CourseColumns = (String, String, String, String, i64, i32, i32, i64, i64, i64);

/// `core_enrol_get_users_courses`: the courses where the user has an active enrolment.
async fn get_users_courses(call: &Call<'_>, p: UsersCourses) -> Result<Value, WsError> {
    let pool = &call.ledger.db.pool;
    let sql = format!(
        "SELECT DISTINCT c.* FROM courses c JOIN enrol e ON e.courseid = c.id \
         JOIN user_enrolments ue ON ue.enrolid = e.id \
         JOIN users u ON u.id = ue.userid AND u.deleted = 0 \
         WHERE ue.userid = $1 AND {} ORDER BY c.id",
        active_sql(2)
    );
    let now = unix_now();
    let rows = sqlx::query(&sql).bind(p.userid).bind(now).fetch_all(pool).await.map_err(|e| call.store_error(e))?;
    let mut courses = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id").map_err(|e| call.store_error(e))?;
        let read = || -> Result<CourseColumns, sqlx::Error> {
            Ok((
                row.try_get("shortname")?,
                row.try_get("fullname")?,
                row.try_get("idnumber")?,
                row.try_get("summary")?,
                row.try_get("categoryid")?,
                row.try_get("visible")?,
                row.try_get("enablecompletion")?,
                row.try_get("startdate")?,
                row.try_get("enddate")?,
                row.try_get("timemodified")?,
            ))
        };
        let (shortname, fullname, idnumber, summary, category, visible, enablecompletion, startdate, enddate, modified) =
            read().map_err(|e| call.store_error(e))?;
        let completion_enabled = enablecompletion != 0;
        let mut fields = vec![
            ("id".into(), Value::Int(id)),
            ("shortname".into(), Value::Str(shortname)),
            ("fullname".into(), Value::Str(fullname.clone())),
            ("displayname".into(), Value::Str(fullname)),
        ];
        if p.returnusercount {
            let sql = format!(
                "SELECT COUNT(DISTINCT ue.userid) FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
                 JOIN users u ON u.id = ue.userid AND u.deleted = 0 WHERE e.courseid = $1 AND {}",
                active_sql(2)
            );
            let count: i64 =
                sqlx::query_scalar(&sql).bind(id).bind(now).fetch_one(pool).await.map_err(|e| call.store_error(e))?;
            fields.push(("enrolledusercount".into(), Value::Int(count)));
        }
        fields.extend([
            ("idnumber".into(), Value::Str(idnumber)),
            ("visible".into(), Value::Int(i64::from(visible))),
            ("summary".into(), Value::Str(summary)),
            ("summaryformat".into(), Value::Int(1)),
            ("format".into(), Value::Str("topics".into())),
            ("showgrades".into(), Value::Bool(true)),
            ("lang".into(), Value::Str(String::new())),
            ("enablecompletion".into(), Value::Bool(completion_enabled)),
            ("completionhascriteria".into(), Value::Bool(!criteria_of(call, id).await?.is_empty())),
            ("completionusertracked".into(), Value::Bool(completion_enabled)),
            ("category".into(), Value::Int(category)),
            ("progress".into(), Value::Null),
        ]);
        if completion_enabled {
            let completed = completion_of(call, p.userid, id).await?.is_some();
            fields.push(("completed".into(), Value::Bool(completed)));
        }
        fields.extend([
            ("startdate".into(), Value::Int(startdate)),
            ("enddate".into(), Value::Int(enddate)),
            ("marker".into(), Value::Int(0)),
            ("lastaccess".into(), Value::Null),
            ("isfavourite".into(), Value::Bool(false)),
            ("hidden".into(), Value::Bool(false)),
            ("showactivitydates".into(), Value::Bool(true)),
            ("showcompletionconditions".into(), Value::Bool(true)),
            ("timemodified".into(), Value::Int(modified)),
        ]);
        courses.push(Value::Struct(fields));
    }
    Ok(Value::List(courses))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CourseUser {
    courseid: i64,
    userid: i64,
}

async fn user_exists(call: &Call<'_>, user: i64) -> Result<bool, WsError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND deleted = 0")
        .bind(user)
        .fetch_optional(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    Ok(found.is_some())
}

/// `core_completion_get_course_completion_status`, in Moodle's order: the course and the user
/// must exist (`get_course`, `core_user::get_user(MUST_EXIST)`), then the pure status rules.
async fn course_completion_status(call: &Call<'_>, p: CourseUser) -> Result<Value, WsError> {
    let enabled: Option<i32> = sqlx::query_scalar("SELECT enablecompletion FROM courses WHERE id = $1")
        .bind(p.courseid)
        .fetch_optional(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    let Some(enabled) = enabled else { return Err(errors::missing_record("course")) };
    if !user_exists(call, p.userid).await? {
        return Err(errors::missing_record("user"));
    }
    let facts = StatusFacts {
        completion_enabled: enabled != 0,
        tracked: is_tracked(call, p.userid, p.courseid).await?,
        criteria: criteria_of(call, p.courseid).await?,
        completion: completion_of(call, p.userid, p.courseid).await?,
    };
    let status = criteria::status(&facts).map_err(errors::status_refusal)?;
    let rows = status
        .completions
        .into_iter()
        .map(|row| {
            Value::Struct(vec![
                ("type".into(), Value::Int(row.kind)),
                ("title".into(), Value::Str(row.title)),
                ("status".into(), Value::Str(row.status)),
                ("complete".into(), Value::Bool(row.complete)),
                ("timecompleted".into(), row.timecompleted.map_or(Value::Null, Value::Int)),
                (
                    "details".into(),
                    Value::Struct(vec![
                        ("type".into(), Value::Str(row.details.kind)),
                        ("criteria".into(), Value::Str(row.details.criteria)),
                        ("requirement".into(), Value::Str(row.details.requirement)),
                        ("status".into(), Value::Str(row.details.status)),
                    ]),
                ),
            ])
        })
        .collect();
    Ok(Value::Struct(vec![
        (
            "completionstatus".into(),
            Value::Struct(vec![
                ("completed".into(), Value::Bool(status.completed)),
                ("aggregation".into(), Value::Int(status.aggregation)),
                ("completions".into(), Value::List(rows)),
            ]),
        ),
        ("warnings".into(), Value::List(Vec::new())),
    ]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GradesOf {
    userid: i64,
}

/// `gradereport_overview_get_course_grades`: the course total of every course the user is
/// enrolled in (any status), from the recorded completions; `-` and `null` without a grade.
async fn course_grades(call: &Call<'_>, p: GradesOf) -> Result<Value, WsError> {
    let user = if p.userid == 0 { call.actor.user_id.unwrap_or(crate::api::services::ADMIN_USER_ID) } else { p.userid };
    if !user_exists(call, user).await? {
        return Err(errors::missing_record("user"));
    }
    let courses: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT e.courseid FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
         WHERE ue.userid = $1 ORDER BY e.courseid",
    )
    .bind(user)
    .fetch_all(&call.ledger.db.pool)
    .await
    .map_err(|e| call.store_error(e))?;
    let mut grades = Vec::new();
    for course in courses {
        let grade = completion_of(call, user, course).await?.and_then(|c| c.grade).map(|g| g.finalgrade.get());
        grades.push(Value::Struct(vec![
            ("courseid".into(), Value::Int(course)),
            ("grade".into(), Value::Str(grade.map_or_else(|| "-".to_owned(), criteria::format_float))),
            ("rawgrade".into(), grade.map_or(Value::Null, |g| Value::Str(format!("{g:.5}")))),
        ]));
    }
    Ok(Value::Struct(vec![("grades".into(), Value::List(grades)), ("warnings".into(), Value::List(Vec::new()))]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetCriteriaParams {
    courseid: i64,
    gradepass: Option<f64>,
}

async fn set_completion_criteria(call: &Call<'_>, p: SetCriteriaParams) -> Result<Done, WsError> {
    call.submit(Request::SetCompletionCriteria { course_id: p.courseid, gradepass: p.gradepass }).await?;
    Ok(Done)
}
