//! The log refuses changes at the database level, and `verify` catches what a bypass changes.

use enrol_ledger::app::audit;
use enrol_ledger::store::{Backend, Db};

use crate::on_both_backends;
use crate::support::*;

/// Three enrolments (after the installer's, the course's and each user's registry events).
async fn seeded(backend: Backend) -> TestDb {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", true).await;
    for i in 0..3 {
        let user = create_user(&ledger, &format!("u{i}")).await;
        enrol(&ledger, user, course, &format!("B-{i}"), 0, 0).await;
    }
    test
}

/// The position of the `n`th `Enrolled` event (1-based).
async fn enrolled_at(db: &Db, n: i64) -> i64 {
    sqlx::query_scalar("SELECT position FROM events WHERE event_type = 'Enrolled' ORDER BY position LIMIT 1 OFFSET $1")
        .bind(n - 1)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Switches the append-only triggers off, as only someone with owner rights could.
async fn bypass_triggers(db: &Db) {
    let sql = match db.backend {
        Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER USER",
        Backend::Sqlite => "DROP TRIGGER events_refuse_update; DROP TRIGGER events_refuse_delete;",
    };
    sqlx::raw_sql(sql).execute(&db.pool).await.expect("bypass triggers");
}

async fn log_refuses_update_and_delete(backend: Backend) {
    let test = seeded(backend).await;
    let update = sqlx::query("UPDATE events SET payload = '{}' WHERE position = 1").execute(&test.db.pool).await;
    let message = update.expect_err("UPDATE must be refused").to_string();
    assert!(message.contains("append-only"), "{message}");
    let delete = sqlx::query("DELETE FROM events WHERE position = 2").execute(&test.db.pool).await;
    assert!(delete.expect_err("DELETE must be refused").to_string().contains("append-only"));
    if backend == Backend::Postgres {
        let truncate = sqlx::query("TRUNCATE events").execute(&test.db.pool).await;
        assert!(truncate.expect_err("TRUNCATE must be refused").to_string().contains("append-only"));
    }
    let sql = "SELECT COUNT(*) FROM events WHERE event_type = 'Enrolled'";
    let count: i64 = sqlx::query_scalar(sql).fetch_one(&test.db.pool).await.unwrap();
    assert_eq!(count, 3);
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
}

async fn verify_detects_changed_payload(backend: Backend) {
    let test = seeded(backend).await;
    let second = enrolled_at(&test.db, 2).await;
    bypass_triggers(&test.db).await;
    sqlx::query("UPDATE events SET payload = REPLACE(payload, '\"timeend\":0', '\"timeend\":1') WHERE position = $1")
        .bind(second)
        .execute(&test.db.pool)
        .await
        .unwrap();
    let report = audit::verify(&test.db).await.unwrap();
    assert!(!report.is_ok());
    let hash = format!("position {second}: hash does not match");
    assert!(report.problems.iter().any(|p| p.starts_with(&hash)), "{:?}", report.problems);
    // The altered payload also disagrees with the live projection row.
    assert!(report.problems.iter().any(|p| p.contains("projection user_enrolments")), "{:?}", report.problems);
}

async fn verify_detects_removed_event(backend: Backend) {
    let test = seeded(backend).await;
    let p = enrolled_at(&test.db, 2).await;
    bypass_triggers(&test.db).await;
    sqlx::query("DELETE FROM events WHERE position = $1").bind(p).execute(&test.db.pool).await.unwrap();
    let report = audit::verify(&test.db).await.unwrap();
    let gap = format!("position {} follows position {}: 1 event(s) missing", p + 1, p - 1);
    assert!(report.problems.iter().any(|problem| problem.contains(&gap)), "{:?}", report.problems);
    let hash = format!("position {}: hash does not match", p + 1);
    assert!(report.problems.iter().any(|problem| problem.starts_with(&hash)), "{:?}", report.problems);
}

async fn verify_detects_reordered_events(backend: Backend) {
    let test = seeded(backend).await;
    let p = enrolled_at(&test.db, 2).await;
    bypass_triggers(&test.db).await;
    for (sql, from) in [
        ("UPDATE events SET position = -2 WHERE position = $1", p),
        ("UPDATE events SET position = $1 WHERE position = $1 + 1", p),
        ("UPDATE events SET position = $1 + 1 WHERE position = -2", p),
    ] {
        sqlx::query(sql).bind(from).execute(&test.db.pool).await.unwrap();
    }
    let report = audit::verify(&test.db).await.unwrap();
    for at in [p, p + 1] {
        let hash = format!("position {at}: hash does not match");
        assert!(report.problems.iter().any(|problem| problem.starts_with(&hash)), "{:?}", report.problems);
    }
}

/// The stream versions are checked by the database (issue 7): a version that skips, and one
/// recorded before the version it follows, are each named with their position.
async fn verify_detects_skipped_and_reordered_stream_versions(backend: Backend) {
    let test = seeded(backend).await;
    let second = enrolled_at(&test.db, 2).await;
    let third = enrolled_at(&test.db, 3).await;
    bypass_triggers(&test.db).await;
    sqlx::query("UPDATE events SET stream_version = 3 WHERE position = $1")
        .bind(second)
        .execute(&test.db.pool)
        .await
        .unwrap();
    // The third enrolment's stream gets a second event recorded before its first.
    let sql = "INSERT INTO events (position, stream_id, stream_type, stream_key, stream_version, event_type, \
               schema_version, recorded_at, actor_user_id, actor_token_id, request_id, booking_id, payload, hash) \
               SELECT -1, stream_id, stream_type, stream_key, 2, event_type, schema_version, recorded_at, \
               actor_user_id, actor_token_id, request_id, NULL, payload, hash FROM events WHERE position = $1";
    sqlx::query(sql).bind(third).execute(&test.db.pool).await.unwrap();
    let key = |position: i64| {
        sqlx::query_scalar::<_, String>("SELECT stream_key FROM events WHERE position = $1")
            .bind(position)
            .fetch_one(&test.db.pool)
    };
    let (second_key, third_key) = (key(second).await.unwrap(), key(third).await.unwrap());
    let report = audit::verify(&test.db).await.unwrap();
    let skipped = format!("position {second}: stream {second_key} version 3 where 1 was expected");
    assert!(report.problems.iter().any(|p| p.starts_with(&skipped)), "{:?}", report.problems);
    let early = format!("position -1: stream {third_key} version 2 is recorded before version 1 (position {third})");
    assert!(report.problems.iter().any(|p| p.starts_with(&early)), "{:?}", report.problems);
}

async fn verify_detects_tampered_projection(backend: Backend) {
    let test = seeded(backend).await;
    sqlx::query("UPDATE user_enrolments SET timeend = 99 WHERE id = 1").execute(&test.db.pool).await.unwrap();
    let report = audit::verify(&test.db).await.unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(report.problems.iter().all(|p| p.starts_with("projection user_enrolments")));
    audit::rebuild(&test.db).await.unwrap();
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
}

on_both_backends!(
    log_refuses_update_and_delete,
    verify_detects_changed_payload,
    verify_detects_removed_event,
    verify_detects_reordered_events,
    verify_detects_tampered_projection,
    verify_detects_skipped_and_reordered_stream_versions,
);
