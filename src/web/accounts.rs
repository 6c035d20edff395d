//! Web sign-in accounts: the `web_accounts` registry (migration 13), Argon2id password hashes,
//! the `account` CLI, and account changes as events through `account_outbox`.
//!
//! Like tokens (`app::token_events`), any process changes an account: the change and its
//! outbox row are written in one transaction, so `account add` works beside a running server.
//! Only the writer appends: [`drain`] submits the queued rows as one
//! `Request::AppendAccountEvents`, whose events (`AccountEvent`, stream `account/{id}`) and
//! the deletion of the rows commit together. `serve` drains at start and every
//! [`outbox::DRAIN_INTERVAL_MS`]; an account command run without a server drains before it exits.

use std::io::BufRead;
use std::process::ExitCode;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sqlx::{AnyConnection, Row};

use super::auth::Role;
use crate::app::command::{Outcome, Request};
use crate::app::decide::{Decision, StreamEvents};
use crate::app::outbox::{self, DrainError, Outbox};
use crate::app::state::ACCOUNT_STREAM;
use crate::app::writer::WriterOptions;
use crate::app::Ledger;
use crate::domain::event::AccountEvent;
use crate::domain::LedgerEvent;
use crate::registry::RegistryOp;
use crate::store::log::StreamRef;
use crate::store::writer_conn::WriterLock;
use crate::store::{Db, StoreError};

/// The environment variable `account add` and `account password` read the password from.
pub const PASSWORD_ENV: &str = "ENROL_LEDGER_ACCOUNT_PASSWORD";
/// Shortest password accepted (characters).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest password accepted (bytes): Argon2 hashes anything, but a sign-in form need not.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Longest username (characters).
pub const USERNAME_MAX_CHARS: usize = 100;

/// `enrol-ledger account ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AccountAction {
    /// Add a web account. The password is read from ENROL_LEDGER_ACCOUNT_PASSWORD, else from
    /// the first line of stdin (never from the command line).
    Add {
        #[arg(long)]
        username: String,
        /// manager (report, settings, health, tokens) or auditor (report, audit pages, health read-only).
        #[arg(long)]
        role: String,
        /// Read the password from stdin even when ENROL_LEDGER_ACCOUNT_PASSWORD is set.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every web account: id, username, role, created, password set, open sessions.
    List,
    /// Remove a web account; its sessions end at once.
    Remove {
        #[arg(long)]
        username: String,
    },
    /// Set a new password (read as for `add`); every session of the account ends.
    Password {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// One account as `account list` and the pages see it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub time_created: i64,
    pub time_password_set: i64,
    pub sessions: i64,
}

/// Why an account change was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountRefusal {
    #[error(
        "username {0:?}: use 1 to {USERNAME_MAX_CHARS} lowercase letters, digits and . _ - @ (Moodle's username rule)"
    )]
    BadUsername(String),
    #[error("role {0:?}: use manager or auditor")]
    BadRole(String),
    #[error("the password must have at least {PASSWORD_MIN_CHARS} characters and at most {PASSWORD_MAX_BYTES} bytes")]
    BadPassword,
    #[error("an account named {0:?} exists already")]
    Exists(String),
    #[error("no account named {0:?} (see `enrol-ledger account list`)")]
    Unknown(String),
}

/// Moodle's username rule, lowercase: letters, digits and `._-@`.
pub fn valid_username(username: &str) -> bool {
    let count = username.chars().count();
    (1..=USERNAME_MAX_CHARS).contains(&count)
        && username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@".contains(c))
}

pub fn valid_password(password: &str) -> bool {
    password.chars().count() >= PASSWORD_MIN_CHARS && password.len() <= PASSWORD_MAX_BYTES
}

/// The Argon2id PHC string of a password (OWASP's parameters: 19 MiB, 2 passes, 1 lane), with
/// a fresh random salt. CPU-bound: call it on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash` (constant-time inside Argon2's verifier).
/// An unparsable hash matches nothing. CPU-bound: call it on a blocking thread.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password that no account has: verified for unknown usernames, so a
/// sign-in takes as long whether the user exists or not.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        let _ = getrandom::getrandom(&mut bytes);
        hash_password(&hex::encode(bytes)).unwrap_or_default()
    })
}

/// One queued account change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub account_id: i64,
    pub username: String,
    pub role: String,
    pub actor: String,
    pub reason: String,
}

/// The events of queued rows, each in its account's stream, and the deletion of the rows (pure).
/// A row of an unknown kind is appended as a removal (the safe reading of a change we cannot
/// name: the account may no longer be trusted).
pub fn decide(rows: Vec<OutboxRow>) -> Decision {
    let ids = rows.iter().map(|r| r.id).collect();
    let streams = rows
        .into_iter()
        .map(|row| {
            let OutboxRow { account_id, username, role, actor, reason, .. } = row;
            let event = match row.kind.as_str() {
                "added" => AccountEvent::AccountAdded { account_id, username, role, actor, reason },
                "password_changed" => AccountEvent::AccountPasswordChanged { account_id, username, actor, reason },
                _ => AccountEvent::AccountRemoved { account_id, username, actor, reason },
            };
            let stream = StreamRef::new(ACCOUNT_STREAM, account_id.to_string());
            StreamEvents { stream, booking_id: None, events: vec![LedgerEvent::Account(event)] }
        })
        .collect();
    Decision { streams, registry: vec![RegistryOp::DrainAccountOutbox { ids }], outcome: Outcome::Done }
}

