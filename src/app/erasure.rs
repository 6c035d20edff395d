//! Erasure that leaves nothing, and a person's export (issue 8 item 5).
//!
//! `core_user_delete_users` (through the writer, like every change) blanks the registry row
//! and deletes the profile fields; on disk the old bytes would survive in free space, WAL
//! frames and dead tuples. The [`Scrubber`] removes them right after an erasure commits, in a
//! background task, so the deletion's own latency stays that of one batch:
//!
//! - SQLite: every connection runs with `secure_delete` (`store::SQLITE_PRAGMAS`), so freed
//!   cell space and freed pages are zeroed; the scrub then checkpoints the WAL with `TRUNCATE`,
//!   which copies the current pages into the file and empties the `-wal` file and its old frames.
//! - PostgreSQL: `VACUUM FULL` of the registry tables rewrites them (and their indexes and TOAST)
//!   into new files holding the live rows only; the old files are truncated at once. It first
//!   waits (bounded) for sessions whose snapshot predates the erasure: VACUUM keeps what an open
//!   snapshot may still see (`pg_stat_activity.backend_xmin`; sessions of other roles show it
//!   only to members of `pg_read_all_stats`). VACUUM
//!   cannot run in a transaction and needs the tables' owner: the scrubber uses the owner's
//!   connection when there is one (`--migrate-url`); as the runtime role only, it says so in
//!   the log and leaves the dead versions to autovacuum (docs/OPERATIONS.md).
//!
//! Requests coalesce: however many erasures commit while a scrub runs, one more scrub follows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Column, Row};
use tokio::sync::{watch, Notify};

use crate::app::audit;
use crate::store::log::{self};
use crate::store::{Backend, Db, StoreError};

/// The registry tables that hold personal data.
pub const PERSONAL_TABLES: [&str; 2] = ["users", "user_profile_data"];

/// How often a SQLite `TRUNCATE` checkpoint is tried while readers hold old snapshots.
const CHECKPOINT_ATTEMPTS: u32 = 50;
const CHECKPOINT_RETRY_MS: u64 = 20;
/// How long the scrub task waits after a request before it scrubs, so that one scrub covers a
/// burst of deletions (bench: one TRUNCATE checkpoint per deletion made each 3.6× a create).
const SCRUB_GATHER_MS: u64 = 250;
/// How long the PostgreSQL scrub waits for sessions whose snapshot predates the erasure (a long
/// `verify` or export): their snapshot keeps the old row versions alive through a VACUUM FULL.
const SNAPSHOT_WAIT_MS: u64 = 60_000;

/// The coalescing background scrub after erasures. Cheap to clone; one task per ledger.
#[derive(Clone)]
pub struct Scrubber {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the scrub runs: the ledger's database, or its owner's connection.
    db: StdMutex<Db>,
    requested: AtomicU64,
    wake: Arc<Notify>,
    /// The last request number a finished scrub covered, with its error if it failed.
    done: watch::Sender<(u64, Option<String>)>,
}

impl Scrubber {
    /// Starts the task on the current runtime. It ends when the last handle is dropped.
    pub fn start(db: Db) -> Self {
        let (done, _) = watch::channel((0, None));
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner { db: StdMutex::new(db), requested: AtomicU64::new(0), wake: wake.clone(), done });
        tokio::spawn(run(Arc::downgrade(&inner), wake));
        Self { inner }
    }

    /// Runs later scrubs through `owner` (PostgreSQL: the tables' owner may VACUUM them).
    pub fn use_owner(&self, owner: Db) {
        *self.inner.db.lock().unwrap_or_else(|p| p.into_inner()) = owner;
    }

    /// Asks for a scrub after the erasure that just committed; returns its ticket for `wait`.
    pub fn request(&self) -> u64 {
        let ticket = self.inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.wake.notify_one();
        ticket
    }

    /// Waits for a scrub covering every request made so far (none made: at once).
    pub async fn wait_all(&self) -> Result<(), String> {
        self.wait(self.inner.requested.load(Ordering::SeqCst)).await
    }

    /// Waits until a scrub that started after `ticket` was requested has finished.
    pub async fn wait(&self, ticket: u64) -> Result<(), String> {
        let mut done = self.inner.done.subscribe();
        let state = done.wait_for(|(covered, _)| *covered >= ticket).await.map_err(|e| e.to_string())?;
        match &state.1 {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

async fn run(inner: std::sync::Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let target = strong.requested.load(Ordering::SeqCst);
        let covered = strong.done.borrow().0;
        if target <= covered {
            drop(strong);
            // Notify keeps one permit, so a request made since the load above is not lost; the
            // timeout notices now and then that every handle is gone.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        // A short pause gathers a burst of deletions into one scrub: a TRUNCATE checkpoint
        // holds back the writer's next commit while it runs.
        drop(strong);
        tokio::time::sleep(std::time::Duration::from_millis(SCRUB_GATHER_MS)).await;
        let Some(strong) = inner.upgrade() else { return };
        let target = strong.requested.load(Ordering::SeqCst);
        let db = strong.db.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let outcome = scrub(&db).await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "scrubbing erased personal data from disk failed; it runs again after the next erasure");
        }
        strong.done.send_replace((target, outcome.err().map(|e| e.to_string())));
    }
}

/// Removes the bytes of erased and overwritten personal data from the database's files.
pub async fn scrub(db: &Db) -> Result<(), StoreError> {
    match db.backend {
        Backend::Sqlite => checkpoint_truncate(db).await,
        Backend::Postgres => vacuum_registry(db).await,
    }
}

