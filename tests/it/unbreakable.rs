//! Regression tests of issue 6 owned by the writer and the store: typed binds, the writer lock,
//! the supervised writer and the durability checks.

use std::time::Duration;

use enrol_ledger::app::writer::WriterOptions;
use enrol_ledger::app::{audit, Ledger, LedgerError, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::store::Backend;
use sqlx::Row;

use crate::faults_support::{binary, call, cli, create_token, params};
use crate::on_both_backends;
use crate::support::*;

fn graded(finalgrade: f64) -> GradeInput {
    GradeInput { finalgrade: Some(finalgrade), grademin: Some(0.0), grademax: Some(100.0), gradepass: Some(50.0) }
}

async fn grades(test: &TestDb, table: &str) -> Vec<Option<f64>> {
    let sql = format!("SELECT finalgrade FROM {table} ORDER BY 1");
    let rows = sqlx::query(&sql).fetch_all(&test.db.pool).await.unwrap();
    rows.iter().map(|r| r.get::<Option<f64>, _>(0)).collect()
}

/// Defect 3: on PostgreSQL a completion without a grade, then one with a grade, failed with
/// "incorrect binary data format in bind parameter 4" until a restart. Every nullable column
/// of the projections and the log is written NULL, then a value, then NULL, in one run.
async fn defect_3_null_then_value_binds_fail_on_postgres(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "NULLS", true).await;
    let user = create_user(&ledger, "nulls").await;
    let record = |grade| Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 100, grade };
    submit(&ledger, Request::SetRecompletion { course_id: course, recompletion_type: "ondemand".into() })
        .await
        .unwrap();

    // course_completions: grades NULL → value → NULL.
    submit(&ledger, record(GradeInput::default())).await.expect("completion without a grade");
    assert_eq!(grades(&test, "course_completions").await, vec![None]);
    submit(&ledger, record(graded(70.0))).await.expect("completion with a grade after one without");
    assert_eq!(grades(&test, "course_completions").await, vec![Some(70.0)]);
    submit(&ledger, record(GradeInput::default())).await.expect("completion without a grade after one with");
    assert_eq!(grades(&test, "course_completions").await, vec![None]);

    // recompletion_history: an archived completion without a grade, with one, and none at all
    // (timecompleted and semcobookingid NULL too, once the booking has moved on).
    let enrolid = enrol(&ledger, user, course, "NULL-1", 0, 0).await;
    submit(&ledger, Request::ResetCompletion { enrolid }).await.expect("reset archiving a grade-less completion");
    submit(&ledger, record(graded(80.0))).await.unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.expect("reset archiving a graded completion");
    submit(&ledger, Request::ResetCompletion { enrolid }).await.expect("reset with nothing to archive");
    submit(&ledger, record(GradeInput::default())).await.unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.unwrap();
    let mut archived = grades(&test, "recompletion_history").await;
    archived.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(archived, vec![None, None, None, Some(80.0)]);

    // enrol.customchar1 NULL while a booking ID moves, then a value; the log's actor columns NULL
    // (the CLI) and set (a token).
    let edit =
        |b: &str| Request::Edit { enrolid, booking_id: Some(b.into()), timestart: None, timeend: None, suspend: None };
    submit(&ledger, edit("NULL-2")).await.unwrap();
    ledger.submit(edit("NULL-3"), enrol_ledger::cli::cli_actor("test")).await.unwrap();
    submit(&ledger, edit("NULL-4")).await.unwrap();
    submit(&ledger, record(graded(90.0))).await.expect("a graded completion after everything else");

    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

on_both_backends!(defect_3_null_then_value_binds_fail_on_postgres);

// ---------------------------------------------------------------------------------------------
// Defect 4: one writer per ledger, always.

/// Runs the binary to its end on a blocking thread: (exit status, stdout + stderr).
async fn run_binary(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = cli(url, args).await;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// Ends the writer's PostgreSQL session as a restart or a network cut would (a no-op on SQLite,
/// which has no session to lose). Returns how many sessions were ended.
async fn terminate_writer_session(test: &TestDb) -> i64 {
    if test.db.backend != Backend::Postgres {
        return 0;
    }
    let sql = "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 \
               AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND objid = hashtext($2)::oid)";
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&test.db.pool).await.unwrap();
    sqlx::query_scalar(sql)
        .bind(enrol_ledger::store::writer_conn::WRITER_APPLICATION_NAME)
        .bind(schema)
        .fetch_one(&test.db.pool)
        .await
        .unwrap()
}

