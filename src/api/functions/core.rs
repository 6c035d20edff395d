//! The Moodle core functions SEMCO and other integrations call (MOODLE-REFERENCE.md §6), over
//! the ledger's registries.

use serde::de::IgnoredAny;
use serde::Deserialize;
use sqlx::Row;

use super::{boolean, function, int, raw, text, warnings, Call, FunctionDef, Reply};
use crate::api::services::{ENROL_SEMCO, LEDGER_ADMIN, LEDGER_AUDIT, LEDGER_LMS};
use crate::api::wire::encode::WsError;
use crate::api::wire::params::{Desc, ParamType, Value};
use crate::api::{errors, services};
use crate::app::command::UserInput;
use crate::app::Request;
use crate::registry::rules::RegistryError;
use crate::registry::{CourseUpdate, NewCourse, NewUser, UserUpdate, SEMCO_PROFILE_FIELDS};

fn value(ty: ParamType, desc: &'static str) -> Desc {
    Desc::value(ty, desc)
}

/// The optional user fields `core_user_create_users` accepts; the ledger keeps none of them.
const OPTIONAL_USER_TEXT: [&str; 17] = [
    "maildisplay",
    "city",
    "country",
    "timezone",
    "description",
    "firstnamephonetic",
    "lastnamephonetic",
    "middlename",
    "alternatename",
    "interests",
    "institution",
    "department",
    "phone1",
    "phone2",
    "address",
    "theme",
    "mailformat",
];

