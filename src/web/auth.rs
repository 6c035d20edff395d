//! Sign-in for the pages: roles, sessions, the `SignedIn` and `CsrfForm` extractors, the
//! sign-in throttle, `/login` and `/logout` (docs/SECURITY.md, "Web sign-in").
//!
//! A session is a random 32-byte id in the cookie [`SESSION_COOKIE`] (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`, `Secure` when the base URL is https); the database keeps only
//! its SHA-256 with the account, a per-session CSRF token, and the times that end it: idle
//! [`IDLE_TIMEOUT_S`], absolute [`ABSOLUTE_TIMEOUT_S`]. Logout, a removed account and a new
//! password delete the row, so an old cookie opens nothing. The rules deciding on times, paths
//! and throttling are pure functions tested below.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::layout;
use super::WebError;
use crate::api::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "enrol_ledger_session";
/// The sign-in form's own anti-forgery cookie (before there is a session), path `/login`.
pub const LOGIN_COOKIE: &str = "enrol_ledger_login";
/// A session ends after this long without a request.
pub const IDLE_TIMEOUT_S: i64 = 8 * 3600;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT_S: i64 = 24 * 3600;
/// `last_seen` is written at most this often per session (not on every page).
pub const LAST_SEEN_WRITE_INTERVAL_S: i64 = 60;
/// Failed sign-ins per client address, and per username, before it must wait.
pub const SIGN_IN_FAILURES_MAX: u32 = 5;
/// How long an address or username waits after [`SIGN_IN_FAILURES_MAX`] failures; failures
/// older than this are forgotten.
pub const SIGN_IN_LOCKOUT_S: u64 = 60;
/// Addresses and usernames remembered at most; beyond, stale entries are forgotten, and while
/// that is not enough new ones are refused (fail closed).
pub const SIGN_IN_KEYS_MAX: usize = 100_000;
/// Largest form body read (bytes).
pub const FORM_BYTES_MAX: usize = 64 * 1024;

/// A web account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Report, settings, health (and its mutes), tokens.
    Manager,
    /// Report, audit pages, health read-only.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manager => "manager",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "manager" => Some(Self::Manager),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
}

/// The account behind a request with a valid session. As an extractor it answers a request
/// without one with a 303 to `/login?next=<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub account_id: i64,
    pub account: String,
    pub role: Role,
    /// The session's CSRF token: every form carries it (`layout::csrf_field`).
    pub csrf: String,
}

impl SignedIn {
    /// `Ok` when the account's role is one of `roles`, else the 403 page.
    ///
    /// # Errors
    /// `WebError::Forbidden` naming the roles that may open the page.
    pub fn require(&self, roles: &[Role]) -> Result<(), WebError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(WebError::Forbidden(format!(
            "This page is for the role {}; you are signed in as {} ({}).",
            allowed.join(" or "),
            self.account,
            self.role.as_str()
        )))
    }

    /// The actor recorded for changes this account makes from the pages.
    pub fn actor(&self) -> String {
        format!("web:{}:{}", self.account_id, self.account)
    }
}

// ---------------------------------------------------------------------------------------------
// Pure rules

/// Whether a session signed in at `created` and last seen at `last_seen` is still valid at
/// `now` (Unix seconds): less than the idle timeout since the last request and less than the
/// absolute timeout since sign-in.
pub fn session_alive(created: i64, last_seen: i64, now: i64) -> bool {
    now < created.saturating_add(ABSOLUTE_TIMEOUT_S) && now < last_seen.saturating_add(IDLE_TIMEOUT_S)
}

/// Where to go after sign-in: `next` when it is a path on this site (starts with one `/`, no
/// backslash, no control character, not the sign-in pages), else `/`. Never another origin.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control())
        && next.len() <= 2048;
    let own = ["/login", "/logout"].iter().any(|p| next == *p || next.starts_with(&format!("{p}?")));
    if local && !own {
        next
    } else {
        "/"
    }
}

/// Percent-encodes a path for a query value.
fn query_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// One key's failed sign-ins: how many within the current window, and the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last: Instant,
}