/// Defect 4: SQLite took no writer lock (a second `serve` or `cleanup` wrote beside a running
/// server), and on PostgreSQL the lock was gone after the writer's session ended.
async fn defect_4_second_writer_beside_a_running_server(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "LOCK", false).await;
    let user = create_user(&ledger, "lock").await;
    enrol(&ledger, user, course, "LOCK-1", 1, 5).await;

    let (code, text) = run_binary(&test.url, &["cleanup"]).await;
    assert_ne!(code, Some(0), "cleanup beside a running writer must refuse: {text}");
    assert!(
        text.contains("another enrol-ledger process is writing") && text.contains("ledger_cleanup_orphans"),
        "{text}"
    );
    let (code, text) = run_binary(&test.url, &["serve", "--listen", "127.0.0.1:0"]).await;
    assert_ne!(code, Some(0), "a second serve must refuse: {text}");
    assert!(text.contains("another enrol-ledger process is writing"), "{text}");
    let (code, text) = run_binary(&test.url, &["rebuild"]).await;
    assert_ne!(code, Some(0), "rebuild beside a running writer must refuse: {text}");
    // Reading beside the server is fine.
    let (code, text) = run_binary(&test.url, &["verify"]).await;
    assert_eq!(code, Some(0), "{text}");

    // The writer's session ends (PostgreSQL restart, network cut): the next write takes the lock
    // again on a new session, and a second writer is still refused.
    if backend == Backend::Postgres {
        assert_eq!(terminate_writer_session(&test).await, 1, "the writer's session holds the advisory lock");
    }
    enrol(&ledger, user, course, "LOCK-2", 10, 20).await;
    let (code, text) = run_binary(&test.url, &["cleanup"]).await;
    assert_ne!(code, Some(0), "the lock must be held again after the writer reconnected: {text}");

    ledger.shutdown().await;
    let (code, text) = run_binary(&test.url, &["cleanup"]).await;
    assert_eq!(code, Some(0), "once the server stopped, cleanup works: {text}");
}

on_both_backends!(defect_4_second_writer_beside_a_running_server);

// ---------------------------------------------------------------------------------------------
// Defect 6: a supervised writer.

fn options(submit_timeout_ms: u64) -> WriterOptions {
    WriterOptions { submit_timeout: Duration::from_millis(submit_timeout_ms), ..WriterOptions::default() }
}

/// Defect 6: the first write after the writer's PostgreSQL session ended failed on the stale
/// connection. Now it is retried once on a new one (SQLite: nothing to lose, the write works).
async fn defect_6_first_write_after_lost_connection_fails(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "STALE", false).await;
    let user = create_user(&ledger, "stale").await;
    for round in 0..3 {
        terminate_writer_session(&test).await;
        let booking = format!("STALE-{round}");
        submit(&ledger, enrol_request(user, course, &booking, round * 100, round * 100 + 50))
            .await
            .unwrap_or_else(|e| panic!("the first write after the connection was lost: {e}"));
    }
    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok() && report.events >= 3, "{:?}", report.problems);
}

on_both_backends!(defect_6_first_write_after_lost_connection_fails);

/// Holds the log's write lock from another connection until the returned sender is dropped.
async fn block_the_log(test: &TestDb) -> tokio::sync::oneshot::Sender<()> {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let pool = test.db.pool.clone();
    let backend = test.db.backend;
    tokio::spawn(async move {
        let mut conn = pool.acquire().await.unwrap();
        let statements: &[&str] = match backend {
            Backend::Sqlite => &["BEGIN IMMEDIATE"],
            Backend::Postgres => &["BEGIN", "LOCK TABLE events IN EXCLUSIVE MODE"],
        };
        for sql in statements {
            sqlx::Executor::execute(&mut *conn, *sql).await.unwrap();
        }
        let _ = locked.send(());
        let _ = released.await;
        sqlx::Executor::execute(&mut *conn, "ROLLBACK").await.unwrap();
    });
    is_locked.await.unwrap();
    release
}

