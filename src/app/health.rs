//! The health check (issue 11 item 3): every aspect of the SEMCO connection the ledger owns and
//! the ledger's own state, each OK / warning / error with a one-line explanation and fix.
//!
//! Functional core, imperative shell: `gather` reads every fact (database, registry, tokens,
//! the log's install and health streams, the writer's health, the disk) in one place; `evaluate`
//! decides each check's status from the facts alone (given/when/then tests below). Managers
//! mute single checks (`HealthEvent`, stream `health/site`): a muted check still shows its
//! status but does not make the overall result an error. `/health`, `/api/v1/health` and
//! `enrol-ledger health` all show `report(...)`.

use serde::Serialize;
use sqlx::Row;

use super::verification::{last_verification, VerifyOutcome};
use super::writer::{WriterHealth, WriterStatus};
use crate::api::services::{self, ENROL_SEMCO, SEMCO_SERVICE_USER_ID};
use crate::domain::config::Settings;
use crate::domain::event::{HealthEvent, InstallEvent};
use crate::domain::health::{Muted, CHECK_IDS};
use crate::domain::LedgerEvent;
use crate::store::{Backend, Db, StoreError};

/// The functions of enrol_semco's service in its `db/services.php` (the 2026 line, with
/// `enrol_semco_check_user_existence_by_field`), sorted: what the function table must give it.
pub const SEMCO_SERVICE_FUNCTIONS: [&str; 12] = [
    "core_course_get_courses_by_field",
    "core_user_create_users",
    "core_user_delete_users",
    "core_user_get_users_by_field",
    "core_user_update_users",
    "enrol_semco_check_user_existence_by_field",
    "enrol_semco_edit_enrolment",
    "enrol_semco_enrol_user",
    "enrol_semco_get_course_completions",
    "enrol_semco_get_enrolments",
    "enrol_semco_reset_course_completion",
    "enrol_semco_unenrol_user",
];

/// The SEMCO role the plugin's installer creates (the service user's system role).
pub const SEMCO_WEBSERVICE_ROLE: (i64, &str) = (9, "semcowebservice");

/// A token expiring within this many days is a warning.
pub const TOKEN_EXPIRY_WARNING_DAYS: i64 = 30;
/// A last `verify` older than this is a warning.
pub const VERIFY_MAX_AGE_DAYS: i64 = 7;
/// A last signed checkpoint older than this, with events after it, is a warning.
pub const CHECKPOINT_MAX_AGE_HOURS: i64 = 24;
/// Free disk below these is a warning / an error (bytes, or per cent of the file system).
pub const DISK_WARNING_BYTES: u64 = 2 << 30;
pub const DISK_ERROR_BYTES: u64 = 256 << 20;
pub const DISK_WARNING_PERCENT: f64 = 10.0;
pub const DISK_ERROR_PERCENT: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// Stable id (`domain::health::CHECK_IDS`): what a mute names.
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// One line: what was found.
    pub explanation: String,
    /// One line: what to do (empty when OK).
    pub fix: String,
    /// The reason the check was muted with, if it is.
    pub muted: Option<String>,
}

/// Every check and the overall result: the worst status among the unmuted checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub status: Status,
    pub checked_at: String,
    pub checks: Vec<Check>,
}

impl HealthReport {
    /// `enrol-ledger health` exits 1 on this.
    pub fn has_unmuted_error(&self) -> bool {
        self.status == Status::Error
    }
}

/// A SEMCO token as the check sees it (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFact {
    pub id: i64,
    pub userid: i64,
    /// Unix seconds, 0 = never.
    pub validuntil: i64,
    pub iprestriction: String,
}

/// The SEMCO service user's registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFact {
    pub auth: String,
    pub suspended: bool,
    pub deleted: bool,
}

/// Free space of the file system holding the SQLite database.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskFact {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Everything the checks decide from, read by `gather`.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now_us: i64,
    pub backend: Backend,
    /// The installer's steps recorded in the log (`InstallStepDone`): step → detail.
    pub install_steps: Vec<(String, String)>,
    /// The functions the function table gives `enrol_semco`, sorted.
    pub semco_functions: Vec<String>,
    pub service_user: Option<UserFact>,
    pub semco_tokens: Vec<TokenFact>,
    /// Roles of the `role` table (id, shortname).
    pub roles: Vec<(i64, String)>,
    pub settings: Settings,
    /// Courses whose recompletion type is on demand (id, shortname).
    pub on_demand_courses: Vec<(i64, String)>,
    /// The durability settings read on a pooled connection (name, value; for PostgreSQL the
    /// server's default, `reset_val`).
    pub durability: Vec<(String, String)>,
    /// The server's writer (`None` from the CLI: no writer runs in that process).
    pub writer: Option<WriterHealth>,
    pub last_verification: Option<VerifyOutcome>,
    /// The newest signed checkpoint: (position, time in Unix microseconds).
    pub last_checkpoint: Option<(i64, i64)>,
    pub head_position: i64,
    pub projection_version: Option<i64>,
    pub disk: Option<DiskFact>,
    pub muted: Muted,
}

