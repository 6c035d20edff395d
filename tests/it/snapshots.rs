//! Snapshots of the writer's state (issue 7, item 2): a start loads the newest valid snapshot
//! and replays only the tail of the log; a tampered, stale or other-format snapshot is
//! ignored and the state rebuilt from the log. Every state is compared with a full replay
//! through a canonical dump of everything the writer decides with.

use enrol_ledger::app::snapshot::{canonical_dump, SNAPSHOTS_KEPT};
use enrol_ledger::app::state::{LedgerState, LoadReport};
use enrol_ledger::app::writer::WriterOptions;
use enrol_ledger::app::{audit, Ledger, LedgerError, Request};
use enrol_ledger::domain::DomainError;
use enrol_ledger::store::{log, Backend};

use crate::on_both_backends;
use crate::support::*;

/// Events between two snapshots in these tests.
const EVERY: i64 = 10;

async fn small_snapshots(test: &TestDb) -> Ledger {
    let options = WriterOptions { snapshot_every_events: EVERY, ..WriterOptions::default() };
    Ledger::start_with(test.db.clone(), options).await.expect("start the ledger")
}

/// Enrols, edits and unenrols (closing streams) until the log has more than `events` events.
async fn write_history(ledger: &Ledger, events: i64) -> (i64, i64) {
    let course = create_course(ledger, "C1", false).await;
    let user = create_user(ledger, "snap").await;
    let mut n = 0;
    while log::head(&ledger.db).await.unwrap().0 <= events {
        n += 1;
        let enrolid = enrol(ledger, user, course, &format!("B-{n}"), n * 100, n * 100 + 50).await;
        let edit = Request::Edit { enrolid, booking_id: None, timestart: None, timeend: None, suspend: Some(true) };
        submit(ledger, edit).await.unwrap();
        if n % 3 != 0 {
            submit(ledger, Request::Unenrol { enrolid }).await.unwrap();
        }
    }
    (user, course)
}

/// Loads the state the way a start does, checks it against a full replay and returns how.
async fn load_and_compare(test: &TestDb) -> LoadReport {
    let (state, report) = LedgerState::load_reporting(&test.db).await.expect("load");
    let replayed = LedgerState::load_from_log(&test.db).await.expect("full replay");
    assert_eq!(canonical_dump(&state), canonical_dump(&replayed), "the loaded state equals a full replay");
    assert_eq!(state.head_position, log::head(&test.db).await.unwrap().0);
    report
}

async fn snapshot_positions(test: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT position FROM writer_snapshots ORDER BY position")
        .fetch_all(&test.db.pool)
        .await
        .unwrap()
}

/// After a restart the ledger still decides from the full history: a live booking ID is
/// taken, a new booking gets the next ids, and the log and projections verify.
async fn still_decides_right(test: &TestDb, user: i64, course: i64) {
    let ledger = test.ledger().await;
    assert_eq!(
        submit(&ledger, enrol_request(user, course, "B-6", 500_000, 500_050)).await,
        Err(LedgerError::Domain(DomainError::BookingIdDuplicate("B-6".into())))
    );
    let next = LedgerState::load_from_log(&test.db).await.unwrap().next_user_enrolment_id;
    assert_eq!(enrol(&ledger, user, course, "B-new", 1_000_000, 0).await, next);
    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

async fn start_up_uses_the_snapshot_and_replays_only_the_tail(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = small_snapshots(&test).await;
    let (user, course) = write_history(&ledger, 3 * EVERY + 5).await;
    // A checkpoint's snapshot is encoded and written beside the batches: under a loaded
    // machine (the whole suite in parallel) none may have landed yet when the history is
    // written, so wait for one (bounded) before the crash.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while snapshot_positions(&test).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // No clean shutdown: the newest snapshot is a checkpoint, the events after it a tail.
    drop(ledger);
    // (A checkpoint's snapshot is written beside the batches: the newest may still be on its way.)
    let head = log::head(&test.db).await.unwrap().0;
    let report = load_and_compare(&test).await;
    let used = report.snapshot_position.expect("a checkpoint snapshot was used");
    assert!(used >= EVERY && used <= head, "{report:?}");
    assert_eq!(report.replayed_events as i64, head - used, "only the tail after the snapshot was read");
    assert!(report.replayed_events < head as u64);
    let positions = snapshot_positions(&test).await;
    assert!(positions.contains(&used) && positions.len() as i64 <= SNAPSHOTS_KEPT, "{positions:?}");

    // A clean shutdown writes one at the head: nothing is left to replay.
    let ledger = small_snapshots(&test).await;
    submit(&ledger, Request::Unenrol { enrolid: 3 }).await.unwrap();
    ledger.shutdown().await;
    let report = load_and_compare(&test).await;
    assert_eq!(
        report,
        LoadReport { snapshot_position: Some(log::head(&test.db).await.unwrap().0), replayed_events: 0 }
    );
    assert!(snapshot_positions(&test).await.len() as i64 <= SNAPSHOTS_KEPT);
    still_decides_right(&test, user, course).await;
}

/// A history with snapshots, shut down cleanly (the newest snapshot at the head).
async fn given_snapshots(test: &TestDb) -> (i64, i64) {
    let ledger = small_snapshots(test).await;
    let ids = write_history(&ledger, 2 * EVERY + 3).await;
    ledger.shutdown().await;
    assert_eq!(snapshot_positions(test).await.len() as i64, SNAPSHOTS_KEPT);
    ids
}

async fn a_tampered_snapshot_is_ignored_and_the_state_rebuilt_from_the_log(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (user, course) = given_snapshots(&test).await;
    // The payload changed, its hash not: every snapshot is refused. (Every payload is changed:
    // one written before booking B-3 existed would not contain it.)
    sqlx::query("UPDATE writer_snapshots SET payload = replace(payload, '}', ' }')")
        .execute(&test.db.pool)
        .await
        .unwrap();
    let report = load_and_compare(&test).await;
    assert_eq!(report.snapshot_position, None);
    assert_eq!(report.replayed_events as i64, log::head(&test.db).await.unwrap().0);
    still_decides_right(&test, user, course).await;
}

async fn a_corrupt_newest_snapshot_falls_back_to_the_older_one(backend: Backend) {
    let test = TestDb::new(backend).await;
    given_snapshots(&test).await;
    let positions = snapshot_positions(&test).await;
    // The newest names a hash the log does not have at its position.
    sqlx::query("UPDATE writer_snapshots SET log_hash = 'not-the-log' WHERE position = $1")
        .bind(positions[1])
        .execute(&test.db.pool)
        .await
        .unwrap();
    let report = load_and_compare(&test).await;
    assert_eq!(report.snapshot_position, Some(positions[0]));
    assert_eq!(report.replayed_events as i64, positions[1] - positions[0]);
}

async fn a_snapshot_of_another_format_version_is_ignored(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (user, course) = given_snapshots(&test).await;
    sqlx::query("UPDATE writer_snapshots SET format_version = format_version + 1")
        .execute(&test.db.pool)
        .await
        .unwrap();
    let report = load_and_compare(&test).await;
    assert_eq!(report.snapshot_position, None);
    still_decides_right(&test, user, course).await;
    // The clean shutdown of that start wrote a current one again.
    assert_eq!(load_and_compare(&test).await.replayed_events, 0);
}

on_both_backends!(
    start_up_uses_the_snapshot_and_replays_only_the_tail,
    a_tampered_snapshot_is_ignored_and_the_state_rebuilt_from_the_log,
    a_corrupt_newest_snapshot_falls_back_to_the_older_one,
    a_snapshot_of_another_format_version_is_ignored,
);
