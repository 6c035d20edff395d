//! Snapshots of the writer's state, so that a start replays only the tail of the log.
//!
//! A snapshot is not an event and decides nothing: the log stays the truth. The writer writes
//! one every `WriterOptions::snapshot_every_events` events (right after the batch that crosses
//! the mark, in a transaction of its own) and at a clean shutdown, and keeps the newest
//! `SNAPSHOTS_KEPT`. `load_newest` uses a snapshot only when its format version is
//! `SNAPSHOT_FORMAT_VERSION`, its payload hash verifies, its payload names its own position and
//! the log still has the snapshot's hash at that position; any other snapshot is ignored with
//! a log line, and the state is rebuilt from the log.
//!
//! The payload is JSON holding the open enrolment streams, completions, courses, config, id
//! counters and the log head, in key order (so the same state always gives the same payload).
//! The open streams, nearly all of it at scale, are one binary section (`app::open`'s record
//! layout, base64 in the JSON): at 555,000 open streams a JSON object per stream took seconds
//! to decode (issue 7: start-up ≤ 2 s at 1M events). The cross-stream indexes are derived from
//! the records on load; the registry index is loaded from the registry tables, as without a
//! snapshot.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection};

use super::open::OpenStreams;
use super::state::{LedgerState, ManualInstance, Versioned};
use crate::domain::completion::CompletionState;
use crate::domain::config::Settings;
use crate::domain::course::CourseState;
use crate::domain::criteria::Criteria;
use crate::domain::manual::ManualState;
use crate::store::log;
use crate::store::{Db, StoreError};

/// Bump when the payload's shape or meaning changes: older snapshots are then ignored.
pub const SNAPSHOT_FORMAT_VERSION: i64 = 4;
/// Snapshots kept in `writer_snapshots`; older ones are deleted when a new one is written.
pub const SNAPSHOTS_KEPT: i64 = 2;
/// Events between two snapshots by default.
pub const SNAPSHOT_EVERY_EVENTS: i64 = 100_000;

/// The writer's state as stored, in key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    /// The open enrolment streams' records (`OpenStreams::write_records`), base64 (format 4).
    #[serde(with = "base64_bytes")]
    open_streams: Vec<u8>,
    completions: Vec<((i64, i64), Versioned<CompletionState>)>,
    courses: Vec<(i64, Versioned<CourseState>)>,
    config: Versioned<Settings>,
    /// (user, version) of the users' registry streams (format 3).
    #[serde(default)]
    user_versions: Vec<(i64, u32)>,
    #[serde(default)]
    install_version: i64,
    next_instance_id: i64,
    next_user_enrolment_id: i64,
    head_position: i64,
    head_hash: String,
    head_recorded_at: i64,
    /// Live token streams and their versions (absent in snapshots older than token events).
    #[serde(default)]
    tokens: Vec<(i64, i64)>,
    /// (course, manual instance) of every course (format 3).
    #[serde(default)]
    manual_instances: Vec<(i64, ManualInstance)>,
    /// (user, manual instance) streams (format 3).
    #[serde(default)]
    manual: Vec<((i64, i64), Versioned<ManualState>)>,
    /// Course completion criteria (format 3).
    #[serde(default)]
    criteria: Vec<(i64, Versioned<Criteria>)>,
    /// The muted health checks (absent in snapshots older than them: none muted).
    #[serde(default)]
    health: Versioned<crate::domain::health::Muted>,
    /// (web account, version) of the account streams (absent before migration 13).
    #[serde(default)]
    accounts: Vec<(i64, i64)>,
}

fn sorted<K: Ord + Copy, V: Clone>(map: &std::collections::HashMap<K, V>) -> Vec<(K, V)> {
    let mut entries: Vec<(K, V)> = map.iter().map(|(k, v)| (*k, v.clone())).collect();
    entries.sort_by_key(|(k, _)| *k);
    entries
}

