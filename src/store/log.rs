//! The event log: stored envelopes, the integrity hash chain, batch append and ordered reads.
//!
//! Positions and hashes are assigned by the single writer (`app::writer`) before the batch is
//! written, so an append is one multi-row INSERT and never touches a shared "head" row.

use crate::domain::LedgerEvent;
use esrs::event::Upcaster;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::{Backend, Db, EventProblem, StoreError};

/// The `prev` hash of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Rows per multi-row INSERT: 14 columns each stays far below both backends' parameter limits.
pub const INSERT_ROWS_MAX: usize = 500;
/// Rows fetched per round trip when replaying the whole log.
pub const REPLAY_PAGE_ROWS: i64 = 4_000;

/// Which stream an event belongs to: its aggregate type and readable key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    pub stream_type: &'static str,
    pub key: String,
}

impl StreamRef {
    pub fn new(stream_type: &'static str, key: impl Into<String>) -> Self {
        Self { stream_type, key: key.into() }
    }

    /// The stream's UUID (v5 of `type/key`), the id esrs knows streams by.
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("enrol-ledger/{}/{}", self.stream_type, self.key).as_bytes(),
        )
    }
}

/// Who caused an event and in which request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
    pub request_id: String,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: i64,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_key: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i64,
    pub recorded_at: i64,
    pub actor_user_id: Option<i64>,
    pub actor_token_id: Option<i64>,
    pub request_id: String,
    pub booking_id: Option<String>,
    pub payload: String,
    pub hash: String,
}

impl StoredEvent {
    /// The domain event: decoded straight into its family when it has the current schema
    /// (`LedgerEvent::decode_named`), upcast from its stored schema version otherwise.
    pub fn event(&self) -> Result<LedgerEvent, StoreError> {
        let corrupt = |reason: String| self.unusable(EventProblem::Unreadable(reason));
        let event = if self.schema_version == i64::from(crate::domain::event::SCHEMA_VERSION) {
            LedgerEvent::decode_named(&self.event_type, &self.payload).map_err(|e| corrupt(e.to_string()))?
        } else {
            let value: serde_json::Value = serde_json::from_str(&self.payload).map_err(|e| corrupt(e.to_string()))?;
            LedgerEvent::upcast(value, Some(self.schema_version as i32)).map_err(|e| corrupt(e.to_string()))?
        };
        if event.event_type() != self.event_type {
            return Err(corrupt(format!("payload is a {} but the row says {}", event.event_type(), self.event_type)));
        }
        Ok(event)
    }

    /// The error for this event when it cannot be folded: its position, type and why.
    pub fn unusable(&self, problem: EventProblem) -> StoreError {
        StoreError::UnusableEvent { position: self.position, event_type: self.event_type.clone(), problem }
    }

    /// SHA-256 over the previous hash and every column but `hash`, each length-prefixed so no
    /// two different rows can produce the same input.
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        field(prev_hash.as_bytes());
        field(self.position.to_string().as_bytes());
        field(self.stream_id.as_bytes());
        field(self.stream_type.as_bytes());
        field(self.stream_key.as_bytes());
        field(self.stream_version.to_string().as_bytes());
        field(self.event_type.as_bytes());
        field(self.schema_version.to_string().as_bytes());
        field(self.recorded_at.to_string().as_bytes());
        field(opt(self.actor_user_id).as_bytes());
        field(opt(self.actor_token_id).as_bytes());
        field(self.request_id.as_bytes());
        field(self.booking_id.as_deref().map(|b| format!("+{b}")).unwrap_or_default().as_bytes());
        field(self.payload.as_bytes());
        hex::encode(hasher.finalize())
    }
}

const COLUMNS: &str = "position, stream_id, stream_type, stream_key, stream_version, event_type, schema_version, \
     recorded_at, actor_user_id, actor_token_id, request_id, booking_id, payload, hash";

