//! The first start on an empty database: what enrol_semco's installer does in Moodle, once.
//!
//! The service user, roles and profile fields come with the migrations; this step creates the
//! SEMCO service's token and reports every step, the token in clear this one time. The report
//! goes to stderr, so that stdout of `export`, `history` and `as-of` stays machine-readable.

use super::services::{self, ENROL_SEMCO, SEMCO_SERVICE_USER_ID};
use super::tokens;
use crate::registry::SEMCO_PROFILE_FIELDS;
use crate::store::Db;

const STEP: &str = "semco_token";

pub async fn run(db: &Db) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let done: Option<String> = sqlx::query_scalar("SELECT name FROM install_steps WHERE name = $1")
        .bind(STEP)
        .fetch_optional(&db.pool)
        .await?;
    if done.is_some() {
        return Ok(());
    }
    let fields: Vec<&str> = SEMCO_PROFILE_FIELDS.iter().map(|(shortname, _)| *shortname).collect();
    eprintln!("enrol_semco install: web services and the REST protocol are enabled");
    eprintln!("enrol_semco install: role semcowebservice (9) may assign the SEMCO role 5 (student); roles 1 manager, 2 coursecreator, 3 editingteacher, 4 teacher, 5 student, 6 guest, 7 user, 8 frontpage");
    eprintln!(
        "enrol_semco install: service user semcowebservice (\"SEMCO Webservice\") is user {SEMCO_SERVICE_USER_ID}"
    );
    eprintln!("enrol_semco install: service {ENROL_SEMCO} with {} functions", services::functions(ENROL_SEMCO).len());
    eprintln!("enrol_semco install: profile fields {}", fields.join(", "));
    let token = tokens::create(db, ENROL_SEMCO, SEMCO_SERVICE_USER_ID, 0, "").await?;
    sqlx::query("INSERT INTO install_steps (name) VALUES ($1)").bind(STEP).execute(&db.pool).await?;
    eprintln!("enrol_semco install: token of semcowebservice for service {ENROL_SEMCO} (shown only now):");
    eprintln!("{token}");
    Ok(())
}