/// The optional fields, custom fields and preferences shared by create and update.
fn optional_user_fields() -> Vec<(&'static str, Desc)> {
    let mut fields: Vec<(&'static str, Desc)> =
        OPTIONAL_USER_TEXT.iter().map(|name| (*name, raw("Optional user field").optional())).collect();
    fields.push((
        "customfields",
        Desc::multiple(Desc::single(vec![
            ("type", value(ParamType::AlphaNumExt, "The name of the custom field")),
            ("value", raw("The value of the custom field")),
        ]))
        .optional(),
    ));
    fields.push((
        "preferences",
        Desc::multiple(Desc::single(vec![
            ("type", raw("The name of the preference")),
            ("value", raw("The value of the preference")),
        ]))
        .optional(),
    ));
    fields
}

fn create_users_params() -> Vec<(&'static str, Desc)> {
    let mut user = vec![
        ("createpassword", boolean("True if password should be created and mailed to user.").optional()),
        ("username", value(ParamType::Username, "Username policy is defined in Moodle security config.")),
        (
            "auth",
            value(ParamType::Auth, "Auth plugins include manual, ldap, etc").with_default(Value::Str("manual".into())),
        ),
        ("password", raw("Plain text password consisting of any characters").optional()),
        ("firstname", value(ParamType::NoTags, "The first name(s) of the user")),
        ("lastname", value(ParamType::NoTags, "The family name of the user")),
        ("email", value(ParamType::RawTrimmed, "A valid and unique email address")),
        (
            "idnumber",
            raw("An arbitrary ID code number perhaps from the institution").with_default(Value::Str(String::new())),
        ),
        (
            "lang",
            value(ParamType::Lang, "Language code such as \"en\", must exist on server")
                .with_default(Value::Str("en".into())),
        ),
        (
            "calendartype",
            value(ParamType::AlphaNumExt, "Calendar type such as \"gregorian\", must exist on server")
                .with_default(Value::Str("gregorian".into())),
        ),
    ];
    user.extend(optional_user_fields());
    vec![("users", Desc::multiple(Desc::single(user)))]
}

fn update_users_params() -> Vec<(&'static str, Desc)> {
    let mut user = vec![
        ("id", int("ID of the user")),
        ("username", value(ParamType::Username, "Username policy is defined in Moodle security config.").optional()),
        ("auth", value(ParamType::Auth, "Auth plugins include manual, ldap, etc").optional()),
        (
            "suspended",
            boolean("Suspend user account, either false to enable user login or true to disable it").optional(),
        ),
        ("password", raw("Plain text password consisting of any characters").optional()),
        ("firstname", value(ParamType::NoTags, "The first name(s) of the user").optional()),
        ("lastname", value(ParamType::NoTags, "The family name of the user").optional()),
        ("email", value(ParamType::RawTrimmed, "A valid and unique email address").optional()),
        ("idnumber", raw("An arbitrary ID code number perhaps from the institution").optional()),
        ("lang", value(ParamType::Lang, "Language code such as \"en\", must exist on server").optional()),
        (
            "calendartype",
            value(ParamType::AlphaNumExt, "Calendar type such as \"gregorian\", must exist on server").optional(),
        ),
        ("userpicture", int("The itemid where the new user picture has been uploaded to, 0 to delete").optional()),
    ];
    user.extend(optional_user_fields());
    vec![("users", Desc::multiple(Desc::single(user)))]
}

fn user_details() -> Desc {
    Desc::single(vec![
        ("id", int("ID of the user")),
        ("username", raw("The username").optional()),
        ("firstname", value(ParamType::NoTags, "The first name(s) of the user").optional()),
        ("lastname", value(ParamType::NoTags, "The family name of the user").optional()),
        ("fullname", value(ParamType::NoTags, "The fullname of the user")),
        ("email", text("An email address - allow email as root@localhost").optional()),
        ("idnumber", raw("An arbitrary ID code number perhaps from the institution").optional()),
        ("auth", value(ParamType::Auth, "Auth plugins include manual, ldap, etc").optional()),
        (
            "suspended",
            boolean("Suspend user account, either false to enable user login or true to disable it").optional(),
        ),
        ("confirmed", boolean("Active user: 1 if confirmed, 0 otherwise").optional()),
        ("lang", raw("Language code such as \"en\", must exist on server").optional()),
        ("profileimageurlsmall", raw("User image profile URL - small version")),
        ("profileimageurl", raw("User image profile URL - big version")),
        (
            "customfields",
            Desc::multiple(Desc::single(vec![
                ("type", value(ParamType::AlphaNumExt, "The type of the custom field - text field, checkbox...")),
                ("value", raw("The value of the custom field")),
                ("displayvalue", raw("The value of the custom field for display").optional()),
                ("name", raw("The name of the custom field")),
                (
                    "shortname",
                    raw("The shortname of the custom field - to be able to build the field class in the code"),
                ),
            ]))
            .optional(),
        ),
    ])
}

fn course_details() -> Desc {
    Desc::single(vec![
        ("id", int("course id")),
        ("fullname", text("course full name")),
        ("displayname", text("course display name")),
        ("shortname", text("course short name")),
        ("categoryid", int("category id")),
        ("categoryname", text("category name")),
        ("summary", raw("summary")),
        ("summaryformat", int("summary format")),
        ("enrollmentmethods", Desc::multiple(value(ParamType::AlphaNumExt, "enrollment method"))),
        ("idnumber", raw("Id number").optional()),
        ("format", value(ParamType::AlphaNumExt, "Course format").optional()),
        ("startdate", int("Timestamp when the course start").optional()),
        ("enddate", int("Timestamp when the course end").optional()),
        ("visible", boolean("1: available to student, 0:not available").optional()),
        ("enablecompletion", boolean("Completion enabled? 1: yes 0: no").optional()),
        ("timecreated", int("Time created").optional()),
        ("timemodified", int("Last time modified").optional()),
    ])
}

/// The course fields of `core_course_create_courses`, with their defaults.
fn course_fields() -> Vec<(&'static str, Desc)> {
    vec![
        ("fullname", text("full name")),
        ("shortname", text("course short name")),
        ("categoryid", int("category id")),
        ("idnumber", raw("id number").optional()),
        ("summary", raw("summary").optional()),
        ("summaryformat", int("summary format").with_default(Value::Int(1))),
        ("format", value(ParamType::AlphaNumExt, "course format").with_default(Value::Str("topics".into()))),
        ("showgrades", int("1 if grades are shown, otherwise 0").with_default(Value::Int(1))),
        ("newsitems", int("number of recent items appearing on the course page").with_default(Value::Int(5))),
        ("startdate", int("timestamp when the course start").optional()),
        ("enddate", int("timestamp when the course end").optional()),
        ("maxbytes", int("largest size of file that can be uploaded into the course").with_default(Value::Int(0))),
        ("showreports", int("are activity report shown (yes = 1, no =0)").with_default(Value::Int(0))),
        ("visible", int("1: available to student, 0:not available").optional()),
        ("groupmode", int("no group, separate, visible").with_default(Value::Int(0))),
        ("groupmodeforce", int("1: yes, 0: no").with_default(Value::Int(0))),
        ("defaultgroupingid", int("default grouping id").with_default(Value::Int(0))),
        (
            "enablecompletion",
            int("Enabled, control via completion and activity settings. Disabled, not shown in activity settings.")
                .optional(),
        ),
        ("completionnotify", int("1: yes 0: no").optional()),
        ("lang", value(ParamType::AlphaNumExt, "forced course language").optional()),
        ("forcetheme", value(ParamType::AlphaNumExt, "name of the force theme").optional()),
    ]
}

fn create_courses_params() -> Vec<(&'static str, Desc)> {
    vec![("courses", Desc::multiple(Desc::single(course_fields())))]
}

/// `core_course_update_courses`: the id, then every create field, all optional.
fn update_courses_params() -> Vec<(&'static str, Desc)> {
    let mut fields = vec![("id", int("ID of the course"))];
    fields.extend(course_fields().into_iter().map(|(name, desc)| (name, desc.optional())));
    vec![("courses", Desc::multiple(Desc::single(fields)))]
}

/// Per-item warnings of a `{warnings}` result, worded by `api/errors.rs`.
fn warnings_value(item: &str, warnings: Vec<(i64, RegistryError)>) -> Value {
    let list = warnings
        .into_iter()
        .map(|(itemid, refusal)| {
            let (code, message) = errors::registry_warning(&refusal);
            Value::Struct(vec![
                ("item".into(), Value::Str(item.into())),
                ("itemid".into(), Value::Int(itemid)),
                ("warningcode".into(), Value::Str(code)),
                ("message".into(), Value::Str(message)),
            ])
        })
        .collect();
    Value::Struct(vec![("warnings".into(), Value::List(list))])
}

pub(super) static FUNCTIONS: [FunctionDef; 8] = [
    function! {
        name: "core_user_create_users",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: create_users_params,
        returns: || Some(Desc::multiple(Desc::single(vec![("id", int("user id")), ("username", raw("user name"))]))),
        handler: create_users,
        sample: &[
            ("users[0][username]", "jdoe"), ("users[0][firstname]", "J"), ("users[0][lastname]", "Doe"),
            ("users[0][email]", "j@example.com"), ("users[0][password]", "x"), ("users[0][createpassword]", "0"),
            ("users[0][city]", "Bonn"), ("users[0][customfields][0][type]", "semco_userid"),
            ("users[0][customfields][0][value]", "S1"), ("users[0][preferences][0][type]", "p"),
            ("users[0][preferences][0][value]", "v"),
        ],
    },
    function! {
        name: "core_user_update_users",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: update_users_params,
        returns: || Some(Desc::single(vec![("warnings", warnings())])),
        handler: update_users,
        sample: &[
            ("users[0][id]", "3"), ("users[0][username]", "jdoe"), ("users[0][auth]", "manual"),
            ("users[0][suspended]", "0"), ("users[0][password]", "x"), ("users[0][firstname]", "J"),
            ("users[0][lastname]", "Doe"), ("users[0][email]", "j@example.com"), ("users[0][idnumber]", "7"),
            ("users[0][lang]", "en"), ("users[0][calendartype]", "gregorian"), ("users[0][userpicture]", "0"),
            ("users[0][customfields][0][type]", "semco_userid"), ("users[0][customfields][0][value]", "S1"),
        ],
    },
    function! {
        name: "core_user_delete_users",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: || vec![("userids", Desc::multiple(int("user ID")))],
        returns: || None,
        handler: delete_users,
        sample: &[("userids[0]", "3")],
    },
    function! {
        name: "core_user_get_users_by_field",
        services: &[ENROL_SEMCO, LEDGER_ADMIN],
        params: || vec![
            ("field", value(ParamType::Alpha, "the search field")),
            ("values", Desc::multiple(raw("the value to match"))),
        ],
        returns: || Some(Desc::multiple(user_details())),
        handler: get_users_by_field,
        sample: &[("field", "username"), ("values[0]", "jdoe")],
    },
    function! {
        name: "core_course_get_courses_by_field",
        services: &[ENROL_SEMCO, LEDGER_ADMIN, LEDGER_LMS],
        params: || vec![
            ("field", value(ParamType::Alpha, "The field to search").with_default(Value::Str(String::new()))),
            ("value", raw("The value to match").with_default(Value::Str(String::new()))),
        ],
        returns: || Some(Desc::single(vec![("courses", Desc::multiple(course_details())), ("warnings", warnings())])),
        handler: get_courses_by_field,
        sample: &[("field", "id"), ("value", "2")],
    },
    function! {
        name: "core_course_create_courses",
        services: &[LEDGER_ADMIN],
        params: create_courses_params,
        returns: || Some(Desc::multiple(Desc::single(vec![("id", int("course id")), ("shortname", raw("short name"))]))),
        handler: create_courses,
        sample: &[
            ("courses[0][fullname]", "Course"), ("courses[0][shortname]", "C1"), ("courses[0][categoryid]", "1"),
            ("courses[0][idnumber]", "N1"), ("courses[0][summary]", "s"), ("courses[0][startdate]", "1"),
            ("courses[0][enddate]", "2"), ("courses[0][visible]", "1"), ("courses[0][enablecompletion]", "1"),
            ("courses[0][completionnotify]", "0"), ("courses[0][lang]", "en"), ("courses[0][forcetheme]", "boost"),
        ],
    },
    function! {
        name: "core_course_update_courses",
        services: &[LEDGER_ADMIN],
        params: update_courses_params,
        returns: || Some(Desc::single(vec![("warnings", warnings())])),
        handler: update_courses,
        sample: &[
            ("courses[0][id]", "2"), ("courses[0][fullname]", "Course"), ("courses[0][shortname]", "C1"),
            ("courses[0][categoryid]", "1"), ("courses[0][idnumber]", "N1"), ("courses[0][summary]", "s"),
            ("courses[0][startdate]", "1"), ("courses[0][enddate]", "2"), ("courses[0][visible]", "1"),
            ("courses[0][enablecompletion]", "1"), ("courses[0][format]", "topics"),
        ],
    },
    function! {
        name: "core_webservice_get_site_info",
        services: &[LEDGER_ADMIN, LEDGER_LMS, LEDGER_AUDIT],
        params: || vec![(
            "serviceshortnames",
            Desc::multiple(value(ParamType::AlphaNumExt, "service shortname")).with_default(Value::List(Vec::new())),
        )],
        returns: site_info_returns,
        handler: site_info,
        sample: &[("serviceshortnames[0]", "ledger_admin")],
    },
];

fn site_info_returns() -> Option<Desc> {
    Some(Desc::single(vec![
        ("sitename", raw("site name")),
        ("username", raw("username")),
        ("firstname", text("first name")),
        ("lastname", text("last name")),
        ("fullname", text("user full name")),
        ("lang", value(ParamType::Lang, "Current language.")),
        ("userid", int("user id")),
        ("siteurl", raw("site url")),
        ("userpictureurl", raw("the user profile picture")),
        (
            "functions",
            Desc::multiple(Desc::single(vec![
                ("name", raw("function name")),
                ("version", text("The version number of the component to which the function belongs")),
            ])),
        ),
        ("downloadfiles", int("1 if users are allowed to download files, 0 if not").optional()),
        ("uploadfiles", int("1 if users are allowed to upload files, 0 if not").optional()),
        ("release", text("Moodle release number").optional()),
        ("version", text("Moodle version number").optional()),
        ("userissiteadmin", boolean("Whether the user is a site admin or not.").optional()),
    ]))
}

/// `[{id, <name_key>}]`, what the create functions return.
fn created_list(created: Vec<(i64, String)>, name_key: &str) -> Value {
    let item = |(id, name): (i64, String)| {
        Value::Struct(vec![("id".into(), Value::Int(id)), (name_key.into(), Value::Str(name))])
    };
    Value::List(created.into_iter().map(item).collect())
}

/// One entry of `customfields[]` (or `preferences[]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeValue {
    #[serde(rename = "type")]
    name: String,
    value: String,
}

