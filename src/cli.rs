//! The command line: `serve` and the operator/auditor subcommands.
//!
//! Every subcommand that touches data opens the database, migrates it (an empty database is
//! installed exactly as `serve` would) and then does its one job.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::writer::{WriterOptions, WRITER_LOCK_WAIT_MS};
use crate::app::{audit, Ledger, Request};
use crate::store::log::{self, Actor};
use crate::store::writer_conn::WriterLock;
use crate::store::{Db, StoreError, DEFAULT_DATABASE_URL};

#[derive(Debug, Parser)]
#[command(
    name = "enrol-ledger",
    version,
    about = "Event-sourced ledger of Moodle enrolments speaking enrol_semco's web services"
)]
pub struct Cli {
    /// postgres://... for PostgreSQL, or a SQLite file (default: enrol-ledger.db in the working directory).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// PostgreSQL: the owner role's URL for migrations, the projection upgrade, the installer
    /// and `rebuild`, so `--database-url` can be a runtime role with only the grants of
    /// `enrol-ledger grants` (docs/OPERATIONS.md). Default: `--database-url` does everything.
    #[arg(long, env = "MIGRATE_DATABASE_URL", global = true)]
    pub migrate_url: Option<String>,
    /// The Ed25519 key that signs checkpoints: a file outside the database, created (mode 0600)
    /// by `serve` or `checkpoint` when missing. Default: `<file>.signing-key` beside a SQLite
    /// database, `enrol-ledger.signing-key` in the working directory for PostgreSQL.
    #[arg(long, env = "SIGNING_KEY", global = true)]
    pub signing_key: Option<std::path::PathBuf>,
    /// Where signed checkpoints are appended, one JSON line each, to be copied elsewhere.
    /// Default: beside the key, `X.signing-key` → `X.checkpoints.jsonl`.
    #[arg(long, env = "CHECKPOINT_FILE", global = true)]
    pub checkpoint_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web-service endpoint, pages and audit API.
    Serve {
        #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// The site URL shown to clients (default: http:// + the listen address).
        #[arg(long, env = "BASE_URL")]
        base_url: Option<String>,
        /// Include Moodle's debuginfo in error responses.
        #[arg(long)]
        debug: bool,
        /// Start even if the database does not make commits durable (PostgreSQL fsync,
        /// full_page_writes or synchronous_commit off; SQLite not in WAL with synchronous=FULL).
        /// Logged loudly; /readyz then reports "degraded".
        #[arg(long)]
        allow_unsafe_durability: bool,
        /// How long a web-service call waits for the writer before it gets an error.
        #[arg(long, env = "SUBMIT_TIMEOUT_MS", default_value_t = crate::app::writer::SUBMIT_TIMEOUT_MS)]
        submit_timeout_ms: u64,
        /// How long the writer keeps trying to reach its database before serve exits (status 70).
        #[arg(long, env = "WRITER_GIVE_UP_MS", default_value_t = crate::app::writer::RELOAD_GIVE_UP_MS)]
        writer_give_up_ms: u64,
        /// HTTP timeouts, connection limit, CORS origin, trusted proxies (docs/SECURITY.md).
        #[command(flatten)]
        edge: crate::api::server::EdgeArgs,
        /// Sign a checkpoint every this many events (and at a clean shutdown).
        #[arg(long, env = "CHECKPOINT_EVERY_EVENTS", default_value_t = crate::proof::keeper::CHECKPOINT_EVERY_EVENTS)]
        checkpoint_every_events: i64,
        /// Sign a checkpoint this often when events were added since the last one.
        #[arg(long, env = "CHECKPOINT_EVERY_MINUTES", default_value_t = crate::proof::keeper::CHECKPOINT_EVERY_MINUTES)]
        checkpoint_every_minutes: u64,
        /// Log lines on stderr: `text` (colour only on a terminal) or `json` (one object a line).
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t)]
        log_format: crate::api::observe::LogFormat,
    },
    /// Create or upgrade the schema, then exit.
    Migrate,
    /// Drop every projection row and fold them again from the log.
    Rebuild,
    /// Check the hash chain, positions and every projection against a fresh fold, and the log
    /// against every signed checkpoint (stored, in the checkpoint file, and in `--checkpoint`).
    Verify {
        /// A checkpoint file (lines as `checkpoint` prints them) kept elsewhere.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// The public key (hex) to check signatures with; default: the signing key file's.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Sign a checkpoint of the log now (beside a running server too: it appends no event).
    Checkpoint {
        /// Print the public key (64 hex digits) and its key id instead.
        #[arg(long)]
        public_key: bool,
    },
    /// Print a proof as JSON: `--position P --checkpoint FILE` (inclusion of one event) or
    /// `--from FILE1 --to FILE2` (consistency of two checkpoints). FILE: its last line is used.
    Prove {
        #[arg(long, requires = "checkpoint", conflicts_with_all = ["from", "to"])]
        position: Option<i64>,
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        #[arg(long, requires = "to")]
        from: Option<std::path::PathBuf>,
        #[arg(long, requires = "from")]
        to: Option<std::path::PathBuf>,
    },
    /// Check a proof printed by `prove` with the public key alone (no database).
    CheckProof {
        /// The proof's JSON file, or `-` for stdin.
        file: std::path::PathBuf,
        /// The public key (hex); default: the signing key file's.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Write the whole log as JSON Lines to stdout, in order.
    Export,
    /// Every event of one booking, user or course, in order, with time, actor, reason and
    /// old → new values.
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["booking", "user", "course", "account", "settings", "health"])))]
    History {
        /// A SEMCO booking ID: the events tagged with it and of the streams that held it.
        #[arg(long)]
        booking: Option<String>,
        /// A user id: the user's registry events, enrolments, completions and resets.
        #[arg(long)]
        user: Option<i64>,
        /// A course id: the course's registry events, its enrolments and completions.
        #[arg(long)]
        course: Option<i64>,
        /// A web account id (`account list`): its addition, password changes and removal.
        #[arg(long)]
        account: Option<i64>,
        /// The ledger's settings: every change, with who made it (web account, token or CLI).
        #[arg(long)]
        settings: bool,
        /// The health checks muted and unmuted, with who and why.
        #[arg(long)]
        health: bool,
        /// `json`: one JSON object per event (the default, as before); `text`: a line per event.
        #[arg(long, default_value = "json", value_parser = ["json", "text"])]
        format: String,
    },
    /// Who was enrolled: the SEMCO user enrolments as the ledger knew them at a moment
    /// (`--known-at`/`--position`, default now) and, with `--active-on`, only those enrolled and
    /// active on a date by Moodle's rule (docs/AUDIT.md).
    AsOf {
        /// What the ledger knew at this RFC 3339 time (e.g. 2025-03-01T00:00:00Z). `--time` is
        /// the older name of this flag.
        #[arg(long, alias = "time", conflicts_with = "position")]
        known_at: Option<String>,
        /// What the ledger knew after the event at this log position (0 = before the first).
        #[arg(long)]
        position: Option<i64>,
        /// Only the user enrolments enrolled and active on this RFC 3339 time by Moodle's rule:
        /// user enrolment and instance active, timestart <= t, timeend 0 or > t, user neither
        /// deleted nor suspended.
        #[arg(long)]
        active_on: Option<String>,
        #[arg(long, conflicts_with = "user")]
        course: Option<i64>,
        #[arg(long)]
        user: Option<i64>,
        /// text (one line per enrolment) or json (one object with the question and the answer).
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// A user's personal data: export it, or erase it so that no byte survives on disk.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Remove orphaned SEMCO enrolment instances now.
    Cleanup,
    /// Set a course's completion criteria (Moodle's type 6, course grade to pass), as
    /// `ledger_set_course_completion_criteria` does; without --gradepass the criterion is removed.
    Criteria {
        #[arg(long)]
        course: i64,
        #[arg(long)]
        gradepass: Option<f64>,
    },
    /// Undo the event at a position by a new compensating event that points to it: an
    /// unenrolment by SEMCO is reinstated, a completion reset restored (the undone event stays).
    /// Refuses beside a running server: call `ledger_reinstate_enrolment` or
    /// `ledger_restore_completion` (service ledger_admin) instead.
    Undo {
        #[arg(long)]
        position: i64,
        /// Why, recorded in the compensating event.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print the SQL (PostgreSQL) that lets a runtime role serve this schema with least
    /// privilege: INSERT and SELECT on the log, what it needs elsewhere. Run it as the owner.
    Grants {
        #[arg(long)]
        runtime_role: String,
    },
    /// Every health check (the SEMCO connection, durability, verify, checkpoints, disk) with
    /// its status, explanation and fix; exits 1 when an unmuted check is an error.
    Health {
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Web-service tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Web sign-in accounts (roles manager and auditor) for the pages.
    Account {
        #[command(subcommand)]
        action: crate::web::accounts::AccountAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Print every registry row, projection row and log event about the user as one JSON object.
    Export {
        #[arg(long)]
        id: i64,
    },
    /// Delete the user as `core_user_delete_users` does, then scrub the old bytes from the
    /// database files (SQLite: WAL truncated; PostgreSQL: VACUUM FULL of the registry, which
    /// needs the owner: give --migrate-url with a runtime role).
    Erase {
        #[arg(long)]
        id: i64,
    },
    /// Only the scrub of `erase`, e.g. after deletions made while serving as the runtime role.
    Scrub,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed alone on the last line of stdout, and never again.
    Create {
        /// enrol_semco, ledger_admin, ledger_lms, ledger_audit or ledger_hr.
        #[arg(long)]
        service: String,
        /// RFC 3339 time after which the token stops working.
        #[arg(long)]
        valid_until: Option<String>,
        /// Comma-separated IP addresses and CIDR ranges the token may be used from.
        #[arg(long)]
        ip: Option<String>,
    },
    /// Every token: id, service, user, validity, IP list, creation and last use (never the token).
    List,
    /// Delete a token; running servers refuse it from their next call on.
    Revoke {
        #[arg(long)]
        id: i64,
    },
    /// Revoke the service's token and create a new one for the service's user (with the given
    /// validity and IP list, none by default); the new token is printed alone on the last line of
    /// stdout, and never again. Refuses when the service has more than one token, unless --all.
    Rotate {
        /// enrol_semco, ledger_admin, ledger_lms or ledger_audit.
        #[arg(long)]
        service: String,
        /// RFC 3339 time, or a date (yyyy-mm-dd: valid to its end, 23:59:59 UTC), after which
        /// the new token stops working.
        #[arg(long)]
        valid_until: Option<String>,
        /// Comma-separated IP addresses and CIDR ranges the new token may be used from.
        #[arg(long)]
        ip: Option<String>,
        /// Revoke every token of the service.
        #[arg(long)]
        all: bool,
    },
}

pub fn main(cli: Cli) -> ExitCode {
    let log_format = match &cli.command {
        Command::Serve { log_format, .. } => *log_format,
        _ => crate::api::observe::LogFormat::Text,
    };
    crate::api::observe::init_logging(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            if let Some(StoreError::UnusableEvent { position, .. }) = error.downcast_ref::<StoreError>() {
                eprintln!("{}", unusable_event_way_out(*position));
            }
            ExitCode::FAILURE
        }
    }
}

/// What to do when the log holds an event the ledger cannot fold (docs/EVENTS.md).
fn unusable_event_way_out(position: i64) -> String {
    format!(
        "The ledger cannot load past this event, and the log is never edited. See docs/EVENTS.md, \
         \"An unreadable or impossible event\":\n  \
         find it:  enrol-ledger export | grep '\"position\":{position},'\n  \
         then teach this version to read it: add an upcaster for its schema_version (LedgerEvent::upcast) \
         or a fold rule for it, release, and start again; `enrol-ledger verify` lists every such event."
    )
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

/// Opens and migrates the database, replacing the projections if their definition changed,
/// and on an empty database does the plugin installer's work (printing each step). Read-only
/// subcommands use this without the writer lock: on an installed ledger it writes nothing.
pub async fn open(url: &str) -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
    open_as(url, None).await
}

/// `open`, preparing the database through `migrate_url` (the owner role) when given.
pub async fn open_as(url: &str, migrate_url: Option<&str>) -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
    let db = Db::connect(url).await?;
    prepare_as(&db, migrate_url).await?;
    Ok(db)
}

/// `prepare` on the owner's connection when a migrate URL is given, else on `db`'s.
async fn prepare_as(db: &Db, migrate_url: Option<&str>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(migrate_url) = migrate_url else { return prepare(db).await };
    let owner = Db::connect(migrate_url).await?;
    let prepared = async {
        prepare(&owner).await?;
        grant_runtime_role(&owner, db).await
    }
    .await;
    owner.pool.close().await;
    prepared
}

/// PostgreSQL: (re)applies `enrol-ledger grants` for `runtime`'s role as the owner, so the
/// runtime role has exactly what it needs after every migration and projection upgrade.
async fn grant_runtime_role(owner: &Db, runtime: &Db) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use crate::store::privileges;
    if owner.backend != crate::store::Backend::Postgres {
        return Ok(());
    }
    let current_user = "SELECT current_user::text";
    let runtime_role: String = sqlx::query_scalar(current_user).fetch_one(&runtime.pool).await?;
    let owner_role: String = sqlx::query_scalar(current_user).fetch_one(&owner.pool).await?;
    if runtime_role == owner_role {
        return Ok(());
    }
    let schema = privileges::current_schema(owner).await?;
    let sql = privileges::grants_sql(&schema, &runtime_role)
        .ok_or_else(|| format!("runtime role {runtime_role:?} or schema {schema:?} needs quoting in SQL: rename it"))?;
    sqlx::raw_sql(&sql).execute(&owner.pool).await?;
    tracing::info!(role = %runtime_role, %schema, "runtime role granted INSERT and SELECT on the log");
    Ok(())
}

