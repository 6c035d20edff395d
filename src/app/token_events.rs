//! Token changes as events through the token outbox (migration 7). Any process changes
//! `external_tokens` and queues the change in `token_outbox` in the same transaction (the CLI
//! beside a running server, the server on an expired token, the writer on a user deletion);
//! only the writer appends: [`drain`] submits the queued rows in id order as one
//! `Request::AppendTokenEvents`, and the writer appends their events and deletes the rows in
//! one transaction, so a row is appended exactly once. `serve` drains at start and every
//! [`outbox::DRAIN_INTERVAL_MS`]; a CLI command that holds the writer lock (no server runs) drains before
//! it exits.

use sqlx::Row;

use super::command::{Outcome, Request};
use super::decide::{Decision, StreamEvents};
use super::outbox::{self, DrainError, Outbox};
use super::state::TOKEN_STREAM;
use super::Ledger;
use crate::domain::event::{TokenEvent, TokenFacts};
use crate::domain::ids::UserId;
use crate::domain::LedgerEvent;
use crate::registry::RegistryOp;
use crate::store::log::StreamRef;
use crate::store::{Db, StoreError};

/// One queued token change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub facts: TokenFacts,
}

/// The events of queued rows, each in its token's stream, and the deletion of the rows (pure).
/// A row of an unknown kind is appended as a revocation (it ended the token).
pub fn decide(rows: Vec<OutboxRow>) -> Decision {
    let ids = rows.iter().map(|r| r.id).collect();
    let streams = rows
        .into_iter()
        .map(|row| {
            let event = match row.kind.as_str() {
                "created" => TokenEvent::TokenCreated(row.facts),
                "rotated" => TokenEvent::TokenRotated(row.facts),
                "expired" => TokenEvent::TokenExpired(row.facts),
                _ => TokenEvent::TokenRevoked(row.facts),
            };
            let stream = StreamRef::new(TOKEN_STREAM, event.facts().token_id.to_string());
            StreamEvents { stream, booking_id: None, events: vec![LedgerEvent::Token(event)] }
        })
        .collect();
    Decision { streams, registry: vec![RegistryOp::DrainTokenOutbox { ids }], outcome: Outcome::Done }
}

/// The oldest queued rows.
pub async fn pending(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, token_id, service, userid, validuntil, iprestriction, actor, reason \
         FROM token_outbox ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                facts: TokenFacts {
                    token_id: r.try_get("token_id")?,
                    service: r.try_get("service")?,
                    user_id: UserId(r.try_get("userid")?),
                    valid_until: r.try_get("validuntil")?,
                    ip_restriction: r.try_get("iprestriction")?,
                    actor: r.try_get("actor")?,
                    reason: r.try_get("reason")?,
                },
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// The token outbox for the one drain loop (`app::outbox`).
pub struct TokenOutbox;

#[async_trait::async_trait]
impl Outbox for TokenOutbox {
    type Row = OutboxRow;
    const NAME: &'static str = "token";

    async fn pending(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        pending(db, limit).await
    }

    fn request(rows: Vec<OutboxRow>) -> Request {
        Request::AppendTokenEvents(rows)
    }
}

/// Appends every queued row through the writer; returns how many (`app::outbox::drain`).
///
/// # Errors
/// The outbox could not be read or the writer refused; what was appended stays appended.
pub async fn drain(ledger: &Ledger) -> Result<usize, DrainError> {
    outbox::drain::<TokenOutbox>(ledger).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, kind: &str, token: i64) -> OutboxRow {
        OutboxRow {
            id,
            kind: kind.into(),
            facts: TokenFacts {
                token_id: token,
                service: "enrol_semco".into(),
                user_id: UserId(3),
                valid_until: 0,
                ip_restriction: String::new(),
                actor: "cli".into(),
                reason: "token create".into(),
            },
        }
    }

    #[test]
    fn given_queued_rows_when_decided_then_each_is_one_event_in_its_token_stream_and_the_rows_go() {
        let decision = decide(vec![row(7, "created", 1), row(8, "rotated", 1), row(9, "expired", 2)]);
        let types: Vec<(String, &str)> =
            decision.streams.iter().map(|s| (s.stream.key.clone(), s.events[0].event_type())).collect();
        assert_eq!(
            types,
            vec![("1".into(), "TokenCreated"), ("1".into(), "TokenRotated"), ("2".into(), "TokenExpired")]
        );
        assert!(matches!(&decision.registry[..], [RegistryOp::DrainTokenOutbox { ids }] if ids == &vec![7, 8, 9]));
    }
}
