//! Racing requests: the invariants hold and readers paging by position miss nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use enrol_ledger::app::{audit, LedgerError};
use enrol_ledger::domain::DomainError;
use enrol_ledger::store::{log, Backend};

use crate::on_both_backends;
use crate::support::*;

const RACERS: usize = 16;

async fn concurrent_enrolments_with_one_booking_id_give_one_success(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let mut users = Vec::new();
    for i in 0..RACERS {
        users.push(create_user(&ledger, &format!("racer{i}")).await);
    }
    let tasks: Vec<_> = users
        .into_iter()
        .map(|user| {
            let ledger = ledger.clone();
            tokio::spawn(async move { submit(&ledger, enrol_request(user, course, "SAME", 0, 0)).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(LedgerError::Domain(DomainError::BookingIdDuplicate(b))) => assert_eq!(b, "SAME"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM enrol WHERE customchar1 = 'SAME'")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
}

async fn concurrent_overlapping_enrolments_of_one_user_give_one_success(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let user = create_user(&ledger, "overlapper").await;
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let ledger = ledger.clone();
            // Every period contains [1000, 2000]: all pairs overlap under either rule.
            let request = enrol_request(user, course, &format!("B-{i}"), 1000 - i as i64, 2000 + i as i64);
            tokio::spawn(async move { submit(&ledger, request).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(LedgerError::Domain(DomainError::BookingOverlap)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_enrolments WHERE userid = $1")
        .bind(user)
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

/// 16 writers append while one reader pages by position: it sees every event exactly once,
/// in order, with no gap — a position is never committed after a larger one became visible.
async fn reader_paging_by_position_sees_every_event_once(backend: Backend) {
    const ENROLS_PER_WRITER: usize = 25;
    const PAGE_ROWS: i64 = 7;
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let mut users = Vec::new();
    for i in 0..RACERS {
        users.push(create_user(&ledger, &format!("writer{i}")).await);
    }
    let done = Arc::new(AtomicBool::new(false));
    let (start, _) = log::head(&test.db).await.unwrap();
    let reader = {
        let db = test.db.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut conn = db.pool.acquire().await.unwrap();
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let after = seen.last().copied().unwrap_or(start);
                let page = log::read_after(&mut conn, after, PAGE_ROWS).await.unwrap();
                if page.is_empty() && finished {
                    return seen;
                }
                seen.extend(page.iter().map(|e| e.position));
            }
        })
    };
    let writers: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(w, user)| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..ENROLS_PER_WRITER {
                    // Bounded, disjoint periods per user: every enrol succeeds.
                    let start = 1 + (i as i64) * 10;
                    let booking = format!("W{w}-{i}");
                    enrol(&ledger, user, course, &booking, start, start + 5).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let total = (RACERS * ENROLS_PER_WRITER) as i64;
    assert_eq!(seen, (start + 1..=start + total).collect::<Vec<_>>());
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
}

on_both_backends!(
    concurrent_enrolments_with_one_booking_id_give_one_success,
    concurrent_overlapping_enrolments_of_one_user_give_one_success,
    reader_paging_by_position_sees_every_event_once,
);