/// Defect 6: `submit` waited without a timeout while the database did not answer.
async fn defect_6_submit_waits_without_a_timeout(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = Ledger::start_with(test.db.clone(), options(1_000)).await.unwrap();
    let course = create_course(&ledger, "SLOW", false).await;
    let user = create_user(&ledger, "slow").await;
    let release = block_the_log(&test).await;
    let started = std::time::Instant::now();
    let answer =
        tokio::time::timeout(Duration::from_secs(8), submit(&ledger, enrol_request(user, course, "SLOW-1", 1, 5)))
            .await
            .expect("submit must answer within its named timeout, not hang");
    assert_eq!(answer, Err(LedgerError::Timeout(1_000)));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(release);
    // The writer carries on once the database answers again.
    let mut ok = false;
    for _ in 0..50 {
        if submit(&ledger, enrol_request(user, course, "SLOW-2", 100, 200)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "writes work again after the database let go");
    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

on_both_backends!(defect_6_submit_waits_without_a_timeout);

/// Writes an unreadable event where the writer's next event would go, as a rogue process could.
async fn insert_rogue_event(test: &TestDb) {
    let (position, hash) = enrol_ledger::store::log::head(&test.db).await.unwrap();
    sqlx::query(
        "INSERT INTO events (position, stream_id, stream_type, stream_key, stream_version, event_type, \
         schema_version, recorded_at, actor_user_id, actor_token_id, request_id, booking_id, payload, hash) \
         VALUES ($1, 'rogue', 'enrolment', '999999', 1, 'Enrolled', 1, $2, NULL, NULL, 'rogue', NULL, 'not json', $3)",
    )
    .bind(position + 1)
    .bind(enrol_ledger::store::Db::now_micros())
    .bind(hash)
    .execute(&test.db.pool)
    .await
    .unwrap();
}

async fn readyz(ledger: &Ledger) -> (u16, String) {
    use tower::ServiceExt;
    let settings = enrol_ledger::api::Settings { base_url: "http://localhost".into(), debug: false };
    let router = enrol_ledger::api::router(ledger.clone(), settings);
    let request = axum::http::Request::get("/readyz").body(axum::body::Body::empty()).unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Defect 6: when the writer could not go on, every later write failed while `/readyz` said
/// `ready`, and `serve` kept running. Now the writer stops, `/readyz` answers 503 with the
/// reason, later writes fail at once, and `serve` exits with status 70.
async fn defect_6_failed_writer_reported_ready(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "FAIL", false).await;
    let user = create_user(&ledger, "fail").await;
    let (status, body) = readyz(&ledger).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"ready""#), "{body}");

    insert_rogue_event(&test).await;
    let answer = submit(&ledger, enrol_request(user, course, "FAIL-1", 0, 0)).await;
    assert!(answer.is_err(), "{answer:?}");
    let mut failed = false;
    for _ in 0..50 {
        let (status, body) = readyz(&ledger).await;
        if status == 503 && body.contains("unreadable") {
            assert!(body.contains(r#""status":"unavailable""#), "{body}");
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed, "readyz must report the failed writer");
    let started = std::time::Instant::now();
    let later = submit(&ledger, enrol_request(user, course, "FAIL-2", 0, 0)).await;
    assert!(matches!(later, Err(LedgerError::Unavailable(_))), "{later:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

on_both_backends!(defect_6_failed_writer_reported_ready);

/// The same through the real binary: `serve` exits non-zero so that a supervisor restarts it.
async fn defect_6_failed_writer_keeps_serve_running(backend: Backend) {
    let test = TestDb::new(backend).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = create_token(&test.url, "ledger_admin").await;
    let mut server = binary(&test.url)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    insert_rogue_event(&test).await;
    let setting = params(&[("name", "allowaccountssameemail".into()), ("value", "1".into())]);
    let _ = call(port, &token, "ledger_set_config", &setting, Duration::from_secs(15)).await;
    let mut status = None;
    for _ in 0..100 {
        if let Some(exit) = server.try_wait().unwrap() {
            status = Some(exit);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = server.kill();
        panic!("serve must exit when its writer has failed");
    };
    assert_eq!(status.code(), Some(enrol_ledger::app::writer::EXIT_WRITER_FAILED));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("the writer stopped") && !stderr.contains("panicked"), "{stderr}");
}

on_both_backends!(defect_6_failed_writer_keeps_serve_running);

// ---------------------------------------------------------------------------------------------
// Defect 7: durability checked at start.

/// Defect 7: a database that does not make commits durable was used without a word. SQLite in
/// memory (journal_mode "memory") stands for it here; the PostgreSQL side (fsync=off on a
/// private cluster) is `defect_7_postgres_fsync_off_starts_silently` below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_7_unsafe_durability_starts_silently() {
    let url = "sqlite://:memory:";
    let (code, text) = run_binary(url, &["serve", "--listen", "127.0.0.1:0"]).await;
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("does not make commits durable") && text.contains("journal_mode is memory"), "{text}");
    assert!(text.contains("--allow-unsafe-durability"), "{text}");

    // Allowed explicitly: it starts, and readiness says degraded.
    let db = enrol_ledger::cli::open(url).await.unwrap();
    let refused = Ledger::start(db.clone()).await.err().expect("refused without the flag");
    assert!(matches!(refused, enrol_ledger::store::StoreError::UnsafeDurability(_)), "{refused}");
    let allowed = WriterOptions { allow_unsafe_durability: true, ..WriterOptions::default() };
    let ledger = Ledger::start_with(db, allowed).await.unwrap();
    create_course(&ledger, "MEM", false).await;
    let (status, body) = readyz(&ledger).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"degraded""#) && body.contains("journal_mode is memory"), "{body}");
    ledger.shutdown().await;
}

/// Defect 7 on PostgreSQL: with `fsync=off` and `synchronous_commit=off` the server started
/// without a word (and an immediate stop then lost acknowledged enrols). Now `serve` refuses;
/// with `--allow-unsafe-durability` it starts, logs it and reports degraded; the writer's
/// session always commits synchronously whatever the server's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_7_postgres_fsync_off_starts_silently() {
    let settings = [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")];
    let Some(cluster) = crate::private_cluster::PrivateCluster::start(&settings) else { return };
    let url = cluster.url();
    let (code, text) = run_binary(&url, &["serve", "--listen", "127.0.0.1:0"]).await;
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("does not make commits durable"), "{text}");
    assert!(text.contains("fsync is off") && text.contains("full_page_writes is off"), "{text}");
    assert!(!text.contains("synchronous_commit is"), "the writer forces synchronous_commit on: {text}");
    assert!(text.contains("the writer's session forces it on"), "{text}");

    let db = enrol_ledger::cli::open(&url).await.unwrap();
    let allowed = WriterOptions { allow_unsafe_durability: true, ..WriterOptions::default() };
    let ledger = Ledger::start_with(db.clone(), allowed).await.unwrap();
    create_course(&ledger, "NOFSYNC", false).await;
    let (status, body) = readyz(&ledger).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"degraded""#) && body.contains("fsync is off"), "{body}");
    ledger.shutdown().await;
}

/// A TCP proxy in front of PostgreSQL that, once armed, swallows the server's answer to the
/// next COMMIT or the next one-row SELECT (its CommandComplete message: the writer's batch is
/// one statement whose result is a row) and cuts that connection: the transaction is
/// committed but the client never hears it, as with a network cut at the worst moment.
struct CommitCutter {
    port: u16,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CommitCutter {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(AtomicBool::new(false));
        let cuts = std::sync::Arc::new(AtomicUsize::new(0));
        let (armed_accept, cuts_accept) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let (armed, cuts) = (armed_accept.clone(), cuts_accept.clone());
                tokio::spawn(async move {
                    // CommandComplete: 'C', length 11, "COMMIT\0".
                    const COMMIT_DONE: &[u8] = b"C\x00\x00\x00\x0bCOMMIT\x00";
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let Ok(n) = server_read.read(&mut buffer).await else { return };
                        if n == 0 {
                            return;
                        }
                        let chunk = &buffer[..n];
                        // The batch's one statement: 'C', length 13, "SELECT 1\0".
                        const STATEMENT_DONE: &[u8] = b"C\x00\x00\x00\x0dSELECT 1\x00";
                        let hit = chunk.windows(COMMIT_DONE.len()).any(|w| w == COMMIT_DONE)
                            || chunk.windows(STATEMENT_DONE.len()).any(|w| w == STATEMENT_DONE);
                        if hit && armed.swap(false, Ordering::SeqCst) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            let _ = client_write.shutdown().await;
                            return;
                        }
                        if client_write.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, armed, cuts }
    }
}

/// Defect 6: a commit whose outcome was unknown (connection lost during COMMIT) was answered
/// "nothing of it was kept" although its event was in the log. Now the writer reconnects, finds
/// the batch's last position and hash, and answers success. PostgreSQL only: SQLite has no
/// connection to lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_6_unknown_commit_outcome_answered_as_lost() {
    use std::sync::atomic::Ordering;
    let test = TestDb::new(Backend::Postgres).await;
    let parsed = url_host_port(&test.url);
    let cutter = CommitCutter::start(parsed.1).await;
    let through_cutter = test.url.replacen(&parsed.0, &format!("127.0.0.1:{}", cutter.port), 1);
    let db = enrol_ledger::store::Db::connect(&through_cutter).await.unwrap();
    let ledger = Ledger::start(db).await.unwrap();
    let course = create_course(&ledger, "CUT", false).await;
    let user = create_user(&ledger, "cut").await;

    cutter.armed.store(true, Ordering::SeqCst);
    let answer = submit(&ledger, enrol_request(user, course, "CUT-1", 1, 5)).await;
    assert_eq!(cutter.cuts.load(Ordering::SeqCst), 1, "the commit's answer was cut");
    assert!(answer.as_ref().is_ok_and(|o| o.enrolid > 0), "{answer:?}");
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE booking_id = 'CUT-1'")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(events, 1, "the enrolment is in the log exactly once");
    // The writer goes on on its new connection.
    enrol(&ledger, user, course, "CUT-2", 10, 20).await;
    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// ("host:port" as written in a postgres:// URL, that address resolved).
fn url_host_port(url: &str) -> (String, std::net::SocketAddr) {
    let after_at = url.split_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split(['/', '?']).next().unwrap().to_owned();
    let address = std::net::ToSocketAddrs::to_socket_addrs(&host_port).unwrap().next().unwrap();
    (host_port, address)
}

/// A TCP proxy in front of PostgreSQL that counts the client's round trips: each extended
/// query ends with a Sync message and each simple query is one Query message, and the client
/// waits for the answer to each before it sends what depends on it.
struct RoundTripCounter {
    port: u16,
    round_trips: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RoundTripCounter {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let round_trips = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    let mut pending: Vec<u8> = Vec::new();
                    let mut started = false;
                    loop {
                        let Ok(n) = client_read.read(&mut buffer).await else { return };
                        if n == 0 || server_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                        pending.extend_from_slice(&buffer[..n]);
                        loop {
                            if !started {
                                // The untyped start-up message, after any SSL/GSS request.
                                if pending.len() < 8 {
                                    break;
                                }
                                let len = u32::from_be_bytes(pending[0..4].try_into().unwrap()) as usize;
                                if pending.len() < len {
                                    break;
                                }
                                let code = u32::from_be_bytes(pending[4..8].try_into().unwrap());
                                pending.drain(..len);
                                started = code != 80_877_103 && code != 80_877_104;
                                continue;
                            }
                            if pending.len() < 5 {
                                break;
                            }
                            let len = u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize + 1;
                            if pending.len() < len {
                                break;
                            }
                            if matches!(pending[0], b'S' | b'Q') {
                                counted.fetch_add(1, Ordering::SeqCst);
                            }
                            pending.drain(..len);
                        }
                    }
                });
            }
        });
        Self { port, round_trips }
    }
}

