//! The record of `verify` runs (migration 14, table `verification_runs`): every run of
//! `enrol-ledger verify` (and of any verify API) appends one row, and the health check reads the
//! newest to say how old the last verification is and whether it passed.
//!
//! Not events: a verification changes nothing in the ledger, and the log must not grow because
//! someone looked at it. Rows are appended, never changed.

use serde::Serialize;
use sqlx::Row;

use super::audit::VerifyReport;
use crate::store::{Db, StoreError};

/// What one `verify` run found, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyOutcome {
    /// When the run finished (Unix microseconds).
    pub time_us: i64,
    /// No mismatch at all (hash chain, positions, versions, projections, checkpoints).
    pub ok: bool,
    /// How many problems it listed.
    pub mismatches: i64,
    /// How many events it read.
    pub log_length: i64,
    /// The log head position when the run finished.
    pub head_position: i64,
    /// How long the run took.
    pub duration_ms: i64,
    /// Who ran it: `cli`, `api`, ...
    pub source: String,
}

impl VerifyOutcome {
    /// The outcome of `report`, finished now, `started` being when the run began.
    pub fn of(report: &VerifyReport, head_position: i64, started: std::time::Instant, source: &str) -> Self {
        Self {
            time_us: Db::now_micros(),
            ok: report.is_ok(),
            mismatches: report.problems.len() as i64,
            log_length: report.events,
            head_position,
            duration_ms: started.elapsed().as_millis().min(i64::MAX as u128) as i64,
            source: source.to_owned(),
        }
    }

    pub fn result(&self) -> &'static str {
        if self.ok {
            "ok"
        } else {
            "failed"
        }
    }
}

/// Appends one run to the record.
pub async fn record_verification(db: &Db, outcome: &VerifyOutcome) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_runs (time_us, result, mismatches, log_length, head_position, duration_ms, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(outcome.time_us)
    .bind(outcome.result())
    .bind(outcome.mismatches)
    .bind(outcome.log_length)
    .bind(outcome.head_position)
    .bind(outcome.duration_ms)
    .bind(outcome.source.as_str())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The newest recorded run, if any.
pub async fn last_verification(db: &Db) -> Result<Option<VerifyOutcome>, StoreError> {
    let row = sqlx::query(
        "SELECT time_us, result, mismatches, log_length, head_position, duration_ms, source \
         FROM verification_runs ORDER BY time_us DESC LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let result: String = row.try_get("result")?;
    Ok(Some(VerifyOutcome {
        time_us: row.try_get("time_us")?,
        ok: result == "ok",
        mismatches: row.try_get("mismatches")?,
        log_length: row.try_get("log_length")?,
        head_position: row.try_get("head_position")?,
        duration_ms: row.try_get("duration_ms")?,
        source: row.try_get("source")?,
    }))
}
