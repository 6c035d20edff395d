//! Issue 10 items 2 and 4 through the real router, on both backends: SEMCO's newest function
//! `enrol_semco_check_user_existence_by_field` (WS-CONTRACT.md §3.1b) and the two answers that
//! differed from Moodle's (§7), each as contract rows in JSON and XML.

use enrol_ledger::api;
use enrol_ledger::store::Backend;

use crate::http::Api;
use crate::on_both_backends;
use crate::support::*;

const CHECK: &str = "enrol_semco_check_user_existence_by_field";

/// A router with `--debug`, so `debuginfo` is part of every compared error body.
async fn debug_api(backend: Backend) -> Api {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: true };
    Api { router: api::router(ledger, settings), test }
}

fn user(n: &str, idnumber: &str) -> String {
    format!(
        "users[0][username]={n}&users[0][firstname]=F{n}&users[0][lastname]=L&users[0][email]={n}%40example.org&users[0][createpassword]=1&users[0][idnumber]={idnumber}"
    )
}

fn json_error(class: &str, code: &str, message: &str, debuginfo: Option<&str>) -> String {
    let class = class.replace('\\', "\\\\");
    let debug = debuginfo.map(|d| format!(r#","debuginfo":"{}""#, d.replace('"', "\\\""))).unwrap_or_default();
    format!(r#"{{"exception":"{class}","errorcode":"{code}","message":"{message}"{debug}}}"#)
}

fn xml_error(class: &str, code: &str, message: &str, debuginfo: Option<&str>) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let debug = debuginfo.map(|d| format!("<DEBUGINFO>{}</DEBUGINFO>\n", escape(d))).unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"{}\">\n<ERRORCODE>{code}</ERRORCODE>\n<MESSAGE>{}</MESSAGE>\n{debug}</EXCEPTION>\n",
        escape(class),
        escape(message)
    )
}

const MOODLE: &str = "core\\exception\\moodle_exception";
const INVALID: &str = "core\\exception\\invalid_parameter_exception";
const INVALID_MESSAGE: &str = "Invalid parameter value detected";

/// The answer of a found user (`Some`) or of none, in JSON and XML.
fn found(user: Option<(i64, &str, &str, &str)>) -> (String, String) {
    let keys = ["userexists", "userid", "firstname", "lastname", "email", "username", "idnumber"];
    let values: Vec<Option<String>> = match user {
        Some((id, name, email, idnumber)) => vec![
            Some("1".into()),
            Some(id.to_string()),
            Some(format!("F{name}")),
            Some("L".into()),
            Some(email.into()),
            Some(name.into()),
            Some(idnumber.into()),
        ],
        None => vec![Some("0".into()), None, None, None, None, None, None],
    };
    let json_value = |i: usize, v: &Option<String>| match (i, v) {
        (_, None) => "null".to_owned(),
        (0, Some(b)) => if b == "1" { "true" } else { "false" }.to_owned(),
        (1, Some(n)) => n.clone(),
        (_, Some(s)) => format!("\"{s}\""),
    };
    let json = keys
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (k, v))| format!("\"{k}\":{}", json_value(i, v)))
        .collect::<Vec<_>>()
        .join(",");
    let xml_keys: String = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| match v {
            Some(v) => format!("<KEY name=\"{k}\"><VALUE>{v}</VALUE>\n</KEY>\n"),
            None => format!("<KEY name=\"{k}\"><VALUE null=\"null\"/>\n</KEY>\n"),
        })
        .collect();
    (
        format!("{{{json}}}"),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n{xml_keys}</SINGLE>\n</RESPONSE>\n"
        ),
    )
}

/// Calls in JSON and XML and compares both bodies.
async fn both_formats(api: &Api, token: &str, function: &str, params: &str, expect: (String, String)) {
    let json = api.call(token, function, "json", params).await;
    assert_eq!(json, expect.0, "{function} json {params}");
    let xml = api.call(token, function, "xml", params).await;
    assert_eq!(xml, expect.1, "{function} xml {params}");
}

fn error(class: &str, code: &str, message: &str, debuginfo: Option<&str>) -> (String, String) {
    (json_error(class, code, message, debuginfo), xml_error(class, code, message, debuginfo))
}

