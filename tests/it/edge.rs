//! The HTTP edge on a hostile network (issue 9, items 1, 2 and 6): bounded work before
//! authentication, timeouts and connection limits through the real binary, and the smaller
//! holes (CORS, well-formed XML, trusted proxies, truthful body errors) through the real router.
//! The limits are listed in docs/SECURITY.md.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use enrol_ledger::api::{self, services, tokens};
use enrol_ledger::store::Backend;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::faults_support::{self as fs, BlankDb, ServerProc, READY_WAIT_MS};
use crate::on_both_backends;
use crate::support::*;

const PATH: &str = "/webservice/rest/server.php";

/// A server on a blank database, ready, with `args` added to `serve`.
async fn server(db: &BlankDb, args: &[&str]) -> ServerProc {
    let port = fs::free_port();
    let mut command = fs::binary(&db.url);
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).args(args);
    let mut server = ServerProc::spawn(command, port);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    server
}

/// Sends one raw request with `Connection: close` and reads the whole answer, within `bound`.
async fn raw(port: u16, head: &str, body: &[u8], bound: Duration) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        stream.write_all(body).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(bound, exchange).await.map_err(|_| format!("no answer within {bound:?}"))?
}

fn multipart_head(port: u16, boundary: &str, length: usize) -> String {
    format!(
        "POST {PATH}?moodlewsrestformat=json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// A well-formed multipart call with a bad token: a normal unauthenticated call.
fn normal_multipart() -> (String, Vec<u8>) {
    let body = b"--nb\r\nContent-Disposition: form-data; name=\"wstoken\"\r\n\r\nnope\r\n\
--nb\r\nContent-Disposition: form-data; name=\"wsfunction\"\r\n\r\ncore_webservice_get_site_info\r\n--nb--\r\n"
        .to_vec();
    ("nb".to_owned(), body)
}

/// Bodies that made the old boundary search quadratic: a long boundary of dashes over a
/// body of dashes (every position matches almost the whole delimiter), and the longest
/// allowed boundary over the same body.
fn quadratic_multipart(boundary_len: usize) -> (String, Vec<u8>) {
    let boundary = format!("{}x", "-".repeat(boundary_len - 1));
    (boundary, vec![b'-'; 1024 * 1024 - 16])
}

async fn timed(port: u16, (boundary, body): &(String, Vec<u8>)) -> (Duration, String) {
    let start = Instant::now();
    let answer = raw(port, &multipart_head(port, boundary, body.len()), body, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("multipart call: {e}"));
    (start.elapsed(), answer)
}

async fn why_1_quadratic_multipart_burns_cpu(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let server = server(&db, &[]).await;
    let port = server.port;
    let normal = normal_multipart();
    let mut baseline = Duration::ZERO;
    for _ in 0..5 {
        let (took, answer) = timed(port, &normal).await;
        assert!(answer.contains("invalidtoken"), "{answer}");
        baseline = baseline.max(took);
    }
    let bound = baseline * 20 + Duration::from_millis(200);
    for boundary_len in [20_000, 70] {
        let case = quadratic_multipart(boundary_len);
        let (took, answer) = timed(port, &case).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "boundary {boundary_len}: {answer:.300}");
        assert!(answer.contains("\"exception\""), "boundary {boundary_len}: a Moodle envelope: {answer:.300}");
        assert!(took < bound, "boundary {boundary_len}: {took:?}, a normal call {baseline:?}, bound {bound:?}");
    }
    // Two such requests in flight: /healthz still answers promptly.
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let case = quadratic_multipart(20_000);
            tokio::spawn(async move { timed(port, &case).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let start = Instant::now();
    let health = fs::get(port, "/healthz").await.unwrap();
    let took = start.elapsed();
    assert_eq!(health.0, 200);
    assert!(took < bound, "/healthz took {took:?} with two hostile requests in flight (bound {bound:?})");
    for handle in in_flight {
        handle.await.unwrap();
    }
}

/// Opens a connection that sends a request head one byte a second and never finishes it;
/// returns how long the server kept it open (`None`: still open after `bound`).
async fn slowloris(port: u16, opening: &'static [u8], bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    if stream.write_all(opening).await.is_err() {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 1024];
    while start.elapsed() < bound {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            // Closed (0 bytes) or reset, or an answer (a 408/400 followed by a close).
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}

async fn why_2_slowloris_connections_are_never_closed(backend: Backend) {
    const HEADER_TIMEOUT_MS: u64 = 2_000;
    let db = BlankDb::new(backend).await;
    let server = server(&db, &["--header-read-timeout-ms", &HEADER_TIMEOUT_MS.to_string()]).await;
    let port = server.port;
    let bound = Duration::from_millis(HEADER_TIMEOUT_MS * 3 + 2_000);
    let mut clients: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", bound)))
        .collect();
    // An HTTP/0.9 request line: never a complete HTTP/1.x head.
    clients.push(tokio::spawn(slowloris(port, b"GET /healthz\r\n", bound)));
    let mut held = Vec::new();
    let mut longest = Duration::ZERO;
    for (i, client) in clients.into_iter().enumerate() {
        match client.await.unwrap() {
            Some(took) => longest = longest.max(took),
            None => held.push(i),
        }
    }
    assert!(held.is_empty(), "{} connections still open after {bound:?}: {held:?}", held.len());
    assert!(longest < bound, "longest {longest:?}");
    assert_eq!(fs::get(port, "/healthz").await.unwrap().0, 200);
}

async fn why_2_idle_connections_starve_legit_calls(backend: Backend) {
    // 256 descriptors, like the report; the connection limit follows from it by default.
    let db = BlankDb::new(backend).await;
    let token = fs::create_token(&db.url, services::LEDGER_ADMIN).await;
    let port = fs::free_port();
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_enrol-ledger")])
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn");
    let mut server = ServerProc::spawn(command, port);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let site_info = || fs::call(port, &token, "core_webservice_get_site_info", &[], Duration::from_secs(30));
    let mut baseline = Duration::ZERO;
    for _ in 0..5 {
        let start = Instant::now();
        let answer = site_info().await.unwrap();
        assert!(!fs::is_envelope(&answer), "{answer}");
        baseline = baseline.max(start.elapsed());
    }
    let mut idle = Vec::new();
    for _ in 0..300 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bound = baseline * 20 + Duration::from_millis(500);
    for i in 0..10 {
        let start = Instant::now();
        let answer = site_info().await.unwrap_or_else(|f| panic!("call {i} with {} idle connections: {f:?}", idle.len()));
        let took = start.elapsed();
        assert!(!fs::is_envelope(&answer), "{answer}");
        assert!(took < bound, "call {i}: {took:?} with {} idle connections; before: {baseline:?}", idle.len());
    }
    drop(idle);
}

on_both_backends!(
    why_1_quadratic_multipart_burns_cpu,
    why_2_slowloris_connections_are_never_closed,
    why_2_idle_connections_starve_legit_calls,
);
