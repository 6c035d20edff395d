//! The log refuses changes at the database level, and `verify` catches what a bypass changes.

use enrol_ledger::app::{audit, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::store::log::{self, GENESIS_HASH, REPLAY_PAGE_ROWS};
use enrol_ledger::store::{Backend, Db, StoreError};

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

/// `verify` reads SQLite's projection tables back as one JSON page per round trip (issue 7):
/// a grade that differs from the log's only beyond the 15 digits SQLite's JSON keeps is still
/// reported, and a cell of the wrong type is reported as a difference (PostgreSQL's typed
/// columns refuse such a cell outright), never a failed verify.
async fn verify_compares_projection_cells_exactly(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", true).await;
    let user = create_user(&ledger, "anna").await;
    enrol(&ledger, user, course, "B-1", 0, 0).await;
    let grade = GradeInput { finalgrade: Some(66.66667), ..GradeInput::default() };
    submit(&ledger, Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 180, grade })
        .await
        .unwrap();
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    sqlx::query("UPDATE course_completions SET finalgrade = finalgrade + 0.000000000001")
        .execute(&test.db.pool)
        .await
        .unwrap();
    let report = audit::verify(&test.db).await.unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(report.problems.iter().all(|p| p.starts_with("projection course_completions")), "{:?}", report.problems);
    audit::rebuild(&test.db).await.unwrap();
    assert!(audit::verify(&test.db).await.unwrap().is_ok());

    let mistyped = sqlx::query("UPDATE user_enrolments SET timeend = 'soon'").execute(&test.db.pool).await;
    match backend {
        Backend::Postgres => assert!(mistyped.is_err(), "a bigint column refuses text"),
        Backend::Sqlite => {
            mistyped.unwrap();
            let report = audit::verify(&test.db).await.unwrap();
            assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
            assert!(report.problems.iter().all(|p| p.starts_with("projection user_enrolments")));
            assert!(report.problems[1].contains("soon"), "{:?}", report.problems);
        }
    }
}

/// The replay pipeline (issue 7: read, decode and fold each a page apart, on their own
/// threads) hands every event over in order across pages, stops at `until`, and when the
/// visitor fails returns its error and stops the stages behind it (no hang: the test bounds
/// each replay), leaving the connection usable.
async fn replay_pipeline_keeps_order_and_stops_cleanly(backend: Backend) {
    let test = seeded(backend).await;
    // Copies of the first event in their own streams, chained, until the log spans pages.
    let mut conn = test.db.pool.acquire().await.unwrap();
    let existing = log::read_after(&mut conn, 0, 1_000).await.unwrap();
    let template = existing[0].clone();
    let mut prev = existing.last().unwrap().hash.clone();
    let total = 2 * REPLAY_PAGE_ROWS + REPLAY_PAGE_ROWS / 2;
    let mut copies = Vec::new();
    for position in existing.len() as i64 + 1..=total {
        let mut copy = template.clone();
        copy.position = position;
        copy.stream_id = format!("{}-copy-{position}", template.stream_id);
        copy.stream_key = format!("copy-{position}");
        copy.hash = copy.chain_hash(&prev);
        prev.clone_from(&copy.hash);
        copies.push(copy);
    }
    for chunk in copies.chunks(500) {
        log::append(&mut conn, chunk).await.unwrap();
    }
    type Bounded = Result<Result<(), StoreError>, tokio::time::error::Elapsed>;
    let bounded = |what: &'static str| move |r: Bounded| r.unwrap_or_else(|_| panic!("{what}: the replay hung"));
    let limit = std::time::Duration::from_secs(60);

    let mut seen = Vec::new();
    let mut prev = GENESIS_HASH.to_owned();
    let mut intact = true;
    let replay = log::replay_chained(&mut conn, |stored, event, chained| {
        assert!(event.is_ok(), "position {}: {event:?}", stored.position);
        intact &= chained == stored.hash && stored.chain_hash(&prev) == chained;
        prev = stored.hash.clone();
        seen.push(stored.position);
        Ok(())
    });
    bounded("whole log")(tokio::time::timeout(limit, replay).await).unwrap();
    assert!(intact);
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());

    let until = REPLAY_PAGE_ROWS + 7;
    let mut seen = Vec::new();
    let replay = log::replay_decoded(&mut conn, Some(until), |stored, _| {
        seen.push(stored.position);
        Ok(())
    });
    bounded("until")(tokio::time::timeout(limit, replay).await).unwrap();
    assert_eq!(seen, (1..=until).collect::<Vec<_>>());

    let stop = REPLAY_PAGE_ROWS / 2;
    let mut last = 0;
    let replay = log::replay_decoded(&mut conn, None, |stored, _| {
        last = stored.position;
        if stored.position == stop {
            return Err(StoreError::Database(sqlx::Error::Protocol(format!("stop at {stop}"))));
        }
        Ok(())
    });
    let failed = bounded("a failing visitor")(tokio::time::timeout(limit, replay).await);
    let stopped =
        matches!(&failed, Err(StoreError::Database(sqlx::Error::Protocol(m))) if *m == format!("stop at {stop}"));
    assert!(stopped, "{failed:?}");
    assert_eq!(last, stop, "no event is visited after the failure");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(count, total, "the connection still answers");
}

on_both_backends!(
    verify_compares_projection_cells_exactly,
    replay_pipeline_keeps_order_and_stops_cleanly,
    log_refuses_update_and_delete,
    verify_detects_changed_payload,
    verify_detects_removed_event,
    verify_detects_reordered_events,
    verify_detects_tampered_projection,
    verify_detects_skipped_and_reordered_stream_versions,
);
