//! `/metrics`: the ledger's metrics (`crate::metrics`) in the OpenMetrics text format, and who
//! may read them (docs/OPERATIONS.md, "Metrics").
//!
//! Without `--metrics-token` only peers in `--metrics-allow` (default: loopback) may scrape,
//! judged by the TCP peer address alone, and a request relayed by a proxy (`X-Forwarded-For`,
//! `Forwarded`) is refused, so a reverse proxy on the same host does not publish the metrics.
//! With `--metrics-token`, a request with `Authorization: Bearer <token>` may scrape from
//! anywhere and every other one is refused.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::client_addr::TrustedProxies;
use super::AppState;
use crate::app::writer::WriterStatus;

pub const PATH: &str = "/metrics";

/// Default `--metrics-allow`: loopback only.
pub const METRICS_ALLOW_DEFAULT: &str = "127.0.0.0/8,::1";

/// Who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Peers in these ranges, not through a proxy.
    Addresses(TrustedProxies),
    /// Anyone presenting this bearer token.
    Token(String),
}

impl Default for MetricsAccess {
    fn default() -> Self {
        Self::Addresses(TrustedProxies::parse(METRICS_ALLOW_DEFAULT).unwrap_or_default())
    }
}

impl MetricsAccess {
    /// Whether a request from `peer` (none in router tests without connect info) with these
    /// headers may read the metrics.
    pub fn allows(&self, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
        match self {
            Self::Token(token) => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))),
            Self::Addresses(ranges) => {
                let relayed = headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED);
                !relayed && peer.is_some_and(|ip| ranges.trusts(ip))
            }
        }
    }
}

pub async fn handle(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    if !state.edge.metrics_access.allows(peer, req.headers()) {
        return (StatusCode::FORBIDDEN, "metrics are not open to this client (docs/OPERATIONS.md, \"Metrics\")\n")
            .into_response();
    }
    let metrics = &state.ledger.metrics;
    let health = state.ledger.health();
    metrics.queue_depth.set(i64::try_from(health.queue_depth).unwrap_or(i64::MAX));
    metrics.writer_running.set(i64::from(health.status == WriterStatus::Running));
    let database_up = match read_database(&state).await {
        Ok(()) => 1,
        Err(error) => {
            tracing::warn!(%error, "metrics: database values not read");
            0
        }
    };
    metrics.database_up.set(database_up);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], metrics.encode()).into_response()
}

/// The values that live in the database: tokens per service, the last verification.
async fn read_database(state: &AppState) -> Result<(), crate::store::StoreError> {
    use sqlx::Row;
    let metrics = &state.ledger.metrics;
    let rows = sqlx::query("SELECT service, COUNT(*) AS n FROM external_tokens GROUP BY service")
        .fetch_all(&state.ledger.db.pool)
        .await?;
    let mut counts = std::collections::HashMap::new();
    for row in rows {
        counts.insert(row.try_get::<String, _>("service")?, row.try_get::<i64, _>("n")?);
    }
    for service in super::services::ALL {
        let labels = crate::metrics::ServiceLabel { service };
        metrics.tokens.get_or_create(&labels).set(counts.get(service).copied().unwrap_or(0));
    }
    match last_verification(&state.ledger.db).await? {
        Some(LastVerification { passed, finished_unix }) => {
            metrics.last_verification_success.set(i64::from(passed));
            metrics.last_verification_time.set(finished_unix);
        }
        None => {
            metrics.last_verification_success.set(-1);
            metrics.last_verification_time.set(0.0);
        }
    }
    Ok(())
}

/// The last recorded `verify` run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastVerification {
    pub passed: bool,
    /// When it ended, Unix seconds.
    pub finished_unix: f64,
}

/// The newest run in the record of `verify` runs (`app::verification`, migration 14).
pub async fn last_verification(db: &crate::store::Db) -> Result<Option<LastVerification>, crate::store::StoreError> {
    let last = crate::app::verification::last_verification(db).await?;
    Ok(last.map(|run| LastVerification { passed: run.ok, finished_unix: run.time_us as f64 / 1_000_000.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn given_the_default_when_a_loopback_peer_scrapes_then_it_may_and_others_may_not() {
        let access = MetricsAccess::default();
        assert!(access.allows(Some("127.0.0.1".parse().unwrap()), &HeaderMap::new()));
        assert!(access.allows(Some("::1".parse().unwrap()), &HeaderMap::new()));
        assert!(!access.allows(Some("203.0.113.9".parse().unwrap()), &HeaderMap::new()));
        assert!(!access.allows(None, &HeaderMap::new()));
    }

    #[test]
    fn given_the_default_when_a_local_proxy_relays_a_scrape_then_it_is_refused() {
        let access = MetricsAccess::default();
        let relayed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert!(!access.allows(Some("127.0.0.1".parse().unwrap()), &relayed));
        assert!(!access.allows(Some("127.0.0.1".parse().unwrap()), &headers(&[("forwarded", "for=203.0.113.9")])));
    }

    #[test]
    fn given_a_token_when_a_scrape_presents_it_then_it_may_from_anywhere_and_without_it_not_even_locally() {
        let access = MetricsAccess::Token("s3cret".into());
        let peer = Some("203.0.113.9".parse().unwrap());
        assert!(access.allows(peer, &headers(&[("authorization", "Bearer s3cret")])));
        assert!(!access.allows(peer, &headers(&[("authorization", "Bearer s3cre")])));
        assert!(!access.allows(Some("127.0.0.1".parse().unwrap()), &HeaderMap::new()));
    }
}
