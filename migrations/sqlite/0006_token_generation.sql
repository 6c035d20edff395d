-- One counter bumped in the same transaction as every change that can alter a token check:
-- a token row inserted, deleted or changed (not `lastaccess`), or a token user's username,
-- auth, suspended or deleted flag changed; by the server, the CLI or SQL by hand. Servers read
-- it on each call and drop their token cache when it moved (api::tokens).
CREATE TABLE token_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO token_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER external_tokens_insert_bumps AFTER INSERT ON external_tokens
BEGIN
    UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER external_tokens_delete_bumps AFTER DELETE ON external_tokens
BEGIN
    UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER external_tokens_update_bumps
AFTER UPDATE OF token_sha256, service, userid, validuntil, iprestriction ON external_tokens
BEGIN
    UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER users_update_bumps AFTER UPDATE OF username, auth, suspended, deleted ON users
WHEN (OLD.username IS NOT NEW.username OR OLD.auth IS NOT NEW.auth
      OR OLD.suspended IS NOT NEW.suspended OR OLD.deleted IS NOT NEW.deleted)
     AND EXISTS (SELECT 1 FROM external_tokens WHERE userid = NEW.id)
BEGIN
    UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE INDEX external_tokens_userid ON external_tokens (userid);
