//! The reads the API, `history` and the report run are answered from indexes: their plans are
//! checked with EXPLAIN on tables large enough (`ROWS`) for the planner to prefer a full scan
//! where no index fits. On PostgreSQL no big table may be read by a (parallel) `Seq Scan`; on
//! SQLite `EXPLAIN QUERY PLAN` may not `SCAN` one.

use enrol_ledger::projection::queries;
use enrol_ledger::store::{log, Backend, Db};
use sqlx::Row;

use crate::on_both_backends;
use crate::support::*;

/// Rows in each big table: instances, user enrolments, users and events.
const ROWS: i64 = 50_000;
/// Courses the instances are spread over (so one course holds 1 % of them).
const COURSES: i64 = 100;
/// The course and the booking the plans are asked for.
const COURSE: i64 = 1_042;
const BOOKING: &str = "B-4242";

/// Fills the projections, the registries and the log with `ROWS` rows each, then ANALYZE.
async fn big_tables(backend: Backend) -> TestDb {
    let test = TestDb::new(backend).await;
    let series = format!("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ROWS})");
    let statements = [
        format!(
            "INSERT INTO courses (id, fullname, shortname, timecreated, timemodified) \
             {series} SELECT 1000 + n, 'Course ' || n, 'C' || n, 0, 0 FROM g WHERE n <= {COURSES}"
        ),
        format!(
            "INSERT INTO users (id, username, timecreated, timemodified) \
             {series} SELECT 1000 + n, 'user' || n, 0, 0 FROM g"
        ),
        format!(
            "INSERT INTO user_profile_data (userid, shortname, data) \
             {series} SELECT 1000 + n, 'semco_userid', 'S-' || n FROM g"
        ),
        format!(
            "INSERT INTO enrol (id, enrol, status, courseid, sortorder, roleid, customchar1, timecreated, timemodified) \
             {series} SELECT n, 'semco', 0, 1001 + n % {COURSES}, 0, 5, 'B-' || n, 0, 0 FROM g"
        ),
        format!(
            "INSERT INTO user_enrolments \
             (id, status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified) \
             {series} SELECT n, 0, n, 1001 + (n * 7) % {ROWS}, 0, 0, 3, 0, 0 FROM g"
        ),
        format!(
            "INSERT INTO events (position, stream_id, stream_type, stream_key, stream_version, event_type, \
             schema_version, recorded_at, request_id, booking_id, payload, hash) \
             {series} SELECT 1000 + n, 'stream-' || (n / 2), 'enrolment', '' || (n / 2), 1 + n % 2, 'Enrolled', 1, n, 'r', \
             CASE WHEN n % 2 = 0 THEN 'B-' || (n / 2) END, '{{}}', 'h' FROM g"
        ),
    ];
    for sql in statements {
        sqlx::query(&sql).execute(&test.db.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // As autovacuum does after a bulk insert: statistics, and on PostgreSQL the visibility map
    // that lets an index-only scan skip the table.
    let analyze = if backend == Backend::Postgres { "VACUUM ANALYZE" } else { "ANALYZE" };
    sqlx::query(analyze).execute(&test.db.pool).await.unwrap();
    test
}

/// The plan of `sql` with its `$1` replaced by `value` (a literal, as a custom plan sees it).
async fn plan(db: &Db, sql: &str, value: &str) -> Vec<String> {
    let sql = sql.replace("$1", value);
    let rows = match db.backend {
        Backend::Postgres => sqlx::query(&format!("EXPLAIN {sql}")).fetch_all(&db.pool).await,
        Backend::Sqlite => sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&db.pool).await,
    };
    let rows = rows.unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    rows.iter()
        .map(|row| match db.backend {
            Backend::Postgres => row.get::<String, _>(0),
            Backend::Sqlite => row.get::<String, _>(3),
        })
        .collect()
}

/// Asserts that none of `tables` (names or their aliases in the query) is read whole: on
/// PostgreSQL no `Seq Scan` of one and no index scan without an `Index Cond` (a walk of the
/// whole index in its order, e.g. of `events` by position); on SQLite no `SCAN` of one (with
/// or without `USING INDEX`), only `SEARCH`.
fn assert_indexed(backend: Backend, what: &str, plan: &[String], tables: &[&str]) {
    let names_big = |line: &str| {
        tables.iter().any(|t| {
            let on = format!(" on {t}");
            line.contains(&format!("{on} ")) || line.ends_with(&on)
        })
    };
    for (i, line) in plan.iter().enumerate() {
        let whole = match backend {
            Backend::Postgres if !names_big(line) => false,
            Backend::Postgres if line.contains("Seq Scan") => true,
            Backend::Postgres if line.contains("Index Scan") || line.contains("Index Only Scan") => {
                // The node's own detail lines run up to the next node ("->").
                let details = plan[i + 1..].iter().take_while(|l| !l.contains("->"));
                !details.into_iter().any(|l| l.contains("Index Cond:"))
            }
            Backend::Postgres => false,
            Backend::Sqlite => {
                let detail = line.trim();
                tables.iter().any(|t| detail == format!("SCAN {t}") || detail.starts_with(&format!("SCAN {t} ")))
            }
        };
        assert!(!whole, "{what} reads a big table whole on {backend:?}:\n{}", plan.join("\n"));
    }
}

async fn why_5_get_enrolments_uses_its_indexes(backend: Backend) {
    let test = big_tables(backend).await;
    let plan = plan(&test.db, queries::COURSE_ENROLMENTS, &COURSE.to_string()).await;
    assert_indexed(backend, "get_enrolments", &plan, &["user_enrolments", "ue", "enrol", "e"]);
}

async fn why_4_history_booking_uses_its_indexes(backend: Backend) {
    let test = big_tables(backend).await;
    let plan = plan(&test.db, &log::booking_history_sql(), &format!("'{BOOKING}'")).await;
    assert_indexed(backend, "history --booking", &plan, &["events"]);
}

async fn why_5_enrolment_report_uses_its_indexes(backend: Backend) {
    let test = big_tables(backend).await;
    let plan = plan(&test.db, queries::COURSE_REPORT, &COURSE.to_string()).await;
    let big = ["user_enrolments", "ue", "enrol", "e", "users", "u", "user_profile_data", "p"];
    assert_indexed(backend, "semco_enrolment_report", &plan, &big);
}

on_both_backends!(
    why_5_get_enrolments_uses_its_indexes,
    why_4_history_booking_uses_its_indexes,
    why_5_enrolment_report_uses_its_indexes,
);
