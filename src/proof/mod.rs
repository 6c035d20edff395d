//! Signed checkpoints of the log and proofs against them (docs/AUDIT.md, "Checkpoint and proof
//! format").
//!
//! `merkle` is the pure tree; this module holds the signing key file and the checkpoint record
//! (pure: message, sign, check); `store` reads leaves and stores checkpoints; `keeper` is the
//! task the writer feeds; `check` compares a log with checkpoints and checks proofs.

pub mod check;
pub mod keeper;
pub mod merkle;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line of every signed checkpoint message.
pub const MESSAGE_TAG: &str = "enrol-ledger checkpoint v1";

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("signing key {path}: {why}")]
    Key { path: String, why: String },
    #[error("checkpoint file {path}: {why}")]
    File { path: String, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<sqlx::Error> for ProofError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

/// The server's Ed25519 key, read from (or created in) its file outside the database.
#[derive(Clone)]
pub struct LedgerKey {
    signing: SigningKey,
    pub path: PathBuf,
}

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerKey").field("path", &self.path).field("key_id", &self.key_id()).finish()
    }
}

/// The first 16 hex digits of SHA-256 over the raw 32-byte public key.
pub fn key_id_of(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))[..16].to_owned()
}

/// A public key from 64 hex digits.
pub fn public_key_from_hex(text: &str) -> Result<VerifyingKey, ProofError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ProofError::Invalid(format!("public key {text:?}: expected 64 hex digits")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| ProofError::Invalid(format!("public key {text:?}: {e}")))
}

impl LedgerKey {
    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.public().as_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id_of(&self.public())
    }

    /// Reads the key file; `None` when it does not exist. A file that exists but cannot be
    /// read or is not 64 hex digits (the 32-byte Ed25519 seed) is an error.
    pub fn read(path: &Path) -> Result<Option<Self>, ProofError> {
        let error = |why: String| ProofError::Key { path: path.display().to_string(), why };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(error(format!("cannot read it: {e}"))),
        };
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| error("malformed: expected one line of 64 hex digits (an Ed25519 seed)".into()))?;
        Ok(Some(Self { signing: SigningKey::from_bytes(&seed), path: path.to_owned() }))
    }

    /// Reads the key file, or creates it (mode 0600, a fresh seed from the OS) when it does
    /// not exist. `existing_key_ids`: key ids of checkpoints already stored; a missing file
    /// is then an error (a new key would not match them), and so is a key that signed none
    /// of them while some exist.
    pub fn open_or_create(path: &Path, existing_key_ids: &[String]) -> Result<Self, ProofError> {
        let error = |why: String| ProofError::Key { path: path.display().to_string(), why };
        let key = match Self::read(path)? {
            Some(key) => key,
            None if !existing_key_ids.is_empty() => {
                return Err(error(format!(
                    "does not exist, but this ledger has checkpoints signed by key {}: restore that key file \
                     (or point --signing-key / SIGNING_KEY at it); a new key is not made silently",
                    existing_key_ids.join(", ")
                )))
            }
            None => Self::create(path)?,
        };
        if !existing_key_ids.is_empty() && !existing_key_ids.contains(&key.key_id()) {
            return Err(error(format!(
                "holds key {}, but this ledger's checkpoints were signed by key {}: wrong key file",
                key.key_id(),
                existing_key_ids.join(", ")
            )));
        }
        Ok(key)
    }

    fn create(path: &Path) -> Result<Self, ProofError> {
        use std::os::unix::fs::OpenOptionsExt;
        let error = |why: String| ProofError::Key { path: path.display().to_string(), why };
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| error(format!("no randomness from the OS: {e}")))?;
        // Written to a private temporary file, then linked into place: another process that
        // creates the key at the same moment either wins (we read its key) or loses.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            writeln!(file, "{}", hex::encode(seed))?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(error(format!("cannot create it: {e}")));
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the checkpoint signing key");
                Ok(Self { signing: SigningKey::from_bytes(&seed), path: path.to_owned() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::read(path)?.ok_or_else(|| error("vanished while it was created".into()))
            }
            Err(e) => Err(error(format!("cannot create it: {e}"))),
        }
    }

    /// Signs a checkpoint of the log at `position` with head `head_hash` and Merkle `root`.
    pub fn sign(&self, position: i64, head_hash: &str, root: &merkle::Hash, time_us: i64) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            position,
            head_hash: head_hash.to_owned(),
            merkle_root: merkle::to_hex(root),
            time: crate::app::audit::rfc3339(time_us),
            time_us,
            key_id: self.key_id(),
            signature: String::new(),
        };
        checkpoint.signature = hex::encode(self.signing.sign(checkpoint.message().as_bytes()).to_bytes());
        checkpoint
    }
}

/// Where the key lives when `--signing-key` is not given: `<file>.signing-key` beside a SQLite
/// database, `enrol-ledger.signing-key` in the working directory for PostgreSQL.
pub fn default_key_path(database_url: &str) -> PathBuf {
    let sqlite = !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://"));
    let path =
        database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")).unwrap_or(database_url);
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if sqlite && !path.is_empty() && path != ":memory:" && !path.starts_with("file:") {
        PathBuf::from(format!("{path}.signing-key"))
    } else {
        PathBuf::from("enrol-ledger.signing-key")
    }
}

/// Where checkpoints are exported when `--checkpoint-file` is not given: beside the key,
/// `X.signing-key` → `X.checkpoints.jsonl`.
pub fn default_checkpoint_file(key_path: &Path) -> PathBuf {
    let name = key_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".signing-key").unwrap_or(&name);
    key_path.with_file_name(format!("{stem}.checkpoints.jsonl"))
}

