//! One full verification as the audit API runs it (`POST /api/v1/verify`, the integrity page):
//! `audit::verify` (hash chain, positions, stream versions, every event against its stream,
//! every projection row against a fresh fold) and the log against every stored checkpoint,
//! each checked with the public key recorded for its key (`checkpoint_keys`, migration 16; a
//! checkpoint of an unrecorded key is compared too and its signature reported unchecked).
//! Bounded memory: the verify's keyset pages and the Merkle frontier. The run is recorded with
//! `app::verification::record_verification` (engineer health's record, migration 14).

use crate::app::audit::{self, VerifyReport};
use crate::app::verification::{self, VerifyOutcome};
use crate::proof::{self, check, store as proof_store, ProofError};
use crate::store::{log, Db, StoreError};

/// What a run found: the report (problems in full) and how many checkpoints it compared.
#[derive(Debug)]
pub struct Run {
    pub report: VerifyReport,
    pub checkpoints_checked: i64,
    pub outcome: VerifyOutcome,
}

/// Verifies the ledger and records the run with `source` (`api`, `web`).
pub async fn verify_and_record(db: &Db, source: &str) -> Result<Run, ProofError> {
    let started = std::time::Instant::now();
    let mut conn = db.pool.acquire().await.map_err(StoreError::from)?;
    let checkpoints = proof_store::all(&mut conn).await?;
    let checkpoints_checked = checkpoints.len() as i64;
    let mut by_key: std::collections::BTreeMap<String, Vec<check::Sourced>> = Default::default();
    for checkpoint in checkpoints {
        let key_id = checkpoint.key_id.clone();
        by_key.entry(key_id).or_default().push(check::Sourced { checkpoint, source: "database".into() });
    }
    let mut keyed = Vec::new();
    for (key_id, sourced) in by_key {
        let public = match proof_store::public_key(&mut conn, &key_id).await? {
            Some(hex) => Some(proof::public_key_from_hex(&hex)?),
            None => None,
        };
        keyed.push((sourced, public));
    }
    drop(conn);
    // The checkpoints were read before verify's snapshot: every event they cover is in it.
    let mut checks: Vec<check::LogCheck> =
        keyed.iter().map(|(sourced, public)| check::LogCheck::new(sourced, public.as_ref())).collect();
    let mut report = audit::verify_feeding(db, |position, hash| {
        for check in &mut checks {
            check.push(position, hash);
        }
    })
    .await?;
    for check in checks {
        report.problems.extend(check.finish());
    }
    let mut conn = db.pool.acquire().await.map_err(StoreError::from)?;
    let (head, _) = log::head_on(&mut conn).await?;
    drop(conn);
    let outcome = VerifyOutcome::of(&report, head, started, source);
    verification::record_verification(db, &outcome).await?;
    Ok(Run { report, checkpoints_checked, outcome })
}
