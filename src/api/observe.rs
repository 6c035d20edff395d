//! Every HTTP request, as the operator sees it: a request id (also in the `X-Request-Id`
//! response header and in the actor of the events the request appends), one log line when it
//! is answered, and its function, outcome and duration in the metrics (`crate::metrics`).
//!
//! The log line has `request_id`, `method`, `path` (the path alone: the query string, which can
//! hold a `wstoken` or personal data, is never logged), `function`, `outcome`, `status` and
//! `duration_ms`. A request that ends before its answer (the whole-request timeout, a client
//! that went away) still gets its line, with outcome `aborted`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::metrics::Metrics;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id, in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What a web-service call was and how it ended; the REST handler puts it in the response's
/// extensions (its HTTP status is 200 whatever Moodle's outcome).
#[derive(Debug, Clone)]
pub struct WsCall {
    pub function: Cow<'static, str>,
    pub outcome: Cow<'static, str>,
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A new request id: unique within the process run (process id and a counter); log lines have
/// the time.
pub fn new_request_id() -> String {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{n}", std::process::id())
}

/// The request's line, written when it is answered or, if it never is, when it is dropped.
struct Line {
    metrics: std::sync::Arc<Metrics>,
    request_id: String,
    method: axum::http::Method,
    path: String,
    route: Cow<'static, str>,
    started: Instant,
    done: bool,
}

impl Line {
    fn finish(&mut self, function: Cow<'static, str>, outcome: Cow<'static, str>, status: u16) {
        self.done = true;
        let elapsed = self.started.elapsed();
        self.metrics.request(function.clone(), outcome.clone(), elapsed.as_secs_f64());
        tracing::info!(
            target: "enrol_ledger::request",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            function = %function,
            outcome = %outcome,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.done {
            let route = self.route.clone();
            self.finish(route, Cow::Borrowed("aborted"), 503);
        }
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`) around every route.
pub async fn track(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = new_request_id();
    let route: Cow<'static, str> = match req.extensions().get::<MatchedPath>() {
        Some(path) => Cow::Owned(path.as_str().to_owned()),
        None => Cow::Borrowed("unmatched"),
    };
    let mut line = Line {
        metrics: state.ledger.metrics.clone(),
        request_id: request_id.clone(),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        route,
        started: Instant::now(),
        done: false,
    };
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let mut response = next.run(req).await;
    let status = response.status().as_u16();
    let (function, outcome) = match response.extensions_mut().remove::<WsCall>() {
        Some(call) if status < 400 => (call.function, call.outcome),
        Some(call) => (call.function, Cow::Owned(format!("http_{status}"))),
        None if status < 400 => (line.route.clone(), Cow::Borrowed("ok")),
        None => (line.route.clone(), Cow::Owned(format!("http_{status}"))),
    };
    line.finish(function, outcome, status);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// `serve --log-format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event; ANSI colours only when stderr is a terminal (and
    /// `NO_COLOR` is unset).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the fields.
    Json,
}

/// Installs the process's log subscriber: stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
        }
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
    }
}
