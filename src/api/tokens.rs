//! Web-service tokens: 32 lowercase hex characters, stored as SHA-256, shown in clear once.
//!
//! Tokens are cached in memory by hash; a miss re-reads the table, so a token created by the
//! CLI while the server runs works at once.

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

/// Stores a new token and returns it in clear (the only time it is known).
pub async fn create(
    db: &Db,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    create_in(&mut *db.pool.acquire().await?, service, user_id, valid_until, ip_restriction).await
}

/// `create` on the caller's connection, so it can share a transaction (the installer's).
pub async fn create_in(
    conn: &mut AnyConnection,
    service: &str,
    user_id: i64,
    valid_until: i64,
    ip_restriction: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let token = generate()?;
    sqlx::query(
        "INSERT INTO external_tokens (token_sha256, service, userid, validuntil, iprestriction, timecreated) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash(&token))
    .bind(service.to_owned())
    .bind(user_id)
    .bind(valid_until)
    .bind(ip_restriction.to_owned())
    .bind(chrono::Utc::now().timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

pub async fn count_for_service(db: &Db, service: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM external_tokens WHERE service = $1")
        .bind(service.to_owned())
        .fetch_one(&db.pool)
        .await?)
}

#[derive(Default)]
pub struct TokenCache {
    by_hash: RwLock<HashMap<String, Token>>,
}

impl TokenCache {
    async fn reload(&self, db: &Db) -> Result<(), StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.token_sha256, t.service, t.userid, t.validuntil, t.iprestriction, \
                        COALESCE(u.username, '') AS username, COALESCE(u.auth, '') AS auth, \
                        COALESCE(u.suspended, 0) AS suspended, COALESCE(u.deleted, 1) AS deleted \
                 FROM external_tokens t LEFT JOIN users u ON u.id = t.userid",
        )
        .fetch_all(&db.pool)
        .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for row in rows {
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
            map.insert(token.sha256.clone(), token);
        }
        *self.by_hash.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    /// Drops cached tokens of users whose tokens were deleted with them.
    pub fn forget_users(&self, user_ids: &[i64]) {
        self.by_hash.write().unwrap_or_else(|e| e.into_inner()).retain(|_, t| !user_ids.contains(&t.user_id));
    }

    fn lookup(&self, sha256: &str) -> Option<Token> {
        let map = self.by_hash.read().unwrap_or_else(|e| e.into_inner());
        let token = map.get(sha256)?;
        // The map found it by hash; confirm in constant time all the same.
        bool::from(token.sha256.as_bytes().ct_eq(sha256.as_bytes())).then(|| token.clone())
    }

    /// Moodle's token checks: known, not expired (an expired token is deleted), IP allowed.
    pub async fn authenticate(
        &self,
        db: &Db,
        token: &str,
        client_ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Result<Token, TokenRefusal>, StoreError> {
        let sha256 = hash(token);
        let found = match self.lookup(&sha256) {
            Some(token) => Some(token),
            None => {
                self.reload(db).await?;
                self.lookup(&sha256)
            }
        };
        let Some(found) = found else { return Ok(Err(TokenRefusal::Unknown)) };
        if found.valid_until > 0 && found.valid_until < now {
            sqlx::query("DELETE FROM external_tokens WHERE id = $1").bind(found.id).execute(&db.pool).await?;
            self.by_hash.write().unwrap_or_else(|e| e.into_inner()).remove(&sha256);
            return Ok(Err(TokenRefusal::Expired));
        }
        if !found.ip_restriction.trim().is_empty() {
            let allowed = client_ip.is_some_and(|ip| ip_in_list(ip, &found.ip_restriction));
            if !allowed {
                let shown = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
                return Ok(Err(TokenRefusal::IpNotAllowed(shown)));
            }
        }
        Ok(Ok(found))
    }
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
