//! The health check (issue 11 item 3): the record of `verify` runs, the checks on a real
//! ledger, muting, `enrol-ledger health` and `/api/v1/health`, on both backends.

use enrol_ledger::app::history::{history, Subject};
use enrol_ledger::app::verification::{last_verification, record_verification, VerifyOutcome};
use enrol_ledger::app::Request;
use enrol_ledger::domain::event::ChangedBy;
use enrol_ledger::store::Backend;

use crate::on_both_backends;
use crate::support::{run_cli, TestDb};

/// `enrol-ledger verify` appends its run to `verification_runs`; `last_verification` reads the
/// newest, a failed one included.
async fn verify_runs_are_recorded(backend: Backend) {
    let t = TestDb::new(backend).await;
    assert_eq!(last_verification(&t.db).await.unwrap(), None, "no run yet");
    let url = t.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || run_cli(&url, &["verify"])).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let last = last_verification(&t.db).await.unwrap().expect("the run is recorded");
    assert!(last.ok && last.mismatches == 0 && last.source == "cli", "{last:?}");
    assert!(last.log_length > 0 && last.head_position == last.log_length, "{last:?}");
    let failed = VerifyOutcome {
        time_us: last.time_us + 1,
        ok: false,
        mismatches: 3,
        log_length: last.log_length,
        head_position: last.head_position,
        duration_ms: 5,
        source: "api".into(),
    };
    record_verification(&t.db, &failed).await.unwrap();
    assert_eq!(last_verification(&t.db).await.unwrap(), Some(failed));
}

on_both_backends!(verify_runs_are_recorded);

fn web_manager() -> ChangedBy {
    ChangedBy { via: "web".into(), account_id: Some(7), account: "maria".into() }
}

/// `enrol-ledger health` on a fresh ledger: warnings only (no verify, no checkpoint, no IP
/// restriction), exit 0; the SEMCO token revoked: `semco_token` is an error, exit 1; the check
/// muted by a manager: exit 0 again, the check shown muted and the mute in `history --health`.
async fn health_cli_exits_1_when_the_semco_token_is_revoked(backend: Backend) {
    let t = TestDb::new(backend).await;
    let cli = |args: &'static [&'static str]| {
        let url = t.url.clone();
        async move { tokio::task::spawn_blocking(move || run_cli(&url, args)).await.unwrap() }
    };
    let (code, out, err) = cli(&["health"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("health WARNING") && out.contains("OK      semco_token "), "{out}");
    let (code, out, _) = cli(&["token", "revoke", "--id", "1"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = cli(&["health"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("health ERROR") && out.contains("ERROR   semco_token "), "{out}");
    let (code, json, _) = cli(&["health", "--format", "json"]).await;
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let check = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "semco_token").unwrap().clone();
    assert_eq!((check["status"].as_str(), report["status"].as_str()), (Some("error"), Some("error")));

    let ledger = t.ledger().await;
    let mute =
        Request::MuteCheck { check: "semco_token".into(), reason: "SEMCO is off this week".into(), by: web_manager() };
    ledger.submit(mute, crate::support::actor()).await.unwrap();
    let unknown = Request::MuteCheck { check: "nope".into(), reason: "x".into(), by: web_manager() };
    assert!(ledger.submit(unknown, crate::support::actor()).await.is_err(), "an unknown check is refused");
    let (code, out, err) = cli(&["health"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ERROR   semco_token (Exactly one SEMCO token) [muted: SEMCO is off this week]"), "{out}");
    let (code, out, _) = cli(&["history", "--health", "--format", "text"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("CheckMuted health/site by web account maria (id 7)") && out.contains("semco_token"), "{out}");
    ledger.shutdown().await;
}

/// `GET /api/v1/health`: refused without a ledger_audit / ledger_admin token, the report as
/// JSON with one entry per check and the writer's health, a muted check marked with its reason.
async fn api_v1_health_reports_every_check(backend: Backend) {
    use crate::audit_api::get;
    use axum::http::StatusCode;
    use enrol_ledger::api::services;
    let api = crate::http::Api::new(backend).await;
    let (status, _) = get(&api, "/api/v1/health", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let semco = api.token(services::ENROL_SEMCO).await;
    let (status, _) = get(&api, "/api/v1/health", Some(&semco)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let audit = api.token(services::LEDGER_AUDIT).await;
    let (status, body) = get(&api, "/api/v1/health", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let checks = body["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, enrol_ledger::domain::health::CHECK_IDS.to_vec());
    let check = |body: &serde_json::Value, id: &str| {
        body["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone()
    };
    assert_eq!(check(&body, "writer")["status"], "ok", "{body}");
    assert!(check(&body, "writer")["explanation"].as_str().unwrap().starts_with("running"), "{body}");
    assert_eq!(check(&body, "semco_token")["status"], "warning", "two SEMCO tokens now: {body}");
    assert_eq!(check(&body, "semco_token_ip")["muted"], serde_json::Value::Null);
    let mute = Request::MuteCheck {
        check: "semco_token_ip".into(),
        reason: "SEMCO has no fixed address".into(),
        by: web_manager(),
    };
    api.ledger.submit(mute, crate::support::actor()).await.unwrap();
    let admin = api.token(services::LEDGER_ADMIN).await;
    let (status, body) = get(&api, "/api/v1/health", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check(&body, "semco_token_ip")["muted"], "SEMCO has no fixed address");
    assert_eq!(check(&body, "semco_token_ip")["status"], "warning", "a muted check keeps its status");
}

/// Settings changed from the web are events naming the web account, all or nothing, and show
/// up in the settings history; the report settings fold into `Settings`.
async fn settings_changes_are_events_in_the_settings_history(backend: Backend) {
    let t = TestDb::new(backend).await;
    let ledger = t.ledger().await;
    let bad = Request::SetSettings {
        changes: vec![("recompletion".into(), "0".into()), ("report_sort".into(), "password asc".into())],
        by: web_manager(),
    };
    assert!(ledger.submit(bad, crate::support::actor()).await.is_err());
    let changes = vec![
        ("recompletion".to_owned(), "0".to_owned()),
        ("report_columns".to_owned(), "fullname,grade".to_owned()),
        ("report_sort".to_owned(), "lastname desc".to_owned()),
        ("enabled".to_owned(), "1".to_owned()),
    ];
    ledger.submit(Request::SetSettings { changes, by: web_manager() }, crate::support::actor()).await.unwrap();
    let found = history(&t.db, Subject::Settings).await.unwrap();
    let names: Vec<&str> = found.entries.iter().map(|e| e.changes[0].field.as_str()).collect();
    assert_eq!(
        names,
        ["recompletion", "report_columns", "report_sort"],
        "the refused batch left nothing; enabled unchanged"
    );
    assert!(found.entries.iter().all(|e| e.changed_by.as_ref().is_some_and(|b| b["account"] == "maria")));
    let report = enrol_ledger::app::health::report(&t.db, None).await.unwrap();
    let recompletion = report.checks.iter().find(|c| c.id == "recompletion").unwrap();
    assert!(recompletion.explanation.contains("switched off"), "{recompletion:?}");
    let url = t.url.clone();
    let (code, out, _) =
        tokio::task::spawn_blocking(move || run_cli(&url, &["history", "--settings", "--format", "text"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("report_sort \"enrolid asc\" → \"lastname desc\""), "{out}");
    ledger.shutdown().await;
}

on_both_backends!(
    health_cli_exits_1_when_the_semco_token_is_revoked,
    api_v1_health_reports_every_check,
    settings_changes_are_events_in_the_settings_history,
);