impl Payload {
    fn of(state: &LedgerState) -> Self {
        let mut open_streams = Vec::new();
        state.open.write_records(&mut open_streams);
        Self {
            open_streams,
            completions: sorted(&state.completions),
            courses: sorted(&state.courses),
            config: state.config.clone(),
            user_versions: state.user_versions.sorted(),
            install_version: state.install_version,
            next_instance_id: state.next_instance_id,
            next_user_enrolment_id: state.next_user_enrolment_id,
            head_position: state.head_position,
            head_hash: state.head_hash.clone(),
            head_recorded_at: state.head_recorded_at,
            tokens: sorted(&state.tokens),
            manual_instances: sorted(&state.manual_instances),
            manual: state.manual.iter().map(|(k, v)| (*k, v.clone())).collect(),
            criteria: sorted(&state.criteria),
            health: state.health.clone(),
            accounts: sorted(&state.accounts),
        }
    }

    /// The state, its indexes derived from the open streams (registry left empty), or why the
    /// open streams' section cannot be one.
    fn into_state(mut self) -> Result<LedgerState, String> {
        // The section's bytes go as soon as the records are built from them.
        let open = OpenStreams::read_records(&std::mem::take(&mut self.open_streams))?;
        Ok(LedgerState {
            open,
            completions: self.completions.into_iter().collect(),
            courses: self.courses.into_iter().collect(),
            config: self.config,
            user_versions: self.user_versions.into_iter().collect(),
            install_version: self.install_version,
            next_instance_id: self.next_instance_id,
            next_user_enrolment_id: self.next_user_enrolment_id,
            head_position: self.head_position,
            head_hash: self.head_hash,
            head_recorded_at: self.head_recorded_at,
            tokens: self.tokens.into_iter().collect(),
            manual_instances: self.manual_instances.into_iter().collect(),
            manual: self.manual.into_iter().collect(),
            criteria: self.criteria.into_iter().collect(),
            health: self.health,
            accounts: self.accounts.into_iter().collect(),
            ..LedgerState::default()
        })
    }
}

/// Bytes as base64 text in the JSON payload.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// The snapshot payload of a state as text, and its hash.
pub fn encode(state: &LedgerState) -> (String, String) {
    let payload = serde_json::to_string(&Payload::of(state)).expect("the writer's state always serialises");
    let hash = payload_hash(&payload);
    (payload, hash)
}

fn payload_hash(payload: &str) -> String {
    hex::encode(Sha256::digest(payload.as_bytes()))
}

/// A canonical dump of everything the writer decides with, indexes included, in key order:
/// two states that decide alike have equal dumps (for tests and diagnostics).
pub fn canonical_dump(state: &LedgerState) -> String {
    serde_json::json!({ "payload": Payload::of(state), "indexes": state.open.index_dump() }).to_string()
}

/// A copy of the state to snapshot, taken on the writer (O(open streams), no encoding), so
/// that the encoding and the write can run beside the writer's batches.
pub struct StateCopy(Payload);

impl StateCopy {
    pub fn of(state: &LedgerState) -> Self {
        Self(Payload::of(state))
    }

    pub fn position(&self) -> i64 {
        self.0.head_position
    }

    /// Encodes the payload (CPU: run it off the async threads) and hashes it.
    pub fn encode(self) -> Encoded {
        let payload = serde_json::to_string(&self.0).expect("the writer's state always serialises");
        let hash = payload_hash(&payload);
        Encoded { position: self.0.head_position, log_hash: self.0.head_hash, payload, hash }
    }
}

/// A snapshot ready to be written.
pub struct Encoded {
    position: i64,
    log_hash: String,
    payload: String,
    hash: String,
}

/// Writes the state's snapshot at its log head (see `write_encoded`).
pub async fn write(conn: &mut AnyConnection, state: &LedgerState) -> Result<(), StoreError> {
    write_encoded(conn, StateCopy::of(state).encode()).await
}