fn days_hours(us: i64) -> String {
    let hours = us.max(0) / 3_600_000_000;
    if hours >= 48 {
        format!("{} days", hours / 24)
    } else if hours >= 1 {
        format!("{hours} h")
    } else {
        format!("{} min", us.max(0) / 60_000_000)
    }
}

fn time_text(us: i64) -> String {
    super::audit::rfc3339(us)
}

/// What one check found, before titles and mutes are added.
struct Found {
    status: Status,
    explanation: String,
    fix: String,
}

fn ok(explanation: impl Into<String>) -> Found {
    Found { status: Status::Ok, explanation: explanation.into(), fix: String::new() }
}
fn warning(explanation: impl Into<String>, fix: impl Into<String>) -> Found {
    Found { status: Status::Warning, explanation: explanation.into(), fix: fix.into() }
}
fn error(explanation: impl Into<String>, fix: impl Into<String>) -> Found {
    Found { status: Status::Error, explanation: explanation.into(), fix: fix.into() }
}

/// The title of a check id.
pub fn title(id: &str) -> &'static str {
    match id {
        "semco_service" => "SEMCO web service and its functions",
        "semco_service_user" => "SEMCO service user is active",
        "semco_token" => "Exactly one SEMCO token",
        "semco_token_expiry" => "SEMCO token expiry",
        "semco_token_ip" => "SEMCO token IP restriction",
        "semco_role" => "SEMCO role exists",
        "plugin_enabled" => "Plugin enabled",
        "semco_profile_fields" => "SEMCO profile fields",
        "recompletion" => "Recompletion",
        "database_durability" => "Database durability settings",
        "writer" => "Writer",
        "last_verify" => "Last verification",
        "last_checkpoint" => "Last signed checkpoint",
        "projection_version" => "Projection version",
        "disk_space" => "Free disk space",
        _ => "Unknown check",
    }
}

/// Decides every check from the facts. Pure.
pub fn evaluate(facts: &Facts) -> HealthReport {
    let checks: Vec<Check> = CHECK_IDS
        .iter()
        .map(|id| {
            let found = decide(id, facts);
            Check {
                id,
                title: title(id),
                status: found.status,
                explanation: found.explanation,
                fix: found.fix,
                muted: facts.muted.get(*id).cloned(),
            }
        })
        .collect();
    let status = checks.iter().filter(|c| c.muted.is_none()).map(|c| c.status).max().unwrap_or(Status::Ok);
    HealthReport { status, checked_at: time_text(facts.now_us), checks }
}

fn installed<'a>(facts: &'a Facts, step: &str) -> Option<&'a str> {
    facts.install_steps.iter().find(|(s, _)| s == step).map(|(_, d)| d.as_str())
}

