-- The user and course each stream is about, so that the history of a user or a course reads
-- only its streams by index (issue 8 item 3): enrolment streams (from their `Enrolled` event),
-- completion streams (`user/course`), user streams (`user/{id}`) and course streams
-- (`course/{id}`). One row per stream, not per event; an index beside the log, not part of it:
-- the envelope and its hash are unchanged. Filled by every append in its transaction
-- (`log::append`); the existing log is backfilled here, with patterns rather than a jsonb cast
-- so that an unreadable payload is skipped instead of failing the migration.
CREATE TABLE stream_subject (
    stream_id TEXT   PRIMARY KEY,
    user_id   BIGINT,
    course_id BIGINT
);
CREATE INDEX stream_subject_user ON stream_subject (user_id);
CREATE INDEX stream_subject_course ON stream_subject (course_id);
INSERT INTO stream_subject (stream_id, user_id, course_id)
SELECT stream_id, substring(payload FROM '"user_id":(-?[0-9]{1,18})[,}]')::bigint,
       substring(payload FROM '"course_id":(-?[0-9]{1,18})[,}]')::bigint
FROM events
WHERE event_type = 'Enrolled' AND stream_type = 'enrolment'
  AND payload ~ '"user_id":-?[0-9]{1,18}[,}]' AND payload ~ '"course_id":-?[0-9]{1,18}[,}]'
ON CONFLICT (stream_id) DO NOTHING;
INSERT INTO stream_subject (stream_id, user_id, course_id)
SELECT DISTINCT stream_id, split_part(stream_key, '/', 1)::bigint, split_part(stream_key, '/', 2)::bigint
FROM events WHERE stream_type = 'completion' AND stream_key ~ '^-?[0-9]{1,18}/-?[0-9]{1,18}$'
ON CONFLICT (stream_id) DO NOTHING;
INSERT INTO stream_subject (stream_id, user_id, course_id)
SELECT DISTINCT stream_id, NULL::bigint, stream_key::bigint FROM events
WHERE stream_type = 'course' AND stream_key ~ '^-?[0-9]{1,18}$'
ON CONFLICT (stream_id) DO NOTHING;
INSERT INTO stream_subject (stream_id, user_id, course_id)
SELECT DISTINCT stream_id, stream_key::bigint, NULL::bigint FROM events
WHERE stream_type = 'user' AND stream_key ~ '^-?[0-9]{1,18}$'
ON CONFLICT (stream_id) DO NOTHING;
