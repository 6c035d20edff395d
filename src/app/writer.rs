//! The single writer: every state change of the ledger goes through this one task.
//!
//! Requests queue on a channel. The writer takes whatever has queued (up to
//! `BATCH_REQUESTS_MAX`), decides each against its in-memory state in arrival order (so every
//! decision sees the ones before it: booking IDs and overlaps cannot race), assigns positions
//! and chains hashes, then writes the whole batch — events, projection rows, registry rows —
//! in one transaction: one disk flush for many requests (group commit). Replies go out only
//! after the commit, so an acknowledged request is durable.
//!
//! Failure behaviour (docs/RELIABILITY.md):
//! - a connection that broke before COMMIT is replaced (taking the writer lock again) and the
//!   batch retried once, after checking that the log head is still the writer's;
//! - a connection lost during COMMIT leaves the outcome unknown: the writer reconnects and
//!   looks for the batch's last position and hash before it answers;
//! - a batch the database refused is not kept: the state is reloaded (with back-off, giving up
//!   after `WriterOptions::reload_give_up`) and its requests are retried one by one, so a bad
//!   request fails alone;
//! - a panic or an unrecoverable error stops the writer; its health says why (`/readyz`), and
//!   `serve` exits non-zero (`EXIT_WRITER_FAILED`) so a supervisor restarts it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use super::command::{LedgerError, Outcome, Request};
use super::decide::{decide, Decision};
use super::rows::rows_for;
use super::snapshot::{self, SNAPSHOT_EVERY_EVENTS};
use super::state::LedgerState;
use crate::domain::event::{EnrolmentEvent, SCHEMA_VERSION};
use crate::domain::LedgerEvent;
use crate::projection::tables;
use crate::projection::writes::PendingWrites;
use crate::proof::keeper::CheckpointTask;
use crate::registry::RegistryOp;
use crate::store::log::{self, Actor, StoredEvent};
use crate::store::writer_conn::{is_connection_failure, Durability, WriterConnection, WriterLock};
use crate::store::{Backend, Db, StoreError};

pub use crate::store::writer_conn::WRITER_LOCK_WAIT_MS;

/// Requests decided and committed together at most.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// Requests that may wait for the writer before `submit` itself waits.
pub const QUEUE_REQUESTS_MAX: usize = 4096;
/// How long `submit` waits for its answer by default (queueing, deciding and committing).
pub const SUBMIT_TIMEOUT_MS: u64 = 10_000;
/// How long the writer keeps trying to reload its state before it gives up and stops.
pub const RELOAD_GIVE_UP_MS: u64 = 300_000;
/// The first and the longest pause between two reload attempts (doubling in between).
pub const RELOAD_BACKOFF_FIRST_MS: u64 = 100;
pub const RELOAD_BACKOFF_MAX_MS: u64 = 5_000;
/// How long the writer looks for a batch whose COMMIT lost its connection before it answers
/// that the outcome is unknown.
pub const COMMIT_RESOLVE_MS: u64 = 10_000;
/// The exit status of `serve` when its writer stopped for good (EX_SOFTWARE).
pub const EXIT_WRITER_FAILED: i32 = 70;

/// How a ledger's writer behaves; `serve` sets these from its flags.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Exit the process when the writer stops for good (panic, unrecoverable error), so that a
    /// supervisor restarts it. Off for embedded use (tests, CLI subcommands).
    pub exit_on_failure: bool,
    /// Start even when the database does not make commits durable (logged, `/readyz` degraded).
    pub allow_unsafe_durability: bool,
    pub submit_timeout: Duration,
    pub reload_give_up: Duration,
    /// Events between two snapshots of the writer's state (`app::snapshot`); one is also
    /// written at a clean shutdown.
    pub snapshot_every_events: i64,
    /// Signed checkpoints of the log (`proof::keeper`): `serve` sets them; off by default.
    pub checkpoints: Option<crate::proof::keeper::CheckpointOptions>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            exit_on_failure: false,
            allow_unsafe_durability: false,
            submit_timeout: Duration::from_millis(SUBMIT_TIMEOUT_MS),
            reload_give_up: Duration::from_millis(RELOAD_GIVE_UP_MS),
            snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
            checkpoints: None,
        }
    }
}

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

