//! Operations (issue 11 item 8, docs/OPERATIONS.md): `/metrics`, the request log lines, the
//! graceful shutdown on SIGTERM, and the deployment files. The real binary on both backends.

use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use enrol_ledger::store::{log, Backend, Db};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::faults_support::{binary, create_token, export, free_port, BlankDb};
use crate::on_both_backends;

/// `enrol-ledger serve` on its own port with extra flags, stderr kept in a file.
struct Server {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Server {
    async fn start(url: &str, flags: &[&str]) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = binary(url);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()));
        let child = command.spawn().expect("spawn serve");
        let mut server = Self { child, port, log };
        let start = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("serve exited with {status}:\n{}", server.stderr());
            }
            let probe = async {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                stream.write_all(request.as_bytes()).await.ok()?;
                Some(read_answer(&mut stream).await.status)
            };
            if let Ok(Some(200)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return server;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "not ready:\n{}", server.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    async fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < bound, "serve did not exit within {bound:?}:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

async fn read_answer(stream: &mut tokio::net::TcpStream) -> Answer {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

async fn exchange(port: u16, request: String) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

async fn get(port: u16, target: &str, headers: &[(&str, &str)]) -> Answer {
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    exchange(port, format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n")).await
}

fn rest_post(body: &str) -> String {
    format!(
        "POST /webservice/rest/server.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn post(port: u16, body: &str) -> Answer {
    exchange(port, rest_post(body)).await
}

fn site_info_body(token: &str) -> String {
    format!("wstoken={token}&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json")
}

fn create_course_body(token: &str, shortname: &str) -> String {
    format!(
        "wstoken={token}&wsfunction=core_course_create_courses&moodlewsrestformat=json\
         &courses[0][fullname]=Ops+course&courses[0][shortname]={shortname}&courses[0][categoryid]=1"
    )
}

/// The samples of an exposition: `name{labels}` → value (labels as printed).
fn samples(exposition: &str) -> HashMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
            (key.to_owned(), value.parse().unwrap_or_else(|_| panic!("value in {line:?}")))
        })
        .collect()
}

async fn scrape(port: u16) -> HashMap<String, f64> {
    let answer = get(port, "/metrics", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.headers["content-type"].starts_with("application/openmetrics-text"), "{:?}", answer.headers);
    assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    samples(&answer.body)
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

fn requests(function: &str, outcome: &str) -> String {
    format!("enrol_ledger_requests_total{{function=\"{function}\",outcome=\"{outcome}\"}}")
}

async fn metrics_count_calls_by_function_and_outcome(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let server = Server::start(&db.url, &[]).await;
    let port = server.port;
    let before = scrape(port).await;
    let head_before = value(&before, "enrol_ledger_log_head_position");

    for _ in 0..3 {
        assert!(post(port, &site_info_body(&token)).await.body.contains("\"sitename\""));
    }
    for _ in 0..2 {
        assert!(post(port, &site_info_body("0123456789abcdef0123456789abcdef")).await.body.contains("invalidtoken"));
    }
    let unknown = format!("wstoken={token}&wsfunction=no_such_function_{}&moodlewsrestformat=json", port);
    assert!(post(port, &unknown).await.body.contains("invalidrecord"));
    for shortname in ["OPS1", "OPS2"] {
        assert!(post(port, &create_course_body(&token, shortname)).await.body.contains("\"shortname\""));
    }
    assert!(post(port, &create_course_body(&token, "OPS1")).await.body.contains("shortnametaken"));
    assert_eq!(get(port, "/no/such/page", &[]).await.status, 404);

    let after = scrape(port).await;
    let moved = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(moved(&requests("core_webservice_get_site_info", "ok")), 3.0);
    assert_eq!(moved(&requests("core_webservice_get_site_info", "invalidtoken")), 2.0);
    assert_eq!(moved(&requests("unknown", "invalidrecord")), 1.0, "unknown names share one label");
    assert_eq!(moved(&requests("core_course_create_courses", "ok")), 2.0);
    assert_eq!(moved(&requests("core_course_create_courses", "shortnametaken")), 1.0);
    assert_eq!(moved(&requests("unmatched", "http_404")), 1.0);
    assert_eq!(moved(&requests("/metrics", "ok")), 1.0, "the first scrape, counted once answered");
    let durations = "enrol_ledger_request_duration_seconds_count{function=\"core_webservice_get_site_info\"}";
    assert_eq!(moved(durations), 5.0);
    let slowest = "enrol_ledger_request_duration_seconds_bucket{le=\"+Inf\",function=\"core_course_create_courses\"}";
    assert_eq!(moved(slowest), 3.0);
    let fastest = "enrol_ledger_request_duration_seconds_bucket{le=\"0.001\",function=\"core_course_create_courses\"}";
    assert!(value(&after, fastest) <= value(&after, slowest));

    // The log grew by exactly what the writer says it appended, and the head gauge is the log's.
    let opened = Db::connect(&db.url).await.unwrap();
    let (head, _) = log::head(&opened).await.unwrap();
    opened.pool.close().await;
    assert_eq!(value(&after, "enrol_ledger_log_head_position"), head as f64);
    assert!(head as f64 > head_before, "the two courses appended events");
    assert_eq!(moved("enrol_ledger_events_appended_total"), head as f64 - head_before);
    assert!(moved("enrol_ledger_batch_requests_count") >= 1.0);
    assert!(moved("enrol_ledger_batch_requests_sum") >= 3.0, "three create calls reached the writer");
    assert_eq!(moved("enrol_ledger_batch_events_sum"), head as f64 - head_before);
    assert_eq!(value(&after, "enrol_ledger_writer_queue_depth"), 0.0);
    assert_eq!(value(&after, "enrol_ledger_writer_running"), 1.0);
    assert_eq!(value(&after, "enrol_ledger_projection_lag_events"), 0.0);
    assert_eq!(value(&after, "enrol_ledger_database_up"), 1.0);
    assert_eq!(value(&after, "enrol_ledger_tokens{service=\"ledger_admin\"}"), 1.0);
    assert_eq!(value(&after, "enrol_ledger_tokens{service=\"enrol_semco\"}"), 1.0, "the installer's token");
    assert_eq!(value(&after, "enrol_ledger_tokens{service=\"ledger_audit\"}"), 0.0);
    assert_eq!(value(&after, "enrol_ledger_last_verification_success"), -1.0, "no verify run recorded");
    assert_eq!(value(&after, "enrol_ledger_last_verification_timestamp_seconds"), 0.0);
    // A verify run beside the server is recorded (app::verification) and shows at the next scrape.
    let (code, out) = crate::faults_support::verify(&db.url).await;
    assert_eq!(code, 0, "{out}");
    let verified = scrape(port).await;
    assert_eq!(value(&verified, "enrol_ledger_last_verification_success"), 1.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let at = value(&verified, "enrol_ledger_last_verification_timestamp_seconds");
    assert!((now - 120.0..=now + 1.0).contains(&at), "verified at {at}, now {now}");
    let backend_name = enrol_ledger::metrics::backend_name(backend);
    let build =
        format!("enrol_ledger_build_info{{version=\"{}\",backend=\"{backend_name}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&after, &build), 1.0);
}

async fn metrics_are_refused_through_a_proxy_and_need_the_token_when_one_is_set(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let open = Server::start(&db.url, &[]).await;
    assert_eq!(get(open.port, "/metrics", &[]).await.status, 200, "loopback may scrape by default");
    let relayed = get(open.port, "/metrics", &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert_eq!(relayed.status, 403, "a local proxy does not publish the metrics");
    drop(open);
    let locked = Server::start(&db.url, &["--metrics-token", "scrape-secret"]).await;
    assert_eq!(get(locked.port, "/metrics", &[]).await.status, 403);
    assert_eq!(get(locked.port, "/metrics", &[("Authorization", "Bearer wrong")]).await.status, 403);
    let allowed = get(locked.port, "/metrics", &[("Authorization", "Bearer scrape-secret")]).await;
    assert_eq!(allowed.status, 200);
    assert!(allowed.body.contains("enrol_ledger_requests_total"), "{}", allowed.body);
    assert!(!locked.stderr().contains("scrape-secret"), "the metrics token is never logged");
}

async fn request_log_has_one_json_line_per_request_without_the_token(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = Server::start(&db.url, &["--log-format", "json", "--request-timeout-ms", "1500"]).await;
    let port = server.port;
    // A call whose body never arrives: the whole-request timeout answers 503, the line says aborted.
    let stalled = rest_post(&site_info_body(&token));
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(&stalled.as_bytes()[..stalled.len() - 5]).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.status, 503);
    let query_call = format!("/webservice/rest/server.php?{}", site_info_body(&token));
    let answers = vec![
        ("GET", get(port, &query_call, &[]).await),
        ("POST", post(port, &site_info_body(&token)).await),
        ("POST", post(port, &create_course_body(&token, "LOG1")).await),
        (
            "GET",
            get(port, "/webservice/rest/server.php?wstoken=notatoken&wsfunction=core_webservice_get_site_info", &[])
                .await,
        ),
        ("GET", get(port, "/healthz", &[]).await),
        ("GET", get(port, "/metrics", &[]).await),
        ("GET", get(port, "/no/such/page", &[]).await),
    ];
    let ids: Vec<String> = answers
        .iter()
        .map(|(_, answer)| answer.headers.get("x-request-id").cloned().expect("X-Request-Id on every answer"))
        .collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "request ids are unique: {ids:?}");
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(60)).await.success());

    let stderr = server.stderr();
    assert!(!stderr.contains(&token), "the token appears in the log:\n{stderr}");
    assert!(!stderr.contains("notatoken"), "a refused token appears in the log:\n{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escape codes in JSON logs");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}")))
        .collect();
    let request_lines: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    for line in &request_lines {
        let id = line["request_id"].as_str().expect("request_id");
        let known = ids.iter().any(|i| i == id) || line["path"] == "/readyz" || line["outcome"] == "aborted";
        assert!(known, "a request line of no request: {line}");
        for field in ["timestamp", "level", "method", "path", "function", "outcome"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
        assert!(line["status"].is_u64() && line["duration_ms"].is_f64(), "{line}");
        assert!(!line["path"].as_str().unwrap().contains('?'), "the query string is never logged: {line}");
    }
    let expected = [
        ("core_webservice_get_site_info", "ok", 200),
        ("core_webservice_get_site_info", "ok", 200),
        ("core_course_create_courses", "ok", 200),
        ("core_webservice_get_site_info", "invalidtoken", 200),
        ("/healthz", "ok", 200),
        ("/metrics", "ok", 200),
        ("unmatched", "http_404", 404),
    ];
    for ((id, (method, answer)), (function, outcome, status)) in ids.iter().zip(&answers).zip(expected) {
        let mine: Vec<&&Value> = request_lines.iter().filter(|l| l["request_id"] == id.as_str()).collect();
        assert_eq!(mine.len(), 1, "one line per request ({id}): {mine:?}");
        let line = mine[0];
        assert_eq!(answer.status, status);
        assert_eq!(
            (line["method"].as_str(), line["status"].as_u64()),
            (Some(*method), Some(u64::from(status))),
            "{line}"
        );
        assert_eq!((line["function"].as_str(), line["outcome"].as_str()), (Some(function), Some(outcome)), "{line}");
    }
    let aborted: Vec<&&Value> = request_lines.iter().filter(|l| l["outcome"] == "aborted").collect();
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert_eq!(aborted[0]["path"], "/webservice/rest/server.php");
    assert_eq!(aborted[0]["status"], 503);
    // The request id is the actor's of the events the call appended.
    let events = export(&db.url).await;
    let course_call = &ids[2];
    let appended: Vec<&Value> = events.iter().filter(|e| e.to_string().contains(course_call.as_str())).collect();
    assert!(!appended.is_empty(), "events of request {course_call} in the export");
}

async fn sigterm_lets_an_in_flight_request_finish(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = Server::start(&db.url, &[]).await;
    // A write whose body is still arriving when SIGTERM comes: in flight by any definition.
    let request = rest_post(&create_course_body(&token, "TERM1"));
    let split = request.len() - 10;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    stream.write_all(&request.as_bytes()[..split]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "serve waits for the request in flight");
    stream.write_all(&request.as_bytes()[split..]).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let courses: Value = serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("JSON: {}", answer.body));
    assert_eq!(courses[0]["shortname"], "TERM1", "the full answer: {courses}");
    let status = server.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{status}:\n{}", server.stderr());
    let stderr = server.stderr();
    assert!(!stderr.contains('\u{1b}'), "no colour codes in text logs off a terminal:\n{stderr}");
    let line = stderr.lines().find(|l| l.contains("function=core_course_create_courses")).expect("its log line");
    assert!(line.contains("outcome=ok") && line.contains("status=200"), "{line}");
    assert!(!stderr.contains(&token));
    // Acknowledged before the exit, so in the log.
    let events = export(&db.url).await;
    assert!(events.iter().any(|e| e.to_string().contains("TERM1")), "the course is in the log");
}

