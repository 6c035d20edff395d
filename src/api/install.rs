//! The first start on an empty database: what enrol_semco's installer does in Moodle, once.
//!
//! The service user, roles and profile fields come with the migrations; this step creates the
//! SEMCO service's token and reports every step, the token in clear this one time. The report
//! goes to stderr, so that stdout of `export`, `history` and `as-of` stays machine-readable.
//!
//! The step and its record commit in one transaction, so a start killed halfway leaves nothing
//! and the next start does the step again; two processes starting at once make one token.

use super::services::{self, ENROL_SEMCO, SEMCO_SERVICE_USER_ID};
use super::tokens;
use crate::domain::event::InstallEvent;
use crate::domain::LedgerEvent;
use crate::registry::SEMCO_PROFILE_FIELDS;
use crate::store::log::Actor;
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
    let mut tx = db.pool.begin().await?;
    // Claiming the step first makes a second process that starts at the same moment wait here
    // for this transaction, then find the step taken (and roll back, having written nothing).
    let claimed = sqlx::query("INSERT INTO install_steps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(STEP)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed == 0 {
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
    let token = tokens::create_in(&mut tx, ENROL_SEMCO, SEMCO_SERVICE_USER_ID, 0, "").await?;
    // Each step is an event of the `install/site` stream, in the same transaction as the step
    // and its record; the token itself is the token registry's (and its own events), never here.
    let step =
        |step: &str, detail: String| LedgerEvent::from(InstallEvent::InstallStepDone { step: step.to_owned(), detail });
    let steps = vec![
        step("webservices", "web services and the REST protocol enabled".into()),
        step("role", "role 9 semcowebservice may assign role 5 (student)".into()),
        step("service_user", format!("service user {SEMCO_SERVICE_USER_ID} semcowebservice")),
        step("service", format!("service {ENROL_SEMCO} with {} functions", services::functions(ENROL_SEMCO).len())),
        step("profile_fields", fields.join(",")),
        step("semco_token", format!("token created for service {ENROL_SEMCO}, user {SEMCO_SERVICE_USER_ID}")),
    ];
    let actor = Actor { request_id: format!("install-{}", std::process::id()), ..Actor::default() };
    crate::app::writer::append_install_steps(&mut tx, steps, &actor).await?;
    tx.commit().await?;
    // Shown only after the commit: a token printed but never stored would mislead. A start
    // killed between the commit and this line leaves a token nobody saw; `token create` makes
    // another.
    eprintln!("enrol_semco install: token of semcowebservice for service {ENROL_SEMCO} (shown only now):");
    eprintln!("{token}");
    Ok(())
}
