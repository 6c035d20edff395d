//! The HTTP/1.1 server loop: accept, limit, time out, shut down gracefully.
//!
//! `axum::serve` has no timeouts and no connection limit, so a few hundred idle or slow
//! connections used to starve every legitimate caller. This loop serves the router through
//! hyper's HTTP/1 connection builder with:
//!
//! - a **header read timeout** (a request head must arrive whole within it: slowloris, an
//!   HTTP/0.9 line), a **header size and count limit** (431 past them);
//! - an **idle timeout**: a connection with no request in progress is closed after it;
//! - a **body read timeout** (applied by the REST handler, `EdgeSettings::body_read_timeout`)
//!   and a **whole-request timeout** around the handler (503 past it);
//! - a **connection limit**: at the limit a new connection evicts the connection that has been
//!   idle longest (no request in progress: a slowloris, an idle keep-alive); only when every
//!   connection is busy is the newcomer refused with a 503 and closed. The limit is never
//!   higher than the process's file-descriptor limit allows.
//!
//! Every value is a named constant below, overridable with a `serve` flag (docs/SECURITY.md).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// A request head (request line and headers) must arrive within this.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// A request body must arrive within this once its head has been read.
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// A connection with no request in progress is closed after this.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// The whole request, from its head to the response, including the body and the writer's
/// `SUBMIT_TIMEOUT_MS`; past it the answer is 503.
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Connections served at once (at most; see [`effective_connections_max`]).
pub const CONNECTIONS_MAX: usize = 1024;
/// File descriptors kept for everything but client connections (database pool, SQLite
/// files and lock, listener, logs).
pub const DESCRIPTORS_RESERVED: usize = 64;
/// Request head size limit: the request line and all headers together (hyper's read buffer;
/// 431 past it).
pub const HEADER_BYTES_MAX: usize = 64 * 1024;
/// Headers per request (431 past it).
pub const HEADERS_MAX: usize = 100;
/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE_MS: u64 = REQUEST_TIMEOUT_MS;

/// The server's limits, from the `serve` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub connections_max: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
            connections_max: CONNECTIONS_MAX,
        }
    }
}

/// The `serve` flags of the HTTP edge (flattened into `serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// A request head must arrive within this many milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = BODY_READ_TIMEOUT_MS)]
    pub body_read_timeout_ms: u64,
    /// A connection with no request in progress is closed after this many milliseconds.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// A whole request must be answered within this many milliseconds (else 503).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    /// Connections served at once; lowered to fit the file-descriptor limit.
    #[arg(long, env = "CONNECTIONS_MAX", default_value_t = CONNECTIONS_MAX)]
    pub connections_max: usize,
    /// The one origin allowed to read responses from a browser (Access-Control-Allow-Origin);
    /// none by default.
    #[arg(long, env = "CORS_ORIGIN")]
    pub cors_origin: Option<String>,
    /// Comma-separated addresses and CIDR ranges of reverse proxies whose X-Forwarded-For is
    /// believed for token IP restrictions; none by default.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Bearer token that /metrics requires (from any address) instead of the address check.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Without --metrics-token: the comma-separated addresses and CIDR ranges that may read
    /// /metrics directly (never through a proxy).
    #[arg(long, env = "METRICS_ALLOW", default_value = super::metrics::METRICS_ALLOW_DEFAULT)]
    pub metrics_allow: String,
}

impl EdgeArgs {
    /// The server limits and the handlers' edge settings.
    ///
    /// # Errors
    /// A `--cors-origin` that is no header value, or a `--trusted-proxies` entry that is no
    /// address or CIDR range.
    pub fn settings(&self) -> Result<(ServerLimits, super::EdgeSettings), String> {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connections_max: self.connections_max.max(1),
        };
        let cors_origin = match &self.cors_origin {
            None => None,
            Some(origin) => Some(
                axum::http::HeaderValue::from_str(origin)
                    .map_err(|_| format!("--cors-origin {origin:?}: not a header value"))?,
            ),
        };
        let trusted_proxies = super::client_addr::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|entry| format!("--trusted-proxies: {entry:?} is no IP address or CIDR range"))?;
        let metrics_access = match self.metrics_token.as_deref().map(str::trim) {
            Some("") => return Err("--metrics-token is empty".into()),
            Some(token) => super::metrics::MetricsAccess::Token(token.to_owned()),
            None => super::metrics::MetricsAccess::Addresses(
                super::client_addr::TrustedProxies::parse(&self.metrics_allow)
                    .map_err(|entry| format!("--metrics-allow: {entry:?} is no IP address or CIDR range"))?,
            ),
        };
        let edge = super::EdgeSettings {
            cors_origin,
            trusted_proxies,
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            metrics_access,
        };
        Ok((limits, edge))
    }
}

/// The connection limit in force: `wanted`, lowered so that connections plus
/// [`DESCRIPTORS_RESERVED`] fit the soft file-descriptor limit.
pub fn effective_connections_max(wanted: usize) -> usize {
    match descriptors_max() {
        Some(descriptors) => wanted.min(descriptors.saturating_sub(DESCRIPTORS_RESERVED).max(1)),
        None => wanted,
    }
}

#[cfg(unix)]
fn descriptors_max() -> Option<usize> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (status == 0).then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn descriptors_max() -> Option<usize> {
    None
}