/// What the writer is doing, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum WriterStatus {
    Running,
    /// A commit failed; the writer is reconnecting or reloading its state.
    Recovering(String),
    /// The writer stopped for good: a panic or an unrecoverable error.
    Failed(String),
    /// Shut down on request.
    Stopped,
}

/// The writer's health: shared between the writer, its supervisor and `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct WriterHealth {
    pub status: WriterStatus,
    /// Time of the last successful commit (microseconds since the epoch).
    pub last_commit_micros: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_micros: Option<i64>,
    pub queue_depth: usize,
    /// Unsafe durability settings found at start and accepted with `--allow-unsafe-durability`.
    pub unsafe_durability: Vec<String>,
}

type SharedHealth = Arc<StdMutex<WriterHealth>>;

fn update(health: &SharedHealth, change: impl FnOnce(&mut WriterHealth)) {
    let mut guard = health.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    change(&mut guard);
}

/// A handle to the ledger: submit write requests; read through `db`.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Message>,
    supervisor: Arc<Mutex<Option<JoinHandle<()>>>>,
    health: SharedHealth,
    submit_timeout: Duration,
    pub db: Db,
    /// Scrubs erased personal data from disk after each committed user deletion.
    pub scrubber: crate::app::erasure::Scrubber,
    /// What `/metrics` shows: the writer records its batches, the HTTP layer its requests.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Ledger {
    /// Loads the state from the log and starts the writer with the default options. The
    /// database must be migrated and its projections current (`cli::open`).
    pub async fn start(db: Db) -> Result<Self, StoreError> {
        Self::start_with(db, WriterOptions::default()).await
    }

    /// Takes the writer lock (waiting up to `WRITER_LOCK_WAIT_MS`), checks durability, loads
    /// the state and starts the writer and its supervisor.
    pub async fn start_with(db: Db, options: WriterOptions) -> Result<Self, StoreError> {
        let lock = WriterLock::acquire(&db, Duration::from_millis(WRITER_LOCK_WAIT_MS)).await?;
        Self::start_locked(db, options, lock).await
    }

    /// `start_with` for a caller that already holds the writer lock (`cli`: taken before the
    /// migrations, so that start-up itself never writes beside another process).
    pub async fn start_locked(db: Db, options: WriterOptions, lock: WriterLock) -> Result<Self, StoreError> {
        let (mut conn, file_lock) = WriterConnection::from_lock(&db, lock);
        let durability = conn.durability().await?;
        let unsafe_durability = check_durability(&durability, options.allow_unsafe_durability)?;
        let (state, loaded) = LedgerState::load_reporting(&db).await?;
        tracing::info!(
            snapshot = ?loaded.snapshot_position,
            replayed_events = loaded.replayed_events,
            position = state.head_position,
            "writer state loaded"
        );
        let health = Arc::new(StdMutex::new(WriterHealth {
            status: WriterStatus::Running,
            last_commit_micros: None,
            last_error: None,
            last_error_micros: None,
            queue_depth: 0,
            unsafe_durability,
        }));
        let (sender, receiver) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let committed = (state.head_position, state.head_hash.clone());
        let checkpoints = options.checkpoints.clone().map(|o| CheckpointTask::start(db.clone(), o, committed.clone()));
        // Courses of a log written before manual instances existed get theirs now, as events.
        let lacking_manual = state.registry.courses.keys().any(|c| !state.manual_instances.contains_key(c));
        let metrics = Arc::new(crate::metrics::Metrics::new(db.backend));
        metrics.log_head.set(state.head_position);
        let writer = Writer {
            metrics: metrics.clone(),
            state,
            conn,
            db: db.clone(),
            health: health.clone(),
            options: options.clone(),
            committed,
            snapshot_position: loaded.snapshot_position.unwrap_or(0),
            snapshot_task: None,
            checkpoints,
            stopping: false,
            stale: false,
            _file_lock: file_lock,
        };
        let task = tokio::spawn(writer.run(receiver));
        let supervisor = tokio::spawn(supervise(task, health.clone(), options.exit_on_failure));
        let ledger = Self {
            sender,
            supervisor: Arc::new(Mutex::new(Some(supervisor))),
            health,
            submit_timeout: options.submit_timeout,
            scrubber: crate::app::erasure::Scrubber::start(db.clone()),
            db,
            metrics,
        };
        if lacking_manual {
            let actor = Actor { user_id: None, token_id: None, request_id: "start-manual-instances".into() };
            ledger.submit(Request::EnsureManualInstances, actor).await.map_err(|e| {
                StoreError::Database(sqlx::Error::Protocol(format!("giving courses their manual instances: {e}")))
            })?;
        }
        Ok(ledger)
    }

    /// Stops accepting requests, lets the writer finish what is queued and closes its
    /// connection (releasing the writer lock). Other clones of this handle stop working.
    pub async fn shutdown(self) {
        let _ = self.sender.send(Message::Stop).await;
        if let Some(handle) = self.supervisor.lock().await.take() {
            let _ = handle.await;
        }
    }

    /// Decides and durably records one request; answers after the commit, or with
    /// `LedgerError::Timeout` after the submit timeout.
    pub async fn submit(&self, request: Request, actor: Actor) -> Result<Outcome, LedgerError> {
        self.submit_scrubbing(request, actor).await.0
    }

    /// `submit`, and for a committed user deletion the scrub's ticket (`Scrubber::wait`): the
    /// deleted users' personal data is removed from disk in the background right after.
    pub async fn submit_scrubbing(
        &self,
        request: Request,
        actor: Actor,
    ) -> (Result<Outcome, LedgerError>, Option<u64>) {
        let erases = matches!(request, Request::DeleteUsers(_));
        let outcome = self.submit_once(request, actor).await;
        // Also when the outcome is unknown (it may have committed); a scrub with nothing to do is harmless.
        let refused = matches!(outcome, Err(LedgerError::Domain(_) | LedgerError::Registry(_)));
        let ticket = (erases && !refused).then(|| self.scrubber.request());
        (outcome, ticket)
    }

    async fn submit_once(&self, request: Request, actor: Actor) -> Result<Outcome, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || LedgerError::Unavailable("the writer has stopped".into());
        let exchange = async {
            self.sender.send(Message::Job(Job { request, actor, reply })).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        match tokio::time::timeout(self.submit_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(LedgerError::Timeout(self.submit_timeout.as_millis() as u64)),
        }
    }

    /// The writer's health now.
    pub fn health(&self) -> WriterHealth {
        let mut health = self.health.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        health.queue_depth = self.sender.max_capacity() - self.sender.capacity();
        if self.sender.is_closed() && matches!(health.status, WriterStatus::Running) {
            health.status = WriterStatus::Failed("the writer has stopped".into());
        }
        health
    }
}