async fn checkpoint_truncate(db: &Db) -> Result<(), StoreError> {
    let mut conn = db.pool.acquire().await?;
    for _ in 0..CHECKPOINT_ATTEMPTS {
        // (busy, frames in the WAL, frames checkpointed); busy = 1 while a reader holds an old
        // snapshot: the WAL cannot be emptied yet.
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?;
        let busy: i64 = row.try_get(0)?;
        if busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(CHECKPOINT_RETRY_MS)).await;
    }
    Err(StoreError::Database(sqlx::Error::Protocol(
        "the SQLite WAL could not be truncated: readers kept old snapshots open".into(),
    )))
}

async fn vacuum_registry(db: &Db) -> Result<(), StoreError> {
    let owned: bool = sqlx::query_scalar(
        "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) FROM pg_class c \
         WHERE c.oid IN ('users'::regclass, 'user_profile_data'::regclass)",
    )
    .fetch_one(&db.pool)
    .await?;
    if !owned {
        return Err(StoreError::Database(sqlx::Error::Protocol(
            "this role does not own the registry tables and cannot VACUUM FULL them: erased personal data stays \
             in their dead row versions until autovacuum reuses the space; run the server with --migrate-url, or \
             `enrol-ledger user scrub --migrate-url ...` (docs/OPERATIONS.md)"
                .into(),
        )));
    }
    // VACUUM FULL keeps a dead row version that an open snapshot may still see: wait (bounded)
    // until every session of this database that started before now has moved on.
    let horizon: String =
        sqlx::query_scalar("SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint % 4294967296)::text")
            .fetch_one(&db.pool)
            .await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(SNAPSHOT_WAIT_MS);
    let older = loop {
        let older: Vec<(i32, String)> = sqlx::query_as(
            "SELECT pid, coalesce(xact_start::text, '') FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL \
             AND age(backend_xmin) >= age($1::text::xid)",
        )
        .bind(horizon.clone())
        .fetch_all(&db.pool)
        .await?;
        if older.is_empty() || std::time::Instant::now() >= deadline {
            break older;
        }
        tokio::time::sleep(std::time::Duration::from_millis(CHECKPOINT_RETRY_MS * 5)).await;
    };
    // ANALYZE refreshes the planner statistics from the live rows (migration 11 keeps the
    // personal columns out of them anyway: statistics target 0).
    sqlx::raw_sql("VACUUM (FULL, ANALYZE) users, user_profile_data").execute(&db.pool).await?;
    if let Some((pid, since)) = older.first() {
        return Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "session {pid} (in a transaction since {since}) held a snapshot older than the erasure for more than \
             {SNAPSHOT_WAIT_MS} ms, so its dead row versions were kept; run `enrol-ledger user scrub` again once it ended"
        ))));
    }
    Ok(())
}

/// Everything the ledger holds about one user, as `user export` and `ledger_export_user` give it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserExport {
    pub user_id: i64,
    /// The registry row (`users`), or `None` for an unknown id.
    pub user: Option<Value>,
    pub profile: Vec<Value>,
    /// Each with its instance's course and booking ID.
    pub user_enrolments: Vec<Value>,
    pub course_completions: Vec<Value>,
    pub recompletion_history: Vec<Value>,
    /// Every event of every stream about the user, in log order, in `export`'s form.
    pub events: Vec<Value>,
}

/// Reads the export of `user_id` in one consistent snapshot.
pub async fn export_user(db: &Db, user_id: i64) -> Result<UserExport, StoreError> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let user = select(&mut tx, "SELECT * FROM users WHERE id = $1", user_id).await?.into_iter().next();
    let profile =
        select(&mut tx, "SELECT shortname, data FROM user_profile_data WHERE userid = $1 ORDER BY shortname", user_id)
            .await?;
    let user_enrolments = select(
        &mut tx,
        "SELECT ue.*, e.courseid, e.customchar1 AS semcobookingid, e.status AS instance_status \
         FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid WHERE ue.userid = $1 ORDER BY ue.id",
        user_id,
    )
    .await?;
    let course_completions =
        select(&mut tx, "SELECT * FROM course_completions WHERE userid = $1 ORDER BY course", user_id).await?;
    let recompletion_history =
        select(&mut tx, "SELECT * FROM recompletion_history WHERE userid = $1 ORDER BY id", user_id).await?;
    let (head, _) = log::head_on(&mut tx).await?;
    let events = log::read_user_until(&mut tx, user_id, head, false).await?.iter().map(audit::export_line).collect();
    tx.commit().await?;
    Ok(UserExport { user_id, user, profile, user_enrolments, course_completions, recompletion_history, events })
}

/// Rows of one query with one id parameter, each as a JSON object of its columns.
async fn select(conn: &mut AnyConnection, sql: &str, id: i64) -> Result<Vec<Value>, StoreError> {
    let rows = sqlx::query(sql).bind(id).fetch_all(conn).await?;
    Ok(rows.iter().map(row_json).collect())
}

/// A row as a JSON object: integers, reals and texts as they are, NULL as null.
fn row_json(row: &sqlx::any::AnyRow) -> Value {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            json!(v)
        } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
            json!(v)
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            json!(v)
        } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            json!(v)
        } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
            json!(v)
        } else {
            Value::Null
        };
        object.insert(column.name().to_owned(), value);
    }
    Value::Object(object)
}