/// Migrations, projection rebuild when their version changed, installer.
/// Each step commits whole and is skipped once done, so a start killed anywhere resumes.
async fn prepare(db: &Db) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    db.migrate().await?;
    if let Some(count) = audit::upgrade_projections(db).await? {
        tracing::info!(events = count, "projections rebuilt");
    }
    crate::api::install::run(db).await?;
    Ok(())
}

/// Opens the database and takes the writer lock before anything is written (migrations,
/// projection rebuild, installer), so start-up never writes beside another process. Refuses,
/// saying what to do instead, while another process holds the lock.
pub async fn open_locked(url: &str, what: &str) -> Result<(Db, WriterLock), Box<dyn std::error::Error + Send + Sync>> {
    open_locked_as(url, None, what).await
}

/// `open_locked`, preparing the database through `migrate_url` (the owner role) when given.
pub async fn open_locked_as(
    url: &str,
    migrate_url: Option<&str>,
    what: &str,
) -> Result<(Db, WriterLock), Box<dyn std::error::Error + Send + Sync>> {
    let db = Db::connect(url).await?;
    let lock = match WriterLock::acquire(&db, std::time::Duration::from_millis(WRITER_LOCK_WAIT_MS)).await {
        Ok(lock) => lock,
        Err(StoreError::WriterLocked(why)) => {
            return Err(format!("another enrol-ledger process is writing to this database ({why}); {what}").into())
        }
        Err(error) => return Err(error.into()),
    };
    prepare_as(&db, migrate_url).await?;
    Ok((db, lock))
}

