//! The one drain loop of the outboxes (token changes, migration 7; web account changes,
//! migration 13). Any process queues a change in its outbox table in the transaction that makes
//! it; only the writer appends: [`drain`] submits the queued rows in id order, a batch of
//! [`DRAIN_BATCH_ROWS`] per request, and the writer appends their events and deletes the rows in
//! one transaction, so a row is appended exactly once. `serve` runs [`drain_periodically`] for
//! each outbox; a CLI command that holds the writer lock drains before it exits.

use super::command::{LedgerError, Request};
use super::Ledger;
use crate::store::log::Actor;
use crate::store::{Db, StoreError};

/// How often `serve` appends each outbox.
pub const DRAIN_INTERVAL_MS: u64 = 1000;
/// Outbox rows appended per request.
pub const DRAIN_BATCH_ROWS: i64 = 256;

/// One outbox table: how its queued rows are read and which request appends them.
#[async_trait::async_trait]
pub trait Outbox {
    type Row: Send;
    /// The request id prefix of its appends (`{NAME}-outbox-{pid}`) and the name in log lines.
    const NAME: &'static str;
    /// The oldest `limit` queued rows, in id order.
    async fn pending(db: &Db, limit: i64) -> Result<Vec<Self::Row>, StoreError>;
    /// The writer request that appends `rows` and deletes them from the outbox.
    fn request(rows: Vec<Self::Row>) -> Request;
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Appends every queued row of `O` through the writer; returns how many.
///
/// # Errors
/// The outbox could not be read or the writer refused; what was appended stays appended, the
/// rest is appended by the next drain.
pub async fn drain<O: Outbox>(ledger: &Ledger) -> Result<usize, DrainError> {
    let mut appended = 0;
    loop {
        let rows = O::pending(&ledger.db, DRAIN_BATCH_ROWS).await?;
        if rows.is_empty() {
            return Ok(appended);
        }
        let count = rows.len();
        let actor =
            Actor { user_id: None, token_id: None, request_id: format!("{}-outbox-{}", O::NAME, std::process::id()) };
        ledger.submit(O::request(rows), actor).await?;
        appended += count;
    }
}

/// Drains `O` every [`DRAIN_INTERVAL_MS`] for the life of the server.
pub async fn drain_periodically<O: Outbox>(ledger: Ledger) {
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(DRAIN_INTERVAL_MS));
    loop {
        interval.tick().await;
        match drain::<O>(&ledger).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(outbox = O::NAME, events = n, "outbox changes appended to the log"),
            Err(error) => tracing::warn!(outbox = O::NAME, %error, "cannot append the outbox yet"),
        }
    }
}