impl Failures {
    /// Whether the key must wait at `now`: [`SIGN_IN_FAILURES_MAX`] failures, the last less than
    /// [`SIGN_IN_LOCKOUT_S`] ago.
    pub fn locked(self, now: Instant) -> bool {
        self.count >= SIGN_IN_FAILURES_MAX && !self.stale(now)
    }

    /// Failures older than the lockout are forgotten.
    pub fn stale(self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= Duration::from_secs(SIGN_IN_LOCKOUT_S)
    }

    /// One more failure at `now` (the count starts again after a quiet lockout period).
    pub fn after_failure(previous: Option<Self>, now: Instant) -> Self {
        match previous.filter(|f| !f.stale(now)) {
            Some(f) => Self { count: f.count.saturating_add(1), last: now },
            None => Self { count: 1, last: now },
        }
    }

    /// How long until the key may try again.
    pub fn wait(self, now: Instant) -> Duration {
        (self.last + Duration::from_secs(SIGN_IN_LOCKOUT_S)).saturating_duration_since(now)
    }
}

/// What sign-in failures are counted under: the client address (IPv6 by its /64) and the
/// username (as typed, lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    Address(Option<IpAddr>),
    Username(String),
}

impl ThrottleKey {
    pub fn address(ip: Option<IpAddr>) -> Self {
        Self::Address(ip.map(|ip| match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
            },
        }))
    }

    pub fn username(name: &str) -> Self {
        Self::Username(name.trim().to_lowercase())
    }
}

/// The sign-in throttle: failures per address and per username.
#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<ThrottleKey, Failures>>,
}

