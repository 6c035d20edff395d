-- The public keys that signed checkpoints (src/proof, docs/AUDIT.md): recorded with each
-- checkpoint so the audit API and the integrity page can name the key and proofs can be
-- checked against it. A copy for convenience: an auditor compares it with the key held
-- outside this machine (`enrol-ledger checkpoint --public-key`). Appended, never changed.
CREATE TABLE checkpoint_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    recorded_at_us BIGINT NOT NULL
);
