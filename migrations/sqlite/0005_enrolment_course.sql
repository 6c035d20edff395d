-- The course of each enrolment stream, so that an as-of read of one course folds only that
-- course's events. A side table and not a column of `events`: the log's rows (and their hash
-- chain) stay as they are. Filled by the writer in each batch's transaction (`log::append`);
-- the existing log is backfilled here. An unreadable payload is skipped (verify names it).
CREATE TABLE enrolment_course (
    stream_id TEXT    PRIMARY KEY,
    course_id INTEGER NOT NULL
);
CREATE INDEX enrolment_course_course ON enrolment_course (course_id);
INSERT OR IGNORE INTO enrolment_course (stream_id, course_id)
SELECT stream_id, json_extract(payload, '$.course_id')
FROM events
WHERE event_type = 'Enrolled' AND stream_type = 'enrolment' AND json_valid(payload)
  AND json_type(payload, '$.course_id') = 'integer';