on_both_backends!(
    metrics_count_calls_by_function_and_outcome,
    metrics_are_refused_through_a_proxy_and_need_the_token_when_one_is_set,
    request_log_has_one_json_line_per_request_without_the_token,
    sigterm_lets_an_in_flight_request_finish,
);

// ---------------------------------------------------------------------------------------------
// The deployment files (no database: they name flags and paths, checked against the binary)

fn serve_help() -> String {
    let output =
        Command::new(env!("CARGO_BIN_EXE_enrol-ledger")).args(["serve", "--help"]).output().expect("serve --help");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Every `--flag` in `text` is one `serve --help` lists, and every `NAME=` setting is an
/// environment variable it reads.
fn assert_known_flags_and_env(what: &str, text: &str, env_names: &[String]) {
    let help = serve_help();
    for flag in text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[' || c == ']') {
        if let Some(name) =
            flag.strip_prefix("--").filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        {
            assert!(
                help.contains(&format!("--{name} ")) || help.contains(&format!("--{name}\n")),
                "{what}: --{name} is no serve flag"
            );
        }
    }
    for name in env_names {
        assert!(help.contains(&format!("[env: {name}=")), "{what}: {name} is no environment variable of serve");
    }
}

#[test]
fn the_systemd_unit_runs_serve_with_real_flags_and_passes_systemd_analyze() {
    let unit = repo_file("deploy/enrol-ledger.service");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/enrol-ledger"));
    assert_eq!(words.next(), Some("serve"));
    let env: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|kv| kv.split_once('=').expect("NAME=value").0.to_owned())
        .collect();
    assert!(env.iter().any(|n| n == "DATABASE_URL"));
    assert_known_flags_and_env("the unit", exec, &env);
    for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes", "StateDirectory=enrol-ledger"] {
        assert!(unit.lines().any(|l| l == hardening), "{hardening} in the unit");
    }
    // systemd-analyze checks every key and that ExecStart is executable: point it at this build.
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit's keys were not checked");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enrol-ledger.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/enrol-ledger", env!("CARGO_BIN_EXE_enrol-ledger"))).unwrap();
    let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let own: Vec<&str> = stderr.lines().filter(|l| l.contains("enrol-ledger.service")).collect();
    assert!(output.status.success() && own.is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn the_containerfile_builds_the_binary_and_runs_serve_as_a_non_root_user_with_a_volume() {
    let recipe = repo_file("deploy/Containerfile");
    let stages: Vec<&str> = recipe.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage: {stages:?}");
    assert!(stages.iter().all(|s| s.contains("bookworm")), "Debian bookworm on both: {stages:?}");
    assert!(recipe.contains("cargo build --release --locked --bin enrol-ledger"));
    assert!(recipe.contains("COPY --from=build /usr/local/bin/enrol-ledger /usr/local/bin/enrol-ledger"));
    let user = recipe.lines().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "runs as non-root: {user}");
    assert!(recipe.contains("VOLUME [\"/var/lib/enrol-ledger\"]"));
    // Everything the build copies exists, and the build needs nothing else of the repository.
    for line in recipe.lines().filter_map(|l| l.strip_prefix("COPY ")).filter(|l| !l.starts_with("--from")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
            assert!(path.exists(), "COPY {source}: no such file");
        }
    }
    let mut env_names = Vec::new();
    let mut in_env = false;
    for line in recipe.lines() {
        let line = line.trim();
        let rest = if let Some(rest) = line.strip_prefix("ENV ") {
            rest
        } else if in_env {
            line
        } else {
            continue;
        };
        if let Some((name, _)) = rest.split_once('=') {
            env_names.push(name.trim().to_owned());
        }
        in_env = rest.ends_with('\\');
    }
    assert!(env_names.iter().any(|n| n == "LISTEN"), "{env_names:?}");
    let entry = recipe.lines().find_map(|l| l.strip_prefix("ENTRYPOINT ")).expect("ENTRYPOINT");
    assert!(entry.contains("/usr/local/bin/enrol-ledger"));
    let cmd = recipe.lines().find_map(|l| l.strip_prefix("CMD ")).expect("CMD");
    assert!(cmd.contains("\"serve\""));
    assert_known_flags_and_env("the Containerfile", cmd, &env_names);
}

#[test]
fn operations_md_documents_every_serve_flag() {
    let doc = repo_file("docs/OPERATIONS.md");
    let help = serve_help();
    for word in help.split_whitespace() {
        let Some(flag) = word.strip_prefix("--").map(|f| f.trim_end_matches(',')) else { continue };
        if flag.is_empty() || flag == "help" || !flag.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            continue;
        }
        assert!(doc.contains(&format!("--{flag}")), "docs/OPERATIONS.md does not mention --{flag}");
    }
    for heading in
        ["## Deployment", "## Configuration", "## Backups and restore", "## Metrics", "## The audit workflow"]
    {
        assert!(doc.contains(heading), "{heading} in docs/OPERATIONS.md");
    }
}