/// Appends events in one or a few multi-row INSERTs inside the caller's transaction.
pub async fn append(conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<(), StoreError> {
    for chunk in events.chunks(INSERT_ROWS_MAX) {
        let mut sql = format!("INSERT INTO events ({COLUMNS}) VALUES ");
        push_placeholders_for(&mut sql, Backend::of(conn), chunk.len(), 14);
        let mut query = sqlx::query::<Any>(&sql);
        for e in chunk {
            query = query
                .bind(e.position)
                .bind(e.stream_id.clone())
                .bind(e.stream_type.clone())
                .bind(e.stream_key.clone())
                .bind(e.stream_version)
                .bind(e.event_type.clone())
                .bind(e.schema_version as i32)
                .bind(e.recorded_at)
                .bind(e.actor_user_id)
                .bind(e.actor_token_id)
                .bind(e.request_id.clone())
                .bind(e.booking_id.clone())
                .bind(e.payload.clone())
                .bind(e.hash.clone());
        }
        query.execute(&mut *conn).await?;
    }
    record_enrolment_courses(conn, events).await?;
    record_stream_subjects(conn, events).await
}

/// An event that opens an enrolment stream: `Enrolled`, or `EnrolmentReinstated` (same fields).
fn opens_enrolment(event: &StoredEvent) -> bool {
    event.stream_type == "enrolment" && matches!(event.event_type.as_str(), "Enrolled" | "EnrolmentReinstated")
}

/// An event that opens a stream `enrolment_course` indexes by course: a SEMCO enrolment
/// stream, a course's manual instance, or a manual enrolment stream.
fn opens_course_stream(event: &StoredEvent) -> bool {
    opens_enrolment(event)
        || (event.event_type == "ManualInstanceCreated" && event.stream_type == "manual_instance")
        || (event.event_type == "ManualEnrolled" && event.stream_type == "manual")
}

/// The user field of a token event's payload.
#[derive(serde::Deserialize)]
struct UserOf {
    user_id: i64,
}

/// The user and course fields of an `Enrolled` payload that `stream_subject` needs.
#[derive(serde::Deserialize)]
struct SubjectOf {
    user_id: i64,
    course_id: i64,
}

/// The user and course a stream is about, from its first event: an enrolment stream's
/// `Enrolled` event, a completion stream's `user/course` key, a user's or a course's key.
pub fn stream_subject(event: &StoredEvent) -> Option<(Option<i64>, Option<i64>)> {
    match event.stream_type.as_str() {
        "enrolment" if opens_enrolment(event) => {
            let of = serde_json::from_str::<SubjectOf>(&event.payload).ok()?;
            Some((Some(of.user_id), Some(of.course_id)))
        }
        "manual" if event.event_type == "ManualEnrolled" => {
            let of = serde_json::from_str::<SubjectOf>(&event.payload).ok()?;
            Some((Some(of.user_id), Some(of.course_id)))
        }
        "manual_instance" => Some((None, Some(serde_json::from_str::<CourseOf>(&event.payload).ok()?.course_id))),
        "criteria" => Some((None, Some(event.stream_key.parse().ok()?))),
        "completion" => {
            let (user, course) = event.stream_key.split_once('/')?;
            Some((Some(user.parse().ok()?), Some(course.parse().ok()?)))
        }
        "user" => Some((Some(event.stream_key.parse().ok()?), None)),
        // A token's events concern its user (a user's export lists them).
        "token" => Some((Some(serde_json::from_str::<UserOf>(&event.payload).ok()?.user_id), None)),
        "course" => Some((None, Some(event.stream_key.parse().ok()?))),
        _ => None,
    }
}

/// Records the subject of every stream that `events` open (their first event), in the
/// append's transaction, so the history of a user or a course reads only its streams.
pub async fn record_stream_subjects(conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<(), StoreError> {
    let opened = stream_subject_rows(events);
    let backend = Backend::of(conn);
    for chunk in opened.chunks(INSERT_ROWS_MAX) {
        let mut sql = "INSERT INTO stream_subject (stream_id, user_id, course_id) VALUES ".to_owned();
        push_placeholders_for(&mut sql, backend, chunk.len(), 3);
        sql.push_str(" ON CONFLICT (stream_id) DO NOTHING");
        let mut query = sqlx::query::<Any>(&sql);
        for (stream_id, user, course) in chunk {
            query = query.bind((*stream_id).to_owned()).bind(*user).bind(*course);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Every event of the streams about one user (`user`) or one course (`course`), in order:
/// two indexed reads, the streams by `stream_subject` and their events by the
/// `(stream_id, stream_version)` key.
pub async fn read_subject(db: &Db, column: SubjectColumn, id: i64) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = subject_history_sql(column);
    fetch(&mut *db.pool.acquire().await?, &sql, vec![Bind::Int(id)]).await
}

/// Which subject a history is read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectColumn {
    User,
    Course,
}

/// The query of `read_subject` (`$1` is the user or course id).
pub fn subject_history_sql(column: SubjectColumn) -> String {
    let column = match column {
        SubjectColumn::User => "user_id",
        SubjectColumn::Course => "course_id",
    };
    format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id IN \
           (SELECT stream_id FROM stream_subject WHERE {column} = $1) \
         ORDER BY position"
    )
}

/// The one field of an `Enrolled` payload that `enrolment_course` needs.
#[derive(serde::Deserialize)]
struct CourseOf {
    course_id: i64,
}

/// Records the course of every enrolment stream that `events` open (its `Enrolled` event), in
/// the append's transaction, so an as-of read of one course finds its streams by index. The
/// log itself (and so its hash chain) is unchanged.
async fn record_enrolment_courses(conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<(), StoreError> {
    let opened = enrolment_course_rows(events);
    let backend = Backend::of(conn);
    for chunk in opened.chunks(INSERT_ROWS_MAX) {
        let mut sql = "INSERT INTO enrolment_course (stream_id, course_id) VALUES ".to_owned();
        push_placeholders_for(&mut sql, backend, chunk.len(), 2);
        sql.push_str(" ON CONFLICT (stream_id) DO NOTHING");
        let mut query = sqlx::query::<Any>(&sql);
        for (stream_id, course_id) in chunk {
            query = query.bind((*stream_id).to_owned()).bind(*course_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The `stream_subject` rows of the streams that `events` open: (stream, user, course).
fn stream_subject_rows(events: &[StoredEvent]) -> Vec<(&str, Option<i64>, Option<i64>)> {
    events
        .iter()
        .filter(|e| e.stream_version == 1)
        .filter_map(|e| stream_subject(e).map(|(user, course)| (e.stream_id.as_str(), user, course)))
        .collect()
}

/// The `enrolment_course` rows of the streams that `events` open: (stream, course).
fn enrolment_course_rows(events: &[StoredEvent]) -> Vec<(&str, i64)> {
    events
        .iter()
        .filter(|e| opens_course_stream(e))
        .filter_map(|e| Some((e.stream_id.as_str(), serde_json::from_str::<CourseOf>(&e.payload).ok()?.course_id)))
        .collect()
}

/// One PostgreSQL statement made of data-modifying `WITH` parts, each fed by one JSON text
/// parameter that the server expands with `json_populate_recordset`: a batch's events, the
/// index rows they open and its projection writes in one round trip, with an SQL text that
/// does not depend on the number of rows (so the prepared statement is reused).
///
/// The parts run on one snapshot in an unspecified order, so a caller puts at most one kind of
/// write per table into one statement (`projection::tables::combined_writes`).
#[derive(Debug, Default)]
pub struct Combined {
    parts: Vec<String>,
    params: Vec<String>,
}

/// The events part's name: the statement's result reads it back.
const COMBINED_EVENTS: &str = "appended";

impl Combined {
    /// Adds the part `sql`, where `{json}` stands for its JSON array `rows`.
    pub fn part(&mut self, sql: &str, rows: String) {
        self.params.push(rows);
        let param = format!("${}::json", self.params.len());
        let name = if self.parts.is_empty() { COMBINED_EVENTS.to_owned() } else { format!("w{}", self.parts.len()) };
        self.parts.push(format!("{name} AS ({})", sql.replace("{json}", &param)));
    }

    /// The events (the first part, returning what it wrote) and the `enrolment_course` and
    /// `stream_subject` rows of the streams they open.
    pub fn events(events: &[StoredEvent]) -> Self {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            position: i64,
            stream_id: &'a str,
            stream_type: &'a str,
            stream_key: &'a str,
            stream_version: i64,
            event_type: &'a str,
            schema_version: i64,
            recorded_at: i64,
            actor_user_id: Option<i64>,
            actor_token_id: Option<i64>,
            request_id: &'a str,
            booking_id: Option<&'a str>,
            payload: &'a str,
            hash: &'a str,
        }
        let rows: Vec<Row<'_>> = events
            .iter()
            .map(|e| Row {
                position: e.position,
                stream_id: &e.stream_id,
                stream_type: &e.stream_type,
                stream_key: &e.stream_key,
                stream_version: e.stream_version,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                recorded_at: e.recorded_at,
                actor_user_id: e.actor_user_id,
                actor_token_id: e.actor_token_id,
                request_id: &e.request_id,
                booking_id: e.booking_id.as_deref(),
                payload: &e.payload,
                hash: &e.hash,
            })
            .collect();
        let mut combined = Self::default();
        combined.part(
            &format!(
                "INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM json_populate_recordset(NULL::events, {{json}}) \
                 RETURNING position, hash"
            ),
            json_text(&rows),
        );
        let courses: Vec<serde_json::Value> = enrolment_course_rows(events)
            .into_iter()
            .map(|(stream_id, course_id)| serde_json::json!({ "stream_id": stream_id, "course_id": course_id }))
            .collect();
        if !courses.is_empty() {
            combined.part(
                "INSERT INTO enrolment_course (stream_id, course_id) SELECT stream_id, course_id \
                 FROM json_populate_recordset(NULL::enrolment_course, {json}) ON CONFLICT (stream_id) DO NOTHING",
                json_text(&courses),
            );
        }
        let subjects: Vec<serde_json::Value> = stream_subject_rows(events)
            .into_iter()
            .map(|(stream_id, user_id, course_id)| {
                serde_json::json!({ "stream_id": stream_id, "user_id": user_id, "course_id": course_id })
            })
            .collect();
        if !subjects.is_empty() {
            combined.part(
                "INSERT INTO stream_subject (stream_id, user_id, course_id) SELECT stream_id, user_id, course_id \
                 FROM json_populate_recordset(NULL::stream_subject, {json}) ON CONFLICT (stream_id) DO NOTHING",
                json_text(&subjects),
            );
        }
        combined
    }

    /// The statement's text. Its result is the number of events written; when that number or
    /// the last event's hash is not the batch's (`$n+1`, `$n+2`), the result is an invalid
    /// cast, so the statement fails as a whole and nothing of it is kept. The failing
    /// expression depends on the rows, so the planner cannot fold it ahead of time.
    pub fn sql(&self) -> String {
        let n = self.params.len();
        format!(
            "WITH {parts} SELECT CASE WHEN COUNT(*) = ${count} \
               AND (SELECT hash FROM {COMBINED_EVENTS} ORDER BY position DESC LIMIT 1) = ${hash} \
             THEN COUNT(*) \
             ELSE CAST('the append wrote ' || COUNT(*) || ' events, not the batch' AS BIGINT) END \
             FROM {COMBINED_EVENTS}",
            parts = self.parts.join(", "),
            count = n + 1,
            hash = n + 2,
        )
    }

    /// Runs the statement on its own (one implicit transaction: all of it or nothing) and
    /// checks what it wrote against the batch: as many events, ending with its last hash.
    pub async fn run(self, conn: &mut AnyConnection, events: &[StoredEvent]) -> Result<(), StoreError> {
        let Some(last) = events.last() else { return Ok(()) };
        let sql = self.sql();
        let mut query = sqlx::query::<Any>(&sql);
        for param in self.params {
            query = query.bind(param);
        }
        query = query.bind(events.len() as i64).bind(last.hash.clone());
        let written: i64 = query.fetch_one(&mut *conn).await?.try_get(0)?;
        if written != events.len() as i64 {
            return Err(StoreError::AppendMismatch { expected: events.len(), written });
        }
        Ok(())
    }
}

fn json_text<T: serde::Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("rows of plain values always encode")
}

/// Writes `rows` groups of `columns` numbered placeholders: `($1, $2), ($3, $4)`.
pub fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    push_placeholders_for(sql, Backend::Postgres, rows, columns);
}

/// `push_placeholders` in the form cheapest for `backend`: numbered (`$1`) on PostgreSQL,
/// anonymous positional (`?`) on SQLite. SQLite looks up a numbered parameter's name in a
/// list as long as the statement's parameters, once per parameter bound, so a statement with
/// n numbered parameters costs O(n²) to bind (63 % of a rebuild's CPU with 3,600 of them).
pub fn push_placeholders_for(sql: &mut String, backend: Backend, rows: usize, columns: usize) {
    use std::fmt::Write;
    sql.reserve(rows * columns * 6);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Postgres => {
                    let _ = write!(sql, "${}", r * columns + c + 1);
                }
                Backend::Sqlite => sql.push('?'),
            }
        }
        sql.push(')');
    }
}

/// Events with `position > after`, in order, at most `limit` of them.
pub async fn read_after(conn: &mut AnyConnection, after: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
    fetch_page(conn, "SELECT * FROM events", &[], after, limit).await
}

/// Every event of one stream, in order.
pub async fn read_stream(db: &Db, stream_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE stream_id = $1 ORDER BY position");
    fetch(&mut *db.pool.acquire().await?, &sql, vec![Bind::Text(stream_id.to_owned())]).await
}

/// Every event that concerns a booking: those tagged with it, and all events of the streams
/// that ever held it (so an unenrolment or a later booking ID change is included).
pub async fn read_booking(db: &Db, booking_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = booking_history_sql();
    fetch(&mut *db.pool.acquire().await?, &sql, vec![Bind::Text(booking_id.to_owned())]).await
}

/// The query of `read_booking` (`$1` is the booking ID): two indexed reads joined by UNION,
/// the tagged events by `events_booking_id` and the streams' events by the
/// `(stream_id, stream_version)` key. One `OR` across the two columns made PostgreSQL scan the
/// whole log.
pub fn booking_history_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM events WHERE booking_id = $1 \
         UNION \
         SELECT {COLUMNS} FROM events WHERE stream_id IN \
           (SELECT stream_id FROM events WHERE booking_id = $1 AND stream_type = 'enrolment') \
         ORDER BY position"
    )
}