/// Before issue 10 the function was unknown (`invalidrecord`); now every success shape and
/// every error in the plugin's order, for the SEMCO token (and the admin's).
async fn issue10_check_user_existence_by_field_answered_invalidrecord(backend: Backend) {
    let api = debug_api(backend).await;
    let admin = api.token("ledger_admin").await;
    let semco = api.token("enrol_semco").await;
    for (name, idnumber) in [("anna", "N-1"), ("bert", "SAME"), ("carl", "SAME"), ("dora", "D-1")] {
        let body = api.call(&admin, "core_user_create_users", "json", &user(name, idnumber)).await;
        assert!(body.starts_with("[{\"id\":"), "{body}");
    }
    // dora (7) is deleted: never found again.
    assert_eq!(api.call(&admin, "core_user_delete_users", "json", "userids[0]=7").await, "null");
    for token in [&semco, &admin] {
        // Found: by e-mail (the default field), username and ID number.
        let anna = found(Some((4, "anna", "anna@example.org", "N-1")));
        both_formats(&api, token, CHECK, "value=anna%40example.org", anna.clone()).await;
        both_formats(&api, token, CHECK, "field=username&value=anna", anna.clone()).await;
        both_formats(&api, token, CHECK, "field=idnumber&value=N-1", anna).await;
        // Several match: the lowest id.
        both_formats(
            &api,
            token,
            CHECK,
            "field=idnumber&value=SAME",
            found(Some((5, "bert", "bert@example.org", "SAME"))),
        )
        .await;
        // Not found; the exact value only (case matters for an ID number).
        both_formats(&api, token, CHECK, "field=username&value=zoe", found(None)).await;
        both_formats(&api, token, CHECK, "field=idnumber&value=n-1", found(None)).await;
        // A deleted user is not found.
        both_formats(&api, token, CHECK, "field=username&value=dora", found(None)).await;
        both_formats(&api, token, CHECK, "field=idnumber&value=D-1", found(None)).await;
        // Errors in order: missing value (validation), invalid field, value changed by cleaning.
        let missing = "Missing required key in single structure: value";
        both_formats(
            &api,
            token,
            CHECK,
            "field=email",
            error(INVALID, "invalidparameter", INVALID_MESSAGE, Some(missing)),
        )
        .await;
        let field = "The given field (id) is not valid. Allowed values are: idnumber, username, email.";
        both_formats(
            &api,
            token,
            CHECK,
            "field=id&value=%20X%20",
            error(MOODLE, "checkuserexistenceinvalidfield", field, None),
        )
        .await;
        let not_alpha = "field => Invalid parameter value detected: Invalid external api parameter: the value is \"user_name\", the server was expecting \"alpha\" type";
        both_formats(
            &api,
            token,
            CHECK,
            "field=user_name&value=x",
            error(INVALID, "invalidparameter", INVALID_MESSAGE, Some(not_alpha)),
        )
        .await;
        for (field, value, sent, cleaned) in [
            ("username", "Anna", "Anna", "anna"),
            ("username", "an%20na", "an na", "anna"),
            ("email", "%20anna%40example.org", " anna@example.org", "anna@example.org"),
        ] {
            let debuginfo = format!("The field '{field}' value is invalid: {sent} (cleaned value: {cleaned})");
            both_formats(
                &api,
                token,
                CHECK,
                &format!("field={field}&value={value}"),
                error(INVALID, "invalidparameter", INVALID_MESSAGE, Some(&debuginfo)),
            )
            .await;
        }
    }
    // It does not ask whether the plugin is enabled.
    assert_eq!(
        api.call(&admin, "ledger_set_config", "json", "name=enabled&value=0").await,
        r#"{"result":true,"warnings":[]}"#
    );
    both_formats(&api, &semco, CHECK, "field=username&value=anna", found(Some((4, "anna", "anna@example.org", "N-1"))))
        .await;
    // In the SEMCO service, not in the LMS or audit services.
    for service in ["ledger_lms", "ledger_audit"] {
        let token = api.token(service).await;
        let body = api.call(&token, CHECK, "json", "value=x").await;
        assert!(body.contains("\"errorcode\":\"accessexception\""), "{service}: {body}");
    }
}

