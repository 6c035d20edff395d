//! `/webservice/rest/server.php`: Moodle's REST server, step by step in its order
//! (MOODLE-REFERENCE.md §1.2): read the request, authenticate the token, find the function,
//! check the service, validate the parameters, execute, clean the return value, serialise.

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use super::functions::{self, Call};
use super::observe::{RequestId, WsCall};
use super::services;
use super::tokens::TokenRefusal;
use super::wire::encode::{self, WsError, DML_MISSING_RECORD_EXCEPTION, MOODLE_EXCEPTION, WEBSERVICE_ACCESS_EXCEPTION};
use super::wire::params::validate;
use super::wire::request::{self, Format, REQUEST_BODY_BYTES_MAX};
use super::AppState;
use crate::store::log::Actor;

pub const PATH: &str = "/webservice/rest/server.php";

/// Bodies up to this size are parsed on the async worker; larger ones on the blocking pool
/// (the parsers are linear, but a 1 MiB body still costs milliseconds).
pub const INLINE_PARSE_BYTES_MAX: usize = 64 * 1024;

/// The call, answered: the function and Moodle's outcome go into the response's extensions
/// for the request log line and the metrics (`observe`).
pub async fn handle(State(state): State<AppState>, req: Request<Body>) -> Response {
    let request_id = match req.extensions().get::<RequestId>() {
        Some(RequestId(id)) => id.clone(),
        None => super::observe::new_request_id(),
    };
    let mut function: Cow<'static, str> = Cow::Borrowed("none");
    let (mut response, outcome) = answer(state, req, request_id, &mut function).await;
    response.extensions_mut().insert(WsCall { function, outcome });
    response
}

/// The response and its outcome label (`ok` or the error code); `function` is set to the
/// function's label as soon as the request names one.
async fn answer(
    state: AppState,
    req: Request<Body>,
    request_id: String,
    function: &mut Cow<'static, str>,
) -> (Response, Cow<'static, str>) {
    let client_ip = client_ip(&state, &req);
    let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
    let is_post = req.method() == Method::POST;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let debug = state.settings.debug;
    let cors = state.edge.cors_origin.as_ref();
    let body = if is_post {
        match read_body(req.into_body(), state.edge.body_read_timeout).await {
            Ok(body) => body,
            Err(error) => {
                let error = error.to_ws_error();
                return (respond_error(request::format_from_query(&query), &error, debug, cors), outcome_of(&error));
            }
        }
    } else {
        Default::default()
    };
    let read = if body.len() > INLINE_PARSE_BYTES_MAX {
        let query = query.clone();
        tokio::task::spawn_blocking(move || request::read_request(&query, content_type.as_deref(), &body))
            .await
            .unwrap_or(Err(request::ReadError::BodyUnreadable))
    } else {
        request::read_request(&query, content_type.as_deref(), &body)
    };
    let ws = match read {
        Ok(ws) => ws,
        Err(error) => {
            let error = error.to_ws_error();
            return (respond_error(request::format_from_query(&query), &error, debug, cors), outcome_of(&error));
        }
    };
    *function = function_label(ws.function.as_deref());
    let format = ws.format;
    match dispatch(&state, ws, client_ip, request_id).await {
        Ok(body) => (respond(format, body, cors), Cow::Borrowed("ok")),
        Err(error) => (respond_error(format, &error, debug, cors), outcome_of(&error)),
    }
}

/// The metrics label of a requested function: its name when the table has it (a bounded set),
/// `unknown` for any other name, `none` without one.
fn function_label(name: Option<&str>) -> Cow<'static, str> {
    match name {
        None | Some("") => Cow::Borrowed("none"),
        Some(name) => Cow::Borrowed(functions::find(name).map_or("unknown", |f| f.name)),
    }
}

/// The outcome label of an error envelope: Moodle's error code, or the exception's class.
fn outcome_of(error: &WsError) -> Cow<'static, str> {
    match &error.errorcode {
        Some(code) => Cow::Owned(code.clone()),
        None => Cow::Borrowed(error.class),
    }
}

/// The client address for IP restrictions: the peer, or the forwarded address when the peer
/// is a trusted proxy (`client_addr`). The peer is present when served by `serve`; absent in
/// router tests without connect info.
fn client_ip(state: &AppState, req: &Request<Body>) -> Option<std::net::IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())?;
    let forwarded = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    Some(state.edge.trusted_proxies.client_ip(peer, forwarded))
}

/// Reads the whole body within the limit and the body read timeout, telling apart a body
/// over the limit, a body that could not be read (client abort, bad chunk) and a slow one.
async fn read_body(body: Body, timeout: std::time::Duration) -> Result<axum::body::Bytes, request::ReadError> {
    match tokio::time::timeout(timeout, to_bytes(body, REQUEST_BODY_BYTES_MAX)).await {
        Err(_) => Err(request::ReadError::BodyTimedOut),
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => {
            let over_limit =
                std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if over_limit {
                Err(request::ReadError::BodyOverLimit)
            } else {
                tracing::debug!(%error, "request body unreadable");
                Err(request::ReadError::BodyUnreadable)
            }
        }
    }
}

