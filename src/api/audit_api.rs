//! The read-only audit API under `/api/v1/` (WS-CONTRACT §6): JSON over HTTP, authorised by a
//! token of the `ledger_audit` or `ledger_admin` service in `Authorization: Bearer TOKEN`.
//!
//! Every answer is JSON. Errors are `{"error": CODE, "message": TEXT}` with the HTTP status
//! that says what went wrong (401 no or unknown token, 403 a token of another service, 400 a
//! bad parameter, 429 a throttled address, 503 the database); nothing here writes.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::services::{LEDGER_ADMIN, LEDGER_AUDIT};
use super::tokens::TokenRefusal;
use super::AppState;
use crate::app::history::{self, History, Subject};
use crate::app::{asof, audit};
use crate::store::log;

use super::audit_integrity as integrity;

/// Events per page of `/api/v1/events` unless `limit` says fewer.
pub const EVENTS_PAGE_MAX: i64 = 1000;
const EVENTS_PAGE_DEFAULT: i64 = 100;

/// The routes, mounted by `api::router_with_edge`.
/// The OpenAPI document (`super::openapi::ApiDoc`) lists the same handlers: a new route is
/// one line here and one in its `paths(...)`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(events))
        .route("/api/v1/history/bookings/{id}", get(booking_history))
        .route("/api/v1/history/users/{id}", get(user_history))
        .route("/api/v1/history/courses/{id}", get(course_history))
        .route("/api/v1/as-of", get(as_of))
        .merge(super::report_api::routes())
        .route("/api/v1/verification", get(integrity::verification))
        .route("/api/v1/verify", axum::routing::post(integrity::verify))
        .route("/api/v1/checkpoints", get(integrity::checkpoints))
        .route("/api/v1/checkpoints/latest", get(integrity::latest_checkpoint))
        .route("/api/v1/checkpoints/public-key", get(integrity::public_key))
        .route("/api/v1/proofs/inclusion", get(integrity::inclusion))
        .route("/api/v1/proofs/consistency", get(integrity::consistency))
        .merge(super::openapi::routes())
}

/// Every error answer of the audit API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    /// A stable code: `invalidtoken`, `accessexception`, `invalidiptoken`, `invalidparameter`,
    /// `notfound`, `verificationrunning`, `checkpointmismatch`, `dmlreadexception`.
    pub error: String,
    /// One sentence for people.
    pub message: String,
}

/// An audit API failure: its HTTP status, a stable code and a sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalidparameter", message)
    }

    pub fn store(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "audit API read failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "dmlreadexception", "Error reading from database")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody { error: self.code.to_owned(), message: self.message };
        let mut response = json_of(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The caller's token, if it is a live token of `ledger_audit` or `ledger_admin` allowed from
/// this address (the same checks and guessing throttle as the REST endpoint).
pub async fn authorise(
    state: &AppState,
    headers: &HeaderMap,
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let unauthorised = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "invalidtoken", message);
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(unauthorised(
            "An Authorization: Bearer token of the ledger_audit or ledger_admin service is required",
        ));
    };
    let now = chrono::Utc::now().timestamp();
    let checked = state
        .tokens
        .check(&state.ledger.db, token, client_ip, now, std::time::Instant::now())
        .await
        .map_err(ApiError::store)?;
    match checked {
        Ok(found) if found.user.deleted || found.user.suspended || found.user.auth == "nologin" => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "accessexception", "The token's user may not use web services"))
        }
        Ok(found) if found.service == LEDGER_AUDIT || found.service == LEDGER_ADMIN => Ok(()),
        Ok(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "accessexception",
            "This token's service may not use the audit API (ledger_audit or ledger_admin only)",
        )),
        Err(TokenRefusal::Throttled) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalidtoken",
            "Too many unknown tokens from this address",
        )),
        Err(TokenRefusal::Expired) => Err(unauthorised("The token has expired")),
        Err(TokenRefusal::IpNotAllowed(ip)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalidiptoken",
            format!("Access from {ip} is not allowed for this token"),
        )),
        Err(_) => Err(unauthorised("Invalid token - token not found")),
    }
}