fn decide(id: &str, f: &Facts) -> Found {
    let now_s = f.now_us / 1_000_000;
    match id {
        "semco_service" => {
            let expected: Vec<&str> = SEMCO_SERVICE_FUNCTIONS.to_vec();
            let have: Vec<&str> = f.semco_functions.iter().map(String::as_str).collect();
            let missing: Vec<&str> = expected.iter().copied().filter(|e| !have.contains(e)).collect();
            let extra: Vec<&str> = have.iter().copied().filter(|h| !expected.contains(h)).collect();
            if installed(f, "service").is_none() {
                error(
                    format!("the installer's step that creates service {ENROL_SEMCO} is not in the log"),
                    "start `enrol-ledger serve` once on this database: the first start installs the service",
                )
            } else if !missing.is_empty() || !extra.is_empty() {
                error(
                    format!(
                        "service {ENROL_SEMCO}: missing [{}], not the plugin's [{}]",
                        missing.join(", "),
                        extra.join(", ")
                    ),
                    "run a release whose function table gives enrol_semco exactly the plugin's functions",
                )
            } else {
                ok(format!("service {ENROL_SEMCO} exists with exactly the plugin's {} functions", have.len()))
            }
        }
        "semco_service_user" => match &f.service_user {
            None => error(
                format!("user {SEMCO_SERVICE_USER_ID} (semcowebservice) does not exist"),
                "restore the database from a backup: the service user comes with the first migration",
            ),
            Some(u) if u.deleted => error(
                format!("user {SEMCO_SERVICE_USER_ID} (semcowebservice) is deleted: SEMCO's calls are refused"),
                "restore the database from a backup; a deleted user cannot be brought back",
            ),
            Some(u) if u.suspended => error(
                format!("user {SEMCO_SERVICE_USER_ID} (semcowebservice) is suspended: SEMCO's calls are refused"),
                "unsuspend it: core_user_update_users with suspended=0 (service ledger_admin)",
            ),
            Some(u) if &*u.auth == "nologin" => error(
                "the service user's auth is nologin: SEMCO's calls are refused",
                "set its auth back to webservice (core_user_update_users, service ledger_admin)",
            ),
            Some(u) => ok(format!("user {SEMCO_SERVICE_USER_ID} semcowebservice is active (auth {})", u.auth)),
        },
        "semco_token" => match f.semco_tokens.len() {
            0 => error(
                format!("no token of service {ENROL_SEMCO} exists: SEMCO cannot call the ledger"),
                "enrol-ledger token rotate --service enrol_semco, and enter the new token in SEMCO",
            ),
            1 => {
                let t = &f.semco_tokens[0];
                if t.userid == SEMCO_SERVICE_USER_ID {
                    ok(format!("one token (id {}) of user semcowebservice", t.id))
                } else {
                    warning(
                        format!("the token (id {}) belongs to user {}, not to semcowebservice", t.id, t.userid),
                        "enrol-ledger token rotate --service enrol_semco",
                    )
                }
            }
            n => warning(
                format!("{n} tokens of service {ENROL_SEMCO} exist; the plugin expects exactly one"),
                "revoke the ones SEMCO does not use: enrol-ledger token list, then token revoke --id N",
            ),
        },
        "semco_token_expiry" => {
            if f.semco_tokens.is_empty() {
                return warning("no SEMCO token to check (see \"Exactly one SEMCO token\")", "create the token first");
            }
            let soonest = f.semco_tokens.iter().filter(|t| t.validuntil != 0).map(|t| t.validuntil).min();
            match soonest {
                None => ok("the SEMCO token never expires"),
                Some(until) if until <= now_s => error(
                    format!("the SEMCO token expired at {}", time_text(until * 1_000_000)),
                    "enrol-ledger token rotate --service enrol_semco [--valid-until DATE], and enter it in SEMCO",
                ),
                Some(until) if until - now_s <= TOKEN_EXPIRY_WARNING_DAYS * 86_400 => warning(
                    format!(
                        "the SEMCO token expires at {} (in {})",
                        time_text(until * 1_000_000),
                        days_hours((until - now_s) * 1_000_000)
                    ),
                    "rotate it before then: enrol-ledger token rotate --service enrol_semco --valid-until DATE",
                ),
                Some(until) => ok(format!("the SEMCO token is valid until {}", time_text(until * 1_000_000))),
            }
        }
        "semco_token_ip" => {
            if f.semco_tokens.is_empty() {
                return warning("no SEMCO token to check (see \"Exactly one SEMCO token\")", "create the token first");
            }
            let open: Vec<i64> =
                f.semco_tokens.iter().filter(|t| t.iprestriction.trim().is_empty()).map(|t| t.id).collect();
            if open.is_empty() {
                let lists: Vec<&str> = f.semco_tokens.iter().map(|t| t.iprestriction.as_str()).collect();
                ok(format!("the SEMCO token is restricted to {}", lists.join("; ")))
            } else {
                warning(
                    "the SEMCO token has no IP restriction: anyone holding it can call from anywhere",
                    "enrol-ledger token rotate --service enrol_semco --ip SEMCO_ADDRESSES",
                )
            }
        }
        "semco_role" => {
            let role = f.settings.role.0;
            let has = |id: i64| f.roles.iter().find(|(r, _)| *r == id).map(|(_, name)| name.as_str());
            match (has(role), has(SEMCO_WEBSERVICE_ROLE.0)) {
                (Some(name), Some(_)) => {
                    ok(format!("SEMCO enrols with role {role} ({name}); role semcowebservice exists"))
                }
                (None, _) => error(
                    format!("the configured SEMCO role {role} does not exist"),
                    "choose an existing role on /settings (or ledger_set_config name=role)",
                ),
                (_, None) => error(
                    "role 9 semcowebservice (the service user's role) does not exist",
                    "restore the database from a backup: the role comes with the migrations",
                ),
            }
        }
        "plugin_enabled" => {
            if f.settings.enabled {
                ok("the SEMCO enrolment plugin is enabled")
            } else {
                error(
                    "the plugin is disabled: the six enrol_semco functions refuse every call",
                    "enable it on /settings (or ledger_set_config name=enabled value=1)",
                )
            }
        }
        "semco_profile_fields" => {
            let wanted: Vec<&str> = crate::registry::SEMCO_PROFILE_FIELDS.iter().map(|(s, _)| *s).collect();
            match installed(f, "profile_fields") {
                None => error(
                    "the installer's profile-field step is not in the log",
                    "start `enrol-ledger serve` once on this database: the first start installs the fields",
                ),
                Some(detail) => {
                    let have: Vec<&str> = detail.split(',').map(str::trim).collect();
                    let missing: Vec<&str> = wanted.iter().copied().filter(|w| !have.contains(w)).collect();
                    if missing.is_empty() {
                        ok(format!("the {} SEMCO profile fields exist: {}", wanted.len(), wanted.join(", ")))
                    } else {
                        error(
                            format!("profile fields missing: {}", missing.join(", ")),
                            "upgrade to a release that installs every SEMCO profile field",
                        )
                    }
                }
            }
        }
        "recompletion" => {
            let courses: Vec<String> = f.on_demand_courses.iter().map(|(id, name)| format!("{name} ({id})")).collect();
            let list = if courses.is_empty() { "no course".to_owned() } else { courses.join(", ") };
            if f.settings.recompletion {
                ok(format!("recompletion is available; on demand in {list}"))
            } else if f.on_demand_courses.is_empty() {
                ok("recompletion is switched off; no course has it on demand")
            } else {
                warning(
                    format!("recompletion is switched off, but on demand in {list}: SEMCO's resets are refused"),
                    "switch recompletion on on /settings, or set those courses' recompletion type to disabled",
                )
            }
        }
        "database_durability" => durability(f),
        "writer" => match &f.writer {
            None => ok("no writer runs in this process (the CLI); the server reports its writer on /health"),
            Some(w) => match &w.status {
                WriterStatus::Running if w.unsafe_durability.is_empty() => ok(format!(
                    "running, queue depth {}, last commit {}",
                    w.queue_depth,
                    w.last_commit_micros.map_or("none yet".to_owned(), time_text)
                )),
                WriterStatus::Running => warning(
                    format!("running with unsafe durability accepted: {}", w.unsafe_durability.join("; ")),
                    "fix the database settings and restart without --allow-unsafe-durability",
                ),
                WriterStatus::Recovering(why) => warning(
                    format!("recovering after a failed commit: {why}"),
                    "check the database server; the writer retries by itself (docs/RELIABILITY.md)",
                ),
                WriterStatus::Failed(why) => error(
                    format!("the writer stopped: {why}"),
                    "read the server log, fix the cause and restart enrol-ledger serve",
                ),
                WriterStatus::Stopped => error("the writer is stopped", "restart enrol-ledger serve"),
            },
        },
        "last_verify" => match &f.last_verification {
            None => {
                warning("the ledger has never been verified", "run enrol-ledger verify (e.g. nightly from a timer)")
            }
            Some(v) if !v.ok => error(
                format!(
                    "the last verify ({}) FAILED with {} mismatch(es) over {} events",
                    time_text(v.time_us),
                    v.mismatches,
                    v.log_length
                ),
                "run enrol-ledger verify and read each MISMATCH line; see docs/AUDIT.md",
            ),
            Some(v) if f.now_us - v.time_us > VERIFY_MAX_AGE_DAYS * 86_400_000_000 => warning(
                format!(
                    "the last verify passed, but {} ago ({} events)",
                    days_hours(f.now_us - v.time_us),
                    v.log_length
                ),
                "run enrol-ledger verify regularly (e.g. nightly)",
            ),
            Some(v) => ok(format!(
                "passed {} ago: {} events up to position {}, {} ms",
                days_hours(f.now_us - v.time_us),
                v.log_length,
                v.head_position,
                v.duration_ms
            )),
        },
        "last_checkpoint" => match f.last_checkpoint {
            None if f.head_position == 0 => ok("the log is empty: nothing to sign yet"),
            None => warning(
                "no signed checkpoint exists",
                "run enrol-ledger checkpoint, or keep enrol-ledger serve running",
            ),
            Some((position, time_us))
                if position < f.head_position && f.now_us - time_us > CHECKPOINT_MAX_AGE_HOURS * 3_600_000_000 =>
            {
                warning(
                    format!(
                        "the last checkpoint (position {position}) is {} old and {} events behind",
                        days_hours(f.now_us - time_us),
                        f.head_position - position
                    ),
                    "run enrol-ledger checkpoint; a running server signs every N events / M minutes",
                )
            }
            Some((position, time_us)) => {
                ok(format!("position {position} of {} signed {} ago", f.head_position, days_hours(f.now_us - time_us)))
            }
        },
        "projection_version" => {
            let current = crate::projection::PROJECTION_VERSION;
            match f.projection_version {
                Some(v) if v == current => ok(format!("projections at version {current}")),
                Some(v) => error(
                    format!("projections at version {v}, this release expects {current}"),
                    "restart enrol-ledger serve (or run enrol-ledger migrate): the upgrade rebuilds them",
                ),
                None => error("the projection version is not recorded", "run enrol-ledger rebuild"),
            }
        }
        "disk_space" => match &f.disk {
            None if f.backend == Backend::Postgres => {
                ok("not measured: PostgreSQL's data directory is the database server's; watch it there")
            }
            None => warning("the free space of the database's file system could not be read", "check it with df"),
            Some(d) => {
                let percent = if d.total_bytes == 0 { 0.0 } else { d.free_bytes as f64 * 100.0 / d.total_bytes as f64 };
                let text =
                    format!("{} free of {} ({percent:.1} %) at {}", bytes(d.free_bytes), bytes(d.total_bytes), d.path);
                if d.free_bytes < DISK_ERROR_BYTES || percent < DISK_ERROR_PERCENT {
                    error(text, "free space now: the writer stops when a commit cannot be written")
                } else if d.free_bytes < DISK_WARNING_BYTES || percent < DISK_WARNING_PERCENT {
                    warning(text, "free space or grow the file system before it fills")
                } else {
                    ok(text)
                }
            }
        },
        _ => error("unknown check", ""),
    }
}

fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n as f64 >= GIB {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.0} MiB", n as f64 / MIB)
    }
}

fn durability(f: &Facts) -> Found {
    let get = |name: &str| f.durability.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let listed: Vec<String> = f.durability.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let listed = listed.join(", ");
    match f.backend {
        Backend::Postgres => {
            let mut problems = Vec::new();
            for name in ["fsync", "full_page_writes"] {
                if get(name) != Some("on") {
                    problems.push(format!("{name} is {}", get(name).unwrap_or("unknown")));
                }
            }
            if !problems.is_empty() {
                return error(
                    format!("PostgreSQL does not make commits durable: {}", problems.join(", ")),
                    "set fsync = on and full_page_writes = on in postgresql.conf and reload",
                );
            }
            match get("synchronous_commit") {
                Some("on" | "remote_apply" | "remote_write") => ok(listed),
                other => warning(
                    format!(
                        "synchronous_commit defaults to {} (the writer forces it on in its own session): {listed}",
                        other.unwrap_or("unknown")
                    ),
                    "set synchronous_commit = on in postgresql.conf",
                ),
            }
        }
        Backend::Sqlite => {
            let journal = get("journal_mode").unwrap_or("unknown");
            let synchronous: i64 = get("synchronous").and_then(|s| s.parse().ok()).unwrap_or(-1);
            if !journal.eq_ignore_ascii_case("wal") || synchronous < 2 {
                error(
                    format!("SQLite does not make commits durable: journal_mode={journal}, synchronous={synchronous}"),
                    "use a database file (not :memory:) on a local file system; the ledger sets WAL and FULL",
                )
            } else {
                ok(format!("journal_mode={journal}, synchronous={synchronous} (FULL)"))
            }
        }
    }
}