async fn dispatch(
    state: &AppState,
    ws: request::WsRequest,
    client_ip: Option<std::net::IpAddr>,
    request_id: String,
) -> Result<String, WsError> {
    let ledger = &state.ledger;
    let store_error = |e: crate::store::StoreError| {
        tracing::error!(%request_id, error = %e, "token check failed");
        WsError::new("dml_read_exception", "dmlreadexception", "Error reading from database")
    };
    let invalid_token = || WsError::new(MOODLE_EXCEPTION, "invalidtoken", "Invalid token - token not found");
    let token_text = ws.token.as_deref().unwrap_or("");
    if token_text.is_empty() {
        return Err(invalid_token());
    }
    let now = chrono::Utc::now().timestamp();
    let clock = std::time::Instant::now();
    let checked = state.tokens.check(&ledger.db, token_text, client_ip, now, clock).await.map_err(store_error)?;
    let token = match checked {
        Ok(token) => token,
        Err(TokenRefusal::Unknown | TokenRefusal::Throttled) => return Err(invalid_token()),
        Err(TokenRefusal::Expired) => {
            return Err(access_exception("Invalid token - token expired - check validuntil time for the token"))
        }
        Err(TokenRefusal::IpNotAllowed(ip)) => {
            return Err(access_exception(format!(
                "Invalid service - IP:{ip} is not supported - check this allowed user"
            )))
        }
    };
    // The token user's state, in Moodle's order (deleted, suspended, nologin).
    let refused = |code: &str, what: &str| {
        WsError::new(
            MOODLE_EXCEPTION,
            code,
            format!("Refused web service access for {what} username: {}", token.user.username),
        )
    };
    if token.user.deleted {
        return Err(refused("wsaccessuserdeleted", "deleted"));
    }
    if token.user.suspended {
        return Err(refused("wsaccessusersuspended", "suspended"));
    }
    if token.user.auth == "nologin" {
        return Err(refused("wsaccessusernologin", "nologin authentication"));
    }
    let name = ws.function.as_deref().unwrap_or("");
    if name.is_empty() || name == "0" {
        return Err(WsError::invalid_parameter("Missing function name"));
    }
    let Some(function) = functions::find(name) else {
        return Err(WsError::new(
            DML_MISSING_RECORD_EXCEPTION,
            "invalidrecord",
            "Can't find data record in database table external_functions.",
        )
        .with_debuginfo(format!(
            "SELECT * FROM {{external_functions}} WHERE name = ?\n[array (\n  0 => '{name}',\n)]"
        )));
    };
    if !services::allows(&token.service, function.name) {
        return Err(access_exception(format!(
            "Access to the function {}() is not allowed.\nThere could be multiple reasons for this:\n\
             1. The service linked to the user token does not contain the function.\n\
             2. The service is user-restricted and the user is not listed.\n\
             3. The service is IP-restricted and the user IP is not listed.\n\
             4. The service is time-restricted and the time has expired.\n\
             5. The token is time-restricted and the time has expired.\n\
             6. The service requires a specific capability which the user does not have.\n\
             7. The function is called with username/password (no user token is sent)\n\
             and one of the other reasons makes this function inaccessible.",
            function.name
        )));
    }
    let params = validate(function.params(), ws.params).map_err(WsError::invalid_parameter)?;
    let call = Call {
        ledger,
        tokens: &state.tokens,
        base_url: &state.settings.base_url,
        actor: Actor { user_id: Some(token.user_id), token_id: Some(token.id), request_id },
        service: &token.service,
    };
    let value = function.execute(&call, params).await?;
    Ok(match function.returns() {
        Some(desc) => {
            let cleaned = encode::clean_return(desc, &value).map_err(WsError::invalid_response)?;
            encode::success_body(ws.format, Some(desc), &cleaned)
        }
        None => encode::success_body(ws.format, None, &super::wire::params::Value::Null),
    })
}

fn access_exception(debuginfo: impl Into<String>) -> WsError {
    WsError::new(WEBSERVICE_ACCESS_EXCEPTION, "accessexception", "Access control exception").with_debuginfo(debuginfo)
}

fn respond(format: Format, body: String, cors_origin: Option<&HeaderValue>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    for (name, value) in encode::response_headers(format) {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name, value);
        }
    }
    if let Some(origin) = cors_origin {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// Moodle answers errors with HTTP 200 and the error document.
fn respond_error(format: Format, error: &WsError, debug: bool, cors_origin: Option<&HeaderValue>) -> Response {
    respond(format, encode::error_body(format, error, debug), cors_origin)
}
