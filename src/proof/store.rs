//! Checkpoints in the database (`checkpoints`, migration 9) and the leaves read from the log.

use sqlx::{AnyConnection, Row};

use super::merkle::{self, Frontier, Hash};
use super::{Checkpoint, ProofError};
use crate::store::log;

/// Leaves fetched per round trip.
const LEAF_PAGE_ROWS: i64 = 50_000;

/// One leaf of the tree: an event's position and its chain hash (hex, as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub position: i64,
    pub hash: String,
}

impl Leaf {
    /// The leaf hash: SHA-256(0x00 || the 32 raw bytes of the chain hash). A stored hash that
    /// is not 64 hex digits is hashed as its text, so it still counts (and mismatches).
    pub fn leaf_hash(&self) -> Hash {
        Self::hash_of(&self.hash)
    }

    /// The Merkle leaf of an event whose chain hash is `hash` (hex): the hash's 32 bytes, or
    /// the text itself if it is not 32 bytes of hex (a damaged row still makes a leaf).
    pub fn hash_of(hash: &str) -> Hash {
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(hash, &mut bytes) {
            Ok(()) => merkle::leaf_hash(&bytes),
            Err(_) => merkle::leaf_hash(hash.as_bytes()),
        }
    }
}

/// The events after `after` up to `until` (inclusive), page by page into `visit`, in position order.
pub async fn leaves<F>(conn: &mut AnyConnection, mut after: i64, until: i64, mut visit: F) -> Result<(), ProofError>
where
    F: FnMut(Leaf) -> Result<(), ProofError>,
{
    loop {
        let rows = sqlx::query(
            "SELECT position, hash FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
        )
        .bind(after)
        .bind(until)
        .bind(LEAF_PAGE_ROWS)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.try_get("position")?;
        let full = rows.len() as i64 == LEAF_PAGE_ROWS;
        for row in rows {
            visit(Leaf { position: row.try_get("position")?, hash: row.try_get("hash")? })?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Every leaf hash of the first `size` events (for proofs: 32 bytes per event in memory).
pub async fn leaf_hashes(conn: &mut AnyConnection, size: i64) -> Result<Vec<Hash>, ProofError> {
    let mut out = Vec::with_capacity(size.max(0) as usize);
    leaves(conn, 0, size, |leaf| {
        out.push(leaf.leaf_hash());
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Stores a checkpoint with the frontier it was computed from (so the next one extends it),
/// and the public key that signed it (`checkpoint_keys`, migration 16) when it is new.
pub async fn insert(
    conn: &mut AnyConnection,
    checkpoint: &Checkpoint,
    frontier: &Frontier,
    public_key_hex: &str,
) -> Result<(), ProofError> {
    sqlx::query(
        "INSERT INTO checkpoint_keys (key_id, public_key, recorded_at_us) VALUES ($1, $2, $3) \
         ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(checkpoint.key_id.clone())
    .bind(public_key_hex.to_owned())
    .bind(checkpoint.time_us)
    .execute(&mut *conn)
    .await?;
    let peaks = frontier.peaks().iter().map(merkle::to_hex).collect::<Vec<_>>().join(",");
    sqlx::query(
        "INSERT INTO checkpoints (position, head_hash, merkle_root, time_us, key_id, signature, frontier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(checkpoint.position)
    .bind(checkpoint.head_hash.clone())
    .bind(checkpoint.merkle_root.clone())
    .bind(checkpoint.time_us)
    .bind(checkpoint.key_id.clone())
    .bind(checkpoint.signature.clone())
    .bind(peaks)
    .execute(conn)
    .await?;
    Ok(())
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Checkpoint, sqlx::Error> {
    let time_us: i64 = row.try_get("time_us")?;
    Ok(Checkpoint {
        position: row.try_get("position")?,
        head_hash: row.try_get("head_hash")?,
        merkle_root: row.try_get("merkle_root")?,
        time: crate::app::audit::rfc3339(time_us),
        time_us,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

/// Every stored checkpoint, oldest position first.
pub async fn all(conn: &mut AnyConnection) -> Result<Vec<Checkpoint>, ProofError> {
    let rows = sqlx::query(
        "SELECT position, head_hash, merkle_root, time_us, key_id, signature FROM checkpoints \
         ORDER BY position, time_us",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Stored checkpoints after position `after`, oldest first, at most `limit` (the audit API's pages).
pub async fn page(conn: &mut AnyConnection, after: i64, limit: i64) -> Result<Vec<Checkpoint>, ProofError> {
    let rows = sqlx::query(
        "SELECT position, head_hash, merkle_root, time_us, key_id, signature FROM checkpoints \
         WHERE position > $1 ORDER BY position, time_us LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The newest stored checkpoint of `position` (the audit API names a checkpoint by its position).
pub async fn at(conn: &mut AnyConnection, position: i64) -> Result<Option<Checkpoint>, ProofError> {
    let row = sqlx::query(
        "SELECT position, head_hash, merkle_root, time_us, key_id, signature FROM checkpoints \
         WHERE position = $1 ORDER BY time_us DESC LIMIT 1",
    )
    .bind(position)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The newest stored checkpoint (largest position, then newest).
pub async fn latest(conn: &mut AnyConnection) -> Result<Option<Checkpoint>, ProofError> {
    let row = sqlx::query(
        "SELECT position, head_hash, merkle_root, time_us, key_id, signature FROM checkpoints \
         ORDER BY position DESC, time_us DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// How many checkpoints are stored.
pub async fn count(conn: &mut AnyConnection) -> Result<i64, ProofError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM checkpoints").fetch_one(conn).await?)
}

/// The public key (64 hex digits) recorded for `key_id`, if any.
pub async fn public_key(conn: &mut AnyConnection, key_id: &str) -> Result<Option<String>, ProofError> {
    Ok(sqlx::query_scalar("SELECT public_key FROM checkpoint_keys WHERE key_id = $1")
        .bind(key_id.to_owned())
        .fetch_optional(conn)
        .await?)
}

/// The key ids that signed stored checkpoints.
pub async fn key_ids(conn: &mut AnyConnection) -> Result<Vec<String>, ProofError> {
    Ok(sqlx::query_scalar("SELECT DISTINCT key_id FROM checkpoints ORDER BY key_id").fetch_all(conn).await?)
}

/// The frontier of the newest stored checkpoint that the log still agrees with (its head hash
/// at its position, its peaks giving its root), or an empty one.
pub async fn latest_frontier(conn: &mut AnyConnection) -> Result<(Frontier, String), ProofError> {
    let row = sqlx::query(
        "SELECT position, head_hash, merkle_root, frontier FROM checkpoints ORDER BY position DESC, time_us DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let empty = (Frontier::default(), log::GENESIS_HASH.to_owned());
    let Some(row) = row else { return Ok(empty) };
    let position: i64 = row.try_get("position")?;
    if position == 0 {
        return Ok(empty);
    }
    let head_hash: String = row.try_get("head_hash")?;
    let root: String = row.try_get("merkle_root")?;
    let peaks: String = row.try_get("frontier")?;
    let peaks: Option<Vec<Hash>> = peaks.split(',').filter(|p| !p.is_empty()).map(merkle::from_hex).collect();
    let frontier = peaks.and_then(|p| Frontier::from_parts(position as u64, p));
    let in_log = log::hash_at(conn, position).await?;
    match frontier {
        Some(f) if merkle::to_hex(&f.root()) == root && in_log.as_deref() == Some(head_hash.as_str()) => {
            Ok((f, head_hash))
        }
        _ => {
            tracing::warn!(position, "the newest checkpoint does not match the log; its tree is computed again");
            Ok(empty)
        }
    }
}

/// Extends `frontier` with the events after its size up to `position` and checks that the last
/// one has `head_hash`. Returns the frontier at `position`.
pub async fn extend(
    conn: &mut AnyConnection,
    mut frontier: Frontier,
    position: i64,
    head_hash: &str,
) -> Result<Frontier, ProofError> {
    let mut last = None;
    let mut expected = frontier.size() as i64 + 1;
    leaves(conn, frontier.size() as i64, position, |leaf| {
        if leaf.position != expected {
            return Err(ProofError::Invalid(format!(
                "position {} follows position {}: the log has a gap; run `enrol-ledger verify`",
                leaf.position,
                expected - 1
            )));
        }
        expected += 1;
        frontier.push(leaf.leaf_hash());
        last = Some(leaf.hash);
        Ok(())
    })
    .await?;
    if frontier.size() as i64 != position {
        return Err(ProofError::Invalid(format!("the log has {} events, not {position}", frontier.size())));
    }
    if let Some(last) = last {
        if last != head_hash {
            return Err(ProofError::Invalid(format!("the event at position {position} is not the expected head")));
        }
    }
    Ok(frontier)
}

/// Signs a checkpoint of the log as it is now (its committed head), stores it and appends it
/// to `file`. Reads only the events after the newest stored checkpoint. Appends no event.
pub async fn checkpoint_now(
    db: &crate::store::Db,
    key: &super::LedgerKey,
    file: &std::path::Path,
) -> Result<Checkpoint, ProofError> {
    let mut conn = db.pool.acquire().await?;
    let (position, head_hash) = log::head_on(&mut conn).await?;
    let (frontier, _) = latest_frontier(&mut conn).await?;
    let frontier = if frontier.size() as i64 > position { Frontier::default() } else { frontier };
    let frontier = extend(&mut conn, frontier, position, &head_hash).await?;
    let checkpoint = key.sign(position, &head_hash, &frontier.root(), crate::store::Db::now_micros());
    insert(&mut conn, &checkpoint, &frontier, &key.public_hex()).await?;
    checkpoint.append_to(file)?;
    Ok(checkpoint)
}