async fn outbox(
    conn: &mut AnyConnection,
    kind: &str,
    account: (i64, &str, &str),
    actor: &str,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO account_outbox (kind, account_id, username, role, actor, reason) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(kind.to_owned())
    .bind(account.0)
    .bind(account.1.to_owned())
    .bind(account.2.to_owned())
    .bind(actor.to_owned())
    .bind(reason.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn hash_blocking(password: String) -> Result<String, BoxError> {
    Ok(tokio::task::spawn_blocking(move || hash_password(&password)).await??)
}

/// Adds an account (its `AccountAdded` queued in the same transaction); returns its id.
pub async fn add(
    db: &Db,
    username: &str,
    role: &str,
    password: &str,
    actor: &str,
) -> Result<Result<i64, AccountRefusal>, BoxError> {
    if !valid_username(username) {
        return Ok(Err(AccountRefusal::BadUsername(username.to_owned())));
    }
    let Some(role) = Role::parse(role) else { return Ok(Err(AccountRefusal::BadRole(role.to_owned()))) };
    if !valid_password(password) {
        return Ok(Err(AccountRefusal::BadPassword));
    }
    let hash = hash_blocking(password.to_owned()).await?;
    let mut tx = db.pool.begin().await?;
    let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM web_accounts WHERE username = $1")
        .bind(username.to_owned())
        .fetch_one(&mut *tx)
        .await?;
    if exists > 0 {
        return Ok(Err(AccountRefusal::Exists(username.to_owned())));
    }
    let now = chrono::Utc::now().timestamp();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO web_accounts (username, role, password_hash, timecreated, timepasswordset) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(username.to_owned())
    .bind(role.as_str().to_owned())
    .bind(hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    outbox(&mut tx, "added", (id, username, role.as_str()), actor, "account add").await?;
    tx.commit().await?;
    Ok(Ok(id))
}

async fn find(conn: &mut AnyConnection, username: &str) -> Result<Option<(i64, String)>, StoreError> {
    let row = sqlx::query("SELECT id, role FROM web_accounts WHERE username = $1")
        .bind(username.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("role")?))).transpose()?)
}

/// Removes an account and its sessions (its `AccountRemoved` queued in the same transaction).
pub async fn remove(db: &Db, username: &str, actor: &str) -> Result<Result<i64, AccountRefusal>, BoxError> {
    let mut tx = db.pool.begin().await?;
    let Some((id, role)) = find(&mut tx, username).await? else {
        return Ok(Err(AccountRefusal::Unknown(username.to_owned())));
    };
    sqlx::query("DELETE FROM web_sessions WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM web_accounts WHERE id = $1").bind(id).execute(&mut *tx).await?;
    outbox(&mut tx, "removed", (id, username, &role), actor, "account remove").await?;
    tx.commit().await?;
    Ok(Ok(id))
}

/// Stores a new password hash and ends every session of the account.
pub async fn set_password(
    db: &Db,
    username: &str,
    password: &str,
    actor: &str,
) -> Result<Result<i64, AccountRefusal>, BoxError> {
    if !valid_password(password) {
        return Ok(Err(AccountRefusal::BadPassword));
    }
    let hash = hash_blocking(password.to_owned()).await?;
    let mut tx = db.pool.begin().await?;
    let Some((id, role)) = find(&mut tx, username).await? else {
        return Ok(Err(AccountRefusal::Unknown(username.to_owned())));
    };
    sqlx::query("UPDATE web_accounts SET password_hash = $1, timepasswordset = $2 WHERE id = $3")
        .bind(hash)
        .bind(chrono::Utc::now().timestamp())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM web_sessions WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
    outbox(&mut tx, "password_changed", (id, username, &role), actor, "account password").await?;
    tx.commit().await?;
    Ok(Ok(id))
}

