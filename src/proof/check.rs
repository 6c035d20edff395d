//! The log against checkpoints (`verify`), and inclusion and consistency proofs (`prove`,
//! `check-proof`): building them from the log, checking them with the public key alone.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use super::merkle::{self, Frontier};
use super::{store, Checkpoint, ProofError};

/// A checkpoint and where it was found (for the messages).
#[derive(Debug, Clone)]
pub struct Sourced {
    pub checkpoint: Checkpoint,
    pub source: String,
}

fn describe(c: &Sourced) -> String {
    format!("checkpoint of position {} signed {} ({})", c.checkpoint.position, c.checkpoint.time, c.source)
}

/// Checks every checkpoint's signature (with `public`, when known) and the log against each:
/// its length, the hash of the event at the checkpoint's position and the Merkle root of the
/// events up to it. One pass over the log's hashes, O(log n) memory. Returns the problems.
pub async fn log_against(
    conn: &mut AnyConnection,
    checkpoints: &[Sourced],
    public: Option<&VerifyingKey>,
) -> Result<Vec<String>, ProofError> {
    let mut check = LogCheck::new(checkpoints, public);
    store::leaves(conn, 0, check.until(), |leaf| {
        check.push(leaf.position, &leaf.hash);
        Ok(())
    })
    .await?;
    Ok(check.finish())
}

/// The log against a set of checkpoints, fed the log's events in position order (by
/// `log_against`, or by `verify`'s own pass over the log so the log is read once): signatures
/// first, then at each checkpoint's position the chain hash and the Merkle root of the
/// events so far. O(log n) memory: the Merkle frontier.
pub struct LogCheck<'a> {
    problems: Vec<String>,
    /// Checkpoints to compare (signature good or unchecked), by position.
    wanted: Vec<&'a Sourced>,
    /// The first of `wanted` not settled yet.
    next: usize,
    frontier: Frontier,
    expected: i64,
    gaps: Vec<String>,
    outcomes: Vec<Outcome<'a>>,
}

type Outcome<'a> = (&'a Sourced, Result<(), String>);

impl<'a> LogCheck<'a> {
    pub fn new(checkpoints: &'a [Sourced], public: Option<&VerifyingKey>) -> Self {
        let mut problems = Vec::new();
        let mut wanted: Vec<&Sourced> = Vec::new();
        for c in checkpoints {
            match public {
                Some(public) => match c.checkpoint.check_signature(public) {
                    Ok(()) => wanted.push(c),
                    Err(why) => problems.push(format!("FORGED: {}: {why}", describe(c))),
                },
                None => {
                    problems.push(format!("UNCHECKED: {}: no public key to check its signature", describe(c)));
                    wanted.push(c);
                }
            }
        }
        wanted.sort_by_key(|c| c.checkpoint.position);
        let mut check = Self {
            problems,
            wanted,
            next: 0,
            frontier: Frontier::default(),
            expected: 1,
            gaps: Vec::new(),
            outcomes: Vec::new(),
        };
        check.settle(crate::store::log::GENESIS_HASH);
        check
    }

    /// The last position any checkpoint covers (0 when none is to be compared): the events
    /// after it need not be pushed.
    pub fn until(&self) -> i64 {
        self.wanted.last().map_or(0, |c| c.checkpoint.position)
    }

    /// The next event of the log: its position and chain hash (hex).
    pub fn push(&mut self, position: i64, hash: &str) {
        if self.next == self.wanted.len() {
            return;
        }
        if position != self.expected {
            self.gaps.push(format!(
                "REMOVED: position {position} follows position {}: {} event(s) missing (a checkpoint covers them)",
                self.expected - 1,
                position - self.expected
            ));
        }
        self.expected = position + 1;
        self.frontier.push(store::Leaf::hash_of(hash));
        self.settle(hash);
    }

    /// Compares the tree at its current size (last leaf's chain hash `hash`) with each
    /// checkpoint of that size.
    fn settle(&mut self, hash: &str) {
        while let Some(&c) = self.wanted.get(self.next).filter(|c| c.checkpoint.position as u64 == self.frontier.size())
        {
            self.next += 1;
            let cp = &c.checkpoint;
            let outcome = if cp.position > 0 && cp.head_hash != hash {
                Err(format!(
                    "REWRITTEN: {}: the log's event {} has hash {hash}, the checkpoint says {}: events up to \
                     position {} were altered, removed or reordered and the chain recomputed",
                    describe(c),
                    cp.position,
                    cp.head_hash,
                    cp.position
                ))
            } else if merkle::to_hex(&self.frontier.root()) != cp.merkle_root {
                Err(format!(
                    "REWRITTEN: {}: the Merkle root of the log's first {} events is {}, the checkpoint says {}",
                    describe(c),
                    cp.position,
                    merkle::to_hex(&self.frontier.root()),
                    cp.merkle_root
                ))
            } else {
                Ok(())
            };
            self.outcomes.push((c, outcome));
        }
    }

