//! Fault tests against the real binary over real HTTP: kill -9 under load, a PostgreSQL
//! outage, terminated connections, a read-only SQLite file, hostile parameters. Each checks
//! the ledger's promise (docs/RELIABILITY.md): every acknowledged change is present exactly
//! once, `verify` passes, the server starts and keeps answering with Moodle envelopes.
//!
//! Short modes by default; `ENROL_LEDGER_LONG=1` selects the long modes, `ENROL_LEDGER_SEED`
//! replays another seed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enrol_ledger::store::{Backend, Db};

use crate::faults_support::*;
use crate::on_both_backends;
use crate::private_cluster::PrivateCluster;

/// Clients of the crash loop, as in issue 6's measurement.
const CRASH_CLIENTS: usize = 32;
/// The bound on one call while PostgreSQL is down: the writer's named submit timeout plus
/// time for the HTTP round trip.
const OUTAGE_CALL_MS_MAX: u64 = enrol_ledger::app::writer::SUBMIT_TIMEOUT_MS + 5_000;
/// How long `serve` may take to refuse a database it cannot write (a permanent error, not
/// one to retry until the pool's acquire timeout).
const READ_ONLY_REFUSAL_MS_MAX: u64 = 20_000;
/// How long the same server process may take to write again once PostgreSQL is back.
const RECOVERY_MS_MAX: u64 = 30_000;

