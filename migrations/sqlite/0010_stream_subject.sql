-- The user and course each stream is about, so that the history of a user or a course reads
-- only its streams by index (issue 8 item 3): enrolment streams (from their `Enrolled` event),
-- completion streams (`user/course`), user streams (`user/{id}`) and course streams
-- (`course/{id}`). One row per stream, not per event; an index beside the log, not part of it:
-- the envelope and its hash are unchanged. Filled by every append in its transaction
-- (`log::append`); the existing log is backfilled here (an unreadable payload is skipped).
CREATE TABLE stream_subject (
    stream_id TEXT    PRIMARY KEY,
    user_id   INTEGER,
    course_id INTEGER
);
CREATE INDEX stream_subject_user ON stream_subject (user_id);
CREATE INDEX stream_subject_course ON stream_subject (course_id);
INSERT OR IGNORE INTO stream_subject (stream_id, user_id, course_id)
SELECT stream_id, json_extract(payload, '$.user_id'), json_extract(payload, '$.course_id')
FROM events
WHERE event_type = 'Enrolled' AND stream_type = 'enrolment' AND json_valid(payload)
  AND json_type(payload, '$.user_id') = 'integer' AND json_type(payload, '$.course_id') = 'integer';
INSERT OR IGNORE INTO stream_subject (stream_id, user_id, course_id)
SELECT DISTINCT stream_id, CAST(substr(stream_key, 1, instr(stream_key, '/') - 1) AS INTEGER),
       CAST(substr(stream_key, instr(stream_key, '/') + 1) AS INTEGER)
FROM events WHERE stream_type = 'completion' AND instr(stream_key, '/') > 0;
INSERT OR IGNORE INTO stream_subject (stream_id, user_id, course_id)
SELECT DISTINCT stream_id, NULL, CAST(stream_key AS INTEGER) FROM events WHERE stream_type = 'course';
INSERT OR IGNORE INTO stream_subject (stream_id, user_id, course_id)
SELECT DISTINCT stream_id, CAST(stream_key AS INTEGER), NULL FROM events WHERE stream_type = 'user';
