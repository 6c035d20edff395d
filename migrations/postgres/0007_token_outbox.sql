-- Token changes waiting to become events (the writer appends them and deletes the rows in the
-- same transaction). Any process may insert: the CLI beside a running server, the server itself.
CREATE TABLE token_outbox (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT    NOT NULL,  -- created, revoked, rotated, expired
    token_id       BIGINT  NOT NULL,
    service        TEXT    NOT NULL,
    userid         BIGINT  NOT NULL,
    validuntil     BIGINT  NOT NULL,
    iprestriction  TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    reason         TEXT    NOT NULL
);
-- Every token that exists already gets its creation event, so each token stream starts with one.
INSERT INTO token_outbox (kind, token_id, service, userid, validuntil, iprestriction, actor, reason)
    SELECT 'created', id, service, userid, validuntil, iprestriction, 'migration 7', 'existed before token events'
    FROM external_tokens ORDER BY id;
