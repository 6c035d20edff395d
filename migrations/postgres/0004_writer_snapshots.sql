-- Snapshots of the writer's in-memory state (src/app/snapshot.rs), so that a start replays
-- only the tail of the log. Not events: the log stays the truth. A snapshot is used only when
-- its format version is current, its payload hash verifies and the log still has `log_hash` at
-- `position`; otherwise it is ignored and the state is rebuilt from the log. The writer keeps
-- the newest two and deletes older ones.
CREATE TABLE writer_snapshots (
    position BIGINT PRIMARY KEY,
    log_hash TEXT NOT NULL,
    format_version BIGINT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