pub async fn list(db: &Db) -> Result<Vec<AccountInfo>, StoreError> {
    let now = chrono::Utc::now().timestamp();
    let rows = sqlx::query(
        "SELECT a.id, a.username, a.role, a.timecreated, a.timepasswordset, \
             (SELECT COUNT(*) FROM web_sessions s WHERE s.account_id = a.id AND s.expires > $1) AS sessions \
         FROM web_accounts a ORDER BY a.id",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AccountInfo {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                role: r.try_get("role")?,
                time_created: r.try_get("timecreated")?,
                time_password_set: r.try_get("timepasswordset")?,
                sessions: r.try_get("sessions")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// The oldest queued rows.
pub async fn pending(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, account_id, username, role, actor, reason FROM account_outbox ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                account_id: r.try_get("account_id")?,
                username: r.try_get("username")?,
                role: r.try_get("role")?,
                actor: r.try_get("actor")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// The account outbox for the one drain loop (`app::outbox`).
pub struct AccountOutbox;

#[async_trait::async_trait]
impl Outbox for AccountOutbox {
    type Row = OutboxRow;
    const NAME: &'static str = "account";

    async fn pending(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        pending(db, limit).await
    }

    fn request(rows: Vec<OutboxRow>) -> Request {
        Request::AppendAccountEvents(rows)
    }
}

/// Appends every queued row through the writer; returns how many (`app::outbox::drain`).
///
/// # Errors
/// The outbox could not be read or the writer refused; what was appended stays appended.
pub async fn drain(ledger: &Ledger) -> Result<usize, DrainError> {
    outbox::drain::<AccountOutbox>(ledger).await
}

/// Appends the account outbox when no server holds the writer lock (a running server appends
/// it within [`outbox::DRAIN_INTERVAL_MS`]).
async fn drain_unless_serving(db: &Db) -> Result<(), BoxError> {
    let lock = match WriterLock::acquire(db, std::time::Duration::ZERO).await {
        Ok(lock) => lock,
        Err(StoreError::WriterLocked(_)) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let ledger = Ledger::start_locked(db.clone(), WriterOptions::default(), lock).await?;
    let drained = drain(&ledger).await;
    ledger.shutdown().await;
    drained?;
    Ok(())
}

/// The password for `add` / `password`: the environment variable, else stdin's first line
/// (`--password-stdin` forces stdin). Never a command-line argument (visible in `ps`).
fn read_password(force_stdin: bool) -> Result<String, BoxError> {
    if !force_stdin {
        if let Ok(password) = std::env::var(PASSWORD_ENV) {
            return Ok(password);
        }
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("password (the input is shown; prefer piping it or {PASSWORD_ENV}):");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

/// Runs `enrol-ledger account ...` on an opened database.
pub async fn run(db: &Db, action: AccountAction) -> Result<ExitCode, BoxError> {
    let actor = "cli";
    let done = match action {
        AccountAction::Add { username, role, password_stdin } => {
            let password = read_password(password_stdin)?;
            add(db, &username, &role, &password, actor)
                .await?
                .map(|id| format!("added web account {username} (id {id}, role {role}); it can sign in at /login now"))
        }
        AccountAction::Remove { username } => remove(db, &username, actor)
            .await?
            .map(|id| format!("removed web account {username} (id {id}); its sessions ended")),
        AccountAction::Password { username, password_stdin } => {
            let password = read_password(password_stdin)?;
            set_password(db, &username, &password, actor)
                .await?
                .map(|id| format!("new password for web account {username} (id {id}); its sessions ended"))
        }
        AccountAction::List => {
            let time =
                |t: i64| chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |t| t.to_rfc3339());
            println!("id\tusername\trole\tcreated\tpassword_set\tsessions");
            for a in list(db).await? {
                let (created, set) = (time(a.time_created), time(a.time_password_set));
                println!("{}\t{}\t{}\t{created}\t{set}\t{}", a.id, a.username, a.role, a.sessions);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    drain_unless_serving(db).await?;
    match done {
        Ok(message) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => Err(refusal.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, kind: &str, account: i64) -> OutboxRow {
        OutboxRow {
            id,
            kind: kind.into(),
            account_id: account,
            username: "mia".into(),
            role: "manager".into(),
            actor: "cli".into(),
            reason: "account add".into(),
        }
    }

    #[test]
    fn given_queued_account_rows_when_decided_then_each_is_one_event_in_its_account_stream_and_the_rows_go() {
        let decision = decide(vec![row(4, "added", 1), row(5, "password_changed", 1), row(6, "removed", 2)]);
        let types: Vec<(&str, String, &str)> = decision
            .streams
            .iter()
            .map(|s| (s.stream.stream_type, s.stream.key.clone(), s.events[0].event_type()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("account", "1".into(), "AccountAdded"),
                ("account", "1".into(), "AccountPasswordChanged"),
                ("account", "2".into(), "AccountRemoved")
            ]
        );
        assert!(matches!(&decision.registry[..], [RegistryOp::DrainAccountOutbox { ids }] if ids == &vec![4, 5, 6]));
    }

    #[test]
    fn given_usernames_when_checked_then_moodles_rule_applies() {
        assert!(valid_username("mia.manager@example.org"));
        assert!(valid_username("a-b_c"));
        assert!(!valid_username(""));
        assert!(!valid_username("Mia"), "lowercase only");
        assert!(!valid_username("mia manager"));
        assert!(!valid_username("<script>"));
        assert!(!valid_username(&"a".repeat(USERNAME_MAX_CHARS + 1)));
    }

    #[test]
    fn given_a_password_when_hashed_then_it_is_argon2id_and_only_it_verifies() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a phc string"));
        assert!(!valid_password("short"));
        assert!(valid_password("twelve chars"));
    }
}