async fn assert_verify_ok(url: &str, context: &str) -> u64 {
    let (code, out) = verify(url).await;
    assert_eq!(code, 0, "{context}: verify failed:\n{out}");
    out.split("verify OK: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn assert_no_problems(problems: &[String], context: &str) {
    assert!(
        problems.is_empty(),
        "{context}: {} problem(s):\n{}",
        problems.len(),
        problems.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Crash loop

/// 32 clients enrol, edit and unenrol distinct bookings; the server is SIGKILLed at a random
/// moment, restarted, and every acknowledged change must be there exactly once (API and log),
/// `verify` must pass (hash chain, projections = a fresh fold).
async fn crash_loop_loses_no_acknowledged_change(backend: Backend) {
    let long = long_mode();
    let (cycles, run_ms_min, run_ms_spread) = if long { (20, 2_000, 4_000) } else { (3, 700, 900) };
    let mut rng = Rng::new(seed("crash_loop", 0x5EED_0001));
    let db = BlankDb::new(backend).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let (course_id, user_ids) = seed_course_and_users(server.port, &token, CRASH_CLIENTS).await;
    let mut clients = new_clients(&user_ids);
    let started = Instant::now();
    let (mut acknowledged, mut unanswered) = (0, 0);
    for cycle in 0..cycles {
        let traffic = Arc::new(Traffic {
            port: server.port,
            token: token.clone(),
            course_id,
            prefix: format!("K{cycle}"),
            bound: Duration::from_millis(CALL_HANG_MS),
            stop_on_transport_failure: true,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let handles = drive(&traffic, clients, &mut rng, &stop).await;
        tokio::time::sleep(Duration::from_millis(run_ms_min + rng.below(run_ms_spread))).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let (back, tally) = join(handles).await;
        clients = back;
        assert_no_problems(&tally.failures, &format!("cycle {cycle}: calls"));
        acknowledged += tally.acknowledged;
        unanswered += clients.iter().flat_map(|c| &c.bookings).filter(|b| b.pending.is_some()).count();

        server = ServerProc::serve(&db.url);
        server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        let problems = reconcile(server.port, &token, &db.url, course_id, &mut clients).await;
        assert_no_problems(&problems, &format!("{backend:?} cycle {cycle}"));
        assert_verify_ok(&db.url, &format!("cycle {cycle}")).await;
    }
    eprintln!(
        "crash_loop {backend:?}: {cycles} cycles, {acknowledged} acknowledged changes, lost 0, \
         {unanswered} unanswered (either outcome allowed), {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

on_both_backends!(crash_loop_loses_no_acknowledged_change);

// ---------------------------------------------------------------------------------------------
// 2. PostgreSQL outage on a private cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_traffic() {
    let Some(mut cluster) = PrivateCluster::start(&[]) else { return };
    let url = cluster.url();
    let token = create_token(&url, "ledger_admin").await;
    let mut server = ServerProc::serve(&url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let (course_id, user_ids) = seed_course_and_users(server.port, &token, 8).await;
    let mut rng = Rng::new(seed("postgres_outage_under_traffic", 0x5EED_0002));
    let traffic = Arc::new(Traffic {
        port: server.port,
        token: token.clone(),
        course_id,
        prefix: "OUT".into(),
        bound: Duration::from_millis(OUTAGE_CALL_MS_MAX),
        stop_on_transport_failure: false,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let handles = drive(&traffic, new_clients(&user_ids), &mut rng, &stop).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    tokio::task::block_in_place(|| cluster.stop_immediate());
    assert!(std::net::TcpStream::connect(("127.0.0.1", cluster.port())).is_err(), "PostgreSQL is still up");
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    tokio::task::block_in_place(|| cluster.start_again());

    // The same process writes again within the bound, without a restart.
    let back = Instant::now();
    let mut probe = 0;
    loop {
        probe += 1;
        let answer = call(
            server.port,
            &token,
            "core_course_create_courses",
            &params(&[
                ("courses[0][fullname]", "Probe".into()),
                ("courses[0][shortname]", format!("PROBE{probe}")),
                ("courses[0][categoryid]", "1".into()),
            ]),
            Duration::from_millis(OUTAGE_CALL_MS_MAX),
        )
        .await;
        if matches!(&answer, Ok(value) if !is_envelope(value)) {
            break;
        }
        assert!(server.exited().is_none(), "the server exited during the outage:\n{}", server.stderr());
        assert!(
            back.elapsed() < Duration::from_millis(RECOVERY_MS_MAX),
            "no successful write {RECOVERY_MS_MAX} ms after PostgreSQL came back; last answer {answer:?}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("postgres_outage_under_traffic: writing again {} ms after the restart", back.elapsed().as_millis());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut clients, tally) = join(handles).await;
    eprintln!(
        "postgres_outage_under_traffic: {} acknowledged, {} error envelopes, slowest call {:?}",
        tally.acknowledged, tally.errors, tally.slowest
    );
    assert_no_problems(&tally.failures, "calls during the outage (each must be a Moodle answer within the bound)");
    let problems = reconcile(server.port, &token, &url, course_id, &mut clients).await;
    assert_no_problems(&problems, "after the outage");
    assert_verify_ok(&url, "after the outage").await;
    assert_writer_lock_held(&url, &token, &mut server, course_id, user_ids[0]).await;
}

/// A second `serve` on the same ledger must refuse to start, or at least not write.
async fn assert_writer_lock_held(url: &str, token: &str, first: &mut ServerProc, course_id: i64, user_id: i64) {
    let mut second = ServerProc::serve(url);
    let started = Instant::now();
    let ready = second.wait_ready(Duration::from_millis(15_000)).await;
    if ready.is_ok() {
        let answer = call(
            second.port,
            token,
            "enrol_semco_enrol_user",
            &params(&[
                ("userid", user_id.to_string()),
                ("courseid", course_id.to_string()),
                ("semcobookingid", "SECOND-SERVER".into()),
                ("timestart", "1".into()),
                ("timeend", "2".into()),
            ]),
            Duration::from_millis(OUTAGE_CALL_MS_MAX),
        )
        .await;
        assert!(
            matches!(&answer, Ok(value) if is_envelope(value)),
            "a second server on the same ledger started and wrote: {answer:?}"
        );
    } else {
        let status = second.exited();
        assert!(
            status.is_some_and(|s| !s.success()),
            "the second server neither refused to start nor became ready within {:?}: {ready:?}",
            started.elapsed()
        );
    }
    assert!(first.exited().is_none(), "the first server died when a second one started:\n{}", first.stderr());
}

// ---------------------------------------------------------------------------------------------
// 3. pg_terminate_backend mid-batch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_mid_batch() {
    let db = BlankDb::new(Backend::Postgres).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let (course_id, user_ids) = seed_course_and_users(server.port, &token, 16).await;
    let mut rng = Rng::new(seed("pg_terminate_backend_mid_batch", 0x5EED_0003));
    let traffic = Arc::new(Traffic {
        port: server.port,
        token: token.clone(),
        course_id,
        prefix: "TERM".into(),
        bound: Duration::from_millis(OUTAGE_CALL_MS_MAX),
        stop_on_transport_failure: false,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let handles = drive(&traffic, new_clients(&user_ids), &mut rng, &stop).await;
    // The server's connections only (its application_name): other tests share the cluster.
    let admin = Db::connect(&postgres_base_url_for_admin()).await.unwrap();
    let mut terminated = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700 + rng.below(500))).await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = 'enrol_ledger' AND pid <> pg_backend_pid() AND datname = current_database() \
             AND application_name = $1",
        )
        .bind(db.application_name.clone())
        .fetch_all(&admin.pool)
        .await
        .unwrap();
        terminated += killed.len();
    }
    assert!(terminated > 0, "found no connection of the server to terminate");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut clients, tally) = join(handles).await;
    eprintln!(
        "pg_terminate_backend_mid_batch: {terminated} connections terminated; {} acknowledged, {} error envelopes",
        tally.acknowledged, tally.errors
    );
    assert_no_problems(&tally.failures, "calls while connections were terminated");
    assert!(server.exited().is_none(), "the server exited:\n{}", server.stderr());
    // The server keeps answering: a write succeeds now (a stale connection is retried).
    call_ok(
        server.port,
        &token,
        "core_course_create_courses",
        &params(&[
            ("courses[0][fullname]", "After".into()),
            ("courses[0][shortname]", "AFTER1".into()),
            ("courses[0][categoryid]", "1".into()),
        ]),
    )
    .await;
    let problems = reconcile(server.port, &token, &db.url, course_id, &mut clients).await;
    assert_no_problems(&problems, "after pg_terminate_backend");
    assert_verify_ok(&db.url, "after pg_terminate_backend").await;
}

fn postgres_base_url_for_admin() -> String {
    crate::support::postgres_base_url()
}

// ---------------------------------------------------------------------------------------------
// 4. Read-only SQLite file

/// Root ignores file modes, so the server runs as `nobody` on a root-owned, read-only file and
/// directory (as itself when the suite is not run as root). It must refuse to start with a
/// clear message within a bound, or answer every write with a Moodle error; never hang or
/// panic. Two states of the file: closed cleanly (no `-wal`/`-shm`), and left by a killed
/// server (its `-wal`/`-shm` still there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_sqlite_file() {
    for killed in [true, false] {
        read_only_sqlite_file_case(killed).await;
    }
}

async fn read_only_sqlite_file_case(killed: bool) {
    use std::os::unix::fs::PermissionsExt;
    let state = if killed { "left by a killed server" } else { "closed cleanly" };
    let db = BlankDb::new(Backend::Sqlite).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let dir = db.dir.as_ref().unwrap().path().to_owned();
    if killed {
        let mut server = ServerProc::serve(&db.url);
        server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
        server.kill9();
        assert!(dir.join("ledger.db-wal").exists(), "a killed server leaves its WAL file");
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::sqlite::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        assert!(!dir.join("ledger.db-wal").exists(), "the last connection's close removes the WAL file");
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let port = free_port();
    let binary_path = env!("CARGO_BIN_EXE_enrol-ledger");
    let mut command = if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "nobody", "--", binary_path]);
        c
    } else {
        std::process::Command::new(binary_path)
    };
    command
        .args(["--database-url", &db.url, "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn");
    let mut server = ServerProc::spawn(command, port);
    let ready = server.wait_ready(Duration::from_millis(READ_ONLY_REFUSAL_MS_MAX)).await;
    match ready {
        Err(_) if server.exited().is_some() => {
            let status = server.exited().unwrap();
            let stderr = server.stderr();
            assert!(!status.success(), "{state}: serve exited 0 on a read-only database:\n{stderr}");
            assert!(!stderr.contains("panicked"), "{state}: serve panicked on a read-only database:\n{stderr}");
            assert!(
                ["read-only", "readonly", "permission", "Permission"].iter().any(|w| stderr.contains(w)),
                "{state}: serve refused to start without saying the database is read-only:\n{stderr}"
            );
        }
        Err(error) => panic!("{state}: serve neither refused nor started on a read-only database: {error}"),
        Ok(()) => {
            for (function, call_params) in [
                (
                    "core_course_create_courses",
                    params(&[
                        ("courses[0][fullname]", "RO".into()),
                        ("courses[0][shortname]", "RO1".into()),
                        ("courses[0][categoryid]", "1".into()),
                    ]),
                ),
                (
                    "core_user_create_users",
                    params(&[
                        ("users[0][username]", "ro".into()),
                        ("users[0][firstname]", "R".into()),
                        ("users[0][lastname]", "O".into()),
                        ("users[0][email]", "ro@example.org".into()),
                        ("users[0][createpassword]", "1".into()),
                    ]),
                ),
            ] {
                let answer = call(port, &token, function, &call_params, Duration::from_millis(CALL_HANG_MS)).await;
                assert!(
                    matches!(&answer, Ok(value) if is_envelope(value)),
                    "{state}: {function} on a read-only database: {answer:?}\n{}",
                    server.stderr()
                );
            }
            assert!(server.exited().is_none(), "{state}: serve died:\n{}", server.stderr());
            assert!(!server.stderr().contains("panicked"), "{state}: {}", server.stderr());
        }
    }
    drop(server);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Hostile parameters at every write function

/// Every write function with its parameters and a valid value maker.
fn write_functions() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "enrol_semco_enrol_user",
            vec!["userid", "courseid", "semcobookingid", "timestart", "timeend", "suspend", "requirerecompletion"],
        ),
        ("enrol_semco_edit_enrolment", vec!["enrolid", "semcobookingid", "timestart", "timeend", "suspend"]),
        ("enrol_semco_unenrol_user", vec!["enrolid"]),
        ("enrol_semco_reset_course_completion", vec!["enrolid"]),
        (
            "ledger_record_course_completion",
            vec!["userid", "courseid", "timecompleted", "finalgrade", "grademin", "grademax", "gradepass"],
        ),
        ("ledger_set_course_recompletion", vec!["courseid", "recompletiontype"]),
        ("ledger_set_config", vec!["name", "value"]),
        ("ledger_cleanup_orphans", vec![]),
        (
            "core_user_create_users",
            vec![
                "users[0][username]",
                "users[0][firstname]",
                "users[0][lastname]",
                "users[0][email]",
                "users[0][auth]",
                "users[0][password]",
                "users[0][createpassword]",
                "users[0][idnumber]",
                "users[0][lang]",
                "users[0][customfields][0][type]",
                "users[0][customfields][0][value]",
            ],
        ),
        (
            "core_user_update_users",
            vec![
                "users[0][id]",
                "users[0][username]",
                "users[0][firstname]",
                "users[0][email]",
                "users[0][suspended]",
                "users[0][auth]",
                "users[0][lang]",
            ],
        ),
        ("core_user_delete_users", vec!["userids[0]"]),
        (
            "core_course_create_courses",
            vec![
                "courses[0][fullname]",
                "courses[0][shortname]",
                "courses[0][categoryid]",
                "courses[0][idnumber]",
                "courses[0][summary]",
                "courses[0][enablecompletion]",
                "courses[0][visible]",
            ],
        ),
        (
            "core_course_update_courses",
            vec![
                "courses[0][id]",
                "courses[0][fullname]",
                "courses[0][shortname]",
                "courses[0][visible]",
                "courses[0][enablecompletion]",
                "courses[0][startdate]",
                "courses[0][enddate]",
            ],
        ),
    ]
}

fn valid_value(rng: &mut Rng, name: &str, case: u64) -> String {
    let field = name.rsplit('[').next().unwrap().trim_end_matches(']');
    match field {
        "userid" | "id" | "0" if name.starts_with("users") || name.starts_with("userid") => {
            (4 + rng.below(6)).to_string()
        }
        "courseid" | "id" => (2 + rng.below(3)).to_string(),
        "enrolid" => (1 + rng.below(12)).to_string(),
        "semcobookingid" => format!("P-{case}"),
        "timestart" | "startdate" => (1_700_000_000 + rng.below(1000) as i64 * 10_000).to_string(),
        "timeend" | "enddate" => (1_800_000_000 + rng.below(1000) as i64 * 10_000).to_string(),
        "timecompleted" => (1_700_000_000 + rng.below(1_000_000)).to_string(),
        "suspend" | "requirerecompletion" | "suspended" | "createpassword" | "enablecompletion" | "visible" => {
            rng.below(2).to_string()
        }
        "finalgrade" | "grademin" | "grademax" | "gradepass" => format!("{}.{}", rng.below(101), rng.below(100)),
        "recompletiontype" => rng.pick(&["", "period", "ondemand", "schedule"]).to_string(),
        "name" => rng.pick(&["semco_enabled", "overlap_rule", "nope"]).to_string(),
        "value" => rng.pick(&["0", "1", "strict"]).to_string(),
        "username" => format!("prop{case}"),
        "email" => format!("prop{case}@example.org"),
        "auth" => rng.pick(&["manual", "nologin", "ldap"]).to_string(),
        "password" => "Passw0rd!x".into(),
        "lang" => rng.pick(&["en", "de"]).to_string(),
        "type" => "semco_userid".into(),
        "shortname" => format!("PS{case}"),
        "categoryid" => "1".into(),
        _ => format!("Value {case}"),
    }
}

/// Callers at once, so hostile requests share batches with valid ones.
const HOSTILE_CALLERS: usize = 4;

/// The values every parameter of every write function is tried with.
const EDGE_VALUES: [&str; 13] = [
    "1e308",
    "-1e308",
    "-1",
    "NaN",
    "9223372036854775808",
    "99999999999999999999999",
    "2147483648",
    "1e-320",
    "",
    "0",
    "a\u{0}b\u{1}\u{7f}",
    "\r\n\t",
    "💥🦀",
];

fn hostile_value(rng: &mut Rng) -> String {
    let fixed = [
        "1e308",
        "-1e308",
        "1e309",
        "-1",
        "0",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999",
        "2147483648",
        "0.000001",
        "1e-320",
        "0x10",
        "",
        " ",
        "\u{0}",
        "a\u{0}b\u{1}\u{7f}\u{1b}[31m",
        "\r\n\t",
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "💥🦀",
        "\u{202e}gnp.exe",
        "null",
        "true",
        "[]",
        "{}",
    ];
    match rng.below(10) {
        0 => "x".repeat(10_000),
        1 => "B".repeat(256),
        2 => "é".repeat(255),
        3 => (0..300).map(|i| char::from(b' ' + (i % 95) as u8)).collect(),
        _ => rng.pick(&fixed).to_string(),
    }
}

/// Random valid and hostile parameter sets at every write function, four callers at once so
/// requests share batches; then kill -9, `verify`, restart: every answer is a Moodle result or
/// envelope with HTTP 200, the server always starts again, `verify` always passes.
async fn hostile_parameters_never_break_the_ledger(backend: Backend) {
    let random_cases = if long_mode() { 5_000 } else { 240 };
    let base_seed = seed("hostile_parameters", 0x5EED_0005);
    let db = BlankDb::new(backend).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    // Something to act on: courses 2..4, users 4..9, a few enrolments.
    for c in 0..3 {
        call_ok(
            server.port,
            &token,
            "core_course_create_courses",
            &params(&[
                ("courses[0][fullname]", format!("Prop {c}")),
                ("courses[0][shortname]", format!("PROP{c}")),
                ("courses[0][categoryid]", "1".into()),
                ("courses[0][enablecompletion]", "1".into()),
            ]),
        )
        .await;
    }
    let (_, user_ids) = {
        let mut user_params = Vec::new();
        for i in 0..6 {
            user_params.push((format!("users[{i}][username]"), format!("puser{i}")));
            user_params.push((format!("users[{i}][firstname]"), "P".into()));
            user_params.push((format!("users[{i}][lastname]"), "Q".into()));
            user_params.push((format!("users[{i}][email]"), format!("puser{i}@example.org")));
            user_params.push((format!("users[{i}][createpassword]"), "1".into()));
        }
        let users = call_ok(server.port, &token, "core_user_create_users", &user_params).await;
        ((), users.as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect::<Vec<_>>())
    };
    for (i, user) in user_ids.iter().enumerate() {
        call_ok(
            server.port,
            &token,
            "enrol_semco_enrol_user",
            &params(&[
                ("userid", user.to_string()),
                ("courseid", (2 + i % 3).to_string()),
                ("semcobookingid", format!("SEED-{i}")),
            ]),
        )
        .await;
    }
    // Every parameter of every write function gets every edge value once, the others valid;
    // then random sets (each parameter missing, hostile or valid; sometimes an extra one).
    let mut rng = Rng::new(base_seed);
    let mut cases: Vec<(&'static str, Vec<(String, String)>)> = Vec::new();
    let functions = write_functions();
    for (function, names) in &functions {
        for (target, _) in names.iter().enumerate() {
            for edge in EDGE_VALUES.iter().map(|v| v.to_string()).chain(["x".repeat(10_000), "B".repeat(256)]) {
                let case_id = cases.len() as u64;
                let call_params = names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let value = if i == target { edge.clone() } else { valid_value(&mut rng, name, case_id) };
                        (name.to_string(), value)
                    })
                    .collect();
                cases.push((function, call_params));
            }
        }
    }
    for _ in 0..random_cases {
        let case_id = cases.len() as u64;
        let (function, names) = rng.pick(&functions[..]).clone();
        let mut call_params = Vec::new();
        for name in names {
            match rng.below(100) {
                0..=14 => {}
                15..=49 => call_params.push((name.to_string(), hostile_value(&mut rng))),
                _ => call_params.push((name.to_string(), valid_value(&mut rng, name, case_id))),
            }
        }
        if rng.chance(15) {
            let extra = rng.pick(&["extra", "users[0][extra]", "x[1][2][3]", "courses[5][id]", "wsfunction"]);
            call_params.push((extra.to_string(), hostile_value(&mut rng)));
        }
        cases.push((function, call_params));
    }
    let total = cases.len();
    let cases = Arc::new(cases);
    let port = server.port;
    let mut callers = Vec::new();
    for caller in 0..HOSTILE_CALLERS {
        let cases = cases.clone();
        let token = token.clone();
        callers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for (function, call_params) in cases.iter().skip(caller).step_by(HOSTILE_CALLERS) {
                if let Err(failure) =
                    call(port, &token, function, call_params, Duration::from_millis(CALL_HANG_MS)).await
                {
                    let shown: Vec<(String, String)> =
                        call_params.iter().map(|(k, v)| (k.clone(), v.chars().take(40).collect())).collect();
                    failures.push(format!("{function} {shown:?}: {failure:?}"));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.unwrap());
    }
    assert!(server.exited().is_none(), "the server died under hostile parameters:\n{}", server.stderr());
    eprintln!("hostile_parameters {backend:?}: {total} calls");
    assert_no_problems(&failures, "answers that are not a Moodle result or envelope");
    server.kill9();
    assert_verify_ok(&db.url, "after hostile parameters").await;
    let mut server = ServerProc::serve(&db.url);
    server
        .wait_ready(Duration::from_millis(READY_WAIT_MS))
        .await
        .unwrap_or_else(|e| panic!("the server does not start after hostile parameters: {e}"));
    call_ok(server.port, &token, "enrol_semco_get_enrolments", &params(&[("courseid", "2".into())])).await;
}

on_both_backends!(hostile_parameters_never_break_the_ledger);

// ---------------------------------------------------------------------------------------------
// 6. Kill during start-up: the very first start (installer) and a projection upgrade (rebuild)

/// Sets the stored projection version back, as a binary with a newer `PROJECTION_VERSION`
/// would find it: the next start drops, recreates and rebuilds every projection.
async fn simulate_projection_upgrade(url: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect to set the projection version back");
    sqlx::query("UPDATE projection_meta SET version = version - 1 WHERE name = 'projections'")
        .execute(&mut conn)
        .await
        .expect("set the projection version back");
    conn.close().await.ok();
}

/// How long a start takes until ready, to aim kills inside it.
async fn startup_ms(url: &str) -> u64 {
    let started = Instant::now();
    let mut server = ServerProc::serve(url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let ms = started.elapsed().as_millis() as u64;
    server.kill9();
    ms
}

/// Kills `serve` at random moments of its very first start (migrations, installer), then
/// starts it for good: it must be ready, fully installed (tokens, an enrol works), `verify` OK.
async fn kill_during_first_start_leaves_a_working_ledger(backend: Backend) {
    let kills = if long_mode() { 20 } else { 8 };
    let mut rng = Rng::new(seed("kill_during_first_start", 0x5EED_0006));
    // The start-up time of a fresh install, measured on a database of its own.
    let window_ms = startup_ms(&BlankDb::new(backend).await.url).await;
    let db = BlankDb::new(backend).await;
    for _ in 0..kills {
        let mut server = ServerProc::serve(&db.url);
        tokio::time::sleep(Duration::from_millis(rng.below(window_ms + 1))).await;
        server.kill9();
    }
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap_or_else(|e| panic!("after kills: {e}"));
    // Read through SQL first: `token create` opens the database too and could finish an
    // installation this start left undone.
    let config_rows = {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_config").fetch_one(&mut conn).await.unwrap();
        conn.close().await.ok();
        count
    };
    assert!(config_rows > 0, "ledger_config is empty after kills during the first start");
    assert_verify_ok(&db.url, "after kills during the first start").await;
    server.kill9();
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let (course_id, user_ids) = seed_course_and_users(server.port, &token, 1).await;
    call_ok(
        server.port,
        &token,
        "enrol_semco_enrol_user",
        &params(&[
            ("userid", user_ids[0].to_string()),
            ("courseid", course_id.to_string()),
            ("semcobookingid", "FIRST-1".into()),
        ]),
    )
    .await;
    assert_verify_ok(&db.url, "after the first enrol").await;
}

on_both_backends!(kill_during_first_start_leaves_a_working_ledger);

/// Traffic builds a log; then the projection version is set back (an upgrade) and `serve` is
/// killed, again and again, at a random moment of its start-up (and rebuild). The final start
/// must answer every acknowledged change exactly once and `verify` must pass.
async fn kill_during_projection_upgrade_loses_nothing(backend: Backend) {
    let kills = if long_mode() { 30 } else { 12 };
    let mut rng = Rng::new(seed("kill_during_projection_upgrade", 0x5EED_0007));
    let db = BlankDb::new(backend).await;
    let token = create_token(&db.url, "ledger_admin").await;
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    let (course_id, user_ids) = seed_course_and_users(server.port, &token, CRASH_CLIENTS).await;
    let traffic = Arc::new(Traffic {
        port: server.port,
        token: token.clone(),
        course_id,
        prefix: "UPG".into(),
        bound: Duration::from_millis(CALL_HANG_MS),
        stop_on_transport_failure: true,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let handles = drive(&traffic, new_clients(&user_ids), &mut rng, &stop).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut clients, tally) = join(handles).await;
    assert_no_problems(&tally.failures, "traffic before the upgrade");
    server.kill9();

    simulate_projection_upgrade(&db.url).await;
    let window_ms = startup_ms(&db.url).await;
    // One upgrade, started again and again (a supervisor's start timeout, an OOM kill): a kill
    // anywhere in the start-up must not leave the new version marked done without its rows.
    simulate_projection_upgrade(&db.url).await;
    for _ in 0..kills {
        let mut server = ServerProc::serve(&db.url);
        tokio::time::sleep(Duration::from_millis(rng.below(window_ms + 1))).await;
        server.kill9();
    }
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap_or_else(|e| panic!("after kills: {e}"));
    let problems = reconcile(server.port, &token, &db.url, course_id, &mut clients).await;
    assert_no_problems(
        &problems,
        &format!("{backend:?} after kills during projection upgrades ({window_ms} ms window)"),
    );
    assert_verify_ok(&db.url, "after kills during projection upgrades").await;
}

on_both_backends!(kill_during_projection_upgrade_loses_nothing);
