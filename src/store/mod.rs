//! The database shell: one connection pool for either backend, migrations, and the event log.
//!
//! Both backends are reached through sqlx's `Any` driver with SQL written once (numbered `$n`
//! parameters, `ON CONFLICT ... DO UPDATE`), so a behaviour cannot drift between them; the
//! few differences (pragmas, advisory lock, schema files) are chosen by `Backend`.

pub mod esrs_store;
pub mod log;
pub mod privileges;
pub mod writer_conn;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::time::Duration;

/// Connections for API reads and the CLI; the writer holds one more of its own.
pub const POOL_CONNECTIONS_MAX: u32 = 16;
/// Durable WAL (the anchors: `NORMAL` lets checkpoints dominate), a 10 000 ms wait for the
/// writer's lock before a statement fails, and `secure_delete`: deleted and overwritten content
/// (an updated or erased user's old name, e-mail, profile fields) is zeroed in its page instead
/// of lingering in free space (issue 8 item 5; `app::erasure` then truncates the WAL).
pub(crate) const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON;";
pub const POOL_ACQUIRE_TIMEOUT_MS: u64 = 30_000;

/// A NULL for a `DOUBLE PRECISION` parameter. sqlx-core 0.8.6 converts an `Any` NULL of kind
/// `Double` (what `Option::<f64>::None` produces) into a PostgreSQL `float4` NULL and one of kind
/// `Real` into `float8` (`AnyArguments::convert_to`, the two arms are swapped). PostgreSQL then
/// prepares the cached statement with a `float4` parameter and every later non-NULL `f64`
/// (8 bytes) fails with "incorrect binary data format". Binding this value instead gives
/// PostgreSQL the `float8` it needs; SQLite ignores the kind. Every NULL real goes through here
/// (`projection::tables::bind_value`), and `typed_binds_null_value_null` checks each nullable
/// column on both backends, so a sqlx upgrade that fixes the swap is caught too.
pub const NULL_DOUBLE: Option<f32> = None;

/// The PostgreSQL advisory lock class of schema changes (per schema); not the writer's.
const SCHEMA_LOCK_CLASS: i32 = 0x656e_6d67;

/// The default database of `serve` and every data subcommand: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://enrol-ledger.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The backend a connection speaks, from sqlx's driver name.
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event that cannot be folded: the ledger cannot load past it (docs/EVENTS.md,
    /// "An unreadable or impossible event").
    #[error("stored event at position {position} ({event_type}) {problem}")]
    UnusableEvent { position: i64, event_type: String, problem: EventProblem },
    #[error("unsupported database URL {0:?}: use postgres://... or sqlite://FILE")]
    UnsupportedUrl(String),
    #[error("the event log is append-only: {0}")]
    AppendOnly(&'static str),
    #[error("another enrol-ledger process is writing to this database ({0})")]
    WriterLocked(String),
    #[error("cannot open the SQLite database for writing (is the file or its directory read-only?): {0}")]
    Unwritable(String),
    #[error("cannot use the writer lock file {0}")]
    LockFile(String),
    #[error(
        "the database does not make commits durable: {}; fix the settings, or start with \
         --allow-unsafe-durability to accept losing acknowledged changes in a crash",
        .0.join("; ")
    )]
    UnsafeDurability(Vec<String>),
    #[error("the log head is at position {found}, not at {expected} where this writer left it")]
    HeadMoved { expected: i64, found: i64 },
    #[error("the batch append wrote {written} events instead of {expected}")]
    AppendMismatch { expected: usize, written: i64 },
    #[error("gave up after {after_ms} ms of failed attempts: {last}")]
    GaveUp { after_ms: u64, last: String },
}

/// Why a stored event cannot be folded.
#[derive(Debug, thiserror::Error)]
pub enum EventProblem {
    /// The payload does not decode (at its schema version) into the event its row names.
    #[error("is unreadable: {0}")]
    Unreadable(String),
    /// It decodes, but cannot follow its stream's state.
    #[error("is impossible: {0}")]
    Impossible(#[from] crate::domain::ImpossibleEvent),
}

/// A pool for one database plus which backend it is.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    pub url: String,
}

