//! Issue 6, defect 8: the registry's rules (usernames, guest and admin, e-mail addresses, auth
//! plugins) through the real router, as Moodle 4.5 answers them.

use enrol_ledger::api::{self, services};
use enrol_ledger::store::Backend;

use crate::http::Api;
use crate::on_both_backends;
use crate::support::*;

/// A router with `--debug`, so the `debuginfo` of `invalidparameter` names the rule.
async fn debug_api(backend: Backend) -> Api {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: true };
    Api { router: api::router(ledger.clone(), settings), test, ledger }
}

fn new_user(username: &str, email: &str, auth: Option<&str>) -> String {
    let auth = auth.map(|a| format!("&users[0][auth]={a}")).unwrap_or_default();
    format!(
        "users[0][username]={username}&users[0][firstname]=F&users[0][lastname]=L&users[0][email]={email}&users[0][createpassword]=1{auth}"
    )
}

fn invalid_parameter(debuginfo: &str) -> String {
    format!(
        r#"{{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"{debuginfo}"}}"#
    )
}

fn warning(itemid: i64, code: &str, message: &str) -> String {
    format!(r#"{{"item":"user","itemid":{itemid},"warningcode":"{code}","message":"{message}"}}"#)
}

/// Moodle's `user_update_user` does not look for the username: the unique index on
/// (mnethostid, username) refuses the row and the per-user catch turns the
/// `dml_write_exception` into a warning. The other users of the call are still updated.
async fn defect_8_update_users_takes_another_users_username(backend: Backend) {
    let api = debug_api(backend).await;
    let token = api.token(services::ENROL_SEMCO).await;
    for name in ["anna", "bert", "carl"] {
        let body =
            api.call(&token, "core_user_create_users", "json", &new_user(name, &format!("{name}%40x.org"), None)).await;
        assert!(body.contains(&format!(r#""username":"{name}""#)), "{body}");
    }
    // 5 takes 4's username; 6 keeps its own; 6 then takes 5's, which is still 5's.
    let body = api
        .call(
            &token,
            "core_user_update_users",
            "json",
            "users[0][id]=5&users[0][username]=anna&users[1][id]=6&users[1][username]=carl&users[2][id]=6&users[2][username]=bert&users[3][id]=1&users[3][username]=admin&users[4][id]=6&users[4][username]=admin",
        )
        .await;
    let expected = [
        warning(5, "dmlwriteexception", "Error writing to database"),
        warning(6, "dmlwriteexception", "Error writing to database"),
        warning(1, "usernotupdatedguest", "error\\/usernotupdatedguest"),
        warning(6, "dmlwriteexception", "Error writing to database"),
    ];
    assert_eq!(body, format!(r#"{{"warnings":[{}]}}"#, expected.join(",")));
    for (name, id) in [("anna", 4), ("bert", 5), ("carl", 6), ("admin", 2)] {
        let body =
            api.call(&token, "core_user_get_users_by_field", "json", &format!("field=username&values[0]={name}")).await;
        assert_eq!(body.matches(r#""id":"#).count(), 1, "one live {name}: {body}");
        assert!(body.starts_with(&format!(r#"[{{"id":{id},"username":"{name}""#)), "{body}");
    }
    // A deleted user's username is free again, as in Moodle (which renames the deleted row).
    assert_eq!(api.call(&token, "core_user_delete_users", "json", "userids[0]=4").await, "null");
    let body = api.call(&token, "core_user_update_users", "json", "users[0][id]=5&users[0][username]=anna").await;
    assert_eq!(body, r#"{"warnings":[]}"#);
    // The database refuses a second live user with one username too, whoever writes.
    let duplicate = sqlx::query("UPDATE users SET username = 'carl' WHERE id = 5").execute(&api.test.db.pool).await;
    assert!(duplicate.is_err(), "the unique index on live usernames refuses it");
    sqlx::query("UPDATE users SET username = 'carl' WHERE id = 4")
        .execute(&api.test.db.pool)
        .await
        .expect("a deleted row may");
}

/// Moodle's `delete_user` refuses the guest account without an exception (a debugging
/// message only), so `core_user_delete_users` answers `null` and the guest stays, with its
/// enrolments; the other users of the call are deleted.
async fn defect_8_guest_user_can_be_deleted(backend: Backend) {
    let api = debug_api(backend).await;
    let token = api.token(services::ENROL_SEMCO).await;
    let body = api.call(&token, "core_user_create_users", "json", &new_user("anna", "anna%40x.org", None)).await;
    assert!(body.contains(r#""id":4"#), "{body}");
    assert_eq!(api.call(&token, "core_user_delete_users", "json", "userids[0]=1").await, "null");
    assert_eq!(api.call(&token, "core_user_delete_users", "json", "userids[0]=1&userids[1]=4").await, "null");
    let body = api.call(&token, "core_user_get_users_by_field", "json", "field=id&values[0]=1&values[1]=4").await;
    assert!(body.starts_with(r#"[{"id":1,"username":"guest","firstname":"Guest user""#), "the guest stays: {body}");
    assert!(!body.contains(r#""id":4"#), "anna is deleted: {body}");
    // The administrator is refused with Moodle's error, and nothing of that call is kept.
    let body = api.call(&token, "core_user_delete_users", "json", "userids[0]=1&userids[1]=2").await;
    assert_eq!(
        body,
        r#"{"exception":"core\\exception\\moodle_exception","errorcode":"useradminodelete","message":"Administrator accounts cannot be deleted."}"#
    );
    let body = api.call(&token, "core_user_get_users_by_field", "json", "field=id&values[0]=1&values[1]=2").await;
    assert!(body.contains(r#""username":"guest""#) && body.contains(r#""username":"admin""#), "{body}");
}

/// One validator, Moodle's `validate_email` (PHP's `FILTER_VALIDATE_EMAIL`): the last label of
/// the domain must start with a letter, so `a@b.1c` is refused on create and on update.
async fn defect_8_email_validators_disagree(backend: Backend) {
    let api = debug_api(backend).await;
    let token = api.token(services::ENROL_SEMCO).await;
    let body = api.call(&token, "core_user_create_users", "json", &new_user("anna", "a%40b.1c", None)).await;
    assert_eq!(body, invalid_parameter("Email address is invalid: a@b.1c"));
    let body = api.call(&token, "core_user_create_users", "json", &new_user("anna", "a%40b.c1", None)).await;
    assert_eq!(body, r#"[{"id":4,"username":"anna"}]"#);
    let body = api.call(&token, "core_user_update_users", "json", "users[0][id]=4&users[0][email]=a%40b.1c").await;
    assert_eq!(body, format!(r#"{{"warnings":[{}]}}"#, warning(4, "useremailinvalid", "error\\/useremailinvalid")));
    let body = api.call(&token, "core_user_get_users_by_field", "json", "field=email&values[0]=a%40b.1c").await;
    assert_eq!(body, "[]", "nothing was stored");
}

/// One list of the auth plugins of a stock Moodle 4.5; `core_user_create_users` refuses only
/// `mnet` and `webservice` of them.
async fn defect_8_auth_plugin_lists_differ(backend: Backend) {
    let api = debug_api(backend).await;
    let token = api.token(services::ENROL_SEMCO).await;
    for (n, auth) in ["none", "lti", "manual"].into_iter().enumerate() {
        let name = format!("u{n}");
        let body = api
            .call(&token, "core_user_create_users", "json", &new_user(&name, &format!("{name}%40x.org"), Some(auth)))
            .await;
        assert_eq!(body, format!(r#"[{{"id":{},"username":"{name}"}}]"#, 4 + n), "auth {auth}");
    }
    for auth in ["mnet", "webservice"] {
        let body = api.call(&token, "core_user_create_users", "json", &new_user("v", "v%40x.org", Some(auth))).await;
        assert_eq!(body, invalid_parameter(&format!("Invalid authentication type: {auth}")), "auth {auth}");
    }
    let body = api.call(&token, "core_user_get_users_by_field", "json", "field=id&values[0]=4").await;
    assert!(body.contains(r#""auth":"none""#), "{body}");
}

/// Issue 7: the writer's index keeps digests of usernames and e-mail addresses, not the
/// strings, and is built anew from the tables at every start. The same rules hold before and
/// after a restart: a renamed user's old name is free and the new one taken, an address is
/// taken whatever its case, a deleted user frees both, and changing only the case of one's own
/// address is no clash.
async fn registry_index_of_digests_decides_alike_after_a_restart(backend: Backend) {
    let api = debug_api(backend).await;
    let token = api.token(services::ENROL_SEMCO).await;
    for (name, email) in [("anna", "Anna%40X.org"), ("bert", "bert%40x.org"), ("carl", "carl%40x.org")] {
        let body = api.call(&token, "core_user_create_users", "json", &new_user(name, email, None)).await;
        assert!(body.contains(&format!(r#""username":"{name}""#)), "{body}");
    }
    let body = api.call(&token, "core_user_update_users", "json", "users[0][id]=5&users[0][username]=bertram").await;
    assert_eq!(body, r#"{"warnings":[]}"#);
    assert_eq!(api.call(&token, "core_user_delete_users", "json", "userids[0]=6").await, "null");
    let checks = |api: Api, token: String| async move {
        let body = api.call(&token, "core_user_create_users", "json", &new_user("bertram", "b2%40x.org", None)).await;
        assert_eq!(body, invalid_parameter("Username already exists: bertram"));
        let body = api.call(&token, "core_user_create_users", "json", &new_user("dora", "ANNA%40x.ORG", None)).await;
        assert_eq!(body, invalid_parameter("Email address already exists: ANNA@x.ORG"));
        let body =
            api.call(&token, "core_user_update_users", "json", "users[0][id]=4&users[0][email]=anna%40x.org").await;
        assert_eq!(body, r#"{"warnings":[]}"#, "her own address in another case");
        let body =
            api.call(&token, "core_user_update_users", "json", "users[0][id]=5&users[0][email]=ANNA%40X.ORG").await;
        assert_eq!(body, format!(r#"{{"warnings":[{}]}}"#, warning(5, "useremailduplicate", "Duplicate address")));
        api
    };
    let api = checks(api, token.clone()).await;
    let Api { test, ledger, .. } = api;
    ledger.shutdown().await;
    let ledger = test.ledger().await;
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: true };
    let api = Api { router: api::router(ledger.clone(), settings), test, ledger };
    let api = checks(api, token.clone()).await;
    // Freed by the rename and the deletion, also after the restart.
    for (name, email) in [("bert", "bert2%40x.org"), ("carl", "carl%40x.org")] {
        let body = api.call(&token, "core_user_create_users", "json", &new_user(name, email, None)).await;
        assert!(body.contains(&format!(r#""username":"{name}""#)), "{name} is free again: {body}");
    }
}

on_both_backends!(
    registry_index_of_digests_decides_alike_after_a_restart,
    defect_8_update_users_takes_another_users_username,
    defect_8_guest_user_can_be_deleted,
    defect_8_email_validators_disagree,
    defect_8_auth_plugin_lists_differ
);