/// Replays the whole log (or up to `until`, inclusive) page by page into `visit`. Run it in a
/// transaction on `conn` when the replay must see one consistent snapshot.
pub async fn replay<F>(conn: &mut AnyConnection, until: Option<i64>, mut visit: F) -> Result<(), StoreError>
where
    F: FnMut(StoredEvent) -> Result<(), StoreError>,
{
    let mut after = 0;
    loop {
        let page = read_after(conn, after, REPLAY_PAGE_ROWS).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.position;
        for event in page {
            if until.is_some_and(|u| event.position > u) {
                return Ok(());
            }
            visit(event)?;
        }
    }
}

/// Replays the events after position `after` page by page into `visit` (the tail of the log
/// after a snapshot).
pub async fn replay_after<F>(conn: &mut AnyConnection, mut after: i64, mut visit: F) -> Result<(), StoreError>
where
    F: FnMut(StoredEvent) -> Result<(), StoreError>,
{
    loop {
        let page = read_after(conn, after, REPLAY_PAGE_ROWS).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.position;
        for event in page {
            visit(event)?;
        }
    }
}

/// `replay` with each payload already decoded. While one page is decoded on a blocking thread,
/// the next one is fetched, so reading and decoding overlap; `visit` still sees every event in
/// position order.
pub async fn replay_decoded<F>(conn: &mut AnyConnection, until: Option<i64>, mut visit: F) -> Result<(), StoreError>
where
    F: FnMut(StoredEvent, Result<LedgerEvent, StoreError>) -> Result<(), StoreError>,
{
    replay_pipelined(conn, until, false, |stored, event, _| visit(stored, event)).await
}

