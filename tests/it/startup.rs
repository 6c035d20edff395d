//! Start-up that cannot half-happen (issue 6, defect 2 and the impossible-event half of
//! defect 6): the real binary is SIGKILLed during the projection rebuild and during the very
//! first start, then started again; an impossible event in the log makes `serve` exit with its
//! position instead of panicking, and `verify` lists it and carries on.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use enrol_ledger::app::Ledger;
use enrol_ledger::domain::event::{EnrolmentEvent, UnenrolReason, SCHEMA_VERSION};
use enrol_ledger::domain::ids::{CourseId, InstanceId, UserEnrolmentId, UserId};
use enrol_ledger::domain::LedgerEvent;
use enrol_ledger::store::log::{self, StoredEvent, StreamRef};
use enrol_ledger::store::{Backend, Db};

use crate::on_both_backends;
use crate::support::*;

/// The line `serve` logs when it starts folding the log into new projection tables.
const REBUILD_MARKER: &str = "rebuilding from the log";
/// The line `serve` logs once the rebuilt projections committed.
const REBUILT_MARKER: &str = "projections rebuilt";
/// The installer's first line on stderr.
const INSTALL_MARKER: &str = "enrol_semco install:";
/// The line `serve` logs once it accepts requests.
const LISTENING_MARKER: &str = "enrol-ledger listening";
/// How long a start-up may take before the test gives up on it.
const START_WAIT_MS: u64 = 60_000;

fn binary(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"));
    command.env("DATABASE_URL", url).env("RUST_LOG", "info").env("NO_COLOR", "1");
    command
}

fn run(url: &str, args: &[&str]) -> Output {
    binary(url).args(args).output().expect("run enrol-ledger")
}

/// When to SIGKILL a starting server.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// As soon as stderr shows this text.
    Seen(&'static str),
    /// This long after the spawn.
    After(Duration),
}