/// Refuses unsafe settings unless they are explicitly allowed; returns what was allowed.
fn check_durability(durability: &Durability, allow_unsafe: bool) -> Result<Vec<String>, StoreError> {
    if durability.is_safe() {
        tracing::info!(settings = ?durability.settings, "durability settings checked");
        return Ok(Vec::new());
    }
    if !allow_unsafe {
        return Err(StoreError::UnsafeDurability(durability.problems.clone()));
    }
    tracing::error!(
        problems = ?durability.problems,
        "UNSAFE DURABILITY ALLOWED: acknowledged changes can be lost in a crash; /readyz reports degraded"
    );
    Ok(durability.problems.clone())
}

/// Waits for the writer task; records why it ended and, if asked, exits the process.
async fn supervise(task: JoinHandle<Result<(), StoreError>>, health: SharedHealth, exit_on_failure: bool) {
    let reason = match task.await {
        Ok(Ok(())) => {
            update(&health, |h| h.status = WriterStatus::Stopped);
            return;
        }
        Ok(Err(error)) => format!("the writer stopped: {error}"),
        Err(join_error) => match join_error.try_into_panic() {
            Ok(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("the writer panicked: {message}")
            }
            Err(cancelled) => format!("the writer was cancelled: {cancelled}"),
        },
    };
    tracing::error!(%reason, "the ledger's writer has failed; no change can be recorded");
    update(&health, |h| {
        h.status = WriterStatus::Failed(reason.clone());
        h.last_error = Some(reason.clone());
        h.last_error_micros = Some(Db::now_micros());
    });
    if exit_on_failure {
        eprintln!(
            "error: {reason}; exiting with status {EXIT_WRITER_FAILED} so that a supervisor restarts enrol-ledger"
        );
        std::process::exit(EXIT_WRITER_FAILED);
    }
}

