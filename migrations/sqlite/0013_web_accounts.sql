-- Web sign-in (src/web): accounts, their sessions, and account changes waiting to become events.
-- Accounts are a registry like `users`: mutable rows; every change is an `Account*` event
-- appended from `account_outbox` by the writer (the same transaction deletes the outbox row).
CREATE TABLE web_accounts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    username           TEXT    NOT NULL UNIQUE,
    role               TEXT    NOT NULL,  -- manager, auditor
    password_hash      TEXT    NOT NULL,  -- Argon2id PHC string
    timecreated        BIGINT  NOT NULL,
    timepasswordset    BIGINT  NOT NULL
);
-- A session is known by the SHA-256 of its cookie value only; the cookie itself is never stored.
CREATE TABLE web_sessions (
    id_sha256          TEXT    PRIMARY KEY,
    account_id         BIGINT  NOT NULL REFERENCES web_accounts (id) ON DELETE CASCADE,
    csrf               TEXT    NOT NULL,
    created            BIGINT  NOT NULL,
    last_seen          BIGINT  NOT NULL,
    expires            BIGINT  NOT NULL   -- absolute end (created + 24 h)
);
CREATE INDEX web_sessions_account ON web_sessions (account_id);
CREATE TABLE account_outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    kind               TEXT    NOT NULL,  -- added, removed, password_changed
    account_id         BIGINT  NOT NULL,
    username           TEXT    NOT NULL,
    role               TEXT    NOT NULL,
    actor              TEXT    NOT NULL,
    reason             TEXT    NOT NULL
);
