//! Issue 7's reads: as-of for one course reads only that course's events (and answers as a
//! fold of the whole log does), the migration that indexes them backfills an existing log, and
//! verify's streamed, paged comparison finds every kind of mismatch in tables larger than a page.

use enrol_ledger::app::{audit, Request};
use enrol_ledger::projection::tables::COMPARE_PAGE_ROWS;
use enrol_ledger::store::{log, Backend, Db};

use crate::on_both_backends;
use crate::support::*;

/// Switches the log's append-only triggers off, as only someone with owner rights could.
async fn bypass_triggers(db: &Db) {
    let sql = match db.backend {
        Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER USER",
        Backend::Sqlite => "DROP TRIGGER events_refuse_update; DROP TRIGGER events_refuse_delete;",
    };
    sqlx::raw_sql(sql).execute(&db.pool).await.expect("bypass triggers");
}

/// Two courses with a mixed history: enrolments, edits, a booking change, unenrolments, a
/// deleted user (orphaned instances) and an orphan cleanup. Returns the two course ids.
async fn two_courses(test: &TestDb) -> (i64, i64) {
    let ledger = test.ledger().await;
    let a = create_course(&ledger, "A", true).await;
    let b = create_course(&ledger, "B", true).await;
    let anna = create_user(&ledger, "anna").await;
    let ben = create_user(&ledger, "ben").await;
    let cleo = create_user(&ledger, "cleo").await;
    let a1 = enrol(&ledger, anna, a, "A-1", 100, 200).await;
    let b1 = enrol(&ledger, anna, b, "B-1", 100, 0).await;
    let a2 = enrol(&ledger, ben, a, "A-2", 300, 400).await;
    enrol(&ledger, cleo, b, "B-2", 0, 0).await;
    let edit = |enrolid, booking_id: Option<&str>, timeend| Request::Edit {
        enrolid,
        booking_id: booking_id.map(str::to_owned),
        timestart: None,
        timeend,
        suspend: Some(true),
    };
    submit(&ledger, edit(a1, None, Some(250))).await.unwrap();
    submit(&ledger, edit(b1, Some("B-1b"), None)).await.unwrap();
    submit(&ledger, Request::Unenrol { enrolid: a2 }).await.unwrap();
    enrol(&ledger, ben, a, "A-3", 500, 0).await;
    submit(&ledger, Request::DeleteUsers(vec![cleo])).await.unwrap();
    submit(&ledger, Request::CleanupOrphans).await.unwrap();
    enrol(&ledger, ben, b, "B-3", 0, 0).await;
    (a, b)
}

/// What as-of answered before issue 7: a fold of the whole log up to `position`, filtered.
async fn whole_fold(db: &Db, position: i64, course: i64) -> Vec<audit::EnrolmentAsOf> {
    let mut conn = db.pool.acquire().await.unwrap();
    let (state, _) = audit::fold(&mut conn, Some(position)).await.unwrap();
    audit::enrolments(&state, Some(course))
}

async fn assert_as_of_matches_whole_fold(db: &Db, courses: &[i64]) {
    let (head, _) = log::head(db).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    for position in 0..=head {
        for &course in courses {
            let fast = audit::as_of_position(&mut conn, position, Some(course)).await.unwrap();
            assert_eq!(fast, whole_fold(db, position, course).await, "course {course} as of position {position}");
        }
    }
}

async fn as_of_course_answers_as_a_fold_of_the_whole_log(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (a, b) = two_courses(&test).await;
    assert_as_of_matches_whole_fold(&test.db, &[a, b, 999]).await;
    let now = audit::as_of_time(&test.db, i64::MAX / 2, Some(a)).await.unwrap();
    assert_eq!(now.len(), 2, "{now:?}");
}