impl Db {
    /// Opens (creating a SQLite file if needed) the database at `url`; a bare path means SQLite.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalise_url(url)?;
        if backend == Backend::Sqlite {
            probe_sqlite(&url).await?;
        }
        let pool = options(backend).connect(&url).await?;
        Ok(Self { pool, backend, url })
    }

    /// Applies every migration not applied yet, each in one transaction with its record, under
    /// the schema lock (`begin_schema_change`). The projection tables are not migrations:
    /// `app::audit::upgrade_projections` replaces them.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // Read-only when every migration is recorded, so a runtime role without CREATE on the
        // schema starts on a database its owner migrated (docs/OPERATIONS.md).
        let applied: Result<i64, _> =
            sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations").fetch_one(&self.pool).await;
        if applied.is_ok_and(|n| n >= migrations(self.backend).len() as i64) {
            return Ok(());
        }
        for (version, name, sql) in migrations(self.backend) {
            let mut tx = self.begin_schema_change().await?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
            )
            .execute(&mut *tx)
            .await?;
            let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                .bind(*version)
                .bind(*name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, name, "applied migration");
        }
        Ok(())
    }

    /// A transaction that holds the schema lock until it ends, so processes that start at once
    /// (or a start whose killed predecessor's session the server has not ended yet) change the
    /// schema one after another: SQLite's write lock from the first statement on, a
    /// transaction-level advisory lock on PostgreSQL.
    pub async fn begin_schema_change(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
                    .bind(SCHEMA_LOCK_CLASS)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    pub fn now_micros() -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// Opens one connection with the pragmas first, so that a file the process cannot write (the
/// pragmas switch it to WAL) is refused at once and clearly, instead of the pool retrying the
/// connection until its acquire timeout.
async fn probe_sqlite(url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let unwritable = |e: sqlx::Error| StoreError::Unwritable(format!("{url}: {e}"));
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(unwritable)?;
    sqlx::Executor::execute(&mut conn, SQLITE_PRAGMAS).await.map_err(unwritable)?;
    conn.close().await.map_err(unwritable)
}

/// Planner settings of the pooled (read) PostgreSQL sessions; see `options`.
const PG_READ_SETTINGS: &str = "SET random_page_cost = 1.1";

fn options(backend: Backend) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .acquire_timeout(Duration::from_millis(POOL_ACQUIRE_TIMEOUT_MS));
    match backend {
        // After a PostgreSQL restart or a terminated session, idle pooled connections are dead:
        // the liveness ping replaces them instead of failing the next read. SQLite files do
        // not go away, and the anchors measured +21 % there without the ping.
        // The projections are small and hot next to the log: a random page read costs about
        // what a sequential one does, and with the default estimate (4×) PostgreSQL scans all
        // user enrolments for one course instead of probing its index (issue 7).
        Backend::Postgres => options.test_before_acquire(true).after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, PG_READ_SETTINGS).await?;
                Ok(())
            })
        }),
        Backend::Sqlite => options.test_before_acquire(false).after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, SQLITE_PRAGMAS).await?;
                Ok(())
            })
        }),
    }
}

fn normalise_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    if path == ":memory:" {
        // Only for trying things out: nothing survives the process (the durability check says so).
        // Named, so that every connection of the pool (sqlx's `Any` parses the URL per
        // connection) opens the same in-memory database.
        let name = format!("enrol-ledger-memory-{}", std::process::id());
        return Ok((Backend::Sqlite, format!("sqlite:file:{name}?mode=memory&cache=shared")));
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let query = if query.is_empty() { "mode=rwc".to_owned() } else { format!("{query}&mode=rwc") };
    Ok((Backend::Sqlite, format!("sqlite://{path}?{query}")))
}

type Migration = (i64, &'static str, &'static str);

fn migrations(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => &[
            (1, "event_log", include_str!("../../migrations/sqlite/0001_event_log.sql")),
            (2, "tokens", include_str!("../../migrations/sqlite/0002_tokens.sql")),
            (3, "unique_live_usernames", include_str!("../../migrations/sqlite/0003_unique_live_usernames.sql")),
            (4, "writer_snapshots", include_str!("../../migrations/sqlite/0004_writer_snapshots.sql")),
            (5, "enrolment_course", include_str!("../../migrations/sqlite/0005_enrolment_course.sql")),
            (6, "token_generation", include_str!("../../migrations/sqlite/0006_token_generation.sql")),
            (7, "token_outbox", include_str!("../../migrations/sqlite/0007_token_outbox.sql")),
            (9, "checkpoints", include_str!("../../migrations/sqlite/0009_checkpoints.sql")),
            (10, "stream_subject", include_str!("../../migrations/sqlite/0010_stream_subject.sql")),
            (11, "stream_user", include_str!("../../migrations/sqlite/0011_stream_user.sql")),
            (12, "one_subject_index", include_str!("../../migrations/sqlite/0012_one_subject_index.sql")),
            (13, "web_accounts", include_str!("../../migrations/sqlite/0013_web_accounts.sql")),
            (14, "verification_runs", include_str!("../../migrations/sqlite/0014_verification_runs.sql")),
            (15, "report_sorts", include_str!("../../migrations/sqlite/0015_report_sorts.sql")),
            (16, "audit_api", include_str!("../../migrations/sqlite/0016_audit_api.sql")),
        ],
        Backend::Postgres => &[
            (1, "event_log", include_str!("../../migrations/postgres/0001_event_log.sql")),
            (2, "tokens", include_str!("../../migrations/postgres/0002_tokens.sql")),
            (3, "unique_live_usernames", include_str!("../../migrations/postgres/0003_unique_live_usernames.sql")),
            (4, "writer_snapshots", include_str!("../../migrations/postgres/0004_writer_snapshots.sql")),
            (5, "enrolment_course", include_str!("../../migrations/postgres/0005_enrolment_course.sql")),
            (6, "token_generation", include_str!("../../migrations/postgres/0006_token_generation.sql")),
            (7, "token_outbox", include_str!("../../migrations/postgres/0007_token_outbox.sql")),
            (
                8,
                "token_generation_rows_only",
                include_str!("../../migrations/postgres/0008_token_generation_rows_only.sql"),
            ),
            (9, "checkpoints", include_str!("../../migrations/postgres/0009_checkpoints.sql")),
            (10, "stream_subject", include_str!("../../migrations/postgres/0010_stream_subject.sql")),
            (11, "stream_user", include_str!("../../migrations/postgres/0011_stream_user.sql")),
            (12, "one_subject_index", include_str!("../../migrations/postgres/0012_one_subject_index.sql")),
            (13, "web_accounts", include_str!("../../migrations/postgres/0013_web_accounts.sql")),
            (14, "verification_runs", include_str!("../../migrations/postgres/0014_verification_runs.sql")),
            (15, "report_sorts", include_str!("../../migrations/postgres/0015_report_sorts.sql")),
            (16, "audit_api", include_str!("../../migrations/postgres/0016_audit_api.sql")),
        ],
    }
}