/// The peer's address as the REST endpoint sees it (trusted proxies applied).
pub fn peer_ip(state: &AppState, extensions: &axum::http::Extensions, headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(addr)| addr.ip())?;
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    Some(state.edge.trusted_proxies.client_ip(peer, forwarded))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this position (0: from the first); give the previous page's `next_after`.
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// At most this many events (1 to 1000, default 100).
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of the events feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsPage {
    pub after: i64,
    /// The last position of this page (or `after` when it is empty): the next page's `after`.
    pub next_after: i64,
    /// In position order, without gaps.
    pub events: Vec<audit::ExportedEvent>,
}

pub(crate) fn parse_i64(
    name: &str,
    value: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let Some(value) = value else { return Ok(default) };
    match value.parse::<i64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => {
            Err(ApiError::bad_parameter(format!("{name} must be an integer from {} to {}", range.start(), range.end())))
        }
    }
}

/// `GET /api/v1/events?after=P&limit=N`: events in position order. Positions are gap-free and
/// commit in order (one writer), so paging by `after = next_after` never skips a late commit.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "log",
    description = "The log in position order, paged and resumable: give each page's `next_after` as the next \
                   `after`. Positions are assigned by the single writer in commit order and a position is \
                   never visible before a smaller one, so paging while writes go on sees every event exactly \
                   once.",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "A bad parameter", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
        (status = 429, description = "Too many unknown tokens from this address", body = ApiErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = peer_ip(&state, request.extensions(), request.headers());
    authorise(&state, request.headers(), ip).await?;
    let after = parse_i64("after", query.after.as_deref(), 0, 0..=i64::MAX)?;
    let limit = parse_i64("limit", query.limit.as_deref(), EVENTS_PAGE_DEFAULT, 1..=EVENTS_PAGE_MAX)?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(ApiError::store)?;
    let page = log::read_after(&mut conn, after, limit).await.map_err(ApiError::store)?;
    let next_after = page.last().map_or(after, |e| e.position);
    let events = page.iter().map(audit::ExportedEvent::of).collect();
    Ok(json_of(StatusCode::OK, &EventsPage { after, next_after, events }))
}

/// A JSON answer with its content type.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    json_of(status, body)
}

/// Any `Serialize` answer as JSON with its content type.
pub fn json_of<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text + "\n").into_response(),
        Err(error) => ApiError::store(error).into_response(),
    }
}

/// The history of one subject (`app::history`, the same answer as `enrol-ledger history
/// --format json`); 404 when the ledger has no event about it.
async fn history_of(state: &AppState, caller: Caller, subject: Subject) -> Result<Response, ApiError> {
    authorise(state, &caller.headers, caller.ip).await?;
    let found = history::history(&state.ledger.db, subject).await.map_err(ApiError::store)?;
    if found.entries.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "notfound", "The ledger has no event about this subject"));
    }
    Ok(json_of(StatusCode::OK, &found))
}

/// The caller's headers and address, taken from the request before any await.
pub(crate) struct Caller {
    headers: HeaderMap,
    ip: Option<std::net::IpAddr>,
}

impl Caller {
    pub(crate) fn of(state: &AppState, request: axum::extract::Request) -> Self {
        let ip = peer_ip(state, request.extensions(), request.headers());
        Self { headers: request.into_parts().0.headers, ip }
    }

    pub(crate) async fn authorise(&self, state: &AppState) -> Result<(), ApiError> {
        authorise(state, &self.headers, self.ip).await
    }
}

fn id_of(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_parameter("the id must be a positive integer"))
}

/// `GET /api/v1/history/bookings/{booking ID}`.
#[utoipa::path(
    get,
    path = "/api/v1/history/bookings/{id}",
    tag = "history",
    description = "Every event about a SEMCO booking ID (the same answer as `enrol-ledger history --booking ID \
                   --format json`, its lines as `entries`): time, actor, reason, old and new values.",
    params(("id" = String, Path, description = "The SEMCO booking ID")),
    responses(
        (status = 200, description = "Every event about it, in log order", body = History),
        (status = 400, description = "A bad id", body = ApiErrorBody),
        (status = 404, description = "The ledger has no event about it", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
    )
)]
pub async fn booking_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    history_of(&state, Caller::of(&state, request), Subject::Booking(id)).await
}

