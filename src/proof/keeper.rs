//! The server's checkpoint task: the writer tells it each committed head (a `watch`, no wait);
//! it keeps the Merkle frontier (O(log n) hashes), reads only the new events' hashes from the
//! log, and signs a checkpoint every `every_events` events or `every` (when there are new
//! events), and once more when the writer shuts down. Off the commit path: a failure is logged
//! and tried again at the next mark; the log stays the truth.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::merkle::Frontier;
use super::{store, LedgerKey, ProofError};
use crate::store::Db;

pub const CHECKPOINT_EVERY_EVENTS: i64 = 10_000;
pub const CHECKPOINT_EVERY_MINUTES: u64 = 60;

/// When and with what the server signs checkpoints (`serve --checkpoint-every-events`,
/// `--checkpoint-every-minutes`, `--signing-key`, `--checkpoint-file`).
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    pub key: LedgerKey,
    pub file: PathBuf,
    pub every_events: i64,
    pub every: Duration,
}

/// The writer's handle on the task.
pub struct CheckpointTask {
    heads: watch::Sender<(i64, String)>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl CheckpointTask {
    /// Starts the task at the writer's committed head.
    pub fn start(db: Db, options: CheckpointOptions, head: (i64, String)) -> Self {
        let (heads, receiver) = watch::channel(head);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(db, options, receiver, stopped));
        Self { heads, stop: Some(stop), task }
    }

    /// The writer committed up to `head`. Never waits.
    pub fn committed(&self, head: (i64, String)) {
        self.heads.send_if_modified(|current| {
            let moved = *current != head;
            *current = head;
            moved
        });
    }

    /// Signs the final checkpoint (at the last committed head) and waits for it.
    pub async fn shutdown(mut self, head: (i64, String)) {
        self.committed(head);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

struct Keeper {
    db: Db,
    options: CheckpointOptions,
    /// The tree at `signed`; `None` until read from the newest stored checkpoint.
    frontier: Option<Frontier>,
    signed: i64,
}

impl Keeper {
    async fn sign(&mut self, head: &(i64, String), why: &'static str) -> Result<(), ProofError> {
        let mut conn = self.db.pool.acquire().await?;
        let frontier = match self.frontier.take() {
            Some(frontier) => frontier,
            None => store::latest_frontier(&mut conn).await?.0,
        };
        let frontier = if frontier.size() as i64 > head.0 { Frontier::default() } else { frontier };
        let frontier = store::extend(&mut conn, frontier, head.0, &head.1).await?;
        let checkpoint = self.options.key.sign(head.0, &head.1, &frontier.root(), Db::now_micros());
        store::insert(&mut conn, &checkpoint, &frontier, &self.options.key.public_hex()).await?;
        checkpoint.append_to(&self.options.file)?;
        tracing::info!(why, position = head.0, root = %checkpoint.merkle_root, file = %self.options.file.display(), "checkpoint signed");
        self.signed = head.0;
        self.frontier = Some(frontier);
        Ok(())
    }

    async fn sign_logged(&mut self, head: &(i64, String), why: &'static str) {
        if let Err(error) = self.sign(head, why).await {
            tracing::warn!(%error, why, position = head.0, "checkpoint not signed");
        }
    }
}

async fn run(
    db: Db,
    options: CheckpointOptions,
    mut heads: watch::Receiver<(i64, String)>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut timer = tokio::time::interval(options.every.max(Duration::from_millis(10)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;
    let every_events = options.every_events.max(1);
    let start = heads.borrow().0;
    let mut keeper = Keeper { db, options, frontier: None, signed: start };
    loop {
        tokio::select! {
            changed = heads.changed() => {
                if changed.is_err() {
                    return;
                }
                let head = heads.borrow_and_update().clone();
                if head.0 - keeper.signed >= every_events {
                    keeper.sign_logged(&head, "events").await;
                }
            }
            _ = timer.tick() => {
                let head = heads.borrow().clone();
                if head.0 > keeper.signed {
                    keeper.sign_logged(&head, "minutes").await;
                }
            }
            _ = &mut stopped => {
                let head = heads.borrow().clone();
                if head.0 > keeper.signed || head.0 == start && keeper.frontier.is_none() {
                    keeper.sign_logged(&head, "shutdown").await;
                }
                return;
            }
        }
    }
}