/// What one batch writes.
#[derive(Default)]
struct Batch {
    events: Vec<StoredEvent>,
    registry: Vec<RegistryOp>,
    /// The projection row writes of the batch's events, merged per row.
    rows: PendingWrites,
    booking_moved: BTreeSet<i64>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.registry.is_empty()
    }
}

/// How a commit ended.
enum Committed {
    Yes,
    /// Nothing of the batch is in the database.
    No(StoreError),
    /// The connection was lost during COMMIT and the batch could not be found or ruled out.
    Unknown(StoreError),
}

/// Where a batch write failed: before COMMIT was sent (nothing kept), during it (unknown), or
/// on the connection while the batch's one statement (its own transaction) was sent (unknown
/// until looked up; if it is not in the log, the batch is retried once like `BeforeCommit`).
enum WriteFailure {
    BeforeCommit(StoreError),
    DuringCommit(StoreError),
    DuringStatement(StoreError),
}

struct Writer {
    state: LedgerState,
    conn: WriterConnection,
    /// The read pool, for reloading the state.
    db: Db,
    health: SharedHealth,
    options: WriterOptions,
    /// The log head known to be in the database.
    committed: (i64, String),
    /// The log position of the last snapshot written or loaded.
    snapshot_position: i64,
    /// A checkpoint's snapshot being encoded and written beside the batches.
    snapshot_task: Option<JoinHandle<()>>,
    /// The task that signs checkpoints of the committed log, when configured.
    checkpoints: Option<CheckpointTask>,
    stopping: bool,
    /// The state is not the database's (a shutdown came before a reload): decide nothing more.
    stale: bool,
    /// SQLite's lock file, held for the writer's life.
    _file_lock: Option<WriterLock>,
    metrics: Arc<crate::metrics::Metrics>,
}

