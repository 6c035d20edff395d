-- Web-service tokens: stored as SHA-256 of the token, never in clear.
CREATE TABLE external_tokens (
    id            BIGSERIAL PRIMARY KEY,
    token_sha256  TEXT    NOT NULL UNIQUE,
    service       TEXT    NOT NULL,
    userid        BIGINT  NOT NULL,
    validuntil    BIGINT  NOT NULL DEFAULT 0,   -- Unix seconds, 0 = never expires
    iprestriction TEXT    NOT NULL DEFAULT '',  -- comma list of IPs and CIDR ranges
    timecreated   BIGINT  NOT NULL,
    lastaccess    BIGINT  NOT NULL DEFAULT 0
);

-- Which installer steps have run (the first start does the plugin installer's work once).
CREATE TABLE install_steps (
    name TEXT PRIMARY KEY
);

-- Moodle's default roles, plus the SEMCO webservice role the plugin's installer adds.
CREATE TABLE role (
    id        INTEGER PRIMARY KEY,
    shortname TEXT NOT NULL,
    archetype TEXT NOT NULL
);
INSERT INTO role (id, shortname, archetype) VALUES
    (1, 'manager', 'manager'),
    (2, 'coursecreator', 'coursecreator'),
    (3, 'editingteacher', 'editingteacher'),
    (4, 'teacher', 'teacher'),
    (5, 'student', 'student'),
    (6, 'guest', 'guest'),
    (7, 'user', 'user'),
    (8, 'frontpage', 'frontpage'),
    (9, 'semcowebservice', '');
