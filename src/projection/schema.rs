//! Creates the projection tables and rebuilds them from the log when their definition changed.

use super::PROJECTION_VERSION;
use crate::store::{Backend, Db, StoreError};

const NAME: &str = "projections";

/// Dropping is the same SQL on both backends.
const DROP_SQL: &str = include_str!("../../projections/drop.sql");

fn schema_sql(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => (DROP_SQL, include_str!("../../projections/sqlite/schema.sql")),
        Backend::Postgres => (DROP_SQL, include_str!("../../projections/postgres/schema.sql")),
    }
}

/// Makes sure the projection tables have the current definition. Returns true when they were
/// (re)created empty and must be rebuilt from the log.
pub async fn ensure(db: &Db) -> Result<bool, StoreError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM projection_meta WHERE name = $1")
        .bind(NAME)
        .fetch_optional(&db.pool)
        .await?;
    if version == Some(PROJECTION_VERSION) {
        return Ok(false);
    }
    let (drop, create) = schema_sql(db.backend);
    let mut tx = db.pool.begin().await?;
    sqlx::raw_sql(drop).execute(&mut *tx).await?;
    sqlx::raw_sql(create).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO projection_meta (name, version) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version",
    )
    .bind(NAME)
    .bind(PROJECTION_VERSION)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(version = PROJECTION_VERSION, "projection schema created; rebuilding from the log");
    Ok(true)
}