    /// Every problem found, once the log (up to `until`) has been pushed.
    pub fn finish(self) -> Vec<String> {
        let Self { mut problems, wanted, next, frontier, gaps, mut outcomes, .. } = self;
        problems.extend(gaps);
        let size = frontier.size();
        for c in &wanted[next..] {
            outcomes.push((
                c,
                Err(format!(
                    "TRUNCATED: {}: it covers {} events, the log has only {size}: {} event(s) were cut off the tail \
                     (or removed and the rest renumbered)",
                    describe(c),
                    c.checkpoint.position,
                    c.checkpoint.position as u64 - size
                )),
            ));
        }
        let last_good = outcomes.iter().filter(|(_, o)| o.is_ok()).map(|(c, _)| c.checkpoint.position).max();
        let first_bad = outcomes.iter().filter(|(_, o)| o.is_err()).map(|(c, _)| c.checkpoint.position).min();
        for (_, outcome) in outcomes {
            if let Err(problem) = outcome {
                problems.push(problem);
            }
        }
        if let (Some(good), Some(bad)) = (last_good, first_bad) {
            if good < bad {
                problems.push(format!(
                    "the log agrees with the checkpoint of position {good} and not with the one of position {bad}: \
                     the change lies in positions {}..={bad}",
                    good + 1
                ));
            }
        }
        problems
    }
}

/// `prove --position P --checkpoint FILE`: the event at P is the (P-1)-th leaf of the tree the
/// checkpoint signed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    pub proof: String,
    pub checkpoint: Checkpoint,
    pub position: i64,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The event's chain hash (the leaf bytes, hex).
    pub event_hash: String,
    /// The event as `export` prints it, so its chain hash can be recomputed too.
    #[schema(value_type = crate::app::audit::ExportedEvent)]
    pub event: serde_json::Value,
    /// Sibling hashes from the leaf up (RFC 9162 §2.1.3).
    pub audit_path: Vec<String>,
}

/// `prove --from CP1 --to CP2`: the tree of CP1 is a prefix of the tree of CP2.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub proof: String,
    pub from: Checkpoint,
    pub to: Checkpoint,
    /// RFC 9162 §2.1.4.
    pub consistency_path: Vec<String>,
}

/// The leaf hashes of the first `size` events, checked against `checkpoint`'s root.
async fn tree_of(conn: &mut AnyConnection, checkpoint: &Checkpoint) -> Result<Vec<merkle::Hash>, ProofError> {
    let leaves = store::leaf_hashes(conn, checkpoint.position).await?;
    if leaves.len() as i64 != checkpoint.position || merkle::to_hex(&merkle::root(&leaves)) != checkpoint.merkle_root {
        return Err(ProofError::Invalid(format!(
            "the log does not match the checkpoint of position {} (run `enrol-ledger verify --checkpoint`): no proof \
             against it can be made",
            checkpoint.position
        )));
    }
    Ok(leaves)
}

pub async fn prove_inclusion(
    conn: &mut AnyConnection,
    position: i64,
    checkpoint: &Checkpoint,
) -> Result<InclusionProof, ProofError> {
    if position < 1 || position > checkpoint.position {
        return Err(ProofError::Invalid(format!(
            "--position {position}: the checkpoint covers positions 1..={}",
            checkpoint.position
        )));
    }
    let leaves = tree_of(conn, checkpoint).await?;
    let index = (position - 1) as usize;
    let path = merkle::inclusion_path(index, &leaves).expect("index checked");
    let mut events = crate::store::log::read_after(conn, position - 1, 1).await?;
    let stored = events
        .pop()
        .filter(|e| e.position == position)
        .ok_or_else(|| ProofError::Invalid(format!("no event at position {position}")))?;
    Ok(InclusionProof {
        proof: "inclusion".into(),
        checkpoint: checkpoint.clone(),
        position,
        leaf_index: index as u64,
        tree_size: checkpoint.position as u64,
        event_hash: stored.hash.clone(),
        event: crate::app::audit::export_line(&stored),
        audit_path: path.iter().map(merkle::to_hex).collect(),
    })
}

