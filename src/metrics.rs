//! The process's metrics, exposed at `/metrics` (`api::metrics`) in the OpenMetrics text
//! format that Prometheus scrapes (docs/OPERATIONS.md, "Metrics", says what each one means).
//!
//! One [`Metrics`] per [`crate::app::Ledger`]: the writer records what it commits, the HTTP
//! layer (`api::observe`) what it answers. Recording is an atomic add (counters, gauges) or a
//! short uncontended lock inside `prometheus-client` (a histogram observation, a label lookup);
//! nothing on the hot path touches the database. The values that live elsewhere (writer queue
//! depth, tokens, last verification) are read when `/metrics` is scraped.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets in seconds: 1 ms … 10 s.
pub const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Requests per committed batch (the writer takes at most 256).
pub const BATCH_REQUEST_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Events per committed batch.
pub const BATCH_EVENT_BUCKETS: [f64; 12] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// A request's function and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The web-service function (only names of the function table, `unknown` for others,
    /// `none` when the request named none), or for any other path its route (`/readyz`,
    /// `/api/v1/events`, …; `unmatched` when no route matched).
    pub function: Cow<'static, str>,
    /// `ok`, Moodle's `errorcode` of the error envelope, or `http_<status>` for an HTTP
    /// status of 400 or more; `aborted` when the request ended before its answer (timeout,
    /// client gone).
    pub outcome: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FunctionLabel {
    pub function: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub backend: &'static str,
}

/// Every metric of one ledger, registered once.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<FunctionLabel, Histogram>,
    pub events_appended: Counter,
    pub batch_requests: Histogram,
    pub batch_events: Histogram,
    pub commit_duration: Histogram,
    pub log_head: Gauge,
    // Read at scrape time (`api::metrics`).
    pub queue_depth: Gauge,
    pub writer_running: Gauge,
    pub projection_lag: Gauge,
    pub tokens: Family<ServiceLabel, Gauge>,
    pub database_up: Gauge,
    pub last_verification_success: Gauge,
    pub last_verification_time: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(backend: crate::store::Backend) -> Self {
        let mut registry = Registry::with_prefix("enrol_ledger");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by web-service function (or route) and outcome",
            requests.clone(),
        );
        let request_duration =
            Family::<FunctionLabel, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its answer, by web-service function (or route)",
            Unit::Seconds,
            request_duration.clone(),
        );
        let events_appended = Counter::default();
        registry.register("events_appended", "Events committed to the log by this process", events_appended.clone());
        let batch_requests = Histogram::new(BATCH_REQUEST_BUCKETS);
        registry.register("batch_requests", "Requests per committed writer batch", batch_requests.clone());
        let batch_events = Histogram::new(BATCH_EVENT_BUCKETS);
        registry.register("batch_events", "Events per committed writer batch", batch_events.clone());
        let commit_duration = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "commit_duration",
            "Time the writer spends writing and committing one batch",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let log_head = Gauge::default();
        registry.register("log_head_position", "Position of the last committed event in the log", log_head.clone());
        let queue_depth = Gauge::default();
        registry.register("writer_queue_depth", "Requests waiting for the writer", queue_depth.clone());
        let writer_running = Gauge::default();
        registry.register(
            "writer_running",
            "1 while the writer can record changes, 0 while it recovers or after it stopped",
            writer_running.clone(),
        );
        let projection_lag = Gauge::default();
        registry.register(
            "projection_lag_events",
            "Events in the log not yet in the projections: always 0, the projections are written in the \
             events' transaction",
            projection_lag.clone(),
        );
        let tokens = Family::<ServiceLabel, Gauge>::default();
        registry.register("tokens", "Web-service tokens, by service", tokens.clone());
        let database_up = Gauge::default();
        registry.register("database_up", "1 when the last scrape's database queries succeeded", database_up.clone());
        let last_verification_success = Gauge::default();
        registry.register(
            "last_verification_success",
            "Result of the last recorded verify run: 1 passed, 0 failed, -1 none recorded",
            last_verification_success.clone(),
        );
        let last_verification_time = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_verification_timestamp",
            "When the last recorded verify run ended (Unix time; 0 when none is recorded)",
            Unit::Seconds,
            last_verification_time.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), backend: backend_name(backend) }).set(1);
        registry.register("build_info", "The running version and database backend (always 1)", build);
        Self {
            registry,
            requests,
            request_duration,
            events_appended,
            batch_requests,
            batch_events,
            commit_duration,
            log_head,
            queue_depth,
            writer_running,
            projection_lag,
            tokens,
            database_up,
            last_verification_success,
            last_verification_time,
        }
    }

    /// One answered request.
    pub fn request(&self, function: Cow<'static, str>, outcome: Cow<'static, str>, seconds: f64) {
        let labels = RequestLabels { function, outcome };
        self.requests.get_or_create(&labels).inc();
        self.request_duration.get_or_create(&FunctionLabel { function: labels.function }).observe(seconds);
    }

    /// One committed writer batch.
    pub fn batch_committed(&self, requests: usize, events: usize, seconds: f64, head: i64) {
        self.events_appended.inc_by(events as u64);
        self.batch_requests.observe(requests as f64);
        self.batch_events.observe(events as f64);
        self.commit_duration.observe(seconds);
        self.log_head.set(head);
    }

    /// The exposition of every metric (OpenMetrics text, ending in `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

pub fn backend_name(backend: crate::store::Backend) -> &'static str {
    match backend {
        crate::store::Backend::Sqlite => "sqlite",
        crate::store::Backend::Postgres => "postgres",
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_request_and_a_batch_when_encoded_then_the_counters_and_histograms_show_them() {
        let metrics = Metrics::new(crate::store::Backend::Sqlite);
        metrics.request("core_webservice_get_site_info".into(), "ok".into(), 0.003);
        metrics.request("core_webservice_get_site_info".into(), "invalidtoken".into(), 0.0005);
        metrics.batch_committed(3, 7, 0.002, 42);
        let text = metrics.encode();
        for line in [
            r#"enrol_ledger_requests_total{function="core_webservice_get_site_info",outcome="ok"} 1"#,
            r#"enrol_ledger_requests_total{function="core_webservice_get_site_info",outcome="invalidtoken"} 1"#,
            r#"enrol_ledger_request_duration_seconds_bucket{le="0.001",function="core_webservice_get_site_info"} 1"#,
            r#"enrol_ledger_request_duration_seconds_bucket{le="0.005",function="core_webservice_get_site_info"} 2"#,
            r#"enrol_ledger_request_duration_seconds_count{function="core_webservice_get_site_info"} 2"#,
            "enrol_ledger_events_appended_total 7",
            "enrol_ledger_batch_requests_count 1",
            "enrol_ledger_log_head_position 42",
            "enrol_ledger_projection_lag_events 0",
            r#"enrol_ledger_build_info{version=""#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
