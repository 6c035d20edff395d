//! What auditors and operators run against the log: rebuild, verify, history, as-of, export.
//!
//! Each reads the log inside one transaction so it sees a single consistent snapshot even
//! while a server keeps appending.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use sqlx::AnyConnection;

use crate::app::state::LedgerState;
use crate::projection::state::UserEnrolmentRow;
use crate::projection::{schema, tables, ProjectionState, PROJECTION_VERSION};
use crate::store::log::{self, StoredEvent};
use crate::store::{Backend, Db, StoreError};

/// Folds the log (up to `until` position, inclusive) into projection rows.
pub async fn fold(conn: &mut AnyConnection, until: Option<i64>) -> Result<(ProjectionState, i64), StoreError> {
    let mut state = ProjectionState::default();
    let mut count = 0;
    log::replay_decoded(conn, until, |stored, event| {
        state.apply(&stored, &event?, &mut BTreeSet::new());
        count += 1;
        Ok(())
    })
    .await?;
    Ok((state, count))
}

/// Drops every projection row and writes them again from the log, and fills in any missing
/// `stream_subject` row (the history index) from each stream's first event. Returns the events
/// replayed.
pub async fn rebuild(db: &Db) -> Result<i64, StoreError> {
    let mut tx = db.pool.begin().await?;
    block_appends(&mut tx, db.backend).await?;
    let mut state = ProjectionState::default();
    let mut count = 0;
    let mut firsts = Vec::new();
    log::replay_decoded(&mut tx, None, |stored, event| {
        state.apply(&stored, &event?, &mut BTreeSet::new());
        count += 1;
        if let Some((user, course)) = log::stream_subject(&stored).filter(|_| stored.stream_version == 1) {
            // Only what the index needs: the subject, not the payload.
            let payload = json!({ "user_id": user, "course_id": course }).to_string();
            firsts.push(StoredEvent { payload, ..stored });
        }
        Ok(())
    })
    .await?;
    tables::write_all(&mut tx, &state).await?;
    log::record_stream_subjects(&mut tx, &firsts).await?;
    tx.commit().await?;
    refresh_statistics(db).await?;
    Ok(count)
}

/// After a bulk load: fresh planner statistics for the projection tables and, on PostgreSQL,
/// their visibility map, so the reads' index-only plans are chosen at once rather than after
/// autovacuum's next round (tests/it/query_plans.rs). Outside any transaction (VACUUM needs it).
/// SQLite's planner already prefers the indexes without statistics.
async fn refresh_statistics(db: &Db) -> Result<(), StoreError> {
    if db.backend == Backend::Postgres {
        let sql = "VACUUM (ANALYZE) enrol, user_enrolments, course_completions, recompletion_history";
        sqlx::raw_sql(sql).execute(&db.pool).await?;
    }
    Ok(())
}

/// Brings the projection tables to the current definition when it changed. The drop, the
/// create, the rebuild from the log and the version bump commit in one transaction, so a crash
/// at any moment leaves either the old tables with the old version or the new ones, full, with
/// the new version; the next start simply does it again. Returns the events replayed, or `None`
/// when the tables were current.
pub async fn upgrade_projections(db: &Db) -> Result<Option<i64>, StoreError> {
    if schema::is_current(&mut *db.pool.acquire().await?).await? {
        return Ok(None);
    }
    tracing::info!(version = PROJECTION_VERSION, "projection schema out of date; rebuilding from the log");
    let mut tx = db.begin_schema_change().await?;
    block_appends(&mut tx, db.backend).await?;
    // Another process may have upgraded them while this one waited for the lock.
    if schema::is_current(&mut tx).await? {
        return Ok(None);
    }
    schema::recreate(&mut tx, db.backend).await?;
    let (state, count) = fold(&mut tx, None).await?;
    tables::write_all(&mut tx, &state).await?;
    schema::mark_current(&mut tx).await?;
    tx.commit().await?;
    refresh_statistics(db).await?;
    Ok(Some(count))
}

/// Takes the log's write lock for the rest of the transaction, so the fold and the rewrite see
/// the same log.
async fn block_appends(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    let sql = match backend {
        Backend::Postgres => "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE",
        // Any write takes SQLite's single write lock; this one changes nothing.
        Backend::Sqlite => "DELETE FROM projection_meta WHERE name IS NULL",
    };
    sqlx::query(sql).execute(conn).await?;
    Ok(())
}

/// The result of `verify`: how much was checked and every problem found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub events: i64,
    pub problems: Vec<String>,
    /// Every event's hash matches its content and its predecessor's hash.
    pub chain_intact: bool,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Recomputes the hash chain, checks positions and stream versions, checks that every event