/// Before: `core_course_create_courses` in a missing category answered `invalidrecord`;
/// Moodle answers `errorcatcontextnotvalid`, and nothing is created (not even the valid
/// course before it in the same call).
async fn issue10_create_courses_missing_category_answered_invalidrecord(backend: Backend) {
    let api = debug_api(backend).await;
    let admin = api.token("ledger_admin").await;
    let message = "You cannot execute functions in the category context (category id:7). The context error message was: Invalid parameter value detected";
    let params = "courses[0][fullname]=Ok&courses[0][shortname]=OK1&courses[0][categoryid]=1&courses[1][fullname]=X&courses[1][shortname]=C9&courses[1][categoryid]=7";
    both_formats(
        &api,
        &admin,
        "core_course_create_courses",
        params,
        error(MOODLE, "errorcatcontextnotvalid", message, None),
    )
    .await;
    let courses: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM courses WHERE id > 1").fetch_one(&api.test.db.pool).await.unwrap();
    assert_eq!(courses, 0, "nothing is created");
    // Moving a course to a missing category: Moodle 4.5's update_course() fails in
    // context_coursecat::instance(MUST_EXIST), caught per course as a warning; the ledger keeps
    // the course as it was.
    let created = api
        .call(
            &admin,
            "core_course_create_courses",
            "json",
            "courses[0][fullname]=A&courses[0][shortname]=A1&courses[0][categoryid]=1",
        )
        .await;
    assert_eq!(created, r#"[{"id":2,"shortname":"A1"}]"#);
    let body = api
        .call(
            &admin,
            "core_course_update_courses",
            "json",
            "courses[0][id]=2&courses[0][categoryid]=9&courses[0][fullname]=B",
        )
        .await;
    assert_eq!(
        body,
        r#"{"warnings":[{"item":"course","itemid":2,"warningcode":"invalidrecord","message":"Can't find data record in database table course_categories."}]}"#
    );
    let body = api
        .call(
            &admin,
            "core_course_update_courses",
            "xml",
            "courses[0][id]=2&courses[0][categoryid]=9&courses[0][fullname]=B",
        )
        .await;
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n<KEY name=\"warnings\"><MULTIPLE>\n<SINGLE>\n<KEY name=\"item\"><VALUE>course</VALUE>\n</KEY>\n<KEY name=\"itemid\"><VALUE>2</VALUE>\n</KEY>\n<KEY name=\"warningcode\"><VALUE>invalidrecord</VALUE>\n</KEY>\n<KEY name=\"message\"><VALUE>Can't find data record in database table course_categories.</VALUE>\n</KEY>\n</SINGLE>\n</MULTIPLE>\n</KEY>\n</SINGLE>\n</RESPONSE>\n"
    );
    let fullname: String =
        sqlx::query_scalar("SELECT fullname FROM courses WHERE id = 2").fetch_one(&api.test.db.pool).await.unwrap();
    assert_eq!(fullname, "A");
    assert!(enrol_ledger::app::audit::verify(&api.test.db).await.unwrap().is_ok());
}

/// Before: `core_user_get_users_by_field` with `field=id&values[0]=abc` answered `[]`; Moodle
/// cleans each value with the field's type and refuses it when cleaning changed it.
async fn issue10_users_by_field_id_abc_answered_empty(backend: Backend) {
    let api = debug_api(backend).await;
    let admin = api.token("ledger_admin").await;
    let semco = api.token("enrol_semco").await;
    for (value, cleaned) in [("abc", "0"), ("1.5", "1")] {
        let debuginfo = format!("The field 'id' value is invalid: {value}(cleaned value: {cleaned})");
        for token in [&admin, &semco] {
            both_formats(
                &api,
                token,
                "core_user_get_users_by_field",
                &format!("field=id&values[0]=2&values[1]={value}"),
                error(INVALID, "invalidparameter", INVALID_MESSAGE, Some(&debuginfo)),
            )
            .await;
        }
    }
    // A clean id still finds its user.
    let body = api.call(&admin, "core_user_get_users_by_field", "json", "field=id&values[0]=2").await;
    assert!(body.starts_with(r#"[{"id":2,"username":"admin""#), "{body}");
}

on_both_backends!(
    issue10_check_user_existence_by_field_answered_invalidrecord,
    issue10_create_courses_missing_category_answered_invalidrecord,
    issue10_users_by_field_id_abc_answered_empty
);
