//! Least privilege on PostgreSQL: the grants a runtime role needs (and no more), and the
//! start-up check that warns when the server's own role could alter the log.
//!
//! The owner role runs the migrations and the projection upgrade (`migrate`, `--migrate-url`);
//! the runtime role `serve` uses may only INSERT and SELECT on `events`, so neither a bug nor a
//! stolen connection can delete history: the triggers refuse UPDATE, DELETE and TRUNCATE, and
//! the missing privileges refuse them even with `session_replication_role = replica`, which a
//! role that is neither superuser nor granted that parameter cannot set (PostgreSQL 15
//! `GRANT SET ON PARAMETER`). SQLite has no roles: the file's permissions are the boundary
//! (docs/OPERATIONS.md).

use super::{Backend, Db, StoreError};

/// Tables the runtime role reads and changes, by what it may do with them.
const READ_ONLY: [&str; 5] = ["schema_migrations", "projection_meta", "install_steps", "role", "token_generation"];
const REGISTRIES: [&str; 3] = ["users", "user_profile_data", "courses"];
const PROJECTIONS: [&str; 7] = [
    "enrol",
    "user_enrolments",
    "course_completions",
    "recompletion_history",
    "course_recompletion",
    "ledger_config",
    "course_completion_criteria",
];

/// A role name usable unquoted in SQL: lowercase letters, digits and `_`, not starting with a
/// digit, at most 63 bytes (PostgreSQL's identifier length).
pub fn valid_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The SQL the owner runs (after `migrate`) so that `role` can serve the ledger in `schema`.
/// `None` for a name [`valid_role_name`] refuses.
pub fn grants_sql(schema: &str, role: &str) -> Option<String> {
    if !valid_role_name(role) || !valid_role_name(schema) {
        return None;
    }
    let mut sql = vec![
        format!(
            "-- enrol-ledger runtime role {role} for schema {schema}: run as the owner, after `enrol-ledger migrate`."
        ),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role};"),
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role};"),
        "-- The log: append and read, nothing else (no UPDATE, DELETE, TRUNCATE, no ownership).".to_owned(),
        format!("GRANT SELECT, INSERT ON {schema}.events TO {role};"),
        "-- Which course each enrolment stream belongs to: appended beside the log.".to_owned(),
        format!("GRANT SELECT, INSERT ON {schema}.enrolment_course TO {role};"),
        "-- The user and course of each stream (history by user or course): appended beside the log.".to_owned(),
        format!("GRANT SELECT, INSERT ON {schema}.stream_subject TO {role};"),
        format!("GRANT SELECT ON {} TO {role};", qualified(schema, &READ_ONLY)),
        "-- token_generation is bumped by the token and user triggers, which run as the caller.".to_owned(),
        format!("GRANT UPDATE ON {schema}.token_generation TO {role};"),
        format!("GRANT SELECT, INSERT, UPDATE ON {} TO {role};", qualified(schema, &REGISTRIES)),
        format!("GRANT DELETE ON {schema}.user_profile_data TO {role};"),
        "-- Tokens: created (CLI), revoked, expired and erased with their user; only lastaccess is updated.".to_owned(),
        format!("GRANT SELECT, INSERT, DELETE ON {schema}.external_tokens TO {role};"),
        format!("GRANT UPDATE (lastaccess) ON {schema}.external_tokens TO {role};"),
        format!("GRANT USAGE ON SEQUENCE {schema}.external_tokens_id_seq TO {role};"),
        "-- Token changes waiting to become events: written by any process, drained by the writer.".to_owned(),
        format!("GRANT SELECT, INSERT, DELETE ON {schema}.token_outbox TO {role};"),
        format!("GRANT USAGE ON SEQUENCE {schema}.token_outbox_id_seq TO {role};"),
        "-- Web sign-in (src/web): accounts (CLI), sessions (server), account changes waiting to become events."
            .to_owned(),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.web_accounts, {schema}.web_sessions TO {role};"),
        format!("GRANT USAGE ON SEQUENCE {schema}.web_accounts_id_seq TO {role};"),
        format!("GRANT SELECT, INSERT, DELETE ON {schema}.account_outbox TO {role};"),
        format!("GRANT USAGE ON SEQUENCE {schema}.account_outbox_id_seq TO {role};"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {role};", qualified(schema, &PROJECTIONS)),
        format!("GRANT SELECT ON {schema}.semco_enrolment_report TO {role};"),
        "-- The writer's snapshots (not the truth: the log is): written, read and pruned.".to_owned(),
        format!("GRANT SELECT, INSERT, DELETE ON {schema}.writer_snapshots TO {role};"),
        "-- Signed checkpoints (src/proof): appended and read, never changed.".to_owned(),
        format!("GRANT SELECT, INSERT ON {schema}.checkpoints TO {role};"),
        format!("GRANT SELECT, INSERT ON {schema}.checkpoint_keys TO {role};"),
        "-- The record of verify runs (app::verification): appended and read, never changed.".to_owned(),
        format!("GRANT SELECT, INSERT ON {schema}.verification_runs TO {role};"),
        "-- The projection upgrade drops and recreates the read models as the owner: they keep these grants."
            .to_owned(),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};"
        ),
    ];
    sql.push(String::new());
    Some(sql.join("\n"))
}