/// Issue 7: the writer's commit of an enrolment batch made seven round trips in series on
/// PostgreSQL (BEGIN, the events, `enrolment_course`, `stream_subject`, the `enrol` and
/// `user_enrolments` upserts, COMMIT), so its rate was the batch size over seven network
/// waits. Now the batch is one statement. PostgreSQL only: SQLite has no round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_batch_commit_made_seven_round_trips() {
    use std::sync::atomic::Ordering;
    let test = TestDb::new(Backend::Postgres).await;
    let parsed = url_host_port(&test.url);
    let counter = RoundTripCounter::start(parsed.1).await;
    let mut through_counter = test.url.replacen(&parsed.0, &format!("127.0.0.1:{}", counter.port), 1);
    through_counter.push_str(if through_counter.contains('?') { "&sslmode=disable" } else { "?sslmode=disable" });
    let db = enrol_ledger::store::Db::connect(&through_counter).await.unwrap();
    let ledger = Ledger::start(db).await.unwrap();
    let course = create_course(&ledger, "TRIPS", false).await;
    let user = create_user(&ledger, "trips").await;
    // The first enrolment prepares the batch's statement; the next ones reuse it.
    enrol(&ledger, user, course, "TRIPS-1", 1, 5).await;
    let before = counter.round_trips.load(Ordering::SeqCst);
    enrol(&ledger, user, course, "TRIPS-2", 10, 20).await;
    let trips = counter.round_trips.load(Ordering::SeqCst) - before;
    assert_eq!(trips, 1, "one enrolment's batch: round trips to PostgreSQL");
    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
