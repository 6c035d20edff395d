-- The user each stream is about (enrolment, completion and user streams: the `user_id` of the
-- stream's first event), so a per-user as-of or export reads only that user's streams by index.
-- A side table like `enrolment_course`: the log's rows and their hash chain stay as they are.
-- Filled by the writer in each batch's transaction (`log::append`); backfilled here with a
-- pattern rather than a jsonb cast, so an unreadable payload is skipped (verify names it).
CREATE TABLE stream_user (
    stream_id TEXT   NOT NULL,
    user_id   BIGINT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX stream_user_user ON stream_user (user_id);
INSERT INTO stream_user (stream_id, user_id)
SELECT stream_id, substring(payload FROM '"user_id":(-?[0-9]{1,18})[,}]')::bigint
FROM events
WHERE stream_version = 1 AND payload ~ '"user_id":-?[0-9]{1,18}[,}]'
ON CONFLICT DO NOTHING;
-- ANALYZE samples column values into pg_statistic (most common values, histograms), where an
-- erased user's name or e-mail would outlive the erasure: no statistics for personal columns.
ALTER TABLE users ALTER COLUMN username SET STATISTICS 0, ALTER COLUMN firstname SET STATISTICS 0,
    ALTER COLUMN lastname SET STATISTICS 0, ALTER COLUMN email SET STATISTICS 0,
    ALTER COLUMN idnumber SET STATISTICS 0;
ALTER TABLE user_profile_data ALTER COLUMN data SET STATISTICS 0;
-- The changes of users' status (suspended, deleted) in log order, for "was the user suspended or
-- deleted then?" of an as-of (`app::asof::users_inactive`): a few rows, read by this index.
CREATE INDEX events_user_status ON events (position) WHERE event_type IN ('UserUpdated', 'UserDeleted');