/// can follow its stream's state (the checked fold `serve` loads with), and compares every
/// projection row with a fresh fold of the log. An unreadable or impossible event is a problem
/// like any other: the checks go on to the end of the log.
///
/// Memory is bounded by the larger of two passes over one snapshot of the log, never their sum
/// (issue 7: one pass holding both folds and a map of every stream's version peaked at 510 MiB
/// at 1M events): the first checks the chain, positions and transitions with the writer's fold
/// (the size of the writer's state) and drops it; the stream versions are checked by the
/// database over its `(stream_id, stream_version)` index; the second folds the projections
/// (the size of the projection tables) and compares them table by table in keyset pages.
pub async fn verify(db: &Db) -> Result<VerifyReport, StoreError> {
    verify_feeding(db, |_, _| {}).await
}

/// `verify` that also hands every event's position and chain hash to `leaf`, in position order,
/// during its first pass: the comparison with the signed checkpoints
/// (`proof::check::LogCheck`) rides on that pass instead of reading the log once more.
pub async fn verify_feeding(db: &Db, mut leaf: impl FnMut(i64, &str)) -> Result<VerifyReport, StoreError> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let mut report = VerifyReport { chain_intact: true, ..VerifyReport::default() };
    let mut ledger = LedgerState::default();
    let mut prev_position = 0;
    let problems = &mut report.problems;
    let chain_intact = &mut report.chain_intact;
    let mut count = 0;
    log::replay_chained(&mut tx, |stored, event, chained| {
        count += 1;
        *chain_intact &= check_event(&stored, prev_position, &chained, problems);
        leaf(stored.position, &stored.hash);
        match event {
            Ok(event) => {
                if let Err(impossible) = ledger.try_apply(&stored, &event) {
                    problems.push(stored.unusable(impossible.into()).to_string());
                }
            }
            Err(error) => problems.push(error.to_string()),
        }
        prev_position = stored.position;
        Ok(())
    })
    .await?;
    report.events = count;
    drop(ledger);
    report.problems.extend(stream_version_problems(&mut tx).await?);
    let mut state = ProjectionState::default();
    log::replay_decoded(&mut tx, Some(prev_position), |stored, event| {
        // An undecodable event was reported by the first pass.
        if let Ok(event) = event {
            state.apply(&stored, &event, &mut BTreeSet::new());
        }
        Ok(())
    })
    .await?;
    for table in tables::ALL {
        report.problems.extend(tables::compare_table(&mut tx, table, &state).await?);
    }
    tx.commit().await?;
    Ok(report)
}

/// Checks one event's position and hash (`chained`: its content hashed over its predecessor's
/// hash); returns whether its hash is intact.
fn check_event(stored: &StoredEvent, prev_position: i64, chained: &str, problems: &mut Vec<String>) -> bool {
    let p = stored.position;
    if p != prev_position + 1 {
        problems
            .push(format!("position {p} follows position {prev_position}: {} event(s) missing", p - prev_position - 1));
    }
    let hash_intact = chained == stored.hash;
    if !hash_intact {
        problems.push(format!(
            "position {p}: hash does not match its content and its predecessor (altered, removed or reordered event)"
        ));
    }
    hash_intact
}

/// Every stream's versions must run 1, 2, 3, ... in the order of their positions. The database
/// walks its `(stream_id, stream_version)` index (covering: the position is the row's key on
/// SQLite) and names each event that does not follow its predecessor in the stream: a version
/// skipped or not starting at 1, or a version recorded before the one it follows.
async fn stream_version_problems(conn: &mut AnyConnection) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT s.position, e.stream_key, s.stream_version, s.prev_version, s.prev_position FROM \
           (SELECT position, stream_version, \
                   LAG(stream_version, 1, 0) OVER w AS prev_version, \
                   LAG(position, 1, 0) OVER w AS prev_position \
            FROM events WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) AS s \
         JOIN events e ON e.position = s.position \
         WHERE s.stream_version <> s.prev_version + 1 OR s.position < s.prev_position \
         ORDER BY s.position",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, key, version, prev_version, prev_position)| {
            if version == prev_version + 1 {
                format!(
                    "position {p}: stream {key} version {version} is recorded before version {prev_version} \
                     (position {prev_position})"
                )
            } else {
                format!("position {p}: stream {key} version {version} where {} was expected", prev_version + 1)
            }
        })
        .collect())
}

/// One line of `history`: the event with who did it and why.
pub fn describe(stored: &StoredEvent) -> serde_json::Value {
    let event = stored.event().ok();
    json!({
        "position": stored.position,
        "recorded_at": rfc3339(stored.recorded_at),
        "stream": format!("{}/{}", stored.stream_type, stored.stream_key),
        "stream_version": stored.stream_version,
        "event_type": stored.event_type,
        "booking_id": stored.booking_id,
        "actor_user_id": stored.actor_user_id,
        "actor_token_id": stored.actor_token_id,
        "request_id": stored.request_id,
        "reason": event.as_ref().and_then(|e| e.reason()),
        "payload": serde_json::from_str::<serde_json::Value>(&stored.payload).unwrap_or(serde_json::Value::Null),
    })
}