/// `GET /api/v1/history/users/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/history/users/{id}",
    tag = "history",
    description = "Every event about a user: their registry changes, enrolments and completions.",
    params(("id" = i64, Path, description = "The user id", minimum = 1)),
    responses(
        (status = 200, description = "Every event about it, in log order", body = History),
        (status = 400, description = "A bad id", body = ApiErrorBody),
        (status = 404, description = "The ledger has no event about it", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
    )
)]
pub async fn user_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let id = id_of(&id)?;
    history_of(&state, Caller::of(&state, request), Subject::User(id)).await
}

/// `GET /api/v1/history/courses/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/history/courses/{id}",
    tag = "history",
    description = "Every event about a course: its registry changes, enrolment instances, enrolments and \
                   completions.",
    params(("id" = i64, Path, description = "The course id", minimum = 1)),
    responses(
        (status = 200, description = "Every event about it, in log order", body = History),
        (status = 400, description = "A bad id", body = ApiErrorBody),
        (status = 404, description = "The ledger has no event about it", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
    )
)]
pub async fn course_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let id = id_of(&id)?;
    history_of(&state, Caller::of(&state, request), Subject::Course(id)).await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// One course's enrolments (give exactly one of `course` and `user`).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub course: Option<String>,
    /// One user's enrolments.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub user: Option<String>,
    /// RFC 3339: what the ledger knew then (not with `position`); default now.
    #[param(format = DateTime)]
    pub known_at: Option<String>,
    /// A log position: what the ledger knew after it (0: nothing).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub position: Option<String>,
    /// RFC 3339: only who was enrolled and active then (Moodle's rule).
    #[param(format = DateTime)]
    pub active_on: Option<String>,
}

/// The question of `/api/v1/as-of`, as `enrol-ledger as-of` builds it; one course or one user
/// (a whole-ledger answer is the CLI's: the API's answers stay bounded by one subject).
pub fn as_of_question(query: &AsOfQuery) -> Result<asof::Question, ApiError> {
    let time = |name: &str, text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|_| ApiError::bad_parameter(format!("{name} must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")))
    };
    let known = match (&query.known_at, &query.position) {
        (Some(_), Some(_)) => return Err(ApiError::bad_parameter("give known_at or position, not both")),
        (Some(text), None) => asof::KnownAt::Time(time("known_at", text)?.timestamp_micros()),
        (None, Some(p)) => asof::KnownAt::Position(parse_i64("position", Some(p), 0, 0..=i64::MAX)?),
        (None, None) => asof::KnownAt::Now,
    };
    let active_on = query.active_on.as_deref().map(|t| time("active_on", t).map(|t| t.timestamp())).transpose()?;
    let scope = match (&query.course, &query.user) {
        (Some(course), None) => asof::Scope::Course(id_of(course)?),
        (None, Some(user)) => asof::Scope::User(id_of(user)?),
        _ => return Err(ApiError::bad_parameter("give exactly one of course and user")),
    };
    Ok(asof::Question { known, active_on, scope })
}

/// `GET /api/v1/as-of?course=C|user=U[&known_at=T|&position=P][&active_on=T]`: the same answer
/// as `enrol-ledger as-of --format json`.
#[utoipa::path(
    get,
    path = "/api/v1/as-of",
    tag = "as-of",
    description = "The enrolments of one course or one user as the ledger knew them at a time or log position, \
                   optionally only those enrolled and active on a date (docs/AUDIT.md): the same answer as \
                   `enrol-ledger as-of --format json`.",
    params(AsOfQuery),
    responses(
        (status = 200, description = "The question, the positions read and the enrolments", body = asof::Answer),
        (status = 400, description = "A bad parameter", body = ApiErrorBody),
        (status = 401, description = "No or unknown token", body = ApiErrorBody),
        (status = 403, description = "A token of another service", body = ApiErrorBody),
    )
)]
pub async fn as_of(
    State(state): State<AppState>,
    Query(query): Query<AsOfQuery>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = peer_ip(&state, request.extensions(), request.headers());
    authorise(&state, request.headers(), ip).await?;
    let question = as_of_question(&query)?;
    let answer = asof::as_of(&state.ledger.db, &question).await.map_err(ApiError::store)?;
    Ok(json_of(StatusCode::OK, &answer))
}