/// A user's `customfields[]` as (shortname, value) pairs.
fn custom_fields(fields: Option<Vec<TypeValue>>) -> Vec<(String, String)> {
    fields.unwrap_or_default().into_iter().map(|f| (f.name, f.value)).collect()
}

/// The optional user fields Moodle accepts and the ledger keeps none of (`OPTIONAL_USER_TEXT`,
/// `preferences`): named so that every key of the description is a field of the struct.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersParams<U> {
    users: Vec<U>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ignored fields are named to keep `deny_unknown_fields`
struct CreateUser {
    createpassword: Option<bool>,
    username: String,
    auth: String,
    password: Option<String>,
    firstname: String,
    lastname: String,
    email: String,
    idnumber: String,
    lang: String,
    calendartype: String,
    customfields: Option<Vec<TypeValue>>,
    preferences: Option<Vec<TypeValue>>,
    maildisplay: Option<IgnoredAny>,
    city: Option<IgnoredAny>,
    country: Option<IgnoredAny>,
    timezone: Option<IgnoredAny>,
    description: Option<IgnoredAny>,
    firstnamephonetic: Option<IgnoredAny>,
    lastnamephonetic: Option<IgnoredAny>,
    middlename: Option<IgnoredAny>,
    alternatename: Option<IgnoredAny>,
    interests: Option<IgnoredAny>,
    institution: Option<IgnoredAny>,
    department: Option<IgnoredAny>,
    phone1: Option<IgnoredAny>,
    phone2: Option<IgnoredAny>,
    address: Option<IgnoredAny>,
    theme: Option<IgnoredAny>,
    mailformat: Option<IgnoredAny>,
}