/// Regression (issue 7, item 3): as-of for one course folded the whole log. Proven by an event
/// of another course that cannot be read: a whole fold stops there, a read of the course's own
/// events does not see it.
async fn why_3_as_of_course_folds_the_whole_log(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (a, b) = two_courses(&test).await;
    let before = audit::as_of_time(&test.db, i64::MAX / 2, Some(a)).await.unwrap();
    let b_event: i64 = sqlx::query_scalar(
        "SELECT MIN(position) FROM events WHERE event_type = 'Enrolled' AND stream_id IN \
         (SELECT stream_id FROM enrolment_course WHERE course_id = $1)",
    )
    .bind(b)
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    bypass_triggers(&test.db).await;
    sqlx::query("UPDATE events SET payload = 'unreadable' WHERE position = $1")
        .bind(b_event)
        .execute(&test.db.pool)
        .await
        .unwrap();
    let after = audit::as_of_time(&test.db, i64::MAX / 2, Some(a)).await.expect("course A's events are all readable");
    assert_eq!(after, before);
    // Course B's own history is unreadable, and says so.
    let error = audit::as_of_time(&test.db, i64::MAX / 2, Some(b)).await.expect_err("course B's event is unreadable");
    assert!(error.to_string().contains(&format!("position {b_event}")), "{error}");
}

/// A log written before migration 5 gets its `enrolment_course` rows from the migration.
async fn migration_5_backfills_enrolment_course(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (a, b) = two_courses(&test).await;
    let count = |db: &Db| {
        let pool = db.pool.clone();
        async move { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM enrolment_course").fetch_one(&pool).await.unwrap() }
    };
    let written = count(&test.db).await;
    let opened: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT stream_id) FROM events \
         WHERE event_type IN ('Enrolled', 'ManualInstanceCreated', 'ManualEnrolled')",
    )
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(written, opened, "the writer records each enrolment stream's course");
    sqlx::raw_sql("DROP TABLE enrolment_course; DELETE FROM schema_migrations WHERE version = 5;")
        .execute(&test.db.pool)
        .await
        .unwrap();
    test.db.migrate().await.unwrap();
    // Migration 5 backfills SEMCO streams (a log that old has no manual ones).
    let semco: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'Enrolled'")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(count(&test.db).await, semco);
    assert_as_of_matches_whole_fold(&test.db, &[a, b]).await;
}

/// Verify compares each table page by page in key order: rows the log does not justify (more
/// than a page of them, before, between and after the real ones), a changed row, a removed row
/// and a changed setting (a text key) are each reported, and nothing else.
async fn verify_pages_through_tables_larger_than_a_page(backend: Backend) {
    let test = TestDb::new(backend).await;
    two_courses(&test).await;
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
    let (min, max): (i64, i64) = {
        let row: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(id), MAX(id) FROM user_enrolments").fetch_one(&test.db.pool).await.unwrap();
        (row.0.unwrap(), row.1.unwrap())
    };
    let bogus = COMPARE_PAGE_ROWS + 5_000;
    let insert = format!(
        "INSERT INTO user_enrolments \
         (id, status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified) \
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {bogus}) \
         SELECT {max} + n, 0, 1, 1, 0, 0, 0, 0, 0 FROM g"
    );
    sqlx::query(&insert).execute(&test.db.pool).await.unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO user_enrolments VALUES (-7, 0, 1, 1, 0, 0, 0, 0, 0); \
         UPDATE user_enrolments SET timeend = 12345 WHERE id = {min}; \
         DELETE FROM user_enrolments WHERE id = {max}; \
         UPDATE ledger_config SET value = 'changed' WHERE name = 'role';"
    ))
    .execute(&test.db.pool)
    .await
    .unwrap();
    let report = audit::verify(&test.db).await.unwrap();
    let count = |needle: &str| report.problems.iter().filter(|p| p.contains(needle)).count() as i64;
    assert_eq!(
        count("projection user_enrolments: row not justified by the log"),
        bogus + 2,
        "{:?}",
        &report.problems[..3]
    );
    assert_eq!(count("projection user_enrolments: row missing or different"), 2);
    assert_eq!(count(&format!("the log says [Int(Some({min})), ")), 1);
    assert_eq!(count(&format!("the log says [Int(Some({max})), ")), 1);
    assert_eq!(count("projection ledger_config: row missing or different"), 1);
    assert_eq!(
        count(
            "projection ledger_config: row not justified by the log: [Text(Some(\"role\")), Text(Some(\"changed\"))]"
        ),
        1
    );
    assert_eq!(report.problems.len() as i64, bogus + 6, "nothing else");
    assert!(report.chain_intact);
}

on_both_backends!(
    as_of_course_answers_as_a_fold_of_the_whole_log,
    why_3_as_of_course_folds_the_whole_log,
    migration_5_backfills_enrolment_course,
    verify_pages_through_tables_larger_than_a_page,
);
