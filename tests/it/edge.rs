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
        .env("RUST_LOG", "warn")
        .env("SIGNING_KEY", crate::support::signing_key_for(&db.url));
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
        let answer =
            site_info().await.unwrap_or_else(|f| panic!("call {i} with {} idle connections: {f:?}", idle.len()));
        let took = start.elapsed();
        assert!(!fs::is_envelope(&answer), "{answer}");
        assert!(took < bound, "call {i}: {took:?} with {} idle connections; before: {baseline:?}", idle.len());
    }
    drop(idle);
}

// ---------------------------------------------------------------------------------------------
// Item 6: the smaller holes, through the real router (and the binary for body errors)

struct Edge {
    router: axum::Router,
    ledger: enrol_ledger::app::Ledger,
    test: TestDb,
}

impl Edge {
    async fn new(backend: Backend, edge: api::EdgeSettings) -> Self {
        let test = TestDb::new(backend).await;
        let ledger = test.ledger().await;
        let settings = api::Settings { base_url: "http://moodle.example".into(), debug: true };
        Self { router: api::router_with_edge(ledger.clone(), settings, edge), ledger, test }
    }

    async fn token(&self, service: &str, ip: &str) -> String {
        tokens::create(&self.test.db, service, services::service_user(service), 0, ip).await.unwrap()
    }

    /// POSTs a form body from `peer` with extra headers; returns the response headers and body.
    async fn post(
        &self,
        peer: Option<&str>,
        headers: &[(&str, &str)],
        body: String,
    ) -> (axum::http::HeaderMap, String) {
        let mut request = Request::post(PATH).header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::from(body)).unwrap();
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (headers, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

async fn why_6_cors_star_on_every_response(backend: Backend) {
    let closed = Edge::new(backend, api::EdgeSettings::default()).await;
    for format in ["json", "xml"] {
        let (headers, body) =
            closed.post(None, &[], format!("wstoken=x&wsfunction=y&moodlewsrestformat={format}")).await;
        assert!(body.contains("invalidtoken"), "{body}");
        assert!(headers.get("access-control-allow-origin").is_none(), "{format}: {headers:?}");
    }
    let origin = "https://semco.example";
    let edge = api::EdgeSettings { cors_origin: Some(origin.parse().unwrap()), ..api::EdgeSettings::default() };
    let open = Edge::new(backend, edge).await;
    let (headers, _) = open.post(None, &[], "wstoken=x&moodlewsrestformat=json".to_owned()).await;
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), origin);
    assert_eq!(headers.get("vary").unwrap(), "Origin");
}

/// Parses an XML document with a real parser; panics with the document if it is malformed.
fn parse_xml(document: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(document).unwrap_or_else(|e| panic!("not well-formed ({e}): {document:?}"))
}

async fn why_6_xml_not_well_formed_with_control_characters(backend: Backend) {
    let api = Edge::new(backend, api::EdgeSettings::default()).await;
    let ledger = api.ledger.clone();
    // Text Moodle's PARAM_TEXT lets through, with every C0 control XML 1.0 forbids.
    let hostile = "Kurs\u{1}\u{8}\u{b}\u{c}\u{e}\u{1f} a < b & c > d \"q\"";
    let course = enrol_ledger::registry::NewCourse {
        fullname: hostile.to_owned(),
        shortname: "CTRL".to_owned(),
        categoryid: 1,
        visible: true,
        ..Default::default()
    };
    let created = submit(&ledger, enrol_ledger::app::Request::CreateCourses(vec![course])).await;
    assert!(created.is_ok(), "{created:?}");
    let token = api.token(services::LEDGER_ADMIN, "").await;
    let (_, xml) = api
        .post(
            None,
            &[],
            format!("wstoken={token}&wsfunction=core_course_get_courses_by_field&field=shortname&value=CTRL"),
        )
        .await;
    let document = parse_xml(&xml);
    let texts: String = document.descendants().filter_map(|n| n.text()).collect();
    let expected = "Kurs\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd} a < b & c > d \"q\"";
    assert!(texts.contains(expected), "{texts:?} in {xml:?}");
    // The same characters, and U+FFFE / U+FFFF, in an error's debuginfo (the name is echoed).
    let (_, xml) = api.post(None, &[], format!("wstoken={token}&wsfunction=no%01such%0Bfun%EF%BF%BEction%1F")).await;
    let document = parse_xml(&xml);
    let debuginfo = document.descendants().find(|n| n.has_tag_name("DEBUGINFO")).and_then(|n| n.text()).unwrap();
    assert!(debuginfo.contains("no\u{fffd}such\u{fffd}fun\u{fffd}ction\u{fffd}"), "{debuginfo:?}");
    // JSON carries them escaped and stays valid.
    let (_, json) = api.post(None, &[], format!("wstoken={token}&wsfunction=core_course_get_courses_by_field&field=shortname&value=CTRL&moodlewsrestformat=json")).await;
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["courses"][0]["fullname"], hostile, "{json}");
}