/// A `serve` process whose stderr is read line by line on a thread of its own.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    fn start(url: &str) -> Self {
        let mut child = binary(url)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn enrol-ledger serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits until a line contains `text`; false when the process ended (or timed out) first.
    fn wait_for(&mut self, text: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_millis(START_WAIT_MS);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    fn kill_at(mut self, moment: Moment) {
        match moment {
            Moment::Seen(text) => {
                self.wait_for(text);
            }
            Moment::After(delay) => std::thread::sleep(delay),
        }
        self.kill();
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `serve` normally, waits until it listens, and stops it.
fn start_normally(url: &str) {
    let mut serve = Serve::start(url);
    assert!(serve.wait_for(LISTENING_MARKER), "serve did not start:\n{}", serve.stderr());
    serve.kill();
}

fn assert_verify_ok(url: &str, context: &str) {
    let verify = run(url, &["verify"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{context}: verify failed\n{stdout}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.expect(sql)
}

const USERS: usize = 60;
const COURSES: usize = 40;

/// USERS × COURSES enrolments, submitted concurrently so they group-commit.
async fn fill(ledger: &Ledger) -> i64 {
    let mut users = Vec::new();
    for u in 0..USERS {
        users.push(create_user(ledger, &format!("user{u}")).await);
    }
    let mut courses = Vec::new();
    for c in 0..COURSES {
        courses.push(create_course(ledger, &format!("C{c}"), false).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for user in &users {
        for course in &courses {
            let (ledger, user, course) = (ledger.clone(), *user, *course);
            tasks.spawn(async move { enrol(&ledger, user, course, &format!("B-{user}-{course}"), 0, 0).await });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("enrol task");
    }
    (USERS * COURSES) as i64
}

async fn defect_2_kill_during_projection_rebuild_empties_projections(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let enrolments = fill(&ledger).await;
    ledger.shutdown().await;
    let moments = [
        Moment::Seen(REBUILD_MARKER),
        Moment::After(Duration::ZERO),
        Moment::After(Duration::from_millis(20)),
        Moment::After(Duration::from_millis(60)),
        Moment::After(Duration::from_millis(150)),
        Moment::Seen(REBUILD_MARKER),
        Moment::After(Duration::from_millis(400)),
        Moment::Seen(REBUILT_MARKER),
        Moment::After(Duration::from_millis(800)),
    ];
    for moment in moments {
        // An older projection definition: the next start must drop, create and rebuild.
        sqlx::query("UPDATE projection_meta SET version = 0").execute(&test.db.pool).await.unwrap();
        let url = test.url.clone();
        tokio::task::spawn_blocking(move || {
            Serve::start(&url).kill_at(moment);
        })
        .await
        .unwrap();
        let url = test.url.clone();
        tokio::task::spawn_blocking(move || {
            start_normally(&url);
            assert_verify_ok(&url, &format!("after a kill at {moment:?}"));
        })
        .await
        .unwrap();
        assert_eq!(
            count(&test.db, "SELECT COUNT(*) FROM user_enrolments").await,
            enrolments,
            "after a kill at {moment:?}"
        );
        assert_eq!(count(&test.db, "SELECT COUNT(*) FROM enrol").await, enrolments, "after a kill at {moment:?}");
    }
}

async fn kill_during_first_start_leaves_a_complete_install(backend: Backend) {
    let moments = [
        Moment::Seen(REBUILD_MARKER),
        Moment::Seen(INSTALL_MARKER),
        Moment::After(Duration::ZERO),
        Moment::After(Duration::from_millis(10)),
        Moment::After(Duration::from_millis(30)),
        Moment::After(Duration::from_millis(80)),
        Moment::After(Duration::from_millis(200)),
        Moment::Seen(REBUILD_MARKER),
        Moment::Seen(REBUILT_MARKER),
    ];
    for moment in moments {
        let test = TestDb::unopened(backend).await;
        let url = test.url.clone();
        tokio::task::spawn_blocking(move || {
            Serve::start(&url).kill_at(moment);
            start_normally(&url);
            assert_verify_ok(&url, &format!("after a kill at {moment:?}"));
        })
        .await
        .unwrap();
        let setting_names = enrol_ledger::domain::config::SETTING_NAMES.len() as i64;
        assert_eq!(count(&test.db, "SELECT COUNT(*) FROM ledger_config").await, setting_names, "{moment:?}");
        assert_eq!(
            count(&test.db, "SELECT COUNT(*) FROM install_steps WHERE name = 'semco_token'").await,
            1,
            "{moment:?}"
        );
        assert_eq!(
            count(&test.db, "SELECT COUNT(*) FROM external_tokens WHERE service = 'enrol_semco'").await,
            1,
            "exactly one installer token after a kill at {moment:?}"
        );
        assert_eq!(
            count(&test.db, "SELECT COUNT(*) FROM role").await,
            9,
            "the installer's roles after a kill at {moment:?}"
        );
    }
}

/// Appends a hand-made enrolment event to the log with a correct chain hash, so only its
/// meaning is wrong. Returns its stored row.
async fn append_raw(db: &Db, position: i64, prev_hash: &str, instance: i64, event: EnrolmentEvent) -> StoredEvent {
    let event = LedgerEvent::Enrolment(event);
    let stream = StreamRef::new("enrolment", instance.to_string());
    let mut stored = StoredEvent {
        position,
        stream_id: stream.uuid().to_string(),
        stream_type: stream.stream_type.to_owned(),
        stream_key: stream.key.clone(),
        stream_version: 1,
        event_type: event.event_type().to_owned(),
        schema_version: i64::from(SCHEMA_VERSION),
        recorded_at: Db::now_micros(),
        actor_user_id: None,
        actor_token_id: None,
        request_id: "test-impossible".into(),
        booking_id: None,
        payload: serde_json::to_string(&event).unwrap(),
        hash: String::new(),
    };
    stored.hash = stored.chain_hash(prev_hash);
    let mut conn = db.pool.acquire().await.unwrap();
    log::append(&mut conn, std::slice::from_ref(&stored)).await.expect("INSERT into the log works");
    stored
}

async fn impossible_event_makes_serve_exit_with_its_position(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let user = create_user(&ledger, "ann").await;
    enrol(&ledger, user, course, "B-1", 0, 0).await;
    ledger.shutdown().await;
    let (head, head_hash) = log::head(&test.db).await.unwrap();
    // The installer's steps, the course, the user and the enrolment come first.
    let (p2, p3, p5) = (head + 1, head + 2, head + 4);
    // An unenrolment of an instance that was never enrolled, then an instance removal of one
    // that was never orphaned, then (after a gap) one more unenrolment from nowhere.
    let unenrolled = |ue: i64| EnrolmentEvent::Unenrolled {
        user_enrolment_id: UserEnrolmentId(ue),
        user_id: UserId(user),
        course_id: CourseId(course),
        reason: UnenrolReason::Semco,
    };
    let second = append_raw(&test.db, p2, &head_hash, 999, unenrolled(999)).await;
    let deleted = EnrolmentEvent::InstanceDeleted {
        instance_id: InstanceId(998),
        course_id: CourseId(course),
        reason: UnenrolReason::OrphanCleanup,
    };
    let third = append_raw(&test.db, p3, &second.hash, 998, deleted).await;
    append_raw(&test.db, p5, &third.hash, 997, unenrolled(997)).await;

    let url = test.url.clone();
    let (serve, verify, export) = tokio::task::spawn_blocking(move || {
        let serve = binary(&url).args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).output().unwrap();
        (serve, run(&url, &["verify"]), run(&url, &["export"]))
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "serve must refuse to start:\n{stderr}");
    assert_ne!(serve.status.code(), Some(101), "a panic is not an answer:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains(LISTENING_MARKER), "{stderr}");
    assert!(stderr.contains(&format!("position {p2}")), "names the position:\n{stderr}");
    assert!(stderr.contains("Unenrolled"), "names the event type:\n{stderr}");
    assert!(stderr.contains("docs/EVENTS.md"), "names the way out:\n{stderr}");
    assert!(stderr.contains("enrol-ledger export"), "says how to find the event:\n{stderr}");

    // The documented way to find it works.
    let export = String::from_utf8_lossy(&export.stdout);
    let needle = format!("\"position\":{p2},");
    let found: Vec<&str> = export.lines().filter(|line| line.contains(&needle)).collect();
    assert_eq!(found.len(), 1, "{export}");
    assert!(found[0].contains("\"event_type\":\"Unenrolled\""), "{}", found[0]);

    let out = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(2), "{out}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(out.contains(&format!("position {p2} (Unenrolled)")), "{out}");
    assert!(out.contains(&format!("position {p3} (InstanceDeleted)")), "verify carries on after the first:\n{out}");
    assert!(out.contains(&format!("position {p5} follows position {p3}")), "positions are still checked:\n{out}");
    assert!(out.contains(&format!("position {p5} (Unenrolled)")), "{out}");
    assert!(out.contains("hash chain intact"), "the chain state is reported:\n{out}");
    assert!(out.contains(&format!("{} events", head + 3)), "{out}");
}

on_both_backends!(
    defect_2_kill_during_projection_rebuild_empties_projections,
    kill_during_first_start_leaves_a_complete_install,
    impossible_event_makes_serve_exit_with_its_position,
);
