-- Signed checkpoints of the log (src/proof, docs/AUDIT.md): the log had `position` events, the
-- last with `head_hash`, and their Merkle tree (RFC 6962 shape) had `merkle_root`, at `time_us`,
-- signed with the Ed25519 key `key_id`. `frontier` holds the roots of the tree's perfect
-- subtrees (comma-separated hex) so the next checkpoint reads only the events after this one.
-- Not events: each is also appended to an export file meant to be copied off this machine.
CREATE TABLE checkpoints (
    position BIGINT NOT NULL,
    head_hash TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    frontier TEXT NOT NULL,
    PRIMARY KEY (position, time_us, key_id)
);