/// `replay_decoded` that also hands `visit` each event's `chain_hash` over its predecessor's
/// stored hash (the genesis hash for the first row), computed on the decoding thread: what
/// `verify` compares with the event's own `hash`.
pub async fn replay_chained<F>(conn: &mut AnyConnection, mut visit: F) -> Result<(), StoreError>
where
    F: FnMut(StoredEvent, Result<LedgerEvent, StoreError>, String) -> Result<(), StoreError>,
{
    replay_pipelined(conn, None, true, |stored, event, chained| visit(stored, event, chained.unwrap_or_default())).await
}

/// A page's events, each with its decoded payload and (when asked) its recomputed chain hash.
type Prepared = Vec<(StoredEvent, Result<LedgerEvent, StoreError>, Option<String>)>;

async fn replay_pipelined<F>(
    conn: &mut AnyConnection,
    until: Option<i64>,
    chain: bool,
    mut visit: F,
) -> Result<(), StoreError>
where
    F: FnMut(StoredEvent, Result<LedgerEvent, StoreError>, Option<String>) -> Result<(), StoreError>,
{
    // Three stages, each a page ahead of the next: this task reads pages (the database's work
    // runs on its own thread), a blocking thread parses, decodes and hashes them, and this
    // task again hands the prepared events to `visit`. Channels of one page bound the memory
    // to about three pages; when `visit` stops (an error, or `until` reached) the channels
    // close and the stages behind it stop after the page in hand.
    let (read_out, mut read_in) = tokio::sync::mpsc::channel::<Vec<StoredEvent>>(1);
    let (prepared_out, mut prepared_in) = tokio::sync::mpsc::channel::<Prepared>(1);
    let preparing = tokio::task::spawn_blocking(move || {
        let mut prev = GENESIS_HASH.to_owned();
        while let Some(page) = read_in.blocking_recv() {
            let prepared = page
                .into_iter()
                .map(|stored| {
                    let event = stored.event();
                    let chained = chain.then(|| stored.chain_hash(&prev));
                    if chain {
                        prev.clone_from(&stored.hash);
                    }
                    (stored, event, chained)
                })
                .collect::<Prepared>();
            if prepared_out.blocking_send(prepared).is_err() {
                return;
            }
        }
    });
    // The page is parsed by this task, which also frees its rows after `visit`: with the
    // parse on the decoding thread, glibc's frees across threads contended for its arena.
    let reading = async move {
        let mut after = 0;
        let outcome = loop {
            let page = match fetch_page(conn, "SELECT * FROM events", &[], after, REPLAY_PAGE_ROWS).await {
                Ok(page) => page,
                Err(error) => break Err(error),
            };
            let Some(last) = page.last().map(|e| e.position) else { break Ok(()) };
            let more = page.len() as i64 == REPLAY_PAGE_ROWS && until.is_none_or(|u| last < u);
            if read_out.send(page).await.is_err() || !more {
                break Ok(());
            }
            after = last;
        };
        // Closing the channel ends the preparing stage, and through it the visiting one.
        drop(read_out);
        outcome
    };
    let visiting = async move {
        let outcome = 'pages: {
            while let Some(prepared) = prepared_in.recv().await {
                for (stored, event, chained) in prepared {
                    if until.is_some_and(|u| stored.position > u) {
                        break 'pages Ok(());
                    }
                    if let Err(error) = visit(stored, event, chained) {
                        break 'pages Err(error);
                    }
                }
            }
            Ok(())
        };
        // Closing the channel stops the other two stages.
        drop(prepared_in);
        outcome
    };
    let (read, visited) = tokio::join!(reading, visiting);
    if let Err(join) = preparing.await {
        std::panic::resume_unwind(join.into_panic());
    }
    visited.and(read)
}