impl SignInThrottle {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(wait)` when any of `keys` must wait at `now`.
    pub fn refused(&self, keys: &[ThrottleKey], now: Instant) -> Option<Duration> {
        let map = self.map();
        keys.iter().filter_map(|k| map.get(k)).filter(|f| f.locked(now)).map(|f| f.wait(now)).max()
    }

    /// Records a failed sign-in under every key.
    pub fn failed(&self, keys: &[ThrottleKey], now: Instant) {
        let mut map = self.map();
        if map.len() >= SIGN_IN_KEYS_MAX {
            map.retain(|_, f| !f.stale(now));
        }
        for key in keys {
            if map.len() >= SIGN_IN_KEYS_MAX && !map.contains_key(key) {
                tracing::warn!(keys = SIGN_IN_KEYS_MAX, "sign-in throttle full: new addresses and usernames wait");
                continue;
            }
            let previous = map.get(key).copied();
            map.insert(key.clone(), Failures::after_failure(previous, now));
        }
    }

    /// A successful sign-in forgets the username's failures (the address's stay counted).
    pub fn succeeded(&self, username: &str) {
        self.map().remove(&ThrottleKey::username(username));
    }

    /// Whether a key is remembered as failing (tests, diagnostics).
    pub fn failures(&self, key: &ThrottleKey) -> Option<Failures> {
        self.map().get(key).copied()
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

fn random_hex() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| WebError::Unavailable(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// Whether cookies must carry `Secure` (the site is served over https).
fn secure(state: &AppState) -> bool {
    state.settings.base_url.to_ascii_lowercase().starts_with("https://")
}

fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    let text = format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The session of a cookie value, if it is valid now; refreshes `last_seen` at most once per
/// [`LAST_SEEN_WRITE_INTERVAL_S`].
pub async fn session(state: &AppState, cookie_value: &str, now: i64) -> Result<Option<SignedIn>, WebError> {
    if cookie_value.len() != 64 || !cookie_value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let id = sha256_hex(cookie_value);
    let db = &state.ledger.db;
    let row = sqlx::query(
        "SELECT s.account_id, s.csrf, s.created, s.last_seen, s.expires, a.username, a.role \
         FROM web_sessions s JOIN web_accounts a ON a.id = s.account_id WHERE s.id_sha256 = $1",
    )
    .bind(id.clone())
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (created, last_seen, expires): (i64, i64, i64) =
        (row.try_get("created")?, row.try_get("last_seen")?, row.try_get("expires")?);
    let role: String = row.try_get("role")?;
    let Some(role) = Role::parse(&role) else { return Ok(None) };
    if !session_alive(created, last_seen, now) || now >= expires {
        sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1").bind(id).execute(&db.pool).await?;
        return Ok(None);
    }
    if now - last_seen >= LAST_SEEN_WRITE_INTERVAL_S {
        sqlx::query("UPDATE web_sessions SET last_seen = $1 WHERE id_sha256 = $2")
            .bind(now)
            .bind(id)
            .execute(&db.pool)
            .await?;
    }
    Ok(Some(SignedIn {
        account_id: row.try_get("account_id")?,
        account: row.try_get("username")?,
        role,
        csrf: row.try_get("csrf")?,
    }))
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(signed) = parts.extensions.get::<SignedIn>() {
            return Ok(signed.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let found = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(value) => session(state, value, now).await.map_err(IntoResponse::into_response)?,
            None => None,
        };
        match found {
            Some(signed) => {
                parts.extensions.insert(signed.clone());
                Ok(signed)
            }
            None => {
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                Err(see_other(&format!("/login?next={}", query_encode(safe_next(path)))))
            }
        }
    }
}

/// An `application/x-www-form-urlencoded` body decoded into `T` after its `csrf` field was
/// checked (in constant time) against the session's token: 403 when missing or wrong, 303 to
/// the sign-in without a session, 400 when the body is not such a form. `T` may have a `csrf`
/// field of its own or ignore it (it must not deny unknown fields).
pub struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = SignedIn::from_request_parts(&mut parts, state).await?;
        let body = axum::body::to_bytes(body, FORM_BYTES_MAX)
            .await
            .map_err(|_| WebError::BadRequest("The form could not be read (too large or cut off).".into()))
            .map_err(IntoResponse::into_response)?;
        let given = serde_urlencoded::from_bytes::<CsrfOnly>(&body).ok().and_then(|f| f.csrf).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(signed.csrf.as_bytes())) {
            tracing::warn!(account = %signed.account, path = %parts.uri.path(), "form refused: CSRF token missing or wrong");
            return Err(WebError::Forbidden(
                "The form's security token is missing or out of date: go back, reload the page and try again.".into(),
            )
            .into_response());
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(CsrfForm)
            .map_err(|e| WebError::BadRequest(format!("The form is not valid: {e}.")).into_response())
    }
}

// ---------------------------------------------------------------------------------------------
// /login and /logout

pub fn routes() -> Router<AppState> {
    Router::new().route("/login", get(login_form).post(login)).route("/logout", post(logout))
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The sign-in page; `error` is shown above the form.
fn login_page(status: StatusCode, next: &str, login_csrf: &str, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in to enrol-ledger" }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.signin method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            input type="hidden" name="login_csrf" value=(login_csrf);
            p {
                label for="username" { "Username" }
                input #username type="text" name="username" autocomplete="username" required autofocus;
            }
            p {
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
            }
            p { button type="submit" { "Sign in" } }
        }
    };
    layout::html_response(status, layout::bare("Sign in", body))
}

/// A fresh sign-in form with its anti-forgery cookie.
fn fresh_login_form(state: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let token = match random_hex() {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    let mut response = login_page(status, next, &token, error);
    response.headers_mut().append(SET_COOKIE, set_cookie(state, LOGIN_COOKIE, &token, "/login", 3600));
    response
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<NextQuery>) -> Response {
    let next = safe_next(query.next.as_deref().unwrap_or("/")).to_owned();
    let now = chrono::Utc::now().timestamp();
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = session(&state, value, now).await {
            return see_other(&next);
        }
    }
    fresh_login_form(&state, StatusCode::OK, &next, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    login_csrf: String,
}

/// The connection's peer address (absent in router tests without connect info).
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)))
    }
}

fn client_ip(state: &AppState, parts: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    let peer = peer?.ip();
    let forwarded = parts.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    Some(state.edge.trusted_proxies.client_ip(peer, forwarded))
}

/// The account's id, name, role and hash by username.
async fn account_by_name(state: &AppState, username: &str) -> Result<Option<(i64, String, String)>, WebError> {
    let row = sqlx::query("SELECT id, role, password_hash FROM web_accounts WHERE username = $1")
        .bind(username.to_owned())
        .fetch_optional(&state.ledger.db.pool)
        .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("role")?, r.try_get("password_hash")?)))
        .transpose()?)
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    form: axum::Form<LoginForm>,
) -> Response {
    let form = form.0;
    let next = safe_next(&form.next).to_owned();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.login_csrf.as_bytes())) {
        return fresh_login_form(
            &state,
            StatusCode::FORBIDDEN,
            &next,
            Some("The sign-in form had expired or did not come from this site. Please sign in again."),
        );
    }
    let ip = client_ip(&state, &headers, peer);
    let keys = [ThrottleKey::address(ip), ThrottleKey::username(&form.username)];
    let clock = Instant::now();
    if let Some(wait) = state.web.throttle.refused(&keys, clock) {
        tracing::warn!(address = ?ip, "sign-in refused: too many failed attempts");
        let seconds = wait.as_secs().max(1);
        let message = format!(
            "Too many failed sign-ins from this address or for this username. Wait {seconds} seconds and try again."
        );
        let mut response = fresh_login_form(&state, StatusCode::TOO_MANY_REQUESTS, &next, Some(&message));
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    let found = match account_by_name(&state, &form.username).await {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    // Unknown users are verified against a dummy hash: the same work, the same answer.
    let (hash, known) = match &found {
        Some((_, _, hash)) => (hash.clone(), true),
        None => (super::accounts::dummy_hash().to_owned(), false),
    };
    let password = form.password.clone();
    let matches =
        tokio::task::spawn_blocking(move || super::accounts::verify_password(&password, &hash)).await.unwrap_or(false);
    let account = found.filter(|_| matches && known);
    let Some((account_id, role, _)) = account else {
        state.web.throttle.failed(&keys, clock);
        tracing::warn!(address = ?ip, "sign-in failed: wrong username or password");
        return fresh_login_form(&state, StatusCode::UNAUTHORIZED, &next, Some("Wrong username or password."));
    };
    state.web.throttle.succeeded(&form.username);
    match start_session(&state, &headers, account_id).await {
        Ok(value) => {
            tracing::info!(account = %form.username, role = %role, address = ?ip, "signed in");
            let mut response = see_other(&next);
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie(&state, SESSION_COOKIE, &value, "/", ABSOLUTE_TIMEOUT_S));
            headers.append(SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", "/login", 0));
            response
        }
        Err(error) => error.into_response(),
    }
}

/// A new session for the account (a fresh id: never one the browser brought along); ends the
/// browser's previous session and forgets expired ones. Returns the cookie value.
async fn start_session(state: &AppState, headers: &HeaderMap, account_id: i64) -> Result<String, WebError> {
    let (value, csrf) = (random_hex()?, random_hex()?);
    let now = chrono::Utc::now().timestamp();
    let mut tx = state.ledger.db.pool.begin().await?;
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1").bind(sha256_hex(old)).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM web_sessions WHERE expires <= $1 OR last_seen <= $2")
        .bind(now)
        .bind(now - IDLE_TIMEOUT_S)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO web_sessions (id_sha256, account_id, csrf, created, last_seen, expires) \
         VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(sha256_hex(&value))
    .bind(account_id)
    .bind(csrf)
    .bind(now)
    .bind(now + ABSOLUTE_TIMEOUT_S)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(value)
}

#[derive(Deserialize)]
pub struct LogoutForm {}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed: SignedIn,
    CsrfForm(_): CsrfForm<LogoutForm>,
) -> Response {
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        let deleted = sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(value))
            .execute(&state.ledger.db.pool)
            .await;
        if let Err(error) = deleted {
            return WebError::from(error).into_response();
        }
    }
    tracing::info!(account = %signed.account, "signed out");
    let mut response = see_other("/login");
    response.headers_mut().append(SET_COOKIE, set_cookie(&state, SESSION_COOKIE, "", "/", 0));
    // Browsers that honour it drop their cached copies of signed-in pages. Chromium may still
    // show the last page from its in-memory back/forward cache: any request from it (reload,
    // link, form) meets the deleted session and goes to the sign-in.
    response.headers_mut().insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    response
}

/// A hidden form field is all a page needs; this is its markup (see `layout::csrf_field`).
pub fn csrf_input(signed: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_session_when_idle_or_old_then_it_ends_at_the_limits() {
        let t0 = 1_000_000;
        assert!(session_alive(t0, t0, t0 + 1), "fresh");
        assert!(session_alive(t0, t0, t0 + IDLE_TIMEOUT_S - 1), "just under idle");
        assert!(!session_alive(t0, t0, t0 + IDLE_TIMEOUT_S), "idle for 8 h");
        let busy = t0 + ABSOLUTE_TIMEOUT_S - 10;
        assert!(session_alive(t0, busy, busy + 5), "busy and young enough");
        assert!(!session_alive(t0, busy, t0 + ABSOLUTE_TIMEOUT_S), "24 h after sign-in however busy");
    }

    #[test]
    fn given_next_paths_when_sanitised_then_only_local_paths_pass() {
        assert_eq!(safe_next("/report?course=3"), "/report?course=3");
        assert_eq!(safe_next("/"), "/");
        for bad in
            ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil", "", "/a\nb", "/login", "/logout"]
        {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
        assert_eq!(safe_next("/login?next=/x"), "/");
        assert_eq!(safe_next("/loginx"), "/loginx");
    }

    #[test]
    fn given_failures_when_the_limit_is_reached_then_the_key_waits_a_minute() {
        let throttle = SignInThrottle::default();
        let t0 = Instant::now();
        let keys = [ThrottleKey::address("10.0.0.1".parse().ok()), ThrottleKey::username("Mia")];
        for _ in 0..SIGN_IN_FAILURES_MAX - 1 {
            throttle.failed(&keys, t0);
        }
        assert_eq!(throttle.refused(&keys, t0), None, "four failures: still allowed");
        throttle.failed(&keys, t0);
        assert_eq!(throttle.refused(&keys, t0), Some(Duration::from_secs(SIGN_IN_LOCKOUT_S)));
        let other_address = [ThrottleKey::address("10.0.0.2".parse().ok()), ThrottleKey::username("mia")];
        assert!(throttle.refused(&other_address, t0).is_some(), "the username waits from any address");
        let other_user = [ThrottleKey::address("10.0.0.1".parse().ok()), ThrottleKey::username("max")];
        assert!(throttle.refused(&other_user, t0).is_some(), "the address waits for any username");
        let later = t0 + Duration::from_secs(SIGN_IN_LOCKOUT_S);
        assert_eq!(throttle.refused(&keys, later), None, "a minute later");
        throttle.failed(&keys, later);
        assert_eq!(throttle.failures(&keys[0]).unwrap().count, 1, "the count starts again");
    }

    #[test]
    fn given_a_success_when_recorded_then_the_usernames_failures_go_but_the_addresss_stay() {
        let throttle = SignInThrottle::default();
        let t0 = Instant::now();
        let keys = [ThrottleKey::address(None), ThrottleKey::username("mia")];
        throttle.failed(&keys, t0);
        throttle.succeeded("MIA");
        assert_eq!(throttle.failures(&keys[1]), None);
        assert_eq!(throttle.failures(&keys[0]).map(|f| f.count), Some(1));
    }

    #[test]
    fn given_ipv6_addresses_when_keyed_then_one_slash_64_is_one_client() {
        let key = |s: &str| ThrottleKey::address(s.parse().ok());
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:1"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
    }

    #[test]
    fn given_cookie_headers_when_read_then_the_named_value_is_found() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; enrol_ledger_session=abc"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
