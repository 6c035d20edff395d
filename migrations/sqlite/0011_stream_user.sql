-- The user each stream is about (enrolment, completion and user streams: the `user_id` of the
-- stream's first event), so a per-user as-of or export reads only that user's streams by index.
-- A side table like `enrolment_course`: the log's rows and their hash chain stay as they are.
-- Filled by the writer in each batch's transaction (`log::append`); backfilled here. An
-- unreadable payload is skipped (verify names it).
CREATE TABLE stream_user (
    stream_id TEXT    NOT NULL,
    user_id   INTEGER NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX stream_user_user ON stream_user (user_id);
INSERT OR IGNORE INTO stream_user (stream_id, user_id)
SELECT stream_id, json_extract(payload, '$.user_id')
FROM events
WHERE stream_version = 1 AND json_valid(payload) AND json_type(payload, '$.user_id') = 'integer';
-- The changes of users' status (suspended, deleted) in log order, for "was the user suspended or
-- deleted then?" of an as-of (`app::asof::users_inactive`): a few rows, read by this index.
CREATE INDEX events_user_status ON events (position) WHERE event_type IN ('UserUpdated', 'UserDeleted');