/// What to do instead of a write subcommand while a server holds the writer lock.
const WHILE_SERVING_SERVE: &str = "only one server can write to a ledger: stop the other one first";
const WHILE_SERVING_CRITERIA: &str = "while a server runs, call the web-service function \
     ledger_set_course_completion_criteria (service ledger_admin) instead";
const WHILE_SERVING_CLEANUP: &str = "while a server runs, call the web-service function ledger_cleanup_orphans \
     (service ledger_admin) instead; the server also removes orphans every hour";
const WHILE_SERVING_UNDO: &str = "while a server runs, call the web-service function ledger_reinstate_enrolment \
     (an unenrolment) or ledger_restore_completion (a completion reset), service ledger_admin, instead";
const WHILE_SERVING_REBUILD: &str = "stop the server first: a running server keeps its projections current \
     itself, and `enrol-ledger verify` checks them without stopping it";
const WHILE_SERVING_MIGRATE: &str = "the running server has already migrated the database";
const WHILE_SERVING_ERASE: &str = "while a server runs, call the web-service function core_user_delete_users \
     (service ledger_admin) instead; the server scrubs the erased data from disk right after";

async fn run(cli: Cli) -> CliResult {
    let url = cli.database_url.as_str();
    let migrate_url = cli.migrate_url.as_deref();
    let key_path = cli.signing_key.clone().unwrap_or_else(|| crate::proof::default_key_path(url));
    let checkpoint_file =
        cli.checkpoint_file.clone().unwrap_or_else(|| crate::proof::default_checkpoint_file(&key_path));
    match cli.command {
        Command::Serve {
            listen,
            base_url,
            debug,
            allow_unsafe_durability,
            submit_timeout_ms,
            writer_give_up_ms,
            edge,
            checkpoint_every_events,
            checkpoint_every_minutes,
            ..
        } => {
            let edge = edge.settings()?;
            let (db, lock) = open_locked_as(url, migrate_url, WHILE_SERVING_SERVE).await?;
            warn_if_log_alterable(&db).await;
            let key = open_signing_key(&db, &key_path).await?;
            let checkpoints = crate::proof::keeper::CheckpointOptions {
                key,
                file: checkpoint_file.clone(),
                every_events: checkpoint_every_events,
                every: std::time::Duration::from_secs(checkpoint_every_minutes.saturating_mul(60)),
            };
            let options = WriterOptions {
                exit_on_failure: true,
                allow_unsafe_durability,
                submit_timeout: std::time::Duration::from_millis(submit_timeout_ms),
                reload_give_up: std::time::Duration::from_millis(writer_give_up_ms),
                checkpoints: Some(checkpoints),
                ..WriterOptions::default()
            };
            let ledger = Ledger::start_locked(db, options, lock).await?;
            if let Some(migrate_url) = migrate_url {
                // VACUUM FULL of the registry after erasures needs the tables' owner.
                ledger.scrubber.use_owner(Db::connect(migrate_url).await?);
            }
            let base_url = base_url.unwrap_or_else(|| format!("http://{listen}"));
            let cleanup = tokio::spawn(hourly_orphan_cleanup(ledger.clone()));
            let token_events = tokio::spawn(crate::app::outbox::drain_periodically::<
                crate::app::token_events::TokenOutbox,
            >(ledger.clone()));
            let account_events = tokio::spawn(crate::app::outbox::drain_periodically::<
                crate::web::accounts::AccountOutbox,
            >(ledger.clone()));
            crate::api::serve(ledger.clone(), &listen, crate::api::Settings { base_url, debug }, edge).await?;
            cleanup.abort();
            token_events.abort();
            account_events.abort();
            ledger.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Migrate => {
            let _lock = open_locked_as(url, migrate_url, WHILE_SERVING_MIGRATE).await?;
            println!("database is at the current schema");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Rebuild => {
            let (db, _lock) = open_locked_as(url, migrate_url, WHILE_SERVING_REBUILD).await?;
            // The rebuild locks the log against appends: the owner's privilege.
            let owner = match migrate_url {
                Some(migrate_url) => Db::connect(migrate_url).await?,
                None => db.clone(),
            };
            let count = audit::rebuild(&owner).await?;
            println!("projections rebuilt from {count} events");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Cleanup => {
            let (db, lock) = open_locked_as(url, migrate_url, WHILE_SERVING_CLEANUP).await?;
            let ledger = Ledger::start_locked(db, WriterOptions::default(), lock).await?;
            let outcome = ledger.submit(Request::CleanupOrphans, cli_actor("cleanup")).await;
            ledger.shutdown().await;
            println!("removed {} orphaned SEMCO enrolment instance(s)", outcome?.removed);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Criteria { course, gradepass } => {
            let (db, lock) = open_locked_as(url, migrate_url, WHILE_SERVING_CRITERIA).await?;
            let ledger = Ledger::start_locked(db, WriterOptions::default(), lock).await?;
            let request = Request::SetCompletionCriteria { course_id: course, gradepass };
            let outcome = ledger.submit(request, cli_actor("criteria")).await;
            ledger.shutdown().await;
            outcome?;
            match gradepass.filter(|g| *g != 0.0) {
                Some(g) => println!("course {course}: completion criterion course grade >= {g}"),
                None => println!("course {course}: no completion criteria"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Undo { position, reason } => {
            use crate::app::undo::{request_for, UndoKind};
            let (db, lock) = open_locked_as(url, migrate_url, WHILE_SERVING_UNDO).await?;
            let ledger = Ledger::start_locked(db.clone(), WriterOptions::default(), lock).await?;
            let outcome = match request_for(&db, position, UndoKind::Any, reason).await {
                Ok(request) => ledger.submit(request, cli_actor("undo")).await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            ledger.shutdown().await;
            let outcome = outcome?;
            let (head, _) = log::head(&db).await?;
            if outcome.enrolid != 0 {
                println!(
                    "undid position {position}: enrolment reinstated as user enrolment {} (position {head})",
                    outcome.enrolid
                );
            } else {
                println!("undid position {position}: completion restored (position {head})");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::User { action: UserAction::Erase { id } } => {
            let (db, lock) = open_locked_as(url, migrate_url, WHILE_SERVING_ERASE).await?;
            let ledger = Ledger::start_locked(db, WriterOptions::default(), lock).await?;
            if let Some(migrate_url) = migrate_url {
                ledger.scrubber.use_owner(Db::connect(migrate_url).await?);
            }
            let (outcome, ticket) = ledger.submit_scrubbing(Request::DeleteUsers(vec![id]), cli_actor("erase")).await;
            let scrubbed = match ticket {
                Some(ticket) => ledger.scrubber.wait(ticket).await,
                None => Ok(()),
            };
            ledger.shutdown().await;
            outcome.map_err(|e| format!("user {id}: {e}"))?;
            scrubbed.map_err(|e| format!("user {id} was deleted, but the scrub of the database files failed: {e}"))?;
            println!(
                "erased user {id}: registry row blanked, profile fields and tokens deleted, database files scrubbed"
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::User { action: UserAction::Scrub } => {
            let db = Db::connect(migrate_url.unwrap_or(url)).await?;
            crate::app::erasure::scrub(&db).await?;
            println!("database files scrubbed of erased personal data");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Grants { runtime_role } => {
            let db = Db::connect(migrate_url.unwrap_or(url)).await?;
            if db.backend != crate::store::Backend::Postgres {
                return Err("grants are for PostgreSQL; SQLite has no roles: the file's permissions are the \
                            boundary (docs/OPERATIONS.md)"
                    .into());
            }
            let schema = crate::store::privileges::current_schema(&db).await?;
            let sql = crate::store::privileges::grants_sql(&schema, &runtime_role).ok_or_else(|| {
                format!(
                    "--runtime-role {runtime_role:?} (schema {schema:?}): expected a lowercase SQL name \
                     (letters, digits, _)"
                )
            })?;
            print!("{sql}");
            return Ok(ExitCode::SUCCESS);
        }
        Command::CheckProof { file, public_key } => {
            let public = public_key_for(public_key.as_deref(), &key_path)?.ok_or_else(|| {
                format!("no public key: give --public-key, or --signing-key (none at {})", key_path.display())
            })?;
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?
            };
            return match crate::proof::check::check_proof(&text, &public) {
                Ok(what) => {
                    println!("{what}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("proof REFUSED: {why}");
                    Ok(ExitCode::from(2))
                }
            };
        }
        _ => {}
    }
    let db = open_as(url, migrate_url).await?;
    match cli.command {
        Command::Serve { .. }
        | Command::Migrate
        | Command::Rebuild
        | Command::Cleanup
        | Command::Undo { .. }
        | Command::Criteria { .. }
        | Command::Grants { .. }
        | Command::CheckProof { .. }
        | Command::User { action: UserAction::Erase { .. } | UserAction::Scrub } => {
            unreachable!("write subcommands return above")
        }
        Command::Verify { checkpoint, public_key } => {
            let started = std::time::Instant::now();
            let public = public_key_for(public_key.as_deref(), &key_path)?;
            let mut checkpoints: Vec<crate::proof::check::Sourced> = Vec::new();
            let mut conn = db.pool.acquire().await?;
            let sourced =
                |source: String| move |checkpoint| crate::proof::check::Sourced { checkpoint, source: source.clone() };
            checkpoints.extend(crate::proof::store::all(&mut conn).await?.into_iter().map(sourced("database".into())));
            drop(conn);
            let mut files = vec![checkpoint_file.clone()];
            if let Some(given) = checkpoint {
                if !given.exists() {
                    return Err(format!("--checkpoint {}: no such file", given.display()).into());
                }
                files.push(given);
            }
            files.dedup();
            for file in files.iter().filter(|f| f.exists()) {
                let read = crate::proof::Checkpoint::read_file(file)?;
                checkpoints.extend(read.into_iter().map(sourced(file.display().to_string())));
            }
            // Compared during verify's own pass over the log (read before its snapshot, so
            // every event a checkpoint in the database covers is in it).
            let mut check = crate::proof::check::LogCheck::new(&checkpoints, public.as_ref());
            let mut report = audit::verify_feeding(&db, |position, hash| check.push(position, hash)).await?;
            report.problems.extend(check.finish());
            for problem in &report.problems {
                println!("MISMATCH: {problem}");
            }
            let (head, _) = log::head(&db).await?;
            let outcome = crate::app::verification::VerifyOutcome::of(&report, head, started, "cli");
            if let Err(error) = crate::app::verification::record_verification(&db, &outcome).await {
                eprintln!("warning: the run could not be recorded for the health check: {error}");
            }
            if !report.is_ok() {
                let chain = if report.chain_intact { "hash chain intact" } else { "hash chain BROKEN" };
                println!("verify FAILED: {} problem(s) in {} events; {chain}", report.problems.len(), report.events);
                return Ok(ExitCode::from(2));
            }
            let signed = if checkpoints.is_empty() {
                String::new()
            } else {
                format!("; the log matches {} signed checkpoint(s)", checkpoints.len())
            };
            println!(
                "verify OK: {} events, hash chain intact, projections equal a fresh rebuild{signed}",
                report.events
            );
        }
        Command::Health { format } => return Ok(crate::app::health::print(&db, &format).await?),
        Command::Checkpoint { public_key } => {
            let key = open_signing_key(&db, &key_path).await?;
            if public_key {
                println!("{}", key.public_hex());
                eprintln!("key id {} ({})", key.key_id(), key.path.display());
                return Ok(ExitCode::SUCCESS);
            }
            let checkpoint = crate::proof::store::checkpoint_now(&db, &key, &checkpoint_file).await?;
            eprintln!("checkpoint signed and appended to {}", checkpoint_file.display());
            println!("{}", checkpoint.to_line());
        }
        Command::Prove { position, checkpoint, from, to } => {
            let mut conn = db.pool.acquire().await?;
            let json = match (position, checkpoint, from, to) {
                (Some(position), Some(file), None, None) => {
                    let checkpoint = last_checkpoint(&file)?;
                    serde_json::to_string_pretty(
                        &crate::proof::check::prove_inclusion(&mut conn, position, &checkpoint).await?,
                    )?
                }
                (None, None, Some(from), Some(to)) => {
                    let (from, to) = (last_checkpoint(&from)?, last_checkpoint(&to)?);
                    serde_json::to_string_pretty(&crate::proof::check::prove_consistency(&mut conn, &from, &to).await?)?
                }
                _ => return Err("give --position P --checkpoint FILE, or --from FILE1 --to FILE2".into()),
            };
            println!("{json}");
        }
        Command::Export => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut conn = db.pool.acquire().await?;
            let mut failed = None;
            log::replay(&mut conn, None, |stored| {
                if let Err(error) = writeln!(out, "{}", audit::export_line(&stored)) {
                    failed.get_or_insert(error);
                }
                Ok(())
            })
            .await?;
            out.flush()?;
            if let Some(error) = failed {
                return Err(error.into());
            }
        }
        Command::History { booking, user, course, account, settings, health, format } => {
            use crate::app::history::{self, Subject};
            let subject = match (booking, user, course) {
                (Some(booking), _, _) => Subject::Booking(booking),
                (None, Some(user), _) => Subject::User(user),
                (None, None, Some(course)) => Subject::Course(course),
                (None, None, None) => match account {
                    Some(account) => Subject::Account(account),
                    None if settings => Subject::Settings,
                    None if health => Subject::Health,
                    None => return Err("give --booking, --user, --course, --account, --settings or --health".into()),
                },
            };
            let found = history::history(&db, subject.clone()).await?;
            if found.entries.is_empty() {
                match subject {
                    Subject::Booking(booking) => println!("no events for booking {booking}"),
                    Subject::User(user) => println!("no events for user {user}"),
                    Subject::Course(course) => println!("no events for course {course}"),
                    Subject::Account(account) => println!("no events for web account {account}"),
                    Subject::Settings => println!("no setting was changed"),
                    Subject::Health => println!("no health check was muted"),
                }
                return Ok(ExitCode::from(1));
            }
            if format == "text" {
                print!("{}", history::to_text(&found));
            } else {
                for entry in &found.entries {
                    println!("{}", serde_json::to_string(entry)?);
                }
            }
        }
        Command::User { action: UserAction::Export { id } } => {
            let export = crate::app::erasure::export_user(&db, id).await?;
            if export.user.is_none() {
                return Err(format!("no user with id {id}").into());
            }
            println!("{}", serde_json::to_string_pretty(&export)?);
        }
        Command::AsOf { known_at, position, active_on, course, user, format } => {
            use crate::app::asof::{self, KnownAt, Scope};
            let time = |flag: &str, text: &str| {
                chrono::DateTime::parse_from_rfc3339(text).map_err(|e| format!("--{flag} {text:?}: {e}"))
            };
            let known = match (known_at, position) {
                (Some(text), _) => KnownAt::Time(time("known-at", &text)?.timestamp_micros()),
                (None, Some(p)) if p < 0 => return Err(format!("--position {p}: expected 0 or more").into()),
                (None, Some(p)) => KnownAt::Position(p),
                (None, None) => KnownAt::Now,
            };
            let active_on = active_on.map(|text| time("active-on", &text).map(|t| t.timestamp())).transpose()?;
            let scope = match (course, user) {
                (Some(course), _) => Scope::Course(course),
                (None, Some(user)) => Scope::User(user),
                (None, None) => Scope::All,
            };
            let answer = asof::as_of(&db, &asof::Question { known, active_on, scope }).await?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&answer)?),
                "text" => print!("{}", answer.text()),
                other => return Err(format!("--format {other:?}: expected text or json").into()),
            }
        }
        Command::Token { action: TokenAction::Create { service, valid_until, ip } } => {
            let (valid_until, ip) = token_options(&service, valid_until, ip)?;
            let user = crate::api::services::service_user(&service);
            let token = crate::api::tokens::create(&db, &service, user, valid_until, &ip).await?;
            drain_token_outbox_unless_serving(&db).await?;
            println!("created a token for service {service} (user {user}); it is shown only now:");
            println!("{token}");
        }
        Command::Account { action } => return crate::web::accounts::run(&db, action).await,
        Command::Token { action } => {
            let code = token_admin(&db, action).await;
            drain_token_outbox_unless_serving(&db).await?;
            return code;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads (or creates) the signing key, refusing a missing or foreign key when the ledger has
/// checkpoints signed by another.
async fn open_signing_key(
    db: &Db,
    path: &std::path::Path,
) -> Result<crate::proof::LedgerKey, Box<dyn std::error::Error + Send + Sync>> {
    let existing = crate::proof::store::key_ids(&mut *db.pool.acquire().await?).await?;
    Ok(crate::proof::LedgerKey::open_or_create(path, &existing)?)
}

/// The public key to check signatures with: `--public-key`, else the key file's (if any).
fn public_key_for(
    given: Option<&str>,
    key_path: &std::path::Path,
) -> Result<Option<ed25519_dalek::VerifyingKey>, crate::proof::ProofError> {
    match given {
        Some(hex) => crate::proof::public_key_from_hex(hex).map(Some),
        None => Ok(crate::proof::LedgerKey::read(key_path)?.map(|k| k.public())),
    }
}

/// The last checkpoint line of a file.
fn last_checkpoint(path: &std::path::Path) -> Result<crate::proof::Checkpoint, crate::proof::ProofError> {
    crate::proof::Checkpoint::read_file(path)?.pop().ok_or_else(|| crate::proof::ProofError::File {
        path: path.display().to_string(),
        why: "holds no checkpoint".into(),
    })
}

/// Warns (once, at start) when the server's database role could alter the log: it should have
/// only INSERT and SELECT on `events` (docs/OPERATIONS.md).
async fn warn_if_log_alterable(db: &Db) {
    match crate::store::privileges::log_alterable_by_this_role(db).await {
        Ok(powers) if !powers.reasons().is_empty() => tracing::warn!(
            reasons = %powers.reasons().join("; "),
            "the server's database role could alter the event log; run serve as a runtime role with \
             only the grants of `enrol-ledger grants` (docs/OPERATIONS.md)"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot check the database role's privileges on the log"),
    }
}

/// Checks `--service`, `--valid-until` (RFC 3339, or yyyy-mm-dd valid to 23:59:59 UTC of that
/// day; never in the past) and `--ip` of `token create` and `token rotate`.
fn token_options(
    service: &str,
    valid_until: Option<String>,
    ip: Option<String>,
) -> Result<(i64, String), Box<dyn std::error::Error + Send + Sync>> {
    if !crate::api::services::ALL.contains(&service) {
        return Err(format!("unknown service {service:?}: use one of {:?}", crate::api::services::ALL).into());
    }
    let valid_until = match valid_until {
        None => 0,
        Some(text) => {
            let time = match chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
                Ok(day) => day.and_hms_opt(23, 59, 59).map(|t| t.and_utc().timestamp()),
                Err(_) => chrono::DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp()),
            }
            .ok_or_else(|| format!("--valid-until {text:?}: expected an RFC 3339 time or a date yyyy-mm-dd"))?;
            if time <= chrono::Utc::now().timestamp() {
                return Err(format!("--valid-until {text} is in the past").into());
            }
            time
        }
    };
    let ip = ip.unwrap_or_default();
    if !crate::api::tokens::valid_ip_list(&ip) {
        return Err(format!("--ip {ip:?}: expected IP addresses or CIDR ranges, comma-separated").into());
    }
    Ok((valid_until, ip))
}

/// Appends the token outbox when no server holds the writer lock (a running server appends it
/// within `outbox::DRAIN_INTERVAL_MS`).
async fn drain_token_outbox_unless_serving(db: &Db) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let lock = match WriterLock::acquire(db, std::time::Duration::ZERO).await {
        Ok(lock) => lock,
        Err(StoreError::WriterLocked(_)) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let ledger = Ledger::start_locked(db.clone(), WriterOptions::default(), lock).await?;
    let drained = crate::app::token_events::drain(&ledger).await;
    ledger.shutdown().await;
    drained?;
    Ok(())
}

/// `token list`, `revoke` and `rotate` (`create` is handled with the other subcommands).
async fn token_admin(db: &Db, action: TokenAction) -> CliResult {
    use crate::api::tokens;
    let time = |t: i64| match t {
        0 => "-".to_owned(),
        t => chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |t| t.to_rfc3339()),
    };
    match action {
        TokenAction::Create { .. } => unreachable!("handled in run"),
        TokenAction::List => {
            println!("id\tservice\tuser\tvalid_until\tip\tcreated\tlast_access");
            for t in tokens::list(db).await? {
                let ip = if t.ip_restriction.trim().is_empty() { "-" } else { t.ip_restriction.as_str() };
                let (valid, created, last) = (time(t.valid_until), time(t.time_created), time(t.last_access));
                println!("{}\t{}\t{}\t{valid}\t{ip}\t{created}\t{last}", t.id, t.service, t.user_id);
            }
        }
        TokenAction::Revoke { id } => {
            if !tokens::revoke(db, id).await? {
                return Err(format!("no token with id {id} (see `enrol-ledger token list`)").into());
            }
            println!("revoked token {id}; running servers refuse it from their next call on");
        }
        TokenAction::Rotate { service, valid_until, ip, all } => {
            let (valid_until, ip) = token_options(&service, valid_until, ip)?;
            let user = crate::api::services::service_user(&service);
            match tokens::rotate_service(db, &service, user, valid_until, &ip, all).await? {
                Err(tokens::RotateRefusal::SeveralTokens(n)) => {
                    return Err(format!(
                        "there are {n} tokens for service {service}, but rotate can replace only a single token: \
                         revoke all but one first (`enrol-ledger token list`, `token revoke --id N`) and run it \
                         again, or pass --all to revoke every one"
                    )
                    .into())
                }
                Ok(token) => {
                    println!(
                        "revoked the {service} token(s) and created a new one (user {user}); it is shown only now:"
                    );
                    println!("{token}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `serve` removes orphaned SEMCO instances (the plugin's scheduled task runs hourly).
pub const ORPHAN_CLEANUP_INTERVAL_S: u64 = 3600;

async fn hourly_orphan_cleanup(ledger: Ledger) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(ORPHAN_CLEANUP_INTERVAL_S));
    interval.tick().await;
    loop {
        interval.tick().await;
        match ledger.submit(Request::CleanupOrphans, cli_actor("scheduled-cleanup")).await {
            Ok(outcome) => tracing::info!(?outcome, "orphaned SEMCO enrolment instances cleaned"),
            Err(error) => tracing::error!(%error, "orphan clean-up failed"),
        }
    }
}

/// The actor recorded for changes made from the command line.
pub fn cli_actor(what: &str) -> Actor {
    Actor { user_id: None, token_id: None, request_id: format!("cli-{what}-{}", std::process::id()) }
}