pub async fn prove_consistency(
    conn: &mut AnyConnection,
    from: &Checkpoint,
    to: &Checkpoint,
) -> Result<ConsistencyProof, ProofError> {
    if from.position > to.position {
        return Err(ProofError::Invalid(format!(
            "--from covers {} events, --to only {}: give the older checkpoint as --from",
            from.position, to.position
        )));
    }
    let leaves = tree_of(conn, to).await?;
    if merkle::to_hex(&merkle::root(&leaves[..from.position as usize])) != from.merkle_root {
        return Err(ProofError::Invalid(format!(
            "the log does not match the checkpoint of position {}: no proof against it can be made",
            from.position
        )));
    }
    let path = merkle::consistency_proof(from.position as usize, &leaves).expect("size checked");
    Ok(ConsistencyProof {
        proof: "consistency".into(),
        from: from.clone(),
        to: to.clone(),
        consistency_path: path.iter().map(merkle::to_hex).collect(),
    })
}

fn hashes(list: &[String]) -> Result<Vec<merkle::Hash>, String> {
    list.iter().map(|h| merkle::from_hex(h).ok_or_else(|| format!("{h:?} is not a 64-hex-digit hash"))).collect()
}

fn root_of(c: &Checkpoint) -> Result<merkle::Hash, String> {
    c.root().ok_or_else(|| format!("checkpoint of position {}: merkle_root is not a hash", c.position))
}

/// Checks a proof (the JSON `prove` printed) with the public key alone: the checkpoint
/// signatures and the path. `Ok` says what it proves.
pub fn check_proof(json: &str, public: &VerifyingKey) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not a proof: {e}"))?;
    match value.get("proof").and_then(|p| p.as_str()) {
        Some("inclusion") => {
            let p: InclusionProof =
                serde_json::from_value(value).map_err(|e| format!("not an inclusion proof: {e}"))?;
            p.checkpoint.check_signature(public)?;
            if p.tree_size != p.checkpoint.position as u64 || p.leaf_index + 1 != p.position as u64 {
                return Err(format!(
                    "the proof's tree size {} / leaf index {} do not fit its checkpoint ({} events) and position {}",
                    p.tree_size, p.leaf_index, p.checkpoint.position, p.position
                ));
            }
            if p.event.get("hash").and_then(|h| h.as_str()) != Some(p.event_hash.as_str()) {
                return Err("the event's hash is not the proof's event_hash".into());
            }
            let leaf_bytes = hex::decode(&p.event_hash).map_err(|e| format!("event_hash: {e}"))?;
            let leaf = merkle::leaf_hash(&leaf_bytes);
            let path = hashes(&p.audit_path)?;
            if !merkle::verify_inclusion(p.leaf_index, p.tree_size, &leaf, &path, &root_of(&p.checkpoint)?) {
                return Err(format!(
                    "the audit path does not lead from the event at position {} to the checkpoint's Merkle root",
                    p.position
                ));
            }
            Ok(format!(
                "proof OK: the event at position {} (hash {}) is in the log of {} events signed {} by key {}",
                p.position, p.event_hash, p.tree_size, p.checkpoint.time, p.checkpoint.key_id
            ))
        }
        Some("consistency") => {
            let p: ConsistencyProof =
                serde_json::from_value(value).map_err(|e| format!("not a consistency proof: {e}"))?;
            p.from.check_signature(public)?;
            p.to.check_signature(public)?;
            let path = hashes(&p.consistency_path)?;
            let (m, n) = (p.from.position as u64, p.to.position as u64);
            if p.from.position < 0 || !merkle::verify_consistency(m, n, &root_of(&p.from)?, &root_of(&p.to)?, &path) {
                return Err(format!(
                    "the proof does not show the log of {m} events to be a prefix of the log of {n} events"
                ));
            }
            Ok(format!(
                "proof OK: the log of {m} events signed {} is a prefix of the log of {n} events signed {}: nothing \
                 in it was altered, removed or reordered",
                p.from.time, p.to.time
            ))
        }
        _ => Err("not a proof: expected \"proof\": \"inclusion\" or \"consistency\"".into()),
    }
}
