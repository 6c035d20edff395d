//! The binary's audit subcommands against a real database file / schema.

use enrol_ledger::store::Backend;

use crate::on_both_backends;
use crate::support::*;

/// Exit code and stdout of the binary.
fn run(url: &str, args: &[&str]) -> (i32, String) {
    let (code, out, _) = run_cli(url, args);
    (code, out)
}

async fn cli_verify_history_export_and_as_of(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let user = create_user(&ledger, "eve").await;
    enrol(&ledger, user, course, "B-7", 0, 0).await;
    let url = test.url.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        let verify = run(&url, &["verify"]);
        let history = run(&url, &["history", "--booking", "B-7"]);
        let export = run(&url, &["export"]);
        let as_of = run(&url, &["as-of", "--time", "2999-01-01T00:00:00Z", "--course", &course.to_string()]);
        let before = run(&url, &["as-of", "--time", "2000-01-01T00:00:00Z"]);
        let unknown = run(&url, &["history", "--booking", "nope"]);
        assert_eq!(history.0, 0);
        assert!(
            history.1.contains("\"event_type\":\"Enrolled\"") && history.1.contains("\"booking_id\":\"B-7\""),
            "{}",
            history.1
        );
        // The installer's steps, the course's and the user's registry events, the enrolment.
        let lines: Vec<serde_json::Value> = export.1.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let types: Vec<&str> = lines.iter().filter_map(|l| l["event_type"].as_str()).collect();
        assert_eq!(types[6..], ["CourseCreated", "ManualInstanceCreated", "UserRegistered", "Enrolled"], "{types:?}");
        assert!(types[..6].iter().all(|t| *t == "InstallStepDone"), "{types:?}");
        let line = lines.last().unwrap();
        assert_eq!(line["position"], 10);
        assert_eq!(line["payload"]["type"], "Enrolled");
        assert!(as_of.1.contains("\"semcobookingid\":\"B-7\""), "{}", as_of.1);
        assert_eq!(before.1, "");
        assert_eq!(unknown.0, 1);
        verify
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verify OK: 10 events"), "{out}");

    sqlx::query("UPDATE enrol SET customchar1 = 'X' WHERE enrol = 'semco'").execute(&test.db.pool).await.unwrap();
    let url = test.url.clone();
    let (code, out) = tokio::task::spawn_blocking(move || run(&url, &["verify"])).await.unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("MISMATCH: projection enrol"), "{out}");
}

on_both_backends!(cli_verify_history_export_and_as_of);
