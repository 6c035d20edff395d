//! The database's own limit, measured in the same run as the ledger: one row the size and shape
//! of an event row per durable transaction, from N concurrent clients, into a scratch table
//! with the `events` table's columns and indexes (no triggers).
//!
//! PostgreSQL: `pgbench -n -f script -c N -j 2 -T s`. SQLite: a raw loop through sqlx's SQLite
//! driver with the server's pragmas (WAL, `synchronous=FULL`), N tasks, one INSERT each.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enrol_ledger::store::log::StoredEvent;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";
const SCRATCH: &str = "bench_limit";

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// PostgreSQL: creates the scratch table in `schema` and runs pgbench; returns transactions/s.
pub async fn pgbench(
    admin: &sqlx::AnyPool,
    base_url: &str,
    schema: &str,
    sample: &StoredEvent,
    clients: usize,
    seconds: u64,
    dir: &std::path::Path,
) -> Result<f64, String> {
    for statement in [
        format!("DROP TABLE IF EXISTS {schema}.{SCRATCH}"),
        format!("CREATE TABLE {schema}.{SCRATCH} (LIKE {schema}.events INCLUDING ALL)"),
        format!("CREATE SEQUENCE IF NOT EXISTS {schema}.{SCRATCH}_seq"),
    ] {
        sqlx::query(&statement).execute(admin).await.map_err(|e| format!("{statement}: {e}"))?;
    }
    let s = sample;
    let script = format!(
        "INSERT INTO {SCRATCH} (position, stream_id, stream_type, stream_key, stream_version, event_type, \
         schema_version, recorded_at, actor_user_id, actor_token_id, request_id, booking_id, payload, hash) \
         VALUES (nextval('{SCRATCH}_seq'), gen_random_uuid()::text, {}, {}, 1, {}, {}, {}, 3, 1, \
         gen_random_uuid()::text, {}, {}, {});\n",
        quote(&s.stream_type),
        quote(&s.stream_key),
        quote(&s.event_type),
        s.schema_version,
        s.recorded_at,
        quote(s.booking_id.as_deref().unwrap_or("bench")),
        quote(&s.payload),
        quote(&s.hash),
    );
    let path = dir.join("pgbench-insert.sql");
    std::fs::write(&path, script).map_err(|e| format!("write {}: {e}", path.display()))?;
    // -T includes the clients' connection (SCRAM, one after another per thread: up to ~100 ms
    // each on a busy machine); the tps pgbench reports excludes it.
    let duration = seconds + 1 + clients as u64 / 10;
    let output = std::process::Command::new(PGBENCH)
        .args(["-n", "-j", "2", "-c", &clients.to_string(), "-T", &duration.to_string(), "-f"])
        .arg(&path)
        .arg(base_url)
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()
        .map_err(|e| format!("run {PGBENCH}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr)));
    }
    stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench's output: {stdout}"))
}

/// SQLite: a scratch file in the run's temporary directory with the `events` schema and the
/// server's pragmas, `clients` tasks inserting one row per transaction for `seconds`; rows/s.
pub async fn sqlite_loop(
    ledger_file: &std::path::Path,
    dir: &std::path::Path,
    sample: &StoredEvent,
    clients: usize,
    seconds: u64,
) -> Result<f64, String> {
    let ledger = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(ledger_file).read_only(true))
        .await
        .map_err(|e| format!("open {}: {e}", ledger_file.display()))?;
    let schema: Vec<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN ('table', 'index') AND sql IS NOT NULL \
         ORDER BY type DESC",
    )
    .fetch_all(&ledger)
    .await
    .map_err(|e| format!("read the events schema: {e}"))?;
    ledger.close().await;
    let file = dir.join(format!("limit-{clients}.db"));
    let _ = std::fs::remove_file(&file);
    let pool = SqlitePoolOptions::new()
        .max_connections(clients as u32)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10)),
        )
        .await
        .map_err(|e| format!("open {}: {e}", file.display()))?;
    for statement in &schema {
        let statement = statement.replace("events", SCRATCH);
        sqlx::query(&statement).execute(&pool).await.map_err(|e| format!("{statement}: {e}"))?;
    }
    let next = Arc::new(AtomicI64::new(1));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (pool, next, s) = (pool.clone(), next.clone(), sample.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    sqlx::query(&format!(
                        "INSERT INTO {SCRATCH} (position, stream_id, stream_type, stream_key, stream_version, \
                         event_type, schema_version, recorded_at, actor_user_id, actor_token_id, request_id, \
                         booking_id, payload, hash) VALUES (?, ?, ?, ?, 1, ?, ?, ?, 3, 1, ?, ?, ?, ?)"
                    ))
                    .bind(n)
                    .bind(format!("{n:032x}"))
                    .bind(&s.stream_type)
                    .bind(&s.stream_key)
                    .bind(&s.event_type)
                    .bind(s.schema_version)
                    .bind(s.recorded_at)
                    .bind(format!("limit-{n}"))
                    .bind(&s.booking_id)
                    .bind(&s.payload)
                    .bind(&s.hash)
                    .execute(&pool)
                    .await
                    .map_err(|e| format!("insert: {e}"))?;
                    done += 1;
                }
                Ok::<u64, String>(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    Ok(rate)
}
