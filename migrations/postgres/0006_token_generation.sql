-- One counter bumped in the same transaction as every change that can alter a token check:
-- a token row inserted, deleted or changed (not `lastaccess`), or a token user's username,
-- auth, suspended or deleted flag changed; by the server, the CLI or SQL by hand. Servers read
-- it on each call and drop their token cache when it moved (api::tokens).
CREATE TABLE token_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO token_generation (id, generation) VALUES (1, 0);

CREATE FUNCTION token_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END $$;

-- Only for users who hold a token (a trigger's WHEN cannot look at another table).
CREATE FUNCTION token_user_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM external_tokens WHERE userid = NEW.id) THEN
        UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER external_tokens_change_bumps
AFTER INSERT OR DELETE OR TRUNCATE ON external_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION token_generation_bump();
CREATE TRIGGER external_tokens_update_bumps
AFTER UPDATE OF token_sha256, service, userid, validuntil, iprestriction ON external_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION token_generation_bump();
CREATE TRIGGER users_update_bumps AFTER UPDATE OF username, auth, suspended, deleted ON users
    FOR EACH ROW
    WHEN (OLD.username IS DISTINCT FROM NEW.username OR OLD.auth IS DISTINCT FROM NEW.auth
          OR OLD.suspended IS DISTINCT FROM NEW.suspended OR OLD.deleted IS DISTINCT FROM NEW.deleted)
    EXECUTE FUNCTION token_user_generation_bump();

CREATE INDEX external_tokens_userid ON external_tokens (userid);
