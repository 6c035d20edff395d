-- The append-only event log. Never dropped, never rewritten: the triggers refuse UPDATE, DELETE and TRUNCATE.
CREATE TABLE events (
    position        BIGINT  PRIMARY KEY,      -- global, gap-free commit order, assigned by the single writer
    stream_id       TEXT    NOT NULL,         -- UUID v5 of stream_type/key
    stream_type     TEXT    NOT NULL,         -- enrolment | completion | course | config
    stream_key      TEXT    NOT NULL,         -- readable key: instance id, "user/course", course id, "site"
    stream_version  BIGINT  NOT NULL,         -- 1, 2, ... within the stream (optimistic concurrency)
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    recorded_at     BIGINT  NOT NULL,         -- microseconds since the Unix epoch
    actor_user_id   BIGINT,                   -- the service user, or NULL for the CLI
    actor_token_id  BIGINT,                   -- the token's id, never the token
    request_id      TEXT    NOT NULL,
    booking_id      TEXT,                     -- the SEMCO booking ID the event concerns
    payload         TEXT    NOT NULL,         -- JSON text (not jsonb: replay speed), no personal data
    hash            TEXT    NOT NULL,         -- SHA-256 chaining this event to the previous one
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_booking_id ON events (booking_id) WHERE booking_id IS NOT NULL;
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Mutable, erasable registries: personal data lives here and never in the log.
CREATE TABLE users (
    id           BIGINT  PRIMARY KEY,
    username     TEXT    NOT NULL,
    auth         TEXT    NOT NULL DEFAULT 'manual',
    firstname    TEXT    NOT NULL DEFAULT '',
    lastname     TEXT    NOT NULL DEFAULT '',
    email        TEXT    NOT NULL DEFAULT '',
    idnumber     TEXT    NOT NULL DEFAULT '',
    lang         TEXT    NOT NULL DEFAULT 'en',
    suspended    INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    timecreated  BIGINT  NOT NULL,
    timemodified BIGINT  NOT NULL
);
CREATE INDEX users_username ON users (username);
CREATE TABLE user_profile_data (
    userid    BIGINT NOT NULL,
    shortname TEXT   NOT NULL,
    data      TEXT   NOT NULL,
    PRIMARY KEY (userid, shortname)
);
CREATE TABLE courses (
    id               BIGINT  PRIMARY KEY,
    fullname         TEXT    NOT NULL,
    shortname        TEXT    NOT NULL,
    categoryid       BIGINT  NOT NULL DEFAULT 1,
    idnumber         TEXT    NOT NULL DEFAULT '',
    summary          TEXT    NOT NULL DEFAULT '',
    visible          INTEGER NOT NULL DEFAULT 1,
    enablecompletion INTEGER NOT NULL DEFAULT 0,
    startdate        BIGINT  NOT NULL DEFAULT 0,
    enddate          BIGINT  NOT NULL DEFAULT 0,
    timecreated      BIGINT  NOT NULL,
    timemodified     BIGINT  NOT NULL
);
CREATE TABLE projection_meta (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL
);
-- A fresh Moodle's first users: guest (1) and the site administrator (2); the SEMCO service
-- user (3) as the plugin's installer creates it.
INSERT INTO users (id, username, auth, firstname, lastname, email, timecreated, timemodified) VALUES
    (1, 'guest', 'manual', 'Guest user', ' ', 'root@localhost', 0, 0),
    (2, 'admin', 'manual', 'Admin', 'User', 'admin@localhost', 0, 0),
    (3, 'semcowebservice', 'webservice', 'SEMCO', 'Webservice', 'semcowebservice@localhost', 0, 0);