/// The ledger's settings now: the fold of the `config/site` stream (a handful of events).
pub async fn current_settings(db: &Db) -> Result<Settings, StoreError> {
    use esrs::Aggregate;
    let mut settings = Settings::default();
    for stored in crate::store::log::read_stream(db, &super::decide::config_stream().uuid().to_string()).await? {
        if let LedgerEvent::Config(e) = stored.event()? {
            settings = crate::domain::config::Config::apply_event(settings, e);
        }
    }
    Ok(settings)
}

/// Reads every fact. `writer`: the server's writer health (`None` from the CLI).
pub async fn gather(db: &Db, writer: Option<WriterHealth>) -> Result<Facts, StoreError> {
    let mut conn = db.pool.acquire().await?;
    let mut install_steps = Vec::new();
    let mut muted = Muted::new();
    let settings = current_settings(db).await?;
    for stream in [super::decide::install_stream(), super::decide::health_stream()] {
        for stored in crate::store::log::read_stream(db, &stream.uuid().to_string()).await? {
            use esrs::Aggregate;
            match stored.event()? {
                LedgerEvent::Install(InstallEvent::InstallStepDone { step, detail }) => {
                    install_steps.push((step, detail))
                }
                LedgerEvent::Health(e @ (HealthEvent::CheckMuted { .. } | HealthEvent::CheckUnmuted { .. })) => {
                    muted = crate::domain::health::HealthMutes::apply_event(muted, e);
                }
                _ => {}
            }
        }
    }
    let service_user = sqlx::query("SELECT auth, suspended, deleted FROM users WHERE id = $1")
        .bind(SEMCO_SERVICE_USER_ID)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| -> Result<UserFact, sqlx::Error> {
            Ok(UserFact {
                auth: row.try_get("auth")?,
                suspended: row.try_get::<i64, _>("suspended")? != 0,
                deleted: row.try_get::<i64, _>("deleted")? != 0,
            })
        })
        .transpose()?;
    let semco_tokens =
        sqlx::query("SELECT id, userid, validuntil, iprestriction FROM external_tokens WHERE service = $1 ORDER BY id")
            .bind(ENROL_SEMCO)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|row| -> Result<TokenFact, sqlx::Error> {
                Ok(TokenFact {
                    id: row.try_get("id")?,
                    userid: row.try_get("userid")?,
                    validuntil: row.try_get("validuntil")?,
                    iprestriction: row.try_get("iprestriction")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    let roles: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, shortname FROM role ORDER BY id").fetch_all(&mut *conn).await?;
    let on_demand_courses: Vec<(i64, String)> = sqlx::query_as(
        "SELECT r.course, COALESCE(c.shortname, '') FROM course_recompletion r LEFT JOIN courses c ON c.id = r.course \
         WHERE r.recompletiontype = 'ondemand' ORDER BY r.course",
    )
    .fetch_all(&mut *conn)
    .await?;
    let durability = match db.backend {
        Backend::Postgres => sqlx::query_as(
            "SELECT name, reset_val FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit') \
             ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await?,
        Backend::Sqlite => {
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await?;
            vec![("journal_mode".to_owned(), journal), ("synchronous".to_owned(), synchronous.to_string())]
        }
    };
    let last_checkpoint: Option<(i64, i64)> =
        sqlx::query_as("SELECT position, time_us FROM checkpoints ORDER BY time_us DESC, position DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (head_position, _) = crate::store::log::head_on(&mut conn).await?;
    let projection_version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM projection_meta WHERE name = 'projections'")
            .fetch_optional(&mut *conn)
            .await?;
    drop(conn);
    Ok(Facts {
        now_us: Db::now_micros(),
        backend: db.backend,
        install_steps,
        semco_functions: services::functions(ENROL_SEMCO).into_iter().map(str::to_owned).collect(),
        service_user,
        semco_tokens,
        roles,
        settings,
        on_demand_courses,
        durability,
        writer,
        last_verification: last_verification(db).await?,
        last_checkpoint,
        head_position,
        projection_version,
        disk: disk_of(db),
        muted,
    })
}

/// The SQLite database's directory from its URL.
fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.starts_with("file:") || path.is_empty() {
        return None;
    }
    let path = std::path::Path::new(path);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    Some(dir.to_path_buf())
}

/// statvfs of the SQLite file's directory; `None` for PostgreSQL or when it cannot be read.
fn disk_of(db: &Db) -> Option<DiskFact> {
    if db.backend != Backend::Sqlite {
        return None;
    }
    let dir = sqlite_dir(&db.url)?;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated path and `stat` a properly sized, writable struct.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    // The libc field types are u64 on 64-bit Linux; `from` keeps 32-bit targets compiling.
    #[allow(clippy::useless_conversion)]
    let (block, avail, blocks) = (u64::from(stat.f_frsize), u64::from(stat.f_bavail), u64::from(stat.f_blocks));
    Some(DiskFact {
        path: std::fs::canonicalize(&dir).unwrap_or(dir).display().to_string(),
        free_bytes: avail.saturating_mul(block),
        total_bytes: blocks.saturating_mul(block),
    })
}

/// Gathers the facts and evaluates them.
pub async fn report(db: &Db, writer: Option<WriterHealth>) -> Result<HealthReport, StoreError> {
    Ok(evaluate(&gather(db, writer).await?))
}

/// `enrol-ledger health`: prints the report (`text` or `json`); exit status 1 on an unmuted error.
pub async fn print(db: &Db, format: &str) -> Result<std::process::ExitCode, StoreError> {
    let report = report(db, None).await?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", to_text(&report));
    }
    Ok(if report.has_unmuted_error() { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS })
}

/// The report as text, a line per check: `STATUS id: explanation — fix`.
pub fn to_text(report: &HealthReport) -> String {
    let mut out = format!("health {} at {}\n", report.status.as_str().to_uppercase(), report.checked_at);
    for c in &report.checks {
        let status = c.status.as_str().to_uppercase();
        let muted = c.muted.as_ref().map(|r| format!(" [muted: {r}]")).unwrap_or_default();
        let fix = if c.fix.is_empty() { String::new() } else { format!(" — fix: {}", c.fix) };
        out.push_str(&format!("{status:<7} {} ({}){muted}: {}{fix}\n", c.id, c.title, c.explanation));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000;
    const DAY: i64 = 86_400;

    /// A healthy SQLite ledger.
    fn healthy() -> Facts {
        Facts {
            now_us: NOW,
            backend: Backend::Sqlite,
            install_steps: vec![
                ("service".into(), "service enrol_semco with 12 functions".into()),
                ("profile_fields".into(), crate::registry::SEMCO_PROFILE_FIELDS.map(|(s, _)| s).join(",")),
            ],
            semco_functions: SEMCO_SERVICE_FUNCTIONS.iter().map(|f| (*f).to_owned()).collect(),
            service_user: Some(UserFact { auth: "webservice".into(), suspended: false, deleted: false }),
            semco_tokens: vec![TokenFact { id: 1, userid: 3, validuntil: 0, iprestriction: "10.0.0.0/8".into() }],
            roles: vec![(5, "student".into()), (9, "semcowebservice".into())],
            settings: Settings::default(),
            on_demand_courses: vec![(2, "C2".into())],
            durability: vec![("journal_mode".into(), "wal".into()), ("synchronous".into(), "2".into())],
            writer: None,
            last_verification: Some(VerifyOutcome {
                time_us: NOW - 3_600_000_000,
                ok: true,
                mismatches: 0,
                log_length: 10,
                head_position: 10,
                duration_ms: 4,
                source: "cli".into(),
            }),
            last_checkpoint: Some((10, NOW - 60_000_000)),
            head_position: 10,
            projection_version: Some(crate::projection::PROJECTION_VERSION),
            disk: Some(DiskFact { path: "/var/lib".into(), free_bytes: 50 << 30, total_bytes: 100 << 30 }),
            muted: Muted::new(),
        }
    }

    fn status_of(report: &HealthReport, id: &str) -> Status {
        report.checks.iter().find(|c| c.id == id).unwrap().status
    }

    // given a healthy ledger, when it is checked, then every check is OK, in CHECK_IDS order.
    #[test]
    fn a_healthy_ledger_is_ok_everywhere() {
        let report = evaluate(&healthy());
        assert_eq!(report.status, Status::Ok, "{}", to_text(&report));
        assert_eq!(report.checks.iter().map(|c| c.id).collect::<Vec<_>>(), CHECK_IDS.to_vec());
        assert!(report.checks.iter().all(|c| c.status == Status::Ok && c.fix.is_empty()));
        let recompletion = report.checks.iter().find(|c| c.id == "recompletion").unwrap();
        assert!(recompletion.explanation.contains("C2 (2)"), "{}", recompletion.explanation);
    }

    // given no SEMCO token (revoked), when checked, then semco_token is an error with a fix and
    // the overall result is an error; muted, the overall result is no longer an error.
    #[test]
    fn no_semco_token_is_an_error_unless_muted() {
        let mut facts = healthy();
        facts.semco_tokens.clear();
        let report = evaluate(&facts);
        assert_eq!(status_of(&report, "semco_token"), Status::Error);
        assert!(report.has_unmuted_error());
        assert!(report.checks.iter().find(|c| c.id == "semco_token").unwrap().fix.contains("token rotate"));
        facts.muted.insert("semco_token".into(), "SEMCO is switched off this week".into());
        let report = evaluate(&facts);
        assert_eq!(status_of(&report, "semco_token"), Status::Error, "a muted check keeps its status");
        assert!(!report.has_unmuted_error());
        assert_eq!(report.status, Status::Warning, "expiry and IP checks warn without a token");
    }

    // given a token expiring in 10 days, then a warning; expired, then an error; two tokens, a warning.
    #[test]
    fn token_expiry_and_count() {
        let mut facts = healthy();
        facts.semco_tokens[0].validuntil = NOW / 1_000_000 + 10 * DAY;
        assert_eq!(status_of(&evaluate(&facts), "semco_token_expiry"), Status::Warning);
        facts.semco_tokens[0].validuntil = NOW / 1_000_000 - 1;
        assert_eq!(status_of(&evaluate(&facts), "semco_token_expiry"), Status::Error);
        facts.semco_tokens[0].validuntil = NOW / 1_000_000 + 40 * DAY;
        assert_eq!(status_of(&evaluate(&facts), "semco_token_expiry"), Status::Ok);
        facts.semco_tokens.push(TokenFact { id: 2, userid: 3, validuntil: 0, iprestriction: String::new() });
        let report = evaluate(&facts);
        assert_eq!(status_of(&report, "semco_token"), Status::Warning);
        assert_eq!(status_of(&report, "semco_token_ip"), Status::Warning, "one token open to any address");
    }

    // given a suspended or deleted service user, a missing role, a disabled plugin, then errors.
    #[test]
    fn semco_connection_errors() {
        let mut facts = healthy();
        facts.service_user.as_mut().unwrap().suspended = true;
        facts.roles.retain(|(id, _)| *id != 9);
        facts.settings.enabled = false;
        facts.semco_functions.push("ledger_get_config".into());
        facts.install_steps.retain(|(s, _)| s != "profile_fields");
        let report = evaluate(&facts);
        for id in ["semco_service_user", "semco_role", "plugin_enabled", "semco_service", "semco_profile_fields"] {
            assert_eq!(status_of(&report, id), Status::Error, "{id}");
        }
        facts.service_user = None;
        assert_eq!(status_of(&evaluate(&facts), "semco_service_user"), Status::Error);
    }

    // given recompletion off while a course has it on demand, then a warning naming the course.
    #[test]
    fn recompletion_off_with_on_demand_courses_warns() {
        let mut facts = healthy();
        facts.settings.recompletion = false;
        assert_eq!(status_of(&evaluate(&facts), "recompletion"), Status::Warning);
        facts.on_demand_courses.clear();
        assert_eq!(status_of(&evaluate(&facts), "recompletion"), Status::Ok);
    }

    // given unsafe durability settings on either backend, then an error; a PostgreSQL default of
    // synchronous_commit off is a warning (the writer forces it on).
    #[test]
    fn durability_settings() {
        let mut facts = healthy();
        facts.durability = vec![("journal_mode".into(), "memory".into()), ("synchronous".into(), "2".into())];
        assert_eq!(status_of(&evaluate(&facts), "database_durability"), Status::Error);
        facts.backend = Backend::Postgres;
        facts.disk = None;
        let pg = |fsync: &str, commit: &str| {
            vec![
                ("fsync".to_owned(), fsync.to_owned()),
                ("full_page_writes".to_owned(), "on".to_owned()),
                ("synchronous_commit".to_owned(), commit.to_owned()),
            ]
        };
        facts.durability = pg("on", "on");
        let report = evaluate(&facts);
        assert_eq!(status_of(&report, "database_durability"), Status::Ok);
        assert_eq!(status_of(&report, "disk_space"), Status::Ok, "PostgreSQL: skipped with a note");
        facts.durability = pg("on", "off");
        assert_eq!(status_of(&evaluate(&facts), "database_durability"), Status::Warning);
        facts.durability = pg("off", "on");
        assert_eq!(status_of(&evaluate(&facts), "database_durability"), Status::Error);
    }

    // given the writer failed, recovering or running with unsafe durability, then error / warning / warning.
    #[test]
    fn writer_health() {
        let mut facts = healthy();
        let health = |status| WriterHealth {
            status,
            last_commit_micros: Some(NOW),
            last_error: None,
            last_error_micros: None,
            queue_depth: 0,
            unsafe_durability: Vec::new(),
        };
        facts.writer = Some(health(WriterStatus::Running));
        assert_eq!(status_of(&evaluate(&facts), "writer"), Status::Ok);
        facts.writer = Some(health(WriterStatus::Failed("disk full".into())));
        assert_eq!(status_of(&evaluate(&facts), "writer"), Status::Error);
        facts.writer = Some(health(WriterStatus::Recovering("reconnecting".into())));
        assert_eq!(status_of(&evaluate(&facts), "writer"), Status::Warning);
    }

    // given no verify, an old one, a failed one; no checkpoint, an old one behind the head.
    #[test]
    fn verify_and_checkpoint_age() {
        let mut facts = healthy();
        facts.last_verification = None;
        assert_eq!(status_of(&evaluate(&facts), "last_verify"), Status::Warning);
        let mut old = healthy().last_verification.unwrap();
        old.time_us = NOW - 8 * DAY * 1_000_000;
        facts.last_verification = Some(old.clone());
        assert_eq!(status_of(&evaluate(&facts), "last_verify"), Status::Warning);
        old.ok = false;
        old.mismatches = 2;
        facts.last_verification = Some(old);
        assert_eq!(status_of(&evaluate(&facts), "last_verify"), Status::Error);
        facts.last_checkpoint = None;
        assert_eq!(status_of(&evaluate(&facts), "last_checkpoint"), Status::Warning);
        facts.last_checkpoint = Some((5, NOW - 2 * DAY * 1_000_000));
        assert_eq!(status_of(&evaluate(&facts), "last_checkpoint"), Status::Warning);
        facts.head_position = 5;
        assert_eq!(status_of(&evaluate(&facts), "last_checkpoint"), Status::Ok, "nothing new to sign");
    }

    // given an old projection version or a nearly full disk, then errors; a filling disk warns.
    #[test]
    fn projection_version_and_disk() {
        let mut facts = healthy();
        facts.projection_version = Some(crate::projection::PROJECTION_VERSION - 1);
        assert_eq!(status_of(&evaluate(&facts), "projection_version"), Status::Error);
        facts.disk = Some(DiskFact { path: "/".into(), free_bytes: 100 << 20, total_bytes: 100 << 30 });
        assert_eq!(status_of(&evaluate(&facts), "disk_space"), Status::Error);
        facts.disk = Some(DiskFact { path: "/".into(), free_bytes: 5 << 30, total_bytes: 100 << 30 });
        assert_eq!(status_of(&evaluate(&facts), "disk_space"), Status::Warning);
    }

    // given a SQLite URL, then the directory of its file; in-memory, none.
    #[test]
    fn sqlite_directory_of_the_url() {
        assert_eq!(sqlite_dir("sqlite:///var/lib/x/ledger.db?mode=rwc"), Some("/var/lib/x".into()));
        assert_eq!(sqlite_dir("sqlite://ledger.db?mode=rwc"), Some(".".into()));
        assert_eq!(sqlite_dir("sqlite:file:mem?mode=memory&cache=shared"), None);
    }

    // the function table gives enrol_semco exactly the plugin's functions.
    #[test]
    fn the_function_table_gives_the_semco_service_the_plugins_functions() {
        assert_eq!(services::functions(ENROL_SEMCO), SEMCO_SERVICE_FUNCTIONS.to_vec());
    }
}