async fn why_6_ip_restrictions_behind_a_proxy(backend: Backend) {
    let site_info =
        |token: &str| format!("wstoken={token}&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json");
    let refused = |body: &str| body.contains("accessexception") && body.contains("is not supported");
    let client = "203.0.113.7";
    // Behind a trusted proxy, the forwarded client address is what the restriction checks.
    let edge = api::EdgeSettings {
        trusted_proxies: api::client_addr::TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap(),
        ..api::EdgeSettings::default()
    };
    let api = Edge::new(backend, edge).await;
    let token = api.token(services::LEDGER_ADMIN, client).await;
    let (_, body) = api.post(Some("127.0.0.1:40000"), &[("x-forwarded-for", client)], site_info(&token)).await;
    assert!(!refused(&body) && body.contains("\"sitename\""), "forwarded by a trusted proxy: {body}");
    let (_, body) = api
        .post(Some("127.0.0.1:40000"), &[("x-forwarded-for", &format!("{client}, 10.1.2.3"))], site_info(&token))
        .await;
    assert!(!refused(&body), "through two trusted proxies: {body}");
    // A client cannot claim the allowed address: leftmost entries are its own words.
    let (_, body) = api
        .post(Some("127.0.0.1:40000"), &[("x-forwarded-for", &format!("{client}, 198.51.100.9"))], site_info(&token))
        .await;
    assert!(refused(&body) && body.contains("198.51.100.9"), "spoofed behind the proxy: {body}");
    // An untrusted peer's X-Forwarded-For is ignored.
    let (_, body) = api.post(Some("198.51.100.1:40000"), &[("x-forwarded-for", client)], site_info(&token)).await;
    assert!(refused(&body) && body.contains("198.51.100.1"), "untrusted peer: {body}");
    // Without trusted proxies the header means nothing.
    let plain = Edge::new(backend, api::EdgeSettings::default()).await;
    let token = plain.token(services::LEDGER_ADMIN, client).await;
    let (_, body) = plain.post(Some("127.0.0.1:40000"), &[("x-forwarded-for", client)], site_info(&token)).await;
    assert!(refused(&body), "no trusted proxies: {body}");
}

async fn why_6_body_errors_misreported(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let server = server(&db, &["--debug"]).await;
    let port = server.port;
    let head = |extra: &str| {
        format!("POST {PATH}?moodlewsrestformat=json HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}\r\n")
    };
    let debuginfo = |answer: &str| -> String {
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON envelope: {answer:?}"));
        assert_eq!(value["errorcode"], "invalidparameter", "{value}");
        value["debuginfo"].as_str().unwrap_or_default().to_owned()
    };
    let bound = Duration::from_secs(10);
    // A malformed chunk.
    let answer =
        raw(port, &head("Transfer-Encoding: chunked\r\n"), b"zz\r\nwstoken=x\r\n0\r\n\r\n", bound).await.unwrap();
    let info = debuginfo(&answer);
    assert!(info.contains("could not be read") && !info.contains("1048577"), "bad chunk: {info}");
    // The client stops sending half-way (a client abort seen by the server).
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(head("Content-Length: 1000\r\n").as_bytes()).await.unwrap();
        stream.write_all(b"wstoken=x&wsfunction=").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(bound, exchange).await.unwrap();
    let info = debuginfo(&answer);
    assert!(info.contains("could not be read") && !info.contains("1048577"), "aborted body: {info}");
    // A body over the limit says so, without inventing its size.
    let big = vec![b'a'; api::wire::request::REQUEST_BODY_BYTES_MAX + 10];
    let answer = raw(port, &head(&format!("Content-Length: {}\r\nConnection: close\r\n", big.len())), &big, bound)
        .await
        .unwrap();
    let info = debuginfo(&answer);
    assert!(info.contains("larger than the 1048576 bytes allowed"), "over the limit: {info}");
}

on_both_backends!(
    why_1_quadratic_multipart_burns_cpu,
    why_2_slowloris_connections_are_never_closed,
    why_2_idle_connections_starve_legit_calls,
    why_6_cors_star_on_every_response,
    why_6_xml_not_well_formed_with_control_characters,
    why_6_ip_restrictions_behind_a_proxy,
    why_6_body_errors_misreported,
);
