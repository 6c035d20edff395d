//! The writer's own connection, the one-writer-per-ledger lock, and the durability check.
//!
//! One process writes to a ledger at a time, always:
//! - **SQLite**: an exclusive lock on `<database file>.lock`, taken with the OS file lock and
//!   held for as long as the [`WriterLock`] lives (the process's life for `serve`; the
//!   subcommand's for the CLI's write subcommands). The OS releases it when the process dies,
//!   SIGKILL included, so a stale lock file never blocks a restart.
//! - **PostgreSQL**: a session advisory lock taken on the writer's connection itself. A session
//!   lock dies with its session, so every new writer connection (after a PostgreSQL restart, a
//!   `pg_terminate_backend`, a network cut) takes it again before it writes anything, and a
//!   connection that cannot take it is refused: the writer then stops writing.
//!
//! The durability check reads what the database will actually do with a commit: PostgreSQL's
//! `fsync`, `full_page_writes` and `synchronous_commit` (the writer's session always forces
//! `synchronous_commit = on`), SQLite's `journal_mode` and `synchronous` on the writer's
//! connection.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Row};

use super::{Backend, Db, StoreError, SQLITE_PRAGMAS};

/// The PostgreSQL advisory lock class held by the one writing process (per schema).
const WRITER_LOCK_CLASS: i32 = 0x656e_726f;
/// How the writer's PostgreSQL sessions show up in `pg_stat_activity`.
pub const WRITER_APPLICATION_NAME: &str = "enrol-ledger-writer";
/// How long a start waits for another writer (e.g. a process shutting down) to let go.
pub const WRITER_LOCK_WAIT_MS: u64 = 5_000;
/// How long one connection attempt of the writer may take.
pub const WRITER_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Proof that this process is the ledger's one writer. On SQLite it holds the lock file; on
/// PostgreSQL the lock lives in the writer's session (see [`WriterConnection`]) and a CLI
/// subcommand holds it with a session of its own.
#[derive(Debug)]
pub enum WriterLock {
    SqliteFile {
        _file: File,
        path: PathBuf,
    },
    /// An in-memory SQLite database lives and dies with its one connection: nothing to share.
    InMemory,
    Postgres {
        session: Box<AnyConnection>,
    },
}

