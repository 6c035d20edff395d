-- The course of each enrolment stream, so that an as-of read of one course folds only that
-- course's events. A side table and not a column of `events`: the log's rows (and their hash
-- chain) stay as they are. Filled by the writer in each batch's transaction (`log::append`);
-- the existing log is backfilled here, with a pattern rather than a jsonb cast so that an
-- unreadable payload is skipped (verify names it) instead of failing the migration.
CREATE TABLE enrolment_course (
    stream_id TEXT   PRIMARY KEY,
    course_id BIGINT NOT NULL
);
CREATE INDEX enrolment_course_course ON enrolment_course (course_id);
INSERT INTO enrolment_course (stream_id, course_id)
SELECT stream_id, substring(payload FROM '"course_id":(-?[0-9]{1,18})[,}]')::bigint
FROM events
WHERE event_type = 'Enrolled' AND stream_type = 'enrolment'
  AND payload ~ '"course_id":-?[0-9]{1,18}[,}]'
ON CONFLICT (stream_id) DO NOTHING;