fn qualified(schema: &str, tables: &[&str]) -> String {
    tables.iter().map(|t| format!("{schema}.{t}")).collect::<Vec<_>>().join(", ")
}

/// What the connected role could do to the log, one line each (empty: only what it needs).
/// The facts, gathered by [`log_alterable_by_this_role`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPowers {
    pub superuser: bool,
    pub owns_events: bool,
    pub update: bool,
    pub delete: bool,
    pub truncate: bool,
    pub set_session_replication_role: bool,
}

impl LogPowers {
    pub fn reasons(self) -> Vec<&'static str> {
        [
            (self.superuser, "is a superuser"),
            (self.owns_events, "owns (or is a member of the owner of) the events table"),
            (self.update, "has UPDATE on events"),
            (self.delete, "has DELETE on events"),
            (self.truncate, "has TRUNCATE on events"),
            (self.set_session_replication_role, "may SET session_replication_role (skips the triggers)"),
        ]
        .into_iter()
        .filter_map(|(has, why)| has.then_some(why))
        .collect()
    }
}

/// Asks PostgreSQL what the connected role may do to `events`; SQLite has no roles.
///
/// # Errors
/// A failed catalogue query.
pub async fn log_alterable_by_this_role(db: &Db) -> Result<LogPowers, StoreError> {
    if db.backend == Backend::Sqlite {
        return Ok(LogPowers::default());
    }
    let flag = |sql: &'static str| async move {
        let value: bool = sqlx::query_scalar(sql).fetch_one(&db.pool).await?;
        Ok::<bool, StoreError>(value)
    };
    Ok(LogPowers {
        superuser: flag("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").await?,
        owns_events: flag(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c \
             WHERE c.oid = to_regclass('events')",
        )
        .await?,
        update: flag("SELECT has_table_privilege('events', 'UPDATE')").await?,
        delete: flag("SELECT has_table_privilege('events', 'DELETE')").await?,
        truncate: flag("SELECT has_table_privilege('events', 'TRUNCATE')").await?,
        set_session_replication_role: flag("SELECT has_parameter_privilege('session_replication_role', 'SET')").await?,
    })
}

/// The schema the connection works in (`search_path`'s first existing schema).
pub async fn current_schema(db: &Db) -> Result<String, StoreError> {
    Ok(sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&db.pool).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_plain_role_name_when_granting_then_the_log_gets_only_select_and_insert() {
        let sql = grants_sql("ledger", "enrol_ledger_runtime").unwrap();
        assert!(sql.contains("GRANT SELECT, INSERT ON ledger.events TO enrol_ledger_runtime;"));
        let on_events: Vec<&str> = sql.lines().filter(|l| l.contains(".events ")).collect();
        assert_eq!(on_events.len(), 1, "{on_events:?}");
        let statements: String = sql.lines().filter(|l| !l.starts_with("--")).collect();
        assert!(!statements.contains("TRUNCATE") && !statements.contains("OWNER") && !statements.contains("SUPERUSER"));
    }

    #[test]
    fn given_a_name_that_needs_quoting_when_granting_then_nothing_is_printed() {
        assert_eq!(grants_sql("ledger", "x; DROP TABLE events"), None);
        assert_eq!(grants_sql("ledger", "Runtime"), None);
        assert_eq!(grants_sql("ledger", "9role"), None);
        assert_eq!(grants_sql("le\"dger", "runtime"), None);
        assert!(valid_role_name("_r2"));
    }

    #[test]
    fn given_an_owner_when_checked_then_each_power_is_named() {
        let owner = LogPowers { owns_events: true, update: true, delete: true, truncate: true, ..Default::default() };
        assert_eq!(owner.reasons().len(), 4);
        assert!(LogPowers::default().reasons().is_empty());
        let superuser = LogPowers { superuser: true, set_session_replication_role: true, ..Default::default() };
        assert!(superuser.reasons().iter().any(|r| r.contains("session_replication_role")));
    }
}
