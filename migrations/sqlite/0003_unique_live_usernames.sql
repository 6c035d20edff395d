-- A username belongs to at most one live user, as Moodle's unique index on (mnethostid, username)
-- makes it. Deleted users keep their row under the placeholder username `deleted-<id>`, so the
-- index covers live rows only. On a database where two live users already share a username
-- this migration fails and names the index: rename one of them first (docs/API.md, users).
CREATE UNIQUE INDEX users_live_username ON users (username) WHERE deleted = 0;
