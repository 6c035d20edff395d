//! The projection tables' definition and its version.
//!
//! When `PROJECTION_VERSION` changes the tables are dropped, created and rebuilt from the log.
//! These steps run inside the caller's transaction and never commit on their own: the
//! upgrade (`app::audit::upgrade_projections`) commits the drop, the create, the rebuilt rows
//! and the version bump together, so a crash leaves either the old tables and version or the
//! new ones, full.

use sqlx::AnyConnection;

use super::PROJECTION_VERSION;
use crate::store::{Backend, StoreError};

const NAME: &str = "projections";

/// Dropping is the same SQL on both backends.
const DROP_SQL: &str = include_str!("../../projections/drop.sql");

fn schema_sql(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => (DROP_SQL, include_str!("../../projections/sqlite/schema.sql")),
        Backend::Postgres => (DROP_SQL, include_str!("../../projections/postgres/schema.sql")),
    }
}

/// The projection tables' secondary indexes for `backend`, as (name, CREATE statement), in the
/// schema's order: a rebuild drops them, loads the rows and creates them again, which is
/// faster than maintaining them row by row. Each `CREATE [UNIQUE] INDEX` of the schema files
/// is on one line.
pub fn secondary_indexes(backend: Backend) -> Vec<(&'static str, &'static str)> {
    let (_, create) = schema_sql(backend);
    create
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("CREATE INDEX ") || line.starts_with("CREATE UNIQUE INDEX "))
        .filter_map(|line| {
            let rest = line.strip_prefix("CREATE UNIQUE INDEX ").or_else(|| line.strip_prefix("CREATE INDEX "))?;
            Some((rest.split_whitespace().next()?, line.trim_end_matches(';')))
        })
        .collect()
}

/// True when the projection tables have the current definition.
pub async fn is_current(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM projection_meta WHERE name = $1")
        .bind(NAME)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(version == Some(PROJECTION_VERSION))
}

/// Drops and creates the projection tables, empty, in the caller's transaction.
pub async fn recreate(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    let (drop, create) = schema_sql(backend);
    sqlx::raw_sql(drop).execute(&mut *conn).await?;
    sqlx::raw_sql(create).execute(&mut *conn).await?;
    Ok(())
}

/// Records that the tables have the current definition, in the caller's transaction. Call it
/// only in the transaction that also wrote the rebuilt rows.
pub async fn mark_current(conn: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO projection_meta (name, version) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version",
    )
    .bind(NAME)
    .bind(PROJECTION_VERSION)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secondary_index_is_found_on_both_backends() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let (_, create) = schema_sql(backend);
            let found = secondary_indexes(backend);
            assert_eq!(found.len(), create.matches("INDEX ").count(), "{backend:?}: one line per index");
            assert!(found.iter().any(|(name, sql)| *name == "enrol_customchar1" && sql.contains("UNIQUE")));
            assert!(found.iter().all(|(name, sql)| sql.contains(&format!("INDEX {name} ON "))));
        }
    }
}