/// Decodes `events` on all available cores (a blocking task split into one chunk per core),
/// keeping their order: for reads that fetch a bounded set at once, like an as-of of one course.
pub async fn decode_all(events: Vec<StoredEvent>) -> Vec<(StoredEvent, Result<LedgerEvent, StoreError>)> {
    let decoding = tokio::task::spawn_blocking(move || {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = events.len().div_ceil(cores).max(1);
        let decoded: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = events
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(StoredEvent::event).collect::<Vec<_>>()))
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        events.into_iter().zip(decoded).collect::<Vec<_>>()
    });
    match decoding.await {
        Ok(decoded) => decoded,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Every event of the enrolment streams of one course, up to `until` (inclusive), in position
/// order: what an as-of read of that course folds. `enrolment_course` names each enrolment
/// stream's course (filled by `append`, backfilled by migration 5).
pub async fn read_course_until(
    conn: &mut AnyConnection,
    course_id: i64,
    until: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE stream_id IN (SELECT stream_id FROM enrolment_course WHERE course_id = $1) AND position <= $2 \
         ORDER BY position"
    );
    fetch(conn, &sql, vec![Bind::Int(course_id), Bind::Int(until)]).await
}

/// Every event of the streams about one user (`stream_subject`, migrations 10 and 12) up to `until`
/// (inclusive), in position order; `enrolment_only` keeps the enrolment streams (what an as-of
/// read of the user folds).
pub async fn read_user_until(
    conn: &mut AnyConnection,
    user_id: i64,
    until: i64,
    enrolment_only: bool,
) -> Result<Vec<StoredEvent>, StoreError> {
    let kind = if enrolment_only { "AND stream_type = 'enrolment' " } else { "" };
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE stream_id IN (SELECT stream_id FROM stream_subject WHERE user_id = $1) AND position <= $2 {kind}\
         ORDER BY position"
    );
    fetch(conn, &sql, vec![Bind::Int(user_id), Bind::Int(until)]).await
}