impl WriterLock {
    /// Takes the ledger's writer lock, waiting up to `wait` for a previous holder to let go.
    pub async fn acquire(db: &Db, wait: Duration) -> Result<Self, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Self::try_acquire(db).await {
                Err(StoreError::WriterLocked(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_acquire(db: &Db) -> Result<Self, StoreError> {
        match db.backend {
            Backend::Sqlite => {
                let Some(path) = sqlite_lock_path(&db.url) else { return Ok(Self::InMemory) };
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| StoreError::LockFile(format!("{}: {e}", path.display())))?;
                match file.try_lock() {
                    Ok(()) => Ok(Self::SqliteFile { _file: file, path }),
                    Err(std::fs::TryLockError::WouldBlock) => {
                        Err(StoreError::WriterLocked(format!("the lock file {} is held", path.display())))
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        Err(StoreError::LockFile(format!("{}: {e}", path.display())))
                    }
                }
            }
            Backend::Postgres => {
                let mut session = connect(db).await?;
                take_advisory_lock(&mut session).await?;
                Ok(Self::Postgres { session: Box::new(session) })
            }
        }
    }
}

/// Where the lock file of a SQLite ledger is: beside the database file.
pub fn sqlite_lock_path(url: &str) -> Option<PathBuf> {
    if is_in_memory(url) {
        return None;
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path.is_empty() {
        return None;
    }
    Some(PathBuf::from(format!("{path}.lock")))
}

/// An in-memory SQLite database (what `Db::connect` makes of `:memory:`).
pub fn is_in_memory(url: &str) -> bool {
    url.starts_with("sqlite:") && url.contains("mode=memory")
}

async fn connect(db: &Db) -> Result<AnyConnection, StoreError> {
    let timeout = Duration::from_millis(WRITER_CONNECT_TIMEOUT_MS);
    let timed_out = |_| StoreError::Database(sqlx::Error::PoolTimedOut);
    let mut conn = if is_in_memory(&db.url) {
        // An in-memory database exists only inside the pool's connections: borrow one for good.
        tokio::time::timeout(timeout, db.pool.acquire()).await.map_err(timed_out)??.detach()
    } else {
        tokio::time::timeout(timeout, AnyConnection::connect(&db.url)).await.map_err(timed_out)??
    };
    match db.backend {
        Backend::Sqlite => {
            sqlx::Executor::execute(&mut conn, SQLITE_PRAGMAS).await?;
        }
        Backend::Postgres => {
            sqlx::Executor::execute(&mut conn, "SET synchronous_commit = on").await?;
            let name = format!("SET application_name = '{WRITER_APPLICATION_NAME}'");
            sqlx::Executor::execute(&mut conn, name.as_str()).await?;
        }
    }
    Ok(conn)
}

async fn take_advisory_lock(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let query =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))").bind(WRITER_LOCK_CLASS);
    let locked: bool = query.fetch_one(&mut *conn).await?;
    if locked {
        Ok(())
    } else {
        Err(StoreError::WriterLocked("another session holds the PostgreSQL writer lock".into()))
    }
}

/// The writer's connection: opened with the backend's settings, on PostgreSQL only usable
/// once it holds the writer lock. Dropped and opened again after a connection failure.
pub struct WriterConnection {
    db: Db,
    conn: Option<AnyConnection>,
}

impl WriterConnection {
    /// Opens the first connection, waiting up to `wait` for the PostgreSQL writer lock.
    pub async fn open(db: &Db, wait: Duration) -> Result<Self, StoreError> {
        let mut this = Self { db: db.clone(), conn: None };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match this.reconnect().await {
                Err(StoreError::WriterLocked(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
                Ok(()) => return Ok(this),
            }
        }
    }

    /// Continues with the session of a lock taken before (`WriterLock::acquire`): on
    /// PostgreSQL that session becomes the writer's connection, so the lock never changes hands.
    pub fn from_lock(db: &Db, lock: WriterLock) -> (Self, Option<WriterLock>) {
        match lock {
            WriterLock::Postgres { session } => (Self { db: db.clone(), conn: Some(*session) }, None),
            file => (Self { db: db.clone(), conn: None }, Some(file)),
        }
    }

    /// The open connection, or a new one (which takes the writer lock again on PostgreSQL).
    pub async fn get(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if self.conn.is_none() {
            self.reconnect().await?;
        }
        Ok(self.conn.as_mut().expect("reconnect leaves a connection"))
    }

    /// Drops the current connection (if any) and opens a new one.
    pub async fn reconnect(&mut self) -> Result<(), StoreError> {
        // A broken connection may not answer a polite close; do not wait for it.
        self.conn = None;
        let mut conn = connect(&self.db).await?;
        if self.db.backend == Backend::Postgres {
            take_advisory_lock(&mut conn).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Forgets the connection after a failure that may have broken it.
    pub fn discard(&mut self) {
        self.conn = None;
    }

    pub async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// What the database does with a commit, read on this connection.
    pub async fn durability(&mut self) -> Result<Durability, StoreError> {
        let backend = self.db.backend;
        let conn = self.get().await?;
        let mut problems = Vec::new();
        let mut settings = Vec::new();
        match backend {
            Backend::Postgres => {
                let rows = sqlx::query(
                    "SELECT name, setting, reset_val FROM pg_settings \
                     WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit') ORDER BY name",
                )
                .fetch_all(&mut *conn)
                .await?;
                for row in rows {
                    let name: String = row.try_get("name")?;
                    let setting: String = row.try_get("setting")?;
                    let default: String = row.try_get("reset_val")?;
                    settings.push((name.clone(), setting.clone()));
                    match name.as_str() {
                        "synchronous_commit" => {
                            if setting != "on" && setting != "remote_apply" && setting != "remote_write" {
                                problems.push(format!("synchronous_commit is {setting} in the writer's session"));
                            } else if default == "off" || default == "local" {
                                tracing::warn!(
                                    default = %default,
                                    "PostgreSQL's synchronous_commit default is not on; the writer's session forces it on"
                                );
                            }
                        }
                        _ if setting != "on" => problems.push(format!("{name} is {setting}")),
                        _ => {}
                    }
                }
            }
            Backend::Sqlite => {
                let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await?;
                settings.push(("journal_mode".into(), journal.clone()));
                settings.push(("synchronous".into(), synchronous.to_string()));
                if !journal.eq_ignore_ascii_case("wal") {
                    problems.push(format!("journal_mode is {journal}, not wal"));
                }
                // 2 = FULL, 3 = EXTRA.
                if synchronous < 2 {
                    problems.push(format!("synchronous is {synchronous}, not FULL (2)"));
                }
            }
        }
        Ok(Durability { settings, problems })
    }
}

/// The durability settings found and what is unsafe about them (empty = safe).
#[derive(Debug, Clone, Default)]
pub struct Durability {
    pub settings: Vec<(String, String)>,
    pub problems: Vec<String>,
}

impl Durability {
    pub fn is_safe(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Whether a failure means the connection itself is gone (so a new one may succeed), rather
/// than the database refusing the statement.
pub fn is_connection_failure(error: &StoreError) -> bool {
    match error {
        StoreError::Database(error) => match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exception; 57P01..57P03: the server is shutting down or
            // starting; 3D000/28xxx do not heal by reconnecting.
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
            }
            _ => false,
        },
        _ => false,
    }
}
