//! HTTP: the only place that knows axum and Moodle's wire formats.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

pub mod audit_api;
pub mod audit_integrity;
pub mod client_addr;
pub mod errors;
pub mod functions;
pub mod health_api;
pub mod install;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod report_api;
pub mod rest;
pub mod server;
pub mod services;
pub mod throttle;
pub mod tokens;
pub mod wire;

use crate::app::Ledger;

/// Per-server settings the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_url: String,
    pub debug: bool,
}

/// The HTTP edge's settings the handlers need (`serve` flags, docs/SECURITY.md).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// `Access-Control-Allow-Origin` on REST responses; none unless configured.
    pub cors_origin: Option<axum::http::HeaderValue>,
    /// Peers whose `X-Forwarded-For` gives the client address for IP restrictions.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// A request body must arrive within this once its head has been read.
    pub body_read_timeout: std::time::Duration,
    /// Who may read `/metrics` (`--metrics-token`, `--metrics-allow`).
    pub metrics_access: metrics::MetricsAccess,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            cors_origin: None,
            trusted_proxies: client_addr::TrustedProxies::default(),
            body_read_timeout: std::time::Duration::from_millis(server::BODY_READ_TIMEOUT_MS),
            metrics_access: metrics::MetricsAccess::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub settings: Arc<Settings>,
    pub edge: Arc<EdgeSettings>,
    pub tokens: Arc<tokens::TokenCache>,
    /// The pages' in-memory state (sign-in throttle).
    pub web: Arc<crate::web::WebState>,
}

pub fn router(ledger: Ledger, settings: Settings) -> Router {
    router_with_edge(ledger, settings, EdgeSettings::default())
}

/// The router with explicit edge settings (CORS origin, trusted proxies, body timeout).
pub fn router_with_edge(ledger: Ledger, settings: Settings, edge: EdgeSettings) -> Router {
    let state = AppState {
        ledger,
        settings: Arc::new(settings),
        edge: Arc::new(edge),
        tokens: Arc::default(),
        web: Arc::default(),
    };
    Router::new()
        .route(rest::PATH, get(rest::handle).post(rest::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(metrics::PATH, get(metrics::handle))
        .merge(audit_api::routes())
        .merge(health_api::routes())
        .merge(crate::web::routes())
        // Last, so that it wraps every route above (a request id, a log line, the metrics).
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::track))
        .with_state(state)
}

/// Readiness: the writer's health (running, last commit, last error, queue depth) and a
/// database round trip. 503 with the reason when the writer cannot record changes or the
/// database does not answer; 200 "degraded" when unsafe durability was explicitly allowed.
async fn readyz(
    State(state): State<AppState>,
) -> (StatusCode, [(axum::http::header::HeaderName, &'static str); 1], String) {
    use crate::app::writer::WriterStatus;
    let writer = state.ledger.health();
    let database = sqlx::query("SELECT 1").execute(&state.ledger.db.pool).await;
    let reason = match (&writer.status, &database) {
        (WriterStatus::Failed(why) | WriterStatus::Recovering(why), _) => Some(format!("writer: {why}")),
        (WriterStatus::Stopped, _) => Some("writer: stopped".to_owned()),
        (WriterStatus::Running, Err(error)) => Some(format!("database unavailable: {error}")),
        (WriterStatus::Running, Ok(_)) => None,
    };
    let (code, status) = match (&reason, writer.unsafe_durability.is_empty()) {
        (Some(why), _) => {
            tracing::warn!(reason = %why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        (None, false) => (StatusCode::OK, "degraded"),
        (None, true) => (StatusCode::OK, "ready"),
    };
    let body = serde_json::json!({ "status": status, "reason": reason, "writer": writer });
    (code, [(axum::http::header::CONTENT_TYPE, "application/json")], format!("{body}\n"))
}

/// Serves until Ctrl-C or SIGTERM, then lets in-flight requests finish. The limits and
/// timeouts are `server`'s (docs/SECURITY.md).
pub async fn serve(
    ledger: Ledger,
    listen: &str,
    settings: Settings,
    (limits, edge): (server::ServerLimits, EdgeSettings),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, base_url = %settings.base_url, "enrol-ledger listening");
    server::run(listener, router_with_edge(ledger, settings, edge), limits, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
