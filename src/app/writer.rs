//! The single writer: every state change of the ledger goes through this one task.
//!
//! Requests queue on a channel. The writer takes whatever has queued (up to
//! `BATCH_REQUESTS_MAX`), decides each against its in-memory state in arrival order (so every
//! decision sees the ones before it: booking IDs and overlaps cannot race), assigns positions
//! and chains hashes, then writes the whole batch — events, projection rows, registry rows —
//! in one transaction: one disk flush for many requests (group commit). Replies go out only
//! after the commit, so an acknowledged request is durable. If the commit fails, every
//! request of the batch gets an error and the state is reloaded from the database.

use std::collections::BTreeSet;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use super::command::{LedgerError, Outcome, Request};
use super::decide::{decide, Decision};
use super::state::LedgerState;
use crate::domain::event::{EnrolmentEvent, SCHEMA_VERSION};
use crate::domain::LedgerEvent;
use crate::projection::state::RowKey;
use crate::projection::tables;
use crate::registry::RegistryOp;
use crate::store::log::{self, Actor, StoredEvent};
use crate::store::{Backend, Db, StoreError};

/// Requests decided and committed together at most.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// Requests that may wait for the writer before `submit` itself waits.
pub const QUEUE_REQUESTS_MAX: usize = 4096;
/// The PostgreSQL advisory lock class held by the one writing process (per schema).
const WRITER_LOCK_CLASS: i32 = 0x656e_726f;

struct Job {
    request: Request,
    actor: Actor,
    reply: oneshot::Sender<Result<Outcome, LedgerError>>,
}

enum Message {
    Job(Job),
    /// Finish what was queued before, close the connection, stop.
    Stop,
}

/// How long `start` waits for another writer (e.g. a process shutting down) to let go.
pub const WRITER_LOCK_WAIT_MS: u64 = 5_000;

/// A handle to the ledger: submit write requests; read through `db`.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Message>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    pub db: Db,
}

impl Ledger {
    /// Loads the state from the log and starts the writer. The database must be migrated and
    /// its projections current (`cli::open`).
    pub async fn start(db: Db) -> Result<Self, StoreError> {
        let writer_db = db.writer_connection().await?;
        if writer_db.backend == Backend::Postgres {
            take_writer_lock(&writer_db).await?;
        }
        let state = LedgerState::load(&writer_db).await?;
        let (sender, receiver) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let writer = tokio::spawn(run(state, writer_db, receiver));
        Ok(Self { sender, writer: Arc::new(Mutex::new(Some(writer))), db })
    }

    /// Stops accepting requests, lets the writer finish what is queued and closes its
    /// connection (releasing the writer lock). Other clones of this handle stop working.
    pub async fn shutdown(self) {
        let _ = self.sender.send(Message::Stop).await;
        if let Some(handle) = self.writer.lock().await.take() {
            let _ = handle.await;
        }
    }

