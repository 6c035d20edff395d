//! Web-service tokens: 32 lowercase hex characters, stored as SHA-256, shown in clear once.
//!
//! Found by hash: the cache is a map from SHA-256 to the token and its user, filled one token
//! at a time from the table's unique index, so a miss costs one indexed read however many
//! tokens exist. Every change that can alter a token check (a token created, revoked, rotated,
//! expired or edited by hand; its user renamed, suspended, deleted or set to `nologin`) bumps
//! the `token_generation` row in the same transaction (triggers, migration 6); each call reads
//! that row first and drops the cache when it moved. The bound for a change made by any
//! process, this one, the CLI or SQL by hand, is therefore [`TOKEN_CHANGE_BOUND`]: the next
//! call that starts after the change commits.
//!
//! Failed guesses are throttled per client address ([`super::throttle`]).

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use subtle::ConstantTimeEq;

use crate::store::{Db, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub sha256: String,
    pub service: String,
    pub user_id: i64,
    pub valid_until: i64,
    pub ip_restriction: String,
    /// The token user's state, checked on every call as Moodle does.
    pub user: TokenUser,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUser {
    pub username: String,
    pub auth: String,
    pub suspended: bool,
    pub deleted: bool,
}

/// Why a token was refused, in Moodle's order of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    /// The client address used up its failed attempts; answered as `Unknown`, without a lookup.
    Throttled,
    Expired,
    IpNotAllowed(String),
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token from the operating system's generator.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Stores a new token and returns it in clear (the only time it is known); its `TokenCreated`
/// goes to the token outbox in the same transaction.
pub async fn create(
    db: &Db,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = db.pool.begin().await?;
    let token = create_in_as(&mut tx, service, user_id, valid_until, ip_restriction, "cli", "token create").await?;
    tx.commit().await?;
    Ok(token)
}

/// `create` recording who made it (the tokens page: `web:<account id>:<name>`) and why.
pub async fn create_as(
    db: &Db,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
    (actor, reason): (&str, &str),
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = db.pool.begin().await?;
    let token = create_in_as(&mut tx, service, user_id, valid_until, ip_restriction, actor, reason).await?;
    tx.commit().await?;
    Ok(token)
}

/// `create` on the caller's transaction (the installer's first start).
pub async fn create_in(
    conn: &mut AnyConnection,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    create_in_as(conn, service, user_id, valid_until, ip_restriction, "installer", "first start").await
}

async fn create_in_as(
    conn: &mut AnyConnection,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
    actor: &str,
    reason: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let token = generate()?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO external_tokens (token_sha256, service, userid, validuntil, iprestriction, timecreated) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(hash(&token))
    .bind(service.to_owned())
    .bind(user_id)
    .bind(valid_until)
    .bind(ip_restriction.to_owned())
    .bind(chrono::Utc::now().timestamp())
    .fetch_one(&mut *conn)
    .await?;
    outbox(conn, "created", TOKEN_ID_IS, id.to_string(), actor, reason).await?;
    Ok(token)
}

/// The outbox condition for one token id.
pub const TOKEN_ID_IS: &str = "id = CAST($3 AS BIGINT)";

/// Queues the event `kind` of the tokens matching `condition` (with `$3` bound to `key` as text) in
/// the token outbox, from their rows as they are now (before a delete). The writer appends it
/// (`app::token_events`).
pub async fn outbox(
    conn: &mut AnyConnection,
    kind: &str,
    condition: &str,
    key: String,
    actor: &str,
    reason: &str,
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO token_outbox (kind, token_id, service, userid, validuntil, iprestriction, actor, reason) \
         SELECT $1, id, service, userid, validuntil, iprestriction, $2, $4 FROM external_tokens WHERE {condition} \
         ORDER BY id"
    );
    let done = sqlx::query(&sql)
        .bind(kind.to_owned())
        .bind(actor.to_owned())
        .bind(key)
        .bind(reason.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

pub async fn count_for_service(db: &Db, service: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM external_tokens WHERE service = $1")
        .bind(service.to_owned())
        .fetch_one(&db.pool)
        .await?)
}

/// When a token change made by any process takes effect in a running server.
pub const TOKEN_CHANGE_BOUND: &str = "the next call that starts after the change commits";

/// How often a token's `lastaccess` is written while it is in use (Moodle writes it on use;
/// once a minute keeps a busy token from writing on every call).
pub const TOKEN_LAST_ACCESS_WRITE_INTERVAL_S: i64 = 60;

const TOKEN_BY_HASH: &str = "SELECT t.id, t.token_sha256, t.service, t.userid, t.validuntil, t.iprestriction, \
         t.lastaccess, COALESCE(u.username, '') AS username, COALESCE(u.auth, '') AS auth, \
         COALESCE(u.suspended, 0) AS suspended, COALESCE(u.deleted, 1) AS deleted \
     FROM external_tokens t LEFT JOIN users u ON u.id = t.userid WHERE t.token_sha256 = $1";

/// The tokens found so far, valid while `generation` is the database's.
#[derive(Default)]
struct Cached {
    generation: i64,
    by_hash: HashMap<String, (Token, i64)>,
}

#[derive(Default)]
pub struct TokenCache {
    cached: RwLock<Cached>,
    throttle: super::throttle::GuessThrottle,
    /// The newest generation read and when that read started; held while a read runs, so
    /// concurrent calls share reads (see [`TokenCache::current_generation`]).
    generation_read: tokio::sync::Mutex<Option<(std::time::Instant, i64)>>,
    /// Generation reads sent to the database (diagnostics and tests).
    generation_reads: std::sync::atomic::AtomicU64,
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<(Token, i64), StoreError> {
    let token = Token {
        id: row.try_get("id")?,
        sha256: row.try_get("token_sha256")?,
        service: row.try_get("service")?,
        user_id: row.try_get("userid")?,
        valid_until: row.try_get("validuntil")?,
        ip_restriction: row.try_get("iprestriction")?,
        user: TokenUser {
            username: row.try_get("username")?,
            auth: row.try_get("auth")?,
            suspended: row.try_get::<i32, _>("suspended")? != 0,
            deleted: row.try_get::<i32, _>("deleted")? != 0,
        },
    };
    Ok((token, row.try_get("lastaccess")?))
}

/// The database's token generation (one indexed single-row read).
pub async fn generation(db: &Db) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT generation FROM token_generation WHERE id = 1").fetch_one(&db.pool).await?)
}

impl TokenCache {
    /// The database's token generation as read by a query that started after `since` (the
    /// call's start), so the bound [`TOKEN_CHANGE_BOUND`] holds. Calls that arrive while a
    /// read runs wait for it and then share the next one: under N concurrent calls the
    /// database sees about one read per read round trip instead of N (issue 7: this row read
    /// was a round trip on every call, a third of the enrol path's database work).
    pub async fn current_generation(&self, db: &Db, since: std::time::Instant) -> Result<i64, StoreError> {
        let mut newest = self.generation_read.lock().await;
        if let Some((started, generation)) = *newest {
            if started >= since {
                return Ok(generation);
            }
        }
        let started = std::time::Instant::now();
        self.generation_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let generation = generation(db).await?;
        *newest = Some((started, generation));
        Ok(generation)
    }

    /// How many generation reads this cache has sent to the database.
    pub fn generation_reads(&self) -> u64 {
        self.generation_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cached> {
        self.cached.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every cached token when the database's generation is not the cache's.
    fn sync(&self, generation: i64) {
        if self.cached.read().unwrap_or_else(|e| e.into_inner()).generation == generation {
            return;
        }
        let mut cached = self.write();
        if cached.generation != generation {
            cached.generation = generation;
            cached.by_hash.clear();
        }
    }

    /// Drops the cached tokens of these users (their state changed in this process; the
    /// generation row says so too, this only saves the next call's re-read).
    pub fn forget_users(&self, user_ids: &[i64]) {
        self.write().by_hash.retain(|_, (t, _)| !user_ids.contains(&t.user_id));
    }

    /// The token with this hash: from the cache, else one indexed read (remembered only if no
    /// change was seen meanwhile).
    async fn find(&self, db: &Db, sha256: &str, generation: i64) -> Result<Option<(Token, i64)>, StoreError> {
        {
            let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
            if let Some((token, last_access)) = cached.by_hash.get(sha256) {
                // The map found it by hash; confirm in constant time all the same.
                if bool::from(token.sha256.as_bytes().ct_eq(sha256.as_bytes())) {
                    return Ok(Some((token.clone(), *last_access)));
                }
            }
        }
        let row = sqlx::query(TOKEN_BY_HASH).bind(sha256.to_owned()).fetch_optional(&db.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let found = token_from_row(&row)?;
        let mut cached = self.write();
        if cached.generation == generation {
            cached.by_hash.insert(sha256.to_owned(), found.clone());
        }
        Ok(Some(found))
    }

    /// Moodle's token checks: known, not expired (an expired token is deleted), IP allowed.
    pub async fn authenticate(
        &self,
        db: &Db,
        token: &str,
        client_ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Result<Token, TokenRefusal>, StoreError> {
        let since = std::time::Instant::now();
        let sha256 = hash(token);
        let generation = self.current_generation(db, since).await?;
        self.sync(generation);
        let Some((found, last_access)) = self.find(db, &sha256, generation).await? else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if found.valid_until > 0 && found.valid_until < now {
            let mut tx = db.pool.begin().await?;
            outbox(&mut tx, "expired", TOKEN_ID_IS, found.id.to_string(), "server", "used after valid_until").await?;
            sqlx::query("DELETE FROM external_tokens WHERE id = $1").bind(found.id).execute(&mut *tx).await?;
            tx.commit().await?;
            self.write().by_hash.remove(&sha256);
            return Ok(Err(TokenRefusal::Expired));
        }
        if !found.ip_restriction.trim().is_empty() {
            let allowed = client_ip.is_some_and(|ip| ip_in_list(ip, &found.ip_restriction));
            if !allowed {
                let shown = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
                return Ok(Err(TokenRefusal::IpNotAllowed(shown)));
            }
        }
        if now - last_access >= TOKEN_LAST_ACCESS_WRITE_INTERVAL_S {
            self.touch(db, &found, now).await;
        }
        Ok(Ok(found))
    }

    /// Records the token's last use in the background; a failure is logged, never refuses the
    /// call, and never makes it wait for the database's write lock.
    async fn touch(&self, db: &Db, token: &Token, now: i64) {
        if let Some(entry) = self.write().by_hash.get_mut(&token.sha256) {
            entry.1 = now;
        }
        let (db, id) = (db.clone(), token.id);
        tokio::spawn(async move {
            let written = sqlx::query("UPDATE external_tokens SET lastaccess = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&db.pool)
                .await;
            if let Err(error) = written {
                tracing::warn!(token_id = id, %error, "cannot record the token's last access");
            }
        });
    }

    /// [`Self::authenticate`] behind the guessing throttle of `client_ip`: an address that
    /// has used up its failures is refused as an unknown token without a lookup, and every
    /// unknown token it sends uses one up.
    pub async fn check(
        &self,
        db: &Db,
        token: &str,
        client_ip: Option<IpAddr>,
        now: i64,
        clock: std::time::Instant,
    ) -> Result<Result<Token, TokenRefusal>, StoreError> {
        if !self.throttle.may_try(client_ip, clock) {
            return Ok(Err(TokenRefusal::Throttled));
        }
        let outcome = self.authenticate(db, token, client_ip, now).await?;
        if outcome == Err(TokenRefusal::Unknown) {
            self.throttle.failed(client_ip, clock);
        }
        Ok(outcome)
    }
}

/// What `token list` shows of a token: never the token nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub service: String,
    pub user_id: i64,
    pub valid_until: i64,
    pub ip_restriction: String,
    pub time_created: i64,
    pub last_access: i64,
}

pub async fn list(db: &Db) -> Result<Vec<TokenInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, service, userid, validuntil, iprestriction, timecreated, lastaccess FROM external_tokens ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(TokenInfo {
                id: row.try_get("id")?,
                service: row.try_get("service")?,
                user_id: row.try_get("userid")?,
                valid_until: row.try_get("validuntil")?,
                ip_restriction: row.try_get("iprestriction")?,
                time_created: row.try_get("timecreated")?,
                last_access: row.try_get("lastaccess")?,
            })
        })
        .collect()
}

/// Deletes a token; `false` when there is none with this id. Running servers refuse it from
/// their next call on (the delete bumps the token generation).
pub async fn revoke(db: &Db, id: i64) -> Result<bool, StoreError> {
    revoke_as(db, id, "cli", "token revoke").await
}

/// `revoke` recording who made it (the tokens page: `web:<account id>:<name>`) and why.
pub async fn revoke_as(db: &Db, id: i64, actor: &str, reason: &str) -> Result<bool, StoreError> {
    let mut tx = db.pool.begin().await?;
    outbox(&mut tx, "revoked", TOKEN_ID_IS, id.to_string(), actor, reason).await?;
    let deleted = sqlx::query("DELETE FROM external_tokens WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(deleted.rows_affected() > 0)
}

/// Why `token rotate --service` refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateRefusal {
    /// More than one token of the service and no `--all`: which one the client uses is unknown
    /// (the plugin's `cli/recreate_webservice_token.php` refuses the same way).
    SeveralTokens(i64),
}

/// `token rotate --service`: deletes the service's token (every one with `all`; none is not an
/// error) and creates one for the service's user with the given validity and IP list, in one
/// transaction; returns the new token in clear.
pub async fn rotate_service(
    db: &Db,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
    all: bool,
) -> Result<Result<String, RotateRefusal>, Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = db.pool.begin().await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM external_tokens WHERE service = $1")
        .bind(service.to_owned())
        .fetch_one(&mut *tx)
        .await?;
    if count > 1 && !all {
        return Ok(Err(RotateRefusal::SeveralTokens(count)));
    }
    outbox(&mut tx, "rotated", "service = $3", service.to_owned(), "cli", "token rotate").await?;
    sqlx::query("DELETE FROM external_tokens WHERE service = $1").bind(service.to_owned()).execute(&mut *tx).await?;
    let token = create_in_as(&mut tx, service, user_id, valid_until, ip_restriction, "cli", "token rotate").await?;
    tx.commit().await?;
    Ok(Ok(token))
}

/// One entry of an IP list: an address, or a network with its prefix length (a plain address
/// is its own /32 or /128). `None` for anything else, including a prefix too long for the family.
fn parse_entry(entry: &str) -> Option<(IpAddr, u32)> {
    let (address, bits) = match entry.split_once('/') {
        None => (entry, None),
        Some((address, bits)) => (address, Some(bits.parse::<u32>().ok()?)),
    };
    let address: IpAddr = address.parse().ok()?;
    let width = if address.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(width);
    (bits <= width).then_some((address, bits))
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Whether `ip` is one of a comma-separated list of addresses and CIDR ranges.
pub fn ip_in_list(ip: IpAddr, list: &str) -> bool {
    entries(list).filter_map(parse_entry).any(|(net, bits)| match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    })
}

/// Checks an `--ip` list: every entry must be an address or a CIDR range of its family.
pub fn valid_ip_list(list: &str) -> bool {
    entries(list).all(|entry| parse_entry(entry).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_lists_match_addresses_and_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ip_in_list(ip("127.0.0.1"), "10.0.0.1, 127.0.0.1"));
        assert!(ip_in_list(ip("10.1.2.3"), "10.0.0.0/8"));
        assert!(!ip_in_list(ip("11.1.2.3"), "10.0.0.0/8"));
        assert!(ip_in_list(ip("::1"), "::1/128"));
        assert!(!ip_in_list(ip("127.0.0.1"), ""));
        assert!(valid_ip_list("10.0.0.0/8,127.0.0.1"));
        assert!(!valid_ip_list("nonsense"));
        assert!(!valid_ip_list("10.0.0.0/33"), "a prefix longer than the family can never match");
        assert!(ip_in_list(ip("8.8.8.8"), "0.0.0.0/0"));
    }

    #[test]
    fn tokens_are_32_lowercase_hex() {
        let token = generate().unwrap();
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