type Decided = (oneshot::Sender<Result<Outcome, LedgerError>>, Result<Outcome, LedgerError>);

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Message>) -> Result<(), StoreError> {
        let result = self.serve(&mut receiver).await;
        if let Err(error) = &result {
            // Before the channel closes, so nobody sees a stopped writer reported as running.
            let reason = format!("the writer stopped: {error}");
            update(&self.health, |h| h.status = WriterStatus::Failed(reason));
        }
        receiver.close();
        self.conn.close().await;
        result
    }

    async fn serve(&mut self, receiver: &mut mpsc::Receiver<Message>) -> Result<(), StoreError> {
        while !self.stopping {
            let first = match receiver.recv().await {
                Some(Message::Job(job)) => job,
                Some(Message::Stop) => {
                    self.stopping = true;
                    break;
                }
                None => break,
            };
            let mut jobs = vec![first];
            while jobs.len() < BATCH_REQUESTS_MAX {
                match receiver.try_recv() {
                    Ok(Message::Job(job)) => jobs.push(job),
                    Ok(Message::Stop) => {
                        self.stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.process(jobs, receiver).await?;
            if let Some(checkpoints) = &self.checkpoints {
                checkpoints.committed(self.committed.clone());
            }
            if self.state.head_position - self.snapshot_position >= self.options.snapshot_every_events {
                self.checkpoint(SnapshotAt::Mark).await;
            }
        }
        if self.stopping {
            self.checkpoint(SnapshotAt::Shutdown).await;
            if let Some(checkpoints) = self.checkpoints.take() {
                checkpoints.shutdown(self.committed.clone()).await;
            }
        }
        Ok(())
    }

    /// Snapshots the state when it is the committed one and newer than the last snapshot.
    /// At a checkpoint only the copy is taken on the writer; encoding and writing run in a task
    /// of their own on a pooled connection, so batches go on meanwhile (one such task at a
    /// time). At shutdown it is written at once on the writer's open connection. A failure is
    /// logged and otherwise ignored: the log stays the truth, the next start replays more.
    async fn checkpoint(&mut self, why: SnapshotAt) {
        if why == SnapshotAt::Shutdown {
            if let Some(task) = self.snapshot_task.take() {
                let _ = task.await;
            }
        }
        let head = (self.state.head_position, self.state.head_hash.clone());
        if head.0 <= self.snapshot_position || head != self.committed {
            return;
        }
        if let Some(task) = &self.snapshot_task {
            if !task.is_finished() && why == SnapshotAt::Mark {
                return;
            }
        }
        if let Some(task) = self.snapshot_task.take() {
            let _ = task.await;
        }
        let started = std::time::Instant::now();
        let pending = snapshot::StateCopy::of(&self.state);
        // Not retried before the next mark, whatever the outcome.
        self.snapshot_position = head.0;
        let copied_ms = started.elapsed().as_millis() as u64;
        if why == SnapshotAt::Mark {
            let db = self.db.clone();
            self.snapshot_task = Some(tokio::spawn(async move {
                let encoded = match tokio::task::spawn_blocking(move || pending.encode()).await {
                    Ok(encoded) => encoded,
                    Err(error) => return tracing::warn!(%error, "writer state snapshot not encoded"),
                };
                let result = match db.pool.acquire().await {
                    Ok(mut conn) => snapshot::write_encoded(&mut conn, encoded).await,
                    Err(error) => Err(error.into()),
                };
                snapshot_written(why, head.0, copied_ms, started, result);
            }));
        } else if self.conn.is_open() {
            let result = match self.conn.get().await {
                Ok(conn) => snapshot::write_encoded(conn, pending.encode()).await,
                Err(error) => Err(error),
            };
            if result.as_ref().is_err_and(is_connection_failure) {
                self.conn.discard();
            }
            snapshot_written(why, head.0, copied_ms, started, result);
        }
    }

    fn committed_metrics(&self, requests: usize, events: usize, started: std::time::Instant) {
        self.metrics.batch_committed(requests, events, started.elapsed().as_secs_f64(), self.state.head_position);
    }

    /// Decides and commits one batch, then answers every request of it.
    async fn process(&mut self, jobs: Vec<Job>, receiver: &mut mpsc::Receiver<Message>) -> Result<(), StoreError> {
        // A caller that gave up (submit timeout) is not answered, and its request not decided.
        let jobs: Vec<Job> = jobs.into_iter().filter(|job| !job.reply.is_closed()).collect();
        if jobs.is_empty() {
            return Ok(());
        }
        let retry: Vec<(Request, Actor)> = if jobs.len() > 1 {
            jobs.iter().map(|job| (job.request.clone(), job.actor.clone())).collect()
        } else {
            Vec::new()
        };
        let (decided, batch) = self.decide_all(jobs);
        let started = std::time::Instant::now();
        match self.commit(&batch).await {
            Committed::Yes => {
                // Batch sizes under load (RUST_LOG=enrol_ledger::app::writer=debug): the bench's
                // profiling reads them (docs/PERFORMANCE.md).
                tracing::debug!(
                    requests = decided.len(),
                    events = batch.events.len(),
                    commit_us = started.elapsed().as_micros() as u64,
                    "batch committed"
                );
                self.committed_metrics(decided.len(), batch.events.len(), started);
                self.answer(decided)
            }
            Committed::No(error) => {
                tracing::error!(%error, requests = decided.len(), "batch refused; nothing of it was kept");
                self.failed(&error);
                let refuse = |decided: Vec<Decided>| {
                    for (reply, _) in decided {
                        let _ = reply.send(Err(LedgerError::Unavailable(error.to_string())));
                    }
                };
                if retry.is_empty() {
                    refuse(decided);
                    self.reload(receiver).await?;
                } else if !self.reload(receiver).await? {
                    // Stopped while the database was away: nothing can be retried.
                    refuse(decided);
                } else {
                    // One by one, so that only the request the database refuses fails.
                    for ((request, actor), (reply, _)) in retry.into_iter().zip(decided) {
                        self.process_alone(Job { request, actor, reply }, receiver).await?;
                    }
                }
            }
            Committed::Unknown(error) => {
                self.unknown(decided, &error);
                self.reload(receiver).await?;
            }
        }
        Ok(())
    }

    async fn process_alone(&mut self, job: Job, receiver: &mut mpsc::Receiver<Message>) -> Result<(), StoreError> {
        if job.reply.is_closed() {
            return Ok(());
        }
        if self.stale {
            let _ = job.reply.send(Err(LedgerError::Unavailable("the writer is shutting down".into())));
            return Ok(());
        }
        let (decided, batch) = self.decide_all(vec![job]);
        let started = std::time::Instant::now();
        match self.commit(&batch).await {
            Committed::Yes => {
                self.committed_metrics(decided.len(), batch.events.len(), started);
                self.answer(decided)
            }
            Committed::No(error) => {
                tracing::error!(%error, "request refused by the database; nothing of it was kept");
                for (reply, _) in decided {
                    let _ = reply.send(Err(LedgerError::Unavailable(error.to_string())));
                }
                self.failed(&error);
                self.reload(receiver).await?;
            }
            Committed::Unknown(error) => {
                self.unknown(decided, &error);
                self.reload(receiver).await?;
            }
        }
        Ok(())
    }

    /// Decides each job in arrival order against the state, folding accepted ones into it.
    fn decide_all(&mut self, jobs: Vec<Job>) -> (Vec<Decided>, Batch) {
        let now_micros = Db::now_micros().max(self.state.head_recorded_at);
        let mut batch = Batch::default();
        let decided = jobs
            .into_iter()
            .map(|Job { request, actor, reply }| {
                let result = decide(&self.state, request, now_micros / 1_000_000, actor.user_id)
                    .and_then(|decision| record(&mut self.state, &mut batch, decision, &actor, now_micros));
                (reply, result)
            })
            .collect();
        (decided, batch)
    }

    fn answer(&mut self, decided: Vec<Decided>) {
        self.committed = (self.state.head_position, self.state.head_hash.clone());
        update(&self.health, |h| {
            h.status = WriterStatus::Running;
            h.last_commit_micros = Some(Db::now_micros());
        });
        for (reply, result) in decided {
            let _ = reply.send(result);
        }
    }

    fn unknown(&mut self, decided: Vec<Decided>, error: &StoreError) {
        tracing::error!(%error, requests = decided.len(), "the outcome of a commit is unknown");
        self.failed(error);
        for (reply, _) in decided {
            let _ = reply.send(Err(LedgerError::OutcomeUnknown(error.to_string())));
        }
    }

    fn failed(&self, error: &StoreError) {
        update(&self.health, |h| {
            h.last_error = Some(error.to_string());
            h.last_error_micros = Some(Db::now_micros());
        });
    }

    /// Writes the batch; retries once on a new connection when the old one turned out broken
    /// before COMMIT; resolves a COMMIT whose answer was lost.
    async fn commit(&mut self, batch: &Batch) -> Committed {
        if batch.is_empty() {
            return Committed::Yes;
        }
        let mut retried = false;
        let mut looked_up = false;
        loop {
            let fresh = !self.conn.is_open() || std::mem::take(&mut looked_up);
            if let Err(error) = self.check_head_if(fresh).await {
                return Committed::No(error);
            }
            let conn = match self.conn.get().await {
                Ok(conn) => conn,
                Err(error) => return Committed::No(error),
            };
            match write_batch(conn, batch).await {
                Ok(()) => return Committed::Yes,
                Err(WriteFailure::BeforeCommit(error)) if is_connection_failure(&error) => {
                    self.conn.discard();
                    if retried {
                        return Committed::No(error);
                    }
                    tracing::warn!(%error, "the writer's connection was broken; retrying the batch once on a new one");
                    retried = true;
                }
                Err(WriteFailure::BeforeCommit(error)) => return Committed::No(error),
                Err(WriteFailure::DuringCommit(error)) => {
                    self.conn.discard();
                    return self.resolve(batch, error).await;
                }
                Err(WriteFailure::DuringStatement(error)) => {
                    self.conn.discard();
                    match self.resolve(batch, error).await {
                        Committed::No(error) if !retried => {
                            tracing::warn!(%error, "the writer's connection broke before its statement committed; retrying the batch once on a new one");
                            retried = true;
                            looked_up = true;
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    /// On a new connection, the log must still end where this writer left it.
    async fn check_head_if(&mut self, fresh: bool) -> Result<(), StoreError> {
        if !fresh {
            return Ok(());
        }
        let conn = self.conn.get().await?;
        let head = log::head_on(conn).await?;
        if head != self.committed {
            return Err(StoreError::HeadMoved { expected: self.committed.0, found: head.0 });
        }
        Ok(())
    }

    /// After a connection lost during COMMIT: is the batch's last event in the log?
    async fn resolve(&mut self, batch: &Batch, error: StoreError) -> Committed {
        let Some(last) = batch.events.last() else { return Committed::Unknown(error) };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(COMMIT_RESOLVE_MS);
        loop {
            let found = match self.conn.get().await {
                Ok(conn) => log::hash_at(conn, last.position).await,
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(hash)) if hash == last.hash => {
                    tracing::warn!(%error, position = last.position, "COMMIT lost its connection but the batch is in the log");
                    return Committed::Yes;
                }
                Ok(_) => return Committed::No(error),
                Err(lookup) => {
                    self.conn.discard();
                    if tokio::time::Instant::now() >= deadline {
                        tracing::error!(%lookup, "cannot find out whether the batch was committed");
                        return Committed::Unknown(error);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Reloads the state from the database after a failed or unknown commit, backing off
    /// between attempts and answering queued requests with an error meanwhile. Gives up after
    /// `reload_give_up`; an unreadable log is not retried. Returns false when a shutdown came
    /// first: the writer then stops without a state to decide on.
    async fn reload(&mut self, receiver: &mut mpsc::Receiver<Message>) -> Result<bool, StoreError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(RELOAD_BACKOFF_FIRST_MS);
        loop {
            let error = match self.load_state().await {
                Ok((state, head)) if head == (state.head_position, state.head_hash.clone()) => {
                    self.committed = head;
                    self.state = state;
                    update(&self.health, |h| h.status = WriterStatus::Running);
                    tracing::info!(position = self.committed.0, "ledger state reloaded");
                    return Ok(true);
                }
                Ok(_) => StoreError::HeadMoved { expected: -1, found: -1 },
                Err(error) => error,
            };
            if matches!(error, StoreError::UnusableEvent { .. }) {
                return Err(error);
            }
            if is_connection_failure(&error) {
                self.conn.discard();
            }
            if started.elapsed() >= self.options.reload_give_up {
                return Err(StoreError::GaveUp {
                    after_ms: started.elapsed().as_millis() as u64,
                    last: error.to_string(),
                });
            }
            tracing::error!(%error, retry_in_ms = pause.as_millis() as u64, "cannot reload the ledger state");
            update(&self.health, |h| {
                h.status = WriterStatus::Recovering(error.to_string());
                h.last_error = Some(error.to_string());
                h.last_error_micros = Some(Db::now_micros());
            });
            self.refuse_while(pause, receiver, &error).await;
            if self.stopping {
                tracing::warn!(%error, "shutting down before the ledger state could be reloaded");
                self.stale = true;
                return Ok(false);
            }
            pause = (pause * 2).min(Duration::from_millis(RELOAD_BACKOFF_MAX_MS));
        }
    }

    /// The log head on the writer's connection (taking the lock first) and the state loaded.
    async fn load_state(&mut self) -> Result<(LedgerState, (i64, String)), StoreError> {
        let conn = self.conn.get().await?;
        let head = log::head_on(conn).await?;
        let state = LedgerState::load(&self.db).await?;
        Ok((state, head))
    }

    /// Waits `pause`, answering every request that arrives meanwhile with an error.
    async fn refuse_while(&mut self, pause: Duration, receiver: &mut mpsc::Receiver<Message>, error: &StoreError) {
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                message = receiver.recv() => match message {
                    Some(Message::Job(job)) => {
                        let why = format!("the ledger is recovering from a database failure: {error}");
                        let _ = job.reply.send(Err(LedgerError::Unavailable(why)));
                    }
                    Some(Message::Stop) | None => self.stopping = true,
                },
            }
        }
    }
}

/// When the writer snapshots its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotAt {
    /// `snapshot_every_events` events since the last one.
    Mark,
    /// A clean shutdown.
    Shutdown,
}

/// Logs how a snapshot write went (`copied_ms`: the part the writer waited for).
fn snapshot_written(
    why: SnapshotAt,
    position: i64,
    copied_ms: u64,
    started: std::time::Instant,
    result: Result<(), StoreError>,
) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => tracing::info!(?why, position, copied_ms, elapsed_ms, "writer state snapshot written"),
        Err(error) => tracing::warn!(%error, ?why, position, "writer state snapshot not written"),
    }
}

/// One transaction: registry rows, events, the projection row writes of its events.
async fn write_batch(conn: &mut sqlx::AnyConnection, batch: &Batch) -> Result<(), WriteFailure> {
    use sqlx::Connection;
    let before = WriteFailure::BeforeCommit;
    let mut combined = combined_statement(conn, batch);
    if batch.registry.is_empty() {
        if let Some(statement) = combined.take() {
            // One statement is one transaction: a broken connection leaves its outcome unknown.
            return statement.run(conn, &batch.events).await.map_err(|error| {
                if is_connection_failure(&error) {
                    WriteFailure::DuringStatement(error)
                } else {
                    WriteFailure::BeforeCommit(error)
                }
            });
        }
    }
    let mut tx = conn.begin().await.map_err(|e| before(e.into()))?;
    for op in &batch.registry {
        op.apply(&mut tx).await.map_err(before)?;
    }
    match combined {
        Some(statement) => statement.run(&mut tx, &batch.events).await.map_err(before)?,
        None => {
            log::append(&mut tx, &batch.events).await.map_err(before)?;
            tables::write_changes(&mut tx, &batch.rows, &batch.booking_moved).await.map_err(before)?;
        }
    }
    tx.commit().await.map_err(|e| WriteFailure::DuringCommit(e.into()))
}

/// PostgreSQL: the batch's events, their index rows and its projection writes as one
/// statement (`log::Combined`): one round trip instead of one per table. `None` on SQLite
/// (an in-process database: statements cost no round trip), for a batch without events, one
/// that moves a booking ID (cleared before it is set again) or one that gives a table two
/// kinds of write.
fn combined_statement(conn: &sqlx::AnyConnection, batch: &Batch) -> Option<log::Combined> {
    if Backend::of(conn) != Backend::Postgres || batch.events.is_empty() || !batch.booking_moved.is_empty() {
        return None;
    }
    let mut combined = log::Combined::events(&batch.events);
    tables::combined_writes(&batch.rows, &mut combined).then_some(combined)
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
        state.apply(&stored, &event);
        batch.rows.extend(rows_for(&stored, &event, state));
        batch.events.push(stored);
    }
    Ok(decision.outcome)
}

/// Appends the first-start installer's step events (stream `install/site`) inside the
/// installer's own transaction, before any writer runs (`api::install`, under its step claim,
/// so no other process appends meanwhile): positions follow the log's head, each payload is
/// decoded back before it is written, as the writer does.
pub async fn append_install_steps(
    conn: &mut sqlx::AnyConnection,
    events: Vec<LedgerEvent>,
    actor: &Actor,
) -> Result<(), StoreError> {
    let stream = super::decide::install_stream();
    let (mut position, mut hash) = log::head_on(conn).await?;
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(stream_version) FROM events WHERE stream_id = $1")
        .bind(stream.uuid().to_string())
        .fetch_one(&mut *conn)
        .await?;
    let last_time: Option<i64> =
        sqlx::query_scalar("SELECT MAX(recorded_at) FROM events").fetch_one(&mut *conn).await?;
    let now = Db::now_micros().max(last_time.unwrap_or(0));
    let mut stored = Vec::new();
    for (offset, event) in events.iter().enumerate() {
        let head =
            Head { position: position + 1, stream_version: version.unwrap_or(0) + 1 + offset as i64, prev_hash: &hash };
        let event = envelope(head, &stream, None, event, actor, now)
            .map_err(|e| StoreError::Database(sqlx::Error::Protocol(e.to_string())))?;
        (position, hash) = (event.position, event.hash.clone());
        stored.push(event);
    }
    log::append(conn, &stored).await
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
        assert!(batch.events.is_empty() && batch.registry.is_empty() && batch.rows.is_empty());
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