    /// Decides and durably records one request; answers after the commit.
    pub async fn submit(&self, request: Request, actor: Actor) -> Result<Outcome, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || LedgerError::Unavailable("the writer has stopped".into());
        self.sender.send(Message::Job(Job { request, actor, reply })).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One process writes to a ledger (a PostgreSQL schema) at a time.
async fn take_writer_lock(db: &Db) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(WRITER_LOCK_WAIT_MS);
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(WRITER_LOCK_CLASS)
            .fetch_one(&db.pool)
            .await?;
        if locked {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::WriterLocked);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What one batch writes.
#[derive(Default)]
struct Batch {
    events: Vec<StoredEvent>,
    registry: Vec<RegistryOp>,
    touched: BTreeSet<RowKey>,
    booking_moved: BTreeSet<i64>,
}

async fn run(mut state: LedgerState, db: Db, mut receiver: mpsc::Receiver<Message>) {
    let mut stopping = false;
    while !stopping {
        let Some(Message::Job(first)) = receiver.recv().await else { break };
        let mut jobs = vec![first];
        while jobs.len() < BATCH_REQUESTS_MAX {
            match receiver.try_recv() {
                Ok(Message::Job(job)) => jobs.push(job),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let now_micros = Db::now_micros().max(state.head_recorded_at);
        let mut batch = Batch::default();
        // Decide in arrival order; keep each reply channel beside its result until the commit.
        let answered: Vec<_> = jobs
            .into_iter()
            .map(|Job { request, actor, reply }| {
                let result = decide(&state, request, now_micros / 1_000_000, actor.user_id)
                    .and_then(|decision| record(&mut state, &mut batch, decision, &actor, now_micros));
                (reply, result)
            })
            .collect();
        match commit(&db, &state, &batch).await {
            Ok(()) => {
                for (reply, result) in answered {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = answered.len(), "batch commit failed; nothing of it was kept");
                for (reply, _) in answered {
                    let _ = reply.send(Err(LedgerError::Unavailable(error.to_string())));
                }
                state = reload(&db).await;
            }
        }
    }
    receiver.close();
    db.pool.close().await;
}

/// Rebuilds the in-memory state from the database after a failed commit, retrying until it can.
async fn reload(db: &Db) -> LedgerState {
    loop {
        match LedgerState::load(db).await {
            Ok(state) => return state,
            Err(error) => {
                tracing::error!(%error, "cannot reload the ledger state; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// Turns a decision into stored events (position, version, hash) and folds them into the state.
///
/// Assert on write: every envelope of the decision is built first and its payload decoded back
/// and compared with the event it was made from. Only when all of them round-trip are the
/// registry changes and events applied to the state and pushed to the batch; otherwise the
/// request fails alone (`EventRoundTrip`) and nothing of it is applied.
fn record(
    state: &mut LedgerState,
    batch: &mut Batch,
    decision: Decision,
    actor: &Actor,
    now_micros: i64,
) -> Result<Outcome, LedgerError> {
    let mut envelopes: Vec<(StoredEvent, LedgerEvent)> = Vec::new();
    for stream_events in decision.streams {
        let stream_id = stream_events.stream.uuid().to_string();
        for event in stream_events.events {
            let (position, prev_hash) = match envelopes.last() {
                Some((last, _)) => (last.position + 1, last.hash.as_str()),
                None => (state.head_position + 1, state.head_hash.as_str()),
            };
            // Earlier events of this decision in the same stream are not in the state yet.
            let earlier = envelopes.iter().filter(|(e, _)| e.stream_id == stream_id).count() as i64;
            let stream_version = state.next_version(&stream_events.stream) + earlier;
            let head = Head { position, stream_version, prev_hash };
            let stored =
                envelope(head, &stream_events.stream, stream_events.booking_id.clone(), &event, actor, now_micros)?;
            envelopes.push((stored, event));
        }
    }
    for op in decision.registry {
        op.apply_to_index(&mut state.registry);
        batch.registry.push(op);
    }
    for (stored, event) in envelopes {
        if let LedgerEvent::Enrolment(EnrolmentEvent::BookingIdChanged { instance_id, .. }) = &event {
            batch.booking_moved.insert(instance_id.0);
        }
        state.apply(&stored, &event, &mut batch.touched);
        batch.events.push(stored);
    }
    Ok(decision.outcome)
}

/// Where the next envelope goes: its position, its stream version and the hash it chains to.
struct Head<'a> {
    position: i64,
    stream_version: i64,
    prev_hash: &'a str,
}

/// Builds one stored event and checks that its payload decodes back to `event`.
fn envelope(
    head: Head<'_>,
    stream: &log::StreamRef,
    booking_id: Option<String>,
    event: &LedgerEvent,
    actor: &Actor,
    now_micros: i64,
) -> Result<StoredEvent, LedgerError> {
    let refused = |reason: String| {
        tracing::error!(event_type = event.event_type(), %reason, "event failed its round trip; request refused");
        LedgerError::EventRoundTrip { event_type: event.event_type(), reason }
    };
    let mut stored = StoredEvent {
        position: head.position,
        stream_id: stream.uuid().to_string(),
        stream_type: stream.stream_type.to_owned(),
        stream_key: stream.key.clone(),
        stream_version: head.stream_version,
        event_type: event.event_type().to_owned(),
        schema_version: i64::from(SCHEMA_VERSION),
        recorded_at: now_micros,
        actor_user_id: actor.user_id,
        actor_token_id: actor.token_id,
        request_id: actor.request_id.clone(),
        booking_id,
        payload: serde_json::to_string(event).map_err(|e| refused(e.to_string()))?,
        hash: String::new(),
    };
    match stored.event() {
        Ok(decoded) if decoded == *event => {}
        Ok(decoded) => return Err(refused(format!("decodes as {decoded:?}"))),
        Err(error) => return Err(refused(error.to_string())),
    }
    stored.hash = stored.chain_hash(head.prev_hash);
    Ok(stored)
}

async fn commit(db: &Db, state: &LedgerState, batch: &Batch) -> Result<(), StoreError> {
    if batch.events.is_empty() && batch.registry.is_empty() {
        return Ok(());
    }
    let mut tx = db.pool.begin().await?;
    for op in &batch.registry {
        op.apply(&mut tx).await?;
    }
    log::append(&mut tx, &batch.events).await?;
    tables::write_touched(&mut tx, &state.projection, &batch.touched, &batch.booking_moved).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::decide::{completion_stream, StreamEvents};
    use crate::domain::column::GradeValue;
    use crate::domain::event::{CompletionEvent, CourseCompletion, Grade};
    use crate::domain::ids::{CourseId, UserId};
    use crate::registry::NewUser;

    fn recorded(timecompleted: i64, finalgrade: GradeValue) -> LedgerEvent {
        let zero = GradeValue::unchecked(0.0);
        let grade = Grade { finalgrade, grademin: zero, grademax: zero, gradepass: zero };
        LedgerEvent::Completion(CompletionEvent::CompletionRecorded {
            user_id: UserId(4),
            course_id: CourseId(2),
            completion: CourseCompletion { timecompleted, grade: Some(grade) },
        })
    }

    fn decision(events: Vec<LedgerEvent>) -> Decision {
        let user = NewUser { username: "u".into(), ..NewUser::default() };
        Decision {
            streams: vec![StreamEvents { stream: completion_stream(4, 2), booking_id: None, events }],
            registry: vec![RegistryOp::CreateUser { id: 4, user, now: 1 }],
            outcome: Outcome::Done,
        }
    }

    // given an empty ledger, when a decision's second event does not survive its encoding,
    // then the request fails and nothing of it (events, registry, state) is applied.
    #[test]
    fn an_event_that_does_not_round_trip_fails_its_request_only() {
        let (mut state, mut batch) = (LedgerState::default(), Batch::default());
        let good = recorded(5, GradeValue::unchecked(1.0));
        let bad = recorded(6, GradeValue::unchecked(f64::INFINITY));
        let result = record(&mut state, &mut batch, decision(vec![good, bad]), &Actor::default(), 1);
        assert!(
            matches!(result, Err(LedgerError::EventRoundTrip { event_type: "CompletionRecorded", .. })),
            "{result:?}"
        );
        assert_eq!(state.head_position, 0);
        assert!(!state.registry.user_exists(4));
        assert!(batch.events.is_empty() && batch.registry.is_empty() && batch.touched.is_empty());
    }

    // given an empty ledger, when a decision has two events of one stream, then they get
    // consecutive positions and versions and chain to each other.
    #[test]
    fn events_of_one_decision_are_chained_in_order() {
        let (mut state, mut batch) = (LedgerState::default(), Batch::default());
        let events = vec![recorded(5, GradeValue::unchecked(1.0)), recorded(6, GradeValue::unchecked(2.0))];
        let outcome = record(&mut state, &mut batch, decision(events), &Actor::default(), 1).unwrap();
        assert_eq!(outcome, Outcome::Done);
        let [first, second] = &batch.events[..] else { panic!("two events: {:?}", batch.events) };
        assert_eq!((first.position, first.stream_version), (1, 1));
        assert_eq!((second.position, second.stream_version), (2, 2));
        assert_eq!(first.hash, first.chain_hash(crate::store::log::GENESIS_HASH));
        assert_eq!(second.hash, second.chain_hash(&first.hash));
        assert_eq!((state.head_position, state.head_hash.as_str()), (2, second.hash.as_str()));
        assert!(state.registry.user_exists(4));
    }
}
