//! `GET /api/v1/health`: the health check (`app::health`) as JSON, for a bearer token of
//! `ledger_audit` or `ledger_admin` (the audit API's `authorise`). Always 200 when the checks
//! ran (the body's `status` says ok / warning / error); the audit API's JSON errors otherwise.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::audit_api::{authorise, json, peer_ip, ApiError};
use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/health", get(health))
}

#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    description = "Every health check (the same as `enrol-ledger health --format json`): the SEMCO connection \
                   the ledger owns and the ledger's own state, each ok / warning / error with a one-line fix; \
                   `status` is the worst unmuted one. 200 whenever the checks ran.",
    responses(
        (status = 200, description = "Every check and the overall status", body = crate::app::health::HealthReport),
        (status = 401, description = "No or unknown token", body = super::audit_api::ApiErrorBody),
        (status = 403, description = "A token of another service", body = super::audit_api::ApiErrorBody),
        (status = 429, description = "Too many unknown tokens from this address", body = super::audit_api::ApiErrorBody),
        (status = 503, description = "The database did not answer", body = super::audit_api::ApiErrorBody),
    )
)]
pub async fn health(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let ip = peer_ip(&state, request.extensions(), request.headers());
    authorise(&state, request.headers(), ip).await?;
    let report =
        crate::app::health::report(&state.ledger.db, Some(state.ledger.health())).await.map_err(ApiError::store)?;
    let body = serde_json::to_value(&report).map_err(ApiError::store)?;
    Ok(json(StatusCode::OK, &body))
}