/// A signed statement: the log had `position` events, the last with `head_hash`, and its
/// Merkle tree had `merkle_root`. One JSON line in the export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub position: i64,
    pub head_hash: String,
    pub merkle_root: String,
    /// `time_us` as RFC 3339 (not signed: for people).
    pub time: String,
    pub time_us: i64,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed (UTF-8, each line ending in `\n`).
    pub fn message(&self) -> String {
        format!(
            "{MESSAGE_TAG}\nposition {}\nhead {}\nroot {}\ntime {}\nkey {}\n",
            self.position, self.head_hash, self.merkle_root, self.time_us, self.key_id
        )
    }

    /// Checks the signature with `public`; `Err` says why it does not hold.
    pub fn check_signature(&self, public: &VerifyingKey) -> Result<(), String> {
        if self.key_id != key_id_of(public) {
            return Err(format!("signed by key {}, not by key {} given to check it", self.key_id, key_id_of(public)));
        }
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("signature is not 128 hex digits")?;
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        public
            .verify_strict(self.message().as_bytes(), &signature)
            .map_err(|_| "signature does not verify: the checkpoint was forged or altered".to_owned())
    }

    pub fn root(&self) -> Option<merkle::Hash> {
        merkle::from_hex(&self.merkle_root)
    }

    /// One line of the export file.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serialises")
    }

    /// Every checkpoint line of a file (blank lines skipped); a line that is not a checkpoint is an error.
    pub fn read_file(path: &Path) -> Result<Vec<Self>, ProofError> {
        let error = |why: String| ProofError::File { path: path.display().to_string(), why };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::parse_lines(&text).map_err(error)
    }

    pub fn parse_lines(text: &str) -> Result<Vec<Self>, String> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: not a checkpoint: {e}", i + 1)))
            .collect()
    }

    /// Appends the line to the export file (created mode 0644 when missing) and syncs it.
    pub fn append_to(&self, path: &Path) -> Result<(), ProofError> {
        let error = |why: String| ProofError::File { path: path.display().to_string(), why };
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| error(e.to_string()))?;
        writeln!(file, "{}", self.to_line()).and_then(|()| file.sync_data()).map_err(|e| error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LedgerKey {
        LedgerKey { signing: SigningKey::from_bytes(&[7; 32]), path: PathBuf::from("k") }
    }

    #[test]
    fn a_signed_checkpoint_checks_and_any_change_is_refused() {
        let key = key();
        let cp = key.sign(5, &"ab".repeat(32), &merkle::empty_root(), 1_700_000_000_000_000);
        assert_eq!(cp.check_signature(&key.public()), Ok(()));
        let parsed = Checkpoint::parse_lines(&format!("{}\n\n", cp.to_line())).unwrap();
        assert_eq!(parsed, vec![cp.clone()]);
        let mut wrong_size = cp.clone();
        wrong_size.position = 4;
        assert!(wrong_size.check_signature(&key.public()).unwrap_err().contains("forged"));
        let mut wrong_root = cp.clone();
        wrong_root.merkle_root = merkle::to_hex(&merkle::leaf_hash(b"x"));
        assert!(wrong_root.check_signature(&key.public()).is_err());
        let other = LedgerKey { signing: SigningKey::from_bytes(&[8; 32]), path: PathBuf::from("o") };
        assert!(cp.check_signature(&other.public()).unwrap_err().contains("not by key"));
        let mut relabelled = other.sign(5, &cp.head_hash, &merkle::empty_root(), cp.time_us);
        relabelled.key_id = cp.key_id.clone();
        assert!(relabelled.check_signature(&key.public()).unwrap_err().contains("forged"));
    }

    #[test]
    fn default_paths_sit_beside_the_database_or_in_the_working_directory() {
        assert_eq!(default_key_path("sqlite:///srv/l.db?mode=rwc"), PathBuf::from("/srv/l.db.signing-key"));
        assert_eq!(default_key_path("ledger.db"), PathBuf::from("ledger.db.signing-key"));
        assert_eq!(default_key_path("postgres://u@h/db"), PathBuf::from("enrol-ledger.signing-key"));
        assert_eq!(
            default_checkpoint_file(Path::new("/srv/l.db.signing-key")),
            PathBuf::from("/srv/l.db.checkpoints.jsonl")
        );
    }

    #[test]
    fn the_key_file_is_created_private_and_refused_when_malformed_or_foreign() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.signing-key");
        let key = LedgerKey::open_or_create(&path, &[]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = LedgerKey::open_or_create(&path, std::slice::from_ref(&key.key_id())).unwrap();
        assert_eq!(again.public_hex(), key.public_hex());
        let foreign = LedgerKey::open_or_create(&path, &["0123456789abcdef".into()]).unwrap_err().to_string();
        assert!(foreign.contains("wrong key file"), "{foreign}");
        let missing = dir.path().join("gone.signing-key");
        let refused = LedgerKey::open_or_create(&missing, &[key.key_id()]).unwrap_err().to_string();
        assert!(refused.contains("not made silently"), "{refused}");
        assert!(!missing.exists());
        std::fs::write(&path, "not a key\n").unwrap();
        let malformed = LedgerKey::open_or_create(&path, &[]).unwrap_err().to_string();
        assert!(malformed.contains("malformed"), "{malformed}");
    }
}
