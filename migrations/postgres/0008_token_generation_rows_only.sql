-- A statement-level trigger fires even when its statement touched no row: erasing a user
-- without tokens (`DELETE FROM external_tokens WHERE userid = $1`, zero rows) bumped the token
-- generation, so every server dropped its token cache and re-read each token on its next call
-- (issue 7: `core_user_delete_users` on PostgreSQL). Inserts and deletes now bump only when
-- rows changed, seen through their transition tables; TRUNCATE keeps bumping always.
CREATE FUNCTION token_generation_bump_if_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed_rows) THEN
        UPDATE token_generation SET generation = generation + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER external_tokens_change_bumps ON external_tokens;
CREATE TRIGGER external_tokens_insert_bumps AFTER INSERT ON external_tokens
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION token_generation_bump_if_rows();
CREATE TRIGGER external_tokens_delete_bumps AFTER DELETE ON external_tokens
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION token_generation_bump_if_rows();
CREATE TRIGGER external_tokens_truncate_bumps AFTER TRUNCATE ON external_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION token_generation_bump();
