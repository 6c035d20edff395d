//! Helpers for the fault tests (`faults.rs`): the real `enrol-ledger` binary as a child
//! process, a bounded raw-HTTP Moodle REST client, a seeded RNG, blank databases on either
//! backend, and a traffic model of SEMCO clients that remembers every acknowledged change so a
//! test can check, after any fault, that each one is present exactly once.

use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enrol_ledger::store::Backend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a healthy server may take to answer one call before the test calls it a hang.
pub const CALL_HANG_MS: u64 = 60_000;
/// How long a (re)started server may take to become ready.
pub const READY_WAIT_MS: u64 = 30_000;

/// `ENROL_LEDGER_LONG=1` selects the long modes of the fault tests (see docs/RELIABILITY.md).
pub fn long_mode() -> bool {
    std::env::var("ENROL_LEDGER_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The seed of a test's RNG: `ENROL_LEDGER_SEED` if set, else `default` (printed either way).
pub fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("ENROL_LEDGER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    eprintln!("{test}: seed {seed} (set ENROL_LEDGER_SEED to replay another)");
    seed
}

/// xorshift64*: tiny, deterministic, good enough to pick operations and timings.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Databases

/// A blank database the binary installs itself on first use: a SQLite file in a temporary
/// directory, or a fresh schema of the PostgreSQL test database, tagged with an
/// `application_name` so a test can find (and terminate) exactly this ledger's connections.
pub struct BlankDb {
    pub url: String,
    pub application_name: String,
    pub dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}{}_{}_{}", std::process::id(), nanos % 1_000_000_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl BlankDb {
    pub async fn new(backend: Backend) -> Self {
        let application_name = unique("faults_");
        let extra = format!("&application_name={application_name}");
        let (url, dir, schema) = crate::support::fresh_location(backend, &extra).await;
        Self { url, application_name, dir, schema }
    }
}

impl Drop for BlankDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            crate::support::drop_schema(base, schema);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary

pub fn binary(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"));
    command.env("DATABASE_URL", url).env("RUST_LOG", "warn").env("SIGNING_KEY", crate::support::signing_key_for(url));
    command
}

/// Runs a CLI subcommand to completion off the async workers.
pub async fn cli(url: &str, args: &[&str]) -> Output {
    let mut command = binary(url);
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run enrol-ledger")).await.unwrap()
}

pub async fn create_token(url: &str, service: &str) -> String {
    let output = cli(url, &["token", "create", "--service", service]).await;
    assert!(output.status.success(), "token create: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().last().unwrap().to_owned()
}

/// `enrol-ledger verify`: its exit code and stdout + stderr.
pub async fn verify(url: &str) -> (i32, String) {
    let output = cli(url, &["verify"]).await;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// `enrol-ledger export`, parsed line by line.
pub async fn export(url: &str) -> Vec<Value> {
    let output = cli(url, &["export"]).await;
    assert!(output.status.success(), "export: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).expect("export line")).collect()
}

/// A `serve` child process on its own port, its stderr kept in a file for diagnostics.
pub struct ServerProc {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl ServerProc {
    pub fn serve(url: &str) -> Self {
        let port = free_port();
        let mut command = binary(url);
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        Self::spawn(command, port)
    }

    /// Spawns `command`, which must make the binary listen on `port`.
    pub fn spawn(mut command: Command, port: u16) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("spawn enrol-ledger serve");
        Self { child, port, log }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits until `/readyz` answers 200. `Err` (with the server's stderr) when it exits first
    /// or is not ready within `bound`.
    pub async fn wait_ready(&mut self, bound: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Some(status) = self.exited() {
                return Err(format!("server exited with {status} before it was ready:\n{}", self.stderr()));
            }
            if let Ok(Ok((200, _))) = tokio::time::timeout(Duration::from_secs(2), get(self.port, "/readyz")).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("server not ready within {bound:?}:\n{}", self.stderr()))
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Why a call got no Moodle answer (shown through `Debug` in the failure lists).
#[derive(Debug)]
#[allow(dead_code)]
pub enum CallFailure {
    /// Connection refused, reset or closed early: the server is gone.
    Transport(String),
    /// No answer within the bound.
    Timeout(Duration),
    /// An HTTP status other than 200 (Moodle answers errors with 200 and an envelope).
    Status(u16, String),
    /// 200 but not JSON.
    NotJson(String),
}

fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

async fn exchange(port: u16, request: Vec<u8>) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    stream.write_all(&request).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP head in {response:?}"))?;
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

pub async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    exchange(port, format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()).await
}

/// One Moodle REST call (POST, JSON format), answered within `bound` or a failure.
pub async fn call(
    port: u16,
    token: &str,
    function: &str,
    params: &[(String, String)],
    bound: Duration,
) -> Result<Value, CallFailure> {
    let mut body = format!("wstoken={token}&wsfunction={function}&moodlewsrestformat=json");
    for (name, value) in params {
        body.push('&');
        body.push_str(&form_encode(name));
        body.push('=');
        body.push_str(&form_encode(value));
    }
    let request = format!(
        "POST /webservice/rest/server.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    match tokio::time::timeout(bound, exchange(port, request.into_bytes())).await {
        Err(_) => Err(CallFailure::Timeout(bound)),
        Ok(Err(error)) => Err(CallFailure::Transport(error)),
        Ok(Ok((200, body))) => serde_json::from_str(&body).map_err(|_| CallFailure::NotJson(body)),
        Ok(Ok((status, body))) => Err(CallFailure::Status(status, body)),
    }
}

/// Moodle's error envelope: `exception`, `errorcode` and `message`, all strings.
pub fn is_envelope(answer: &Value) -> bool {
    ["exception", "errorcode", "message"].iter().all(|k| answer.get(k).is_some_and(Value::is_string))
}

pub fn params(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// A call that must succeed (not an envelope) on a healthy server.
pub async fn call_ok(port: u16, token: &str, function: &str, params: &[(String, String)]) -> Value {
    let answer = call(port, token, function, params, Duration::from_millis(CALL_HANG_MS))
        .await
        .unwrap_or_else(|f| panic!("{function}: {f:?}"));
    assert!(!is_envelope(&answer), "{function} {params:?}: {answer}");
    answer
}

// ---------------------------------------------------------------------------------------------
// The SEMCO traffic model

/// One course and `clients` users, created over HTTP; returns (course id, user ids).
pub async fn seed_course_and_users(port: u16, token: &str, clients: usize) -> (i64, Vec<i64>) {
    let course = call_ok(
        port,
        token,
        "core_course_create_courses",
        &params(&[
            ("courses[0][fullname]", "Fault course".into()),
            ("courses[0][shortname]", "FAULT1".into()),
            ("courses[0][categoryid]", "1".into()),
        ]),
    )
    .await;
    let course_id = course[0]["id"].as_i64().unwrap();
    let mut user_params = Vec::new();
    for i in 0..clients {
        let prefix = format!("users[{i}]");
        user_params.push((format!("{prefix}[username]"), format!("client{i}")));
        user_params.push((format!("{prefix}[firstname]"), "Client".into()));
        user_params.push((format!("{prefix}[lastname]"), format!("Number {i}")));
        user_params.push((format!("{prefix}[email]"), format!("client{i}@example.org")));
        user_params.push((format!("{prefix}[createpassword]"), "1".into()));
    }
    let users = call_ok(port, token, "core_user_create_users", &user_params).await;
    let user_ids = users.as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect();
    (course_id, user_ids)
}

/// What the ledger should hold for one booking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolment {
    pub enrolid: i64,
    pub timestart: i64,
    pub timeend: i64,
    pub suspend: bool,
}

/// A change that was sent but not acknowledged (the server died, or answered an error):
/// either outcome is allowed, the next reconciliation adopts what the ledger holds.
#[derive(Clone, Debug)]
pub enum Pending {
    Enrol { timestart: i64, timeend: i64 },
    Edit { timeend: i64, suspend: bool },
    Unenrol,
}

#[derive(Clone, Debug)]
pub struct Booking {
    pub id: String,
    /// `None`: not enrolled (never, or unenrolled).
    pub state: Option<Enrolment>,
    pub pending: Option<Pending>,
    /// Acknowledged (or reconciled) changes, to compare with the log: enrols, edits, unenrols.
    pub enrols: u32,
    pub edits: u32,
    pub unenrols: u32,
}

/// One client: a user, its bookings, and the next free period slot (periods never overlap).
#[derive(Clone, Debug)]
pub struct Client {
    pub index: usize,
    pub user_id: i64,
    pub next_slot: i64,
    pub bookings: Vec<Booking>,
}

/// What a run of one client saw.
#[derive(Default, Debug)]
pub struct Tally {
    pub acknowledged: u64,
    pub errors: u64,
    pub slowest: Duration,
    /// Answers that are neither a result nor an envelope, timeouts, and (when the server must
    /// keep answering) transport failures.
    pub failures: Vec<String>,
}

pub struct Traffic {
    pub port: u16,
    pub token: String,
    pub course_id: i64,
    pub prefix: String,
    /// Per call bound; a call slower than this is a failure.
    pub bound: Duration,
    /// Crash loop: a transport failure means the server was killed, the client stops. Outage
    /// tests: the server must keep answering, so a transport failure is a failure.
    pub stop_on_transport_failure: bool,
}

fn slot_period(slot: i64) -> (i64, i64) {
    let start = 1_700_000_000 + slot * 1000;
    (start, start + 500)
}

impl Traffic {
    /// Runs `client` until `stop` is set (or, in crash mode, the server dies).
    pub async fn run(self: Arc<Self>, mut client: Client, seed: u64, stop: Arc<AtomicBool>) -> (Client, Tally) {
        let mut rng = Rng::new(seed);
        let mut tally = Tally::default();
        while !stop.load(Ordering::Relaxed) {
            let live: Vec<usize> = (0..client.bookings.len())
                .rev()
                .take(8)
                .filter(|&i| client.bookings[i].state.is_some() && client.bookings[i].pending.is_none())
                .collect();
            let (index, pending, function, call_params) = if !live.is_empty() && rng.chance(55) {
                let index = *rng.pick(&live);
                let booking = &client.bookings[index];
                let state = booking.state.clone().unwrap();
                if rng.chance(30) {
                    let p = params(&[("enrolid", state.enrolid.to_string())]);
                    (index, Pending::Unenrol, "enrol_semco_unenrol_user", p)
                } else {
                    // Always a real change: another end within the slot, and a flipped suspend.
                    let timeend = if state.timeend == state.timestart + 500 {
                        state.timestart + 600
                    } else {
                        state.timestart + 500
                    };
                    let suspend = !state.suspend;
                    let p = params(&[
                        ("enrolid", state.enrolid.to_string()),
                        ("timeend", timeend.to_string()),
                        ("suspend", u8::from(suspend).to_string()),
                    ]);
                    (index, Pending::Edit { timeend, suspend }, "enrol_semco_edit_enrolment", p)
                }
            } else {
                let (timestart, timeend) = slot_period(client.next_slot);
                let id = format!("{}-c{}-s{}", self.prefix, client.index, client.next_slot);
                client.next_slot += 1;
                client.bookings.push(Booking {
                    id: id.clone(),
                    state: None,
                    pending: None,
                    enrols: 0,
                    edits: 0,
                    unenrols: 0,
                });
                let p = params(&[
                    ("userid", client.user_id.to_string()),
                    ("courseid", self.course_id.to_string()),
                    ("semcobookingid", id),
                    ("timestart", timestart.to_string()),
                    ("timeend", timeend.to_string()),
                    ("suspend", "0".into()),
                ]);
                (client.bookings.len() - 1, Pending::Enrol { timestart, timeend }, "enrol_semco_enrol_user", p)
            };
            let started = Instant::now();
            let answer = call(self.port, &self.token, function, &call_params, self.bound).await;
            tally.slowest = tally.slowest.max(started.elapsed());
            let booking = &mut client.bookings[index];
            match answer {
                Ok(value) if !is_envelope(&value) => {
                    tally.acknowledged += 1;
                    apply(booking, &pending, &value).unwrap_or_else(|e| tally.failures.push(e));
                }
                Ok(_envelope) => {
                    tally.errors += 1;
                    booking.pending = Some(pending);
                }
                Err(CallFailure::Transport(error)) => {
                    booking.pending = Some(pending);
                    if self.stop_on_transport_failure {
                        break;
                    }
                    tally.failures.push(format!("{function}: transport failure {error}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(failure) => {
                    booking.pending = Some(pending);
                    tally.failures.push(format!("{function} after {:?}: {failure:?}", started.elapsed()));
                }
            }
        }
        (client, tally)
    }
}

fn apply(booking: &mut Booking, change: &Pending, answer: &Value) -> Result<(), String> {
    match change {
        Pending::Enrol { timestart, timeend } => {
            let enrolid =
                answer["enrolid"].as_i64().ok_or_else(|| format!("enrol answer without enrolid: {answer}"))?;
            booking.state = Some(Enrolment { enrolid, timestart: *timestart, timeend: *timeend, suspend: false });
            booking.enrols += 1;
        }
        Pending::Edit { timeend, suspend } => {
            let state = booking.state.as_mut().unwrap();
            state.timeend = *timeend;
            state.suspend = *suspend;
            booking.edits += 1;
        }
        Pending::Unenrol => {
            booking.state = None;
            booking.unenrols += 1;
        }
    }
    Ok(())
}

/// Reads the course's SEMCO enrolments and the log, and checks every client's bookings:
/// each acknowledged change is present exactly once, nothing unacknowledged and unknown is
/// there, pending changes resolve to one outcome (adopted). Returns the problems found.
pub async fn reconcile(port: u16, token: &str, url: &str, course_id: i64, clients: &mut [Client]) -> Vec<String> {
    let mut problems = Vec::new();
    let rows =
        call_ok(port, token, "enrol_semco_get_enrolments", &params(&[("courseid", course_id.to_string())])).await;
    let mut by_booking: HashMap<String, Vec<Enrolment>> = HashMap::new();
    for row in rows.as_array().unwrap() {
        by_booking.entry(row["semcobookingid"].as_str().unwrap().to_owned()).or_default().push(Enrolment {
            enrolid: row["enrolid"].as_i64().unwrap(),
            timestart: row["timestart"].as_i64().unwrap(),
            timeend: row["timeend"].as_i64().unwrap(),
            suspend: row["suspend"].as_bool().unwrap(),
        });
    }
    // The log: per booking, its enrolment streams' events by type.
    let log = export(url).await;
    let mut stream_of_booking: HashMap<String, Vec<String>> = HashMap::new();
    let mut events_of_stream: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for event in &log {
        if event["stream_type"] != "enrolment" {
            continue;
        }
        let stream = event["stream_id"].as_str().unwrap().to_owned();
        let event_type = event["event_type"].as_str().unwrap().to_owned();
        if event_type == "Enrolled" {
            let booking = event["payload"]["booking_id"].as_str().unwrap_or_default().to_owned();
            stream_of_booking.entry(booking).or_default().push(stream.clone());
        }
        *events_of_stream.entry(stream).or_default().entry(event_type).or_default() += 1;
    }
    let mut known = std::collections::HashSet::new();
    for client in clients.iter_mut() {
        for booking in &mut client.bookings {
            known.insert(booking.id.clone());
            let rows = by_booking.get(&booking.id).cloned().unwrap_or_default();
            if rows.len() > 1 {
                problems.push(format!("booking {} is present {} times: {rows:?}", booking.id, rows.len()));
                continue;
            }
            let actual = rows.into_iter().next();
            let before = booking.state.clone();
            match booking.pending.take() {
                None => {
                    if actual != before {
                        problems
                            .push(format!("booking {}: expected {before:?}, the ledger has {actual:?}", booking.id));
                    }
                }
                Some(pending) => {
                    let after = match &pending {
                        Pending::Enrol { timestart, timeend } => actual.as_ref().map(|a| Enrolment {
                            enrolid: a.enrolid,
                            timestart: *timestart,
                            timeend: *timeend,
                            suspend: false,
                        }),
                        Pending::Edit { timeend, suspend } => {
                            before.clone().map(|b| Enrolment { timeend: *timeend, suspend: *suspend, ..b })
                        }
                        Pending::Unenrol => None,
                    };
                    if actual == before {
                    } else if actual == after {
                        booking.state = actual.clone();
                        match pending {
                            Pending::Enrol { .. } => booking.enrols += 1,
                            Pending::Edit { .. } => booking.edits += 1,
                            Pending::Unenrol => booking.unenrols += 1,
                        }
                    } else {
                        problems.push(format!(
                            "booking {} after {pending:?}: neither {before:?} nor {after:?}, the ledger has {actual:?}",
                            booking.id
                        ));
                    }
                }
            }
            // The log agrees: one stream per enrolled booking with exactly the changes made.
            let streams = stream_of_booking.get(&booking.id).cloned().unwrap_or_default();
            if streams.len() != booking.enrols as usize {
                problems.push(format!(
                    "booking {}: {} Enrolled events, {} acknowledged",
                    booking.id,
                    streams.len(),
                    booking.enrols
                ));
                continue;
            }
            if let Some(stream) = streams.first() {
                let counts = &events_of_stream[stream];
                let count = |t: &str| counts.get(t).copied().unwrap_or(0);
                if count("EnrolmentEdited") != booking.edits || count("Unenrolled") != booking.unenrols {
                    problems.push(format!(
                        "booking {}: log has {counts:?}, acknowledged {} edits and {} unenrols",
                        booking.id, booking.edits, booking.unenrols
                    ));
                }
            }
        }
    }
    for booking in by_booking.keys() {
        if !known.contains(booking) {
            problems.push(format!("booking {booking} is in the ledger but no client sent it"));
        }
    }
    problems
}

/// Runs `clients` concurrently until `stop`; returns them with the merged tally.
pub async fn drive(
    traffic: &Arc<Traffic>,
    clients: Vec<Client>,
    rng: &mut Rng,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Client, Tally)>> {
    clients.into_iter().map(|c| tokio::spawn(traffic.clone().run(c, rng.next_u64(), stop.clone()))).collect()
}

pub async fn join(handles: Vec<tokio::task::JoinHandle<(Client, Tally)>>) -> (Vec<Client>, Tally) {
    let mut clients = Vec::new();
    let mut total = Tally::default();
    for handle in handles {
        let (client, tally) = handle.await.unwrap();
        clients.push(client);
        total.acknowledged += tally.acknowledged;
        total.errors += tally.errors;
        total.slowest = total.slowest.max(tally.slowest);
        total.failures.extend(tally.failures);
    }
    clients.sort_by_key(|c| c.index);
    (clients, total)
}

pub fn new_clients(user_ids: &[i64]) -> Vec<Client> {
    user_ids
        .iter()
        .enumerate()
        .map(|(index, &user_id)| Client { index, user_id, next_slot: 0, bookings: Vec::new() })
        .collect()
}