/// A value bound to one of a read's `$n` parameters.
#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(String),
}

/// Rows of events per aggregated page of an indexed read (`fetch`): one page answers any read
/// of a bounded history; a longer one is read in several.
const FETCH_PAGE_ROWS: i64 = 50_000;

/// The events `inner` selects (a `SELECT {COLUMNS} FROM events ...` whose parameters are
/// `binds`, in any order), in position order, read `FETCH_PAGE_ROWS` at a time.
async fn fetch(conn: &mut AnyConnection, inner: &str, binds: Vec<Bind>) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events: Vec<StoredEvent> = Vec::new();
    loop {
        let after = events.last().map_or(i64::MIN, |e| e.position);
        let page = fetch_page(conn, inner, &binds, after, FETCH_PAGE_ROWS).await?;
        let full = page.len() as i64 == FETCH_PAGE_ROWS;
        events.extend(page);
        if !full {
            return Ok(events);
        }
    }
}

/// One page of `fetch`: the first `limit` events after position `after`. On SQLite the page
/// comes back as one row: every row through sqlx costs about 10 µs whatever its size (more than
/// SQLite's own work for an event read by index), so the database aggregates the page into one
/// JSON array of arrays, decoded here (an as-of of a 10,000-event course read 154 ms as rows).
async fn fetch_page(
    conn: &mut AnyConnection,
    inner: &str,
    binds: &[Bind],
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    use sqlx::Arguments;
    let (after_param, limit_param) = (binds.len() + 1, binds.len() + 2);
    let page = format!(
        "SELECT {COLUMNS} FROM ({inner}) AS inner_read WHERE position > ${after_param} \
         ORDER BY position LIMIT ${limit_param}"
    );
    let mut args = sqlx::any::AnyArguments::default();
    let bound = |e| StoreError::Database(sqlx::Error::Encode(e));
    for bind in binds {
        match bind {
            Bind::Int(value) => args.add(*value).map_err(bound)?,
            Bind::Text(value) => args.add(value.clone()).map_err(bound)?,
        }
    }
    args.add(after).map_err(bound)?;
    args.add(limit).map_err(bound)?;
    match Backend::of(conn) {
        Backend::Sqlite => {
            let sql = format!("SELECT json_group_array(json_array({COLUMNS})) FROM ({page})");
            let text: Option<String> = sqlx::query_scalar_with(&sql, args).fetch_one(&mut *conn).await?;
            parse_page(text.as_deref().unwrap_or("[]"))
        }
        // PostgreSQL's rows cross the wire cheaply, and building the JSON text cost more than
        // the read itself (an as-of of 10,000 events: 42 ms read, +55 ms `json_agg`).
        Backend::Postgres => {
            let rows: Vec<PageRow> = sqlx::query_as_with(&page, args).fetch_all(&mut *conn).await?;
            Ok(rows.into_iter().map(stored_of_row).collect())
        }
    }
}

