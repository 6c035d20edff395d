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
            "INSERT INTO stream_subject (stream_id, user_id, course_id) \
             {series} SELECT 'stream-' || n, 1001 + (n * 7) % {ROWS}, 1001 + n % {COURSES} FROM g"
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

// Issue 8 item 3: the history of a user or a course reads its streams by `stream_subject`
// and their events by the stream key, never the whole log.
async fn history_of_user_and_course_use_their_indexes(backend: Backend) {
    let test = big_tables(backend).await;
    for (column, id, what) in
        [(log::SubjectColumn::User, 1007, "history --user"), (log::SubjectColumn::Course, COURSE, "history --course")]
    {
        let plan = plan(&test.db, &log::subject_history_sql(column), &id.to_string()).await;
        assert_indexed(backend, what, &plan, &["events", "stream_subject"]);
    }
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
    history_of_user_and_course_use_their_indexes,
    why_5_enrolment_report_uses_its_indexes,
);

/// Asserts that a report page is read in its sort's order from an index and stops at its
/// `LIMIT`: no full sort of the rows (PostgreSQL `Sort`, SQLite `USE TEMP B-TREE FOR ORDER BY`;
/// an incremental sort of ties is fine) and no big table read whole except the one the seek
/// walks (`driving`, by its index in the sort's order).
fn assert_seeks(backend: Backend, what: &str, plan: &[String], driving: &str) {
    let text = plan.join("\n");
    let big = ["user_enrolments", "ue", "enrol", "e", "users", "u", "psu", "pco", "pbd", "ppb", "ptn", "cc"];
    let others: Vec<&str> = big.iter().copied().filter(|t| *t != driving).collect();
    match backend {
        Backend::Postgres => {
            let full_sort = plan.iter().any(|l| {
                let l = l.trim_start().trim_start_matches("->").trim_start();
                l.starts_with("Sort  (")
            });
            assert!(!full_sort, "{what} sorts every row on {backend:?}:\n{text}");
            assert!(plan.iter().any(|l| l.contains("Limit")), "{what}: no Limit:\n{text}");
            for line in plan {
                let seq = line.contains("Seq Scan") && others.iter().any(|t| line.ends_with(&format!(" {t}")));
                assert!(!seq, "{what} reads a big table whole on {backend:?}:\n{text}");
            }
        }
        Backend::Sqlite => {
            assert!(!text.contains("USE TEMP B-TREE FOR ORDER BY"), "{what} sorts every row on {backend:?}:\n{text}");
            for line in plan {
                let detail = line.trim();
                let scan =
                    others.iter().any(|t| detail == format!("SCAN {t}") || detail.starts_with(&format!("SCAN {t} ")));
                assert!(!scan, "{what} reads a big table whole on {backend:?}:\n{text}");
            }
        }
    }
}

// Issue 11 item 2: a page of the report, first or later, of the default sort and of the
// sorts the indexes serve, is a seek in the sort's order that stops after one page.
async fn report_pages_seek_by_index(backend: Backend) {
    use enrol_ledger::app::report::{self, Column, Cursor, Direction, Filters, SortValue};
    let test = big_tables(backend).await;
    let cursor = |column: Column, direction: Direction, key: SortValue| Cursor {
        column: column.as_str().into(),
        direction: direction.as_str().into(),
        key,
        enrolid: 25_000,
        before: false,
    };
    let cases = [
        (Column::EnrolId, Direction::Asc, None, "ue"),
        (Column::EnrolId, Direction::Desc, Some(SortValue::Int(25_000)), "ue"),
        (Column::EnrolStart, Direction::Asc, Some(SortValue::Int(0)), "ue"),
        (Column::EnrolEnd, Direction::Desc, None, "ue"),
        (Column::Lastname, Direction::Asc, Some(SortValue::Text("M".into())), "u"),
        (Column::Email, Direction::Asc, None, "u"),
    ];
    for (column, direction, key, driving) in cases {
        // SQLite's planner drives a name sort from the instances and sorts the joined rows
        // (keeping one page of them, docs/ARCHITECTURE.md); PostgreSQL walks the users' index.
        if backend == Backend::Sqlite && driving == "u" {
            continue;
        }
        let cursor = key.map(|k| cursor(column, direction, k));
        let sql = report::present_sql_literal(backend, &Filters::default(), (column, direction), cursor.as_ref(), 51);
        let plan = plan(&test.db, &sql, "").await;
        assert_seeks(backend, &format!("report by {column:?} {direction:?}"), &plan, driving);
    }
    // One course's page reads that course's instances by index.
    let filters = Filters { course: Some(COURSE), ..Filters::default() };
    let sql = report::present_sql_literal(backend, &filters, (Column::EnrolId, Direction::Asc), None, 51);
    let plan = plan(&test.db, &sql, "").await;
    assert_indexed(backend, "report of one course", &plan, &["enrol", "e", "users", "u", "psu"]);
}

on_both_backends!(report_pages_seek_by_index);