/// `[{id, <name_key>}]`, what the create functions return.
struct Created(Vec<(i64, String)>, &'static str);

impl Reply for Created {
    fn into_value(self) -> Value {
        created_list(self.0, self.1)
    }
}

async fn create_users(call: &Call<'_>, p: UsersParams<CreateUser>) -> Result<Created, WsError> {
    let inputs = p
        .users
        .into_iter()
        .map(|u| UserInput {
            password_given: u.password.is_some(),
            createpassword: u.createpassword.unwrap_or(false),
            user: NewUser {
                username: u.username,
                auth: u.auth,
                firstname: u.firstname,
                lastname: u.lastname,
                email: u.email,
                idnumber: u.idnumber,
                lang: u.lang,
                profile: custom_fields(u.customfields),
            },
        })
        .collect();
    Ok(Created(call.submit(Request::CreateUsers(inputs)).await?.created, "username"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ignored fields are named to keep `deny_unknown_fields`
struct UpdateUser {
    id: i64,
    username: Option<String>,
    auth: Option<String>,
    suspended: Option<bool>,
    password: Option<IgnoredAny>,
    firstname: Option<String>,
    lastname: Option<String>,
    email: Option<String>,
    idnumber: Option<String>,
    lang: Option<String>,
    calendartype: Option<IgnoredAny>,
    userpicture: Option<IgnoredAny>,
    customfields: Option<Vec<TypeValue>>,
    preferences: Option<Vec<TypeValue>>,
    maildisplay: Option<IgnoredAny>,
    city: Option<IgnoredAny>,
    country: Option<IgnoredAny>,
    timezone: Option<IgnoredAny>,
    description: Option<IgnoredAny>,
    firstnamephonetic: Option<IgnoredAny>,
    lastnamephonetic: Option<IgnoredAny>,
    middlename: Option<IgnoredAny>,
    alternatename: Option<IgnoredAny>,
    interests: Option<IgnoredAny>,
    institution: Option<IgnoredAny>,
    department: Option<IgnoredAny>,
    phone1: Option<IgnoredAny>,
    phone2: Option<IgnoredAny>,
    address: Option<IgnoredAny>,
    theme: Option<IgnoredAny>,
    mailformat: Option<IgnoredAny>,
}

/// `{warnings}` of a per-item update call.
struct Warnings(&'static str, Vec<(i64, RegistryError)>);

impl Reply for Warnings {
    fn into_value(self) -> Value {
        warnings_value(self.0, self.1)
    }
}

async fn update_users(call: &Call<'_>, p: UsersParams<UpdateUser>) -> Result<Warnings, WsError> {
    let updates: Vec<UserUpdate> = p
        .users
        .into_iter()
        .map(|u| UserUpdate {
            id: u.id,
            username: u.username,
            auth: u.auth,
            firstname: u.firstname,
            lastname: u.lastname,
            email: u.email,
            idnumber: u.idnumber,
            lang: u.lang,
            suspended: u.suspended,
            profile: custom_fields(u.customfields),
        })
        .collect();
    let ids: Vec<i64> = updates.iter().map(|u| u.id).collect();
    let outcome = call.submit(Request::UpdateUsers(updates)).await?;
    // A token user's state may have changed: its tokens are re-read on next use.
    call.tokens.forget_users(&ids);
    Ok(Warnings("user", outcome.warnings))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteUsers {
    userids: Vec<i64>,
}

async fn delete_users(call: &Call<'_>, p: DeleteUsers) -> Result<(), WsError> {
    call.submit(Request::DeleteUsers(p.userids.clone())).await?;
    call.tokens.forget_users(&p.userids);
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersByField {
    field: String,
    values: Vec<String>,
}

async fn get_users_by_field(call: &Call<'_>, p: UsersByField) -> Result<Value, WsError> {
    let field = p.field;
    let column = match field.as_str() {
        "id" | "idnumber" | "username" | "email" => field.clone(),
        _ => {
            return Err(WsError::new(
                crate::api::wire::encode::CODING_EXCEPTION,
                "codingerror",
                "Coding error detected, it must be fixed by a programmer: invalid field parameter",
            ))
        }
    };
    let mut out = Vec::new();
    let pool = &call.ledger.db.pool;
    for wanted in &p.values {
        let rows = if column == "id" {
            let Ok(id) = wanted.parse::<i64>() else { continue };
            sqlx::query("SELECT * FROM users WHERE id = $1 AND deleted = 0").bind(id).fetch_all(pool).await
        } else {
            sqlx::query(&format!("SELECT * FROM users WHERE {column} = $1 AND deleted = 0 ORDER BY id"))
                .bind(wanted.to_owned())
                .fetch_all(pool)
                .await
        }
        .map_err(|e| call.store_error(e))?;
        for row in rows {
            out.push(user_value(call, &row).await.map_err(|e| call.store_error(e))?);
        }
    }
    Ok(Value::List(out))
}

async fn user_value(call: &Call<'_>, row: &sqlx::any::AnyRow) -> Result<Value, sqlx::Error> {
    let id: i64 = row.try_get("id")?;
    let firstname: String = row.try_get("firstname")?;
    let lastname: String = row.try_get("lastname")?;
    let profile: Vec<(String, String)> =
        sqlx::query_as("SELECT shortname, data FROM user_profile_data WHERE userid = $1 ORDER BY shortname")
            .bind(id)
            .fetch_all(&call.ledger.db.pool)
            .await?;
    let picture = format!("{}/theme/image.php/boost/core/1/u/f1", call.base_url.trim_end_matches('/'));
    let custom = SEMCO_PROFILE_FIELDS
        .iter()
        .filter_map(|(shortname, label)| {
            let (_, data) = profile.iter().find(|(s, _)| s == shortname)?;
            Some(Value::Struct(vec![
                ("type".into(), Value::Str("text".into())),
                ("value".into(), Value::Str(data.clone())),
                ("displayvalue".into(), Value::Str(data.clone())),
                ("name".into(), Value::Str((*label).into())),
                ("shortname".into(), Value::Str((*shortname).into())),
            ]))
        })
        .collect::<Vec<_>>();
    let mut fields = vec![
        ("id".into(), Value::Int(id)),
        ("username".into(), Value::Str(row.try_get("username")?)),
        ("firstname".into(), Value::Str(firstname.clone())),
        ("lastname".into(), Value::Str(lastname.clone())),
        ("fullname".into(), Value::Str(format!("{firstname} {lastname}"))),
        ("email".into(), Value::Str(row.try_get("email")?)),
        ("idnumber".into(), Value::Str(row.try_get("idnumber")?)),
        ("auth".into(), Value::Str(row.try_get("auth")?)),
        ("suspended".into(), Value::Bool(row.try_get::<i32, _>("suspended")? != 0)),
        ("confirmed".into(), Value::Bool(true)),
        ("lang".into(), Value::Str(row.try_get("lang")?)),
        ("profileimageurlsmall".into(), Value::Str(format!("{picture}2"))),
        ("profileimageurl".into(), Value::Str(picture)),
    ];
    if !custom.is_empty() {
        fields.push(("customfields".into(), Value::List(custom)));
    }
    Ok(Value::Struct(fields))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoursesByField {
    field: String,
    value: String,
}

async fn get_courses_by_field(call: &Call<'_>, p: CoursesByField) -> Result<Value, WsError> {
    let CoursesByField { field, value: wanted } = p;
    let (condition, binds): (&str, Vec<String>) = match field.as_str() {
        "" => ("1 = 1", vec![]),
        "id" => ("CAST(id AS TEXT) = $1", vec![wanted.clone()]),
        "shortname" => ("shortname = $1", vec![wanted.clone()]),
        "idnumber" => ("idnumber = $1", vec![wanted.clone()]),
        "category" => ("CAST(categoryid AS TEXT) = $1", vec![wanted.clone()]),
        "ids" => ("1 = 1", vec![]),
        _ => return Err(WsError::invalid_parameter("Invalid field name")),
    };
    let sql = format!("SELECT * FROM courses WHERE {condition} ORDER BY id");
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = query.bind(b);
    }
    let pool = &call.ledger.db.pool;
    let rows = query.fetch_all(pool).await.map_err(|e| call.store_error(e))?;
    let id_list: Vec<i64> = wanted.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let enabled = call.plugin_enabled().await?;
    let mut courses = Vec::new();
    for row in rows {
        let read = async {
            let id: i64 = row.try_get("id")?;
            if field == "ids" && !id_list.contains(&id) {
                return Ok::<Option<Value>, sqlx::Error>(None);
            }
            // One `semco` entry per live SEMCO instance, none while the plugin is disabled.
            let instances: i64 = if !enabled {
                0
            } else {
                sqlx::query_scalar("SELECT COUNT(*) FROM enrol WHERE courseid = $1 AND enrol = 'semco' AND status = 0")
                    .bind(id)
                    .fetch_one(pool)
                    .await?
            };
            let fullname: String = row.try_get("fullname")?;
            Ok(Some(Value::Struct(vec![
                ("id".into(), Value::Int(id)),
                ("fullname".into(), Value::Str(fullname.clone())),
                ("displayname".into(), Value::Str(fullname)),
                ("shortname".into(), Value::Str(row.try_get("shortname")?)),
                ("categoryid".into(), Value::Int(row.try_get("categoryid")?)),
                ("categoryname".into(), Value::Str("Category 1".into())),
                ("summary".into(), Value::Str(row.try_get("summary")?)),
                ("summaryformat".into(), Value::Int(1)),
                ("enrollmentmethods".into(), Value::List((0..instances).map(|_| Value::Str("semco".into())).collect())),
                ("idnumber".into(), Value::Str(row.try_get("idnumber")?)),
                ("format".into(), Value::Str("topics".into())),
                ("startdate".into(), Value::Int(row.try_get("startdate")?)),
                ("enddate".into(), Value::Int(row.try_get("enddate")?)),
                ("visible".into(), Value::Bool(row.try_get::<i32, _>("visible")? != 0)),
                ("enablecompletion".into(), Value::Bool(row.try_get::<i32, _>("enablecompletion")? != 0)),
                ("timecreated".into(), Value::Int(row.try_get("timecreated")?)),
                ("timemodified".into(), Value::Int(row.try_get("timemodified")?)),
            ])))
        };
        if let Some(course) = read.await.map_err(|e| call.store_error(e))? {
            courses.push(course);
        }
    }
    Ok(Value::Struct(vec![("courses".into(), Value::List(courses)), ("warnings".into(), Value::List(Vec::new()))]))
}

/// One course of `core_course_create_courses` (required keys) or `core_course_update_courses`
/// (every key optional but `id`, which create does not have).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ignored fields are named to keep `deny_unknown_fields`
struct CourseFields<T> {
    id: Option<i64>,
    fullname: T,
    shortname: T,
    categoryid: Option<i64>,
    idnumber: Option<String>,
    summary: Option<String>,
    summaryformat: Option<IgnoredAny>,
    format: Option<IgnoredAny>,
    showgrades: Option<IgnoredAny>,
    newsitems: Option<IgnoredAny>,
    startdate: Option<i64>,
    enddate: Option<i64>,
    maxbytes: Option<IgnoredAny>,
    showreports: Option<IgnoredAny>,
    visible: Option<i64>,
    groupmode: Option<IgnoredAny>,
    groupmodeforce: Option<IgnoredAny>,
    defaultgroupingid: Option<IgnoredAny>,
    enablecompletion: Option<i64>,
    completionnotify: Option<IgnoredAny>,
    lang: Option<IgnoredAny>,
    forcetheme: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoursesParams<T> {
    courses: Vec<CourseFields<T>>,
}

async fn create_courses(call: &Call<'_>, p: CoursesParams<String>) -> Result<Created, WsError> {
    let courses = p
        .courses
        .into_iter()
        .map(|c| NewCourse {
            fullname: c.fullname,
            shortname: c.shortname,
            categoryid: c.categoryid.unwrap_or_default(),
            idnumber: c.idnumber.unwrap_or_default(),
            summary: c.summary.unwrap_or_default(),
            visible: c.visible.unwrap_or(1) != 0,
            enablecompletion: c.enablecompletion.unwrap_or(0) != 0,
            startdate: c.startdate.unwrap_or_default(),
            enddate: c.enddate.unwrap_or_default(),
        })
        .collect();
    Ok(Created(call.submit(Request::CreateCourses(courses)).await?.created, "shortname"))
}

async fn update_courses(call: &Call<'_>, p: CoursesParams<Option<String>>) -> Result<Warnings, WsError> {
    let updates = p
        .courses
        .into_iter()
        .map(|c| CourseUpdate {
            id: c.id.unwrap_or_default(),
            fullname: c.fullname,
            shortname: c.shortname,
            categoryid: c.categoryid,
            idnumber: c.idnumber,
            summary: c.summary,
            visible: c.visible.map(|v| v != 0),
            enablecompletion: c.enablecompletion.map(|v| v != 0),
            startdate: c.startdate,
            enddate: c.enddate,
        })
        .collect();
    Ok(Warnings("course", call.submit(Request::UpdateCourses(updates)).await?.warnings))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ledger answers the same for every service list
struct SiteInfoParams {
    serviceshortnames: Vec<String>,
}

async fn site_info(call: &Call<'_>, _: SiteInfoParams) -> Result<Value, WsError> {
    let user_id = call.actor.user_id.unwrap_or(services::ADMIN_USER_ID);
    let row = sqlx::query("SELECT username, firstname, lastname FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&call.ledger.db.pool)
        .await
        .map_err(|e| call.store_error(e))?;
    let (username, firstname, lastname) = match row {
        Some(r) => (
            r.try_get::<String, _>(0).unwrap_or_default(),
            r.try_get::<String, _>(1).unwrap_or_default(),
            r.try_get::<String, _>(2).unwrap_or_default(),
        ),
        None => Default::default(),
    };
    let functions = services::functions(call.service)
        .into_iter()
        .map(|f| {
            Value::Struct(vec![
                ("name".into(), Value::Str(f.into())),
                ("version".into(), Value::Str("2024100700".into())),
            ])
        })
        .collect();
    Ok(Value::Struct(vec![
        ("sitename".into(), Value::Str("enrol-ledger".into())),
        ("username".into(), Value::Str(username)),
        ("firstname".into(), Value::Str(firstname.clone())),
        ("lastname".into(), Value::Str(lastname.clone())),
        ("fullname".into(), Value::Str(format!("{firstname} {lastname}"))),
        ("lang".into(), Value::Str("en".into())),
        ("userid".into(), Value::Int(user_id)),
        ("siteurl".into(), Value::Str(call.base_url.to_owned())),
        (
            "userpictureurl".into(),
            Value::Str(format!("{}/theme/image.php/boost/core/1/u/f1", call.base_url.trim_end_matches('/'))),
        ),
        ("functions".into(), Value::List(functions)),
        ("downloadfiles".into(), Value::Int(0)),
        ("uploadfiles".into(), Value::Int(0)),
        ("release".into(), Value::Str("4.5.6 (Build: 20250811)".into())),
        ("version".into(), Value::Str("2024100706".into())),
        ("userissiteadmin".into(), Value::Bool(call.service == services::LEDGER_ADMIN)),
    ]))
}