/// One event as `fetch_page` reads it: the columns of `COLUMNS`, in order.
type PageRow = (
    i64,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
    String,
    String,
);

/// Decodes an aggregated page and checks it is in ascending position order (SQLite's
/// aggregate follows its subquery's order; a page out of order is sorted, never trusted).
fn parse_page(text: &str) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<PageRow> = serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let mut events: Vec<StoredEvent> = rows.into_iter().map(stored_of_row).collect();
    if !events.is_sorted_by_key(|e| e.position) {
        events.sort_by_key(|e| e.position);
    }
    Ok(events)
}

fn stored_of_row(r: PageRow) -> StoredEvent {
    StoredEvent {
        position: r.0,
        stream_id: r.1,
        stream_type: r.2,
        stream_key: r.3,
        stream_version: r.4,
        event_type: r.5,
        schema_version: r.6,
        recorded_at: r.7,
        actor_user_id: r.8,
        actor_token_id: r.9,
        request_id: r.10,
        booking_id: r.11,
        payload: r.12,
        hash: r.13,
    }
}

/// The last position and hash of the log (0 and the genesis hash when empty).
pub async fn head(db: &Db) -> Result<(i64, String), StoreError> {
    head_on(&mut *db.pool.acquire().await?).await
}

/// `head` on a given connection.
pub async fn head_on(conn: &mut AnyConnection) -> Result<(i64, String), StoreError> {
    let query = sqlx::query("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1");
    let row: Option<AnyRow> = query.fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(row) => (row.try_get("position")?, row.try_get("hash")?),
        None => (0, GENESIS_HASH.to_owned()),
    })
}

/// The hash of the event at `position`, if there is one.
pub async fn hash_at(conn: &mut AnyConnection, position: i64) -> Result<Option<String>, StoreError> {
    let query = sqlx::query_scalar("SELECT hash FROM events WHERE position = $1").bind(position);
    Ok(query.fetch_optional(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 7, item 3): SQLite statements used numbered `$N` placeholders, which
    /// SQLite resolves by name per bound value (O(n²) per statement: 63 % of a rebuild's CPU).
    #[test]
    fn why_1_sqlite_placeholders_are_numbered() {
        // Given two rows of three columns, when written for SQLite, then they are anonymous.
        let mut sqlite = String::new();
        push_placeholders_for(&mut sqlite, Backend::Sqlite, 2, 3);
        assert_eq!(sqlite, "(?, ?, ?), (?, ?, ?)");
        // PostgreSQL has only numbered ones.
        let mut postgres = String::new();
        push_placeholders_for(&mut postgres, Backend::Postgres, 2, 3);
        assert_eq!(postgres, "($1, $2, $3), ($4, $5, $6)");
        let mut shared = String::new();
        push_placeholders(&mut shared, 2, 3);
        assert_eq!(shared, postgres);
    }
}