/// One served connection, as the limiter sees it.
struct Connection {
    /// Requests in progress on it.
    busy: AtomicUsize,
    /// When it last became idle, in ms since the server started.
    idle_since_ms: AtomicU64,
    /// Closes it (eviction or idle timeout).
    close: tokio::sync::Notify,
}

/// The live connections, for eviction at the limit.
struct Connections {
    started: Instant,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Registers a new connection if there is room, evicting the longest-idle one at the limit.
    fn admit(&self, limit: usize) -> Option<(u64, Arc<Connection>)> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.len() >= limit {
            let idlest = live
                .iter()
                .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.idle_since_ms.load(Ordering::Acquire))
                .map(|(id, _)| *id)?;
            if let Some(evicted) = live.remove(&idlest) {
                evicted.close.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: tokio::sync::Notify::new(),
        });
        live.insert(id, connection.clone());
        Some((id, connection))
    }

    fn remove(&self, id: u64) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// Marks a connection busy while a request is in progress.
struct Busy<'a> {
    connection: &'a Connection,
    connections: &'a Connections,
}

impl<'a> Busy<'a> {
    fn new(connection: &'a Connection, connections: &'a Connections) -> Self {
        connection.busy.fetch_add(1, Ordering::AcqRel);
        Self { connection, connections }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.connection.idle_since_ms.store(self.connections.now_ms(), Ordering::Release);
        self.connection.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer to a connection over the limit when every connection is busy.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\
Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (at most [`SHUTDOWN_GRACE_MS`]) and returns.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let connections_max = effective_connections_max(limits.connections_max);
    if connections_max < limits.connections_max {
        tracing::warn!(
            connections_max,
            wanted = limits.connections_max,
            "connection limit lowered to fit the file-descriptor limit"
        );
    }
    let connections =
        Arc::new(Connections { started: Instant::now(), next_id: AtomicU64::new(0), live: Mutex::default() });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(HEADER_BYTES_MAX)
        .max_headers(HEADERS_MAX);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: wait for a descriptor instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some((id, connection)) = connections.admit(connections_max) else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let task = ConnectionTask {
            router: router.clone(),
            limits,
            builder: builder.clone(),
            connections: connections.clone(),
            stop: stop_rx.clone(),
        };
        tokio::spawn(task.serve(stream, peer, id, connection));
    }
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while connections.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(REFUSAL).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

struct ConnectionTask {
    router: Router,
    limits: ServerLimits,
    builder: Arc<hyper::server::conn::http1::Builder>,
    connections: Arc<Connections>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl ConnectionTask {
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr, id: u64, connection: Arc<Connection>) {
        let service = {
            let (router, connections, connection) = (self.router.clone(), self.connections.clone(), connection.clone());
            let request_timeout = self.limits.request_timeout;
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let (router, connections, connection) = (router.clone(), connections.clone(), connection.clone());
                async move {
                    let _busy = Busy::new(&connection, &connections);
                    let mut request = request.map(Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let response = match tokio::time::timeout(request_timeout, router.oneshot(request)).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => timed_out(),
                    };
                    Ok::<Response<Body>, Infallible>(response)
                }
            })
        };
        let served = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(served);
        let idle_timeout = self.limits.idle_timeout;
        let check_every = (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut stopping = *self.stop.borrow();
        if stopping {
            served.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended");
                    }
                    break;
                }
                () = connection.close.notified() => break,
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        served.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep(check_every) => {
                    let idle_ms = self.connections.now_ms().saturating_sub(connection.idle_since_ms.load(Ordering::Acquire));
                    if connection.busy.load(Ordering::Acquire) == 0 && Duration::from_millis(idle_ms) >= idle_timeout {
                        break;
                    }
                }
            }
        }
        self.connections.remove(id);
    }
}

fn timed_out() -> Response<Body> {
    let mut response = Response::new(Body::from("request timed out\n"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections() -> Connections {
        Connections { started: Instant::now(), next_id: AtomicU64::new(0), live: Mutex::default() }
    }

    #[test]
    fn given_room_when_a_connection_arrives_then_it_is_admitted() {
        let live = connections();
        assert!(live.admit(2).is_some());
        assert!(live.admit(2).is_some());
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn given_the_limit_when_a_connection_arrives_then_the_longest_idle_one_is_closed() {
        let live = connections();
        let (first, oldest) = live.admit(2).unwrap();
        let (_, newer) = live.admit(2).unwrap();
        oldest.idle_since_ms.store(1, Ordering::Release);
        newer.idle_since_ms.store(5, Ordering::Release);
        assert!(live.admit(2).is_some());
        assert_eq!(live.len(), 2);
        assert!(!live.live.lock().unwrap().contains_key(&first), "the longest-idle connection made room");
    }

    #[test]
    fn given_the_limit_and_every_connection_busy_when_one_arrives_then_it_is_refused() {
        let live = connections();
        let (_, a) = live.admit(1).unwrap();
        let _busy = Busy::new(&a, &live);
        assert!(live.admit(1).is_none());
        drop(_busy);
        assert!(live.admit(1).is_some(), "idle again once its request ended");
    }

    #[test]
    fn the_connection_limit_fits_the_descriptor_limit() {
        let limit = effective_connections_max(usize::MAX);
        assert!(limit >= 1);
        if let Some(descriptors) = descriptors_max() {
            assert!(limit + DESCRIPTORS_RESERVED <= descriptors.max(DESCRIPTORS_RESERVED + 1));
        }
        assert_eq!(effective_connections_max(1), 1);
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