/// The export form of an event: every column, the payload as JSON (what `export` prints per
/// line, `/api/v1/events` pages and a proof carries).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ExportedEvent {
    /// The event's place in the log: 1, 2, 3, ... without gaps, in commit order.
    pub position: i64,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_key: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i64,
    /// RFC 3339 with microseconds (UTC).
    pub recorded_at: String,
    /// Microseconds since the epoch.
    pub recorded_at_us: i64,
    pub actor_user_id: Option<i64>,
    pub actor_token_id: Option<i64>,
    pub request_id: String,
    pub booking_id: Option<String>,
    /// The stored payload (ids only, no personal data; docs/EVENTS.md); `null` if unreadable.
    pub payload: serde_json::Value,
    /// The chain hash (hex SHA-256 over the previous hash and this row).
    pub hash: String,
}

impl ExportedEvent {
    pub fn of(stored: &StoredEvent) -> Self {
        Self {
            position: stored.position,
            stream_id: stored.stream_id.clone(),
            stream_type: stored.stream_type.clone(),
            stream_key: stored.stream_key.clone(),
            stream_version: stored.stream_version,
            event_type: stored.event_type.clone(),
            schema_version: stored.schema_version,
            recorded_at: rfc3339(stored.recorded_at),
            recorded_at_us: stored.recorded_at,
            actor_user_id: stored.actor_user_id,
            actor_token_id: stored.actor_token_id,
            request_id: stored.request_id.clone(),
            booking_id: stored.booking_id.clone(),
            payload: serde_json::from_str::<serde_json::Value>(&stored.payload).unwrap_or(serde_json::Value::Null),
            hash: stored.hash.clone(),
        }
    }
}

/// `ExportedEvent::of` as a JSON value.
pub fn export_line(stored: &StoredEvent) -> serde_json::Value {
    serde_json::to_value(ExportedEvent::of(stored)).expect("an exported event serialises")
}

pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// A user enrolment as it was at some past moment, with its instance's course and booking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnrolmentAsOf {
    pub enrolid: i64,
    pub userid: i64,
    pub courseid: i64,
    pub semcobookingid: Option<String>,
    pub timestart: i64,
    pub timeend: i64,
    pub suspended: bool,
}

/// The SEMCO user enrolments that existed after every event recorded at or before `time_micros`.
pub async fn as_of_time(db: &Db, time_micros: i64, course: Option<i64>) -> Result<Vec<EnrolmentAsOf>, StoreError> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM events WHERE recorded_at <= $1")
        .bind(time_micros)
        .fetch_one(&mut *tx)
        .await?;
    let enrolments = as_of_position(&mut tx, last.unwrap_or(0), course).await?;
    tx.commit().await?;
    Ok(enrolments)
}

/// The SEMCO user enrolments after the event at `position` (0 = before the first event). For
/// one course only that course's enrolment streams are read (`log::read_course_until`): the
/// `enrol` and `user_enrolments` rows of an instance follow from its own stream alone, so the
/// answer equals that of a fold of the whole log.
pub async fn as_of_position(
    conn: &mut AnyConnection,
    position: i64,
    course: Option<i64>,
) -> Result<Vec<EnrolmentAsOf>, StoreError> {
    let state = match course {
        Some(course_id) => {
            let mut state = ProjectionState::default();
            let events = log::read_course_until(conn, course_id, position).await?;
            for (stored, event) in log::decode_all(events).await {
                state.apply(&stored, &event?, &mut BTreeSet::new());
            }
            state
        }
        None => fold(conn, Some(position)).await?.0,
    };
    Ok(enrolments(&state, course))
}

pub fn enrolments(state: &ProjectionState, course: Option<i64>) -> Vec<EnrolmentAsOf> {
    let by_instance: BTreeMap<i64, (i64, Option<String>)> =
        state.enrol.values().map(|e| (e.id, (e.courseid, e.customchar1.clone()))).collect();
    state
        .user_enrolments
        .values()
        .filter_map(|ue: &UserEnrolmentRow| {
            let (courseid, booking) = by_instance.get(&ue.enrolid)?.clone();
            (course.is_none() || course == Some(courseid)).then_some(EnrolmentAsOf {
                enrolid: ue.id,
                userid: ue.userid,
                courseid,
                semcobookingid: booking,
                timestart: ue.timestart,
                timeend: ue.timeend,
                suspended: ue.status == 1,
            })
        })
        .collect()
}
