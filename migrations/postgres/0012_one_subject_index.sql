-- One index of what each stream is about: `stream_subject` (migration 10) also answers the
-- per-user reads that `stream_user` (migration 11) was made for (as-of of a user, a user's
-- export), so every append writes one side table instead of two. Streams only `stream_user`
-- knew (a token's, a manual enrolment's) keep their user; the log itself is unchanged.
INSERT INTO stream_subject (stream_id, user_id, course_id)
SELECT stream_id, MIN(user_id), NULL FROM stream_user GROUP BY stream_id
ON CONFLICT (stream_id) DO NOTHING;
DROP TABLE stream_user;
