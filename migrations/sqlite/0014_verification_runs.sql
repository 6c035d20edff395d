-- The record of `verify` runs (src/app/verification.rs): when a run finished (`time_us`),
-- its result, how many mismatches it found, the log length and head position it checked,
-- how long it took and who ran it (`source`: `cli`, `api`, ...). Read by the health check
-- ("the last verify"); appended, never changed. Not events: a verify changes nothing.
CREATE TABLE verification_runs (
    time_us BIGINT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('ok', 'failed')),
    mismatches BIGINT NOT NULL,
    log_length BIGINT NOT NULL,
    head_position BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX verification_runs_time ON verification_runs (time_us);