/// Writes a snapshot (replacing one at the same position) and deletes all but the newest
/// `SNAPSHOTS_KEPT`, in one transaction. Any connection will do: a snapshot is not a log
/// write, and it is checked against the log when it is loaded.
pub async fn write_encoded(conn: &mut AnyConnection, snapshot: Encoded) -> Result<(), StoreError> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO writer_snapshots (position, log_hash, format_version, payload_hash, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (position) DO UPDATE SET log_hash = excluded.log_hash, \
         format_version = excluded.format_version, payload_hash = excluded.payload_hash, \
         payload = excluded.payload, created_at = excluded.created_at",
    )
    .bind(snapshot.position)
    .bind(snapshot.log_hash)
    .bind(SNAPSHOT_FORMAT_VERSION)
    .bind(snapshot.hash)
    .bind(snapshot.payload)
    .bind(Db::now_micros())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM writer_snapshots WHERE position NOT IN \
         (SELECT position FROM writer_snapshots ORDER BY position DESC LIMIT $1)",
    )
    .bind(SNAPSHOTS_KEPT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Why a stored snapshot is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unusable {
    FormatVersion(i64),
    PayloadHash,
    NotInLog,
    Payload(String),
}

/// The state of the newest usable snapshot (registry index empty), or `None` when there is
/// none; unusable ones are skipped with a log line. The kept snapshots are listed first and
/// their payloads read one at a time, newest first, each dropped as soon as it is decoded: at
/// 1M events a payload is ~60 MB of text, and reading every kept one at once made the load
/// peak at four times the state it built (issue 7).
pub async fn load_newest(conn: &mut AnyConnection) -> Result<Option<LedgerState>, StoreError> {
    let kept: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT position, log_hash, format_version, payload_hash FROM writer_snapshots \
         ORDER BY position DESC LIMIT $1",
    )
    .bind(SNAPSHOTS_KEPT)
    .fetch_all(&mut *conn)
    .await?;
    for (position, log_hash, format_version, stored_hash) in kept {
        let checked = if format_version != SNAPSHOT_FORMAT_VERSION {
            Err(Unusable::FormatVersion(format_version))
        } else if log::hash_at(conn, position).await?.as_deref() != Some(log_hash.as_str()) {
            Err(Unusable::NotInLog)
        } else {
            let payload: Option<String> =
                sqlx::query_scalar("SELECT payload FROM writer_snapshots WHERE position = $1")
                    .bind(position)
                    .fetch_optional(&mut *conn)
                    .await?;
            match payload {
                // Deleted by a newer writer's checkpoint since it was listed.
                None => Err(Unusable::Payload("removed while the load read it".into())),
                Some(payload) if payload_hash(&payload) != stored_hash => Err(Unusable::PayloadHash),
                Some(payload) => {
                    let parsed = serde_json::from_str::<Payload>(&payload);
                    drop(payload);
                    match parsed {
                        Ok(p) if p.head_position == position && p.head_hash == log_hash => {
                            p.into_state().map_err(Unusable::Payload)
                        }
                        Ok(_) => Err(Unusable::Payload("its head is not its position".into())),
                        Err(error) => Err(Unusable::Payload(error.to_string())),
                    }
                }
            }
        };
        match checked {
            Ok(state) => {
                tracing::info!(position, "writer state loaded from a snapshot; replaying the tail of the log");
                return Ok(Some(state));
            }
            Err(why) => tracing::warn!(position, ?why, "snapshot ignored"),
        }
    }
    Ok(None)
}

/// A payload read back into a state, for the round-trip unit test.
#[cfg(test)]
pub(crate) fn decode_for_tests(payload: &str) -> LedgerState {
    serde_json::from_str::<Payload>(payload)
        .expect("a payload this module wrote")
        .into_state()
        .expect("open streams this module wrote")
}
