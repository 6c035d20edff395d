//! The steps of one run, in order: build the data in-process through `Ledger::submit`, read
//! and decode the log raw (the rebuild/verify limit), start the real server and time it to
//! `/healthz` and `/readyz`, drive it over HTTP, stop it, time the CLI, and measure the
//! database's own insert limit.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enrol_ledger::app::command::UserInput;
use enrol_ledger::app::writer::WriterOptions;
use enrol_ledger::app::{Ledger, Request};
use enrol_ledger::registry::{NewCourse, NewUser};
use enrol_ledger::store::log::{Actor, StoredEvent};
use enrol_ledger::store::Db;
use sqlx::Row;

/// Calls per audit API figure (history, as-of) on the running server; the median is reported.
pub const AUDIT_API_CALLS: usize = 20;

use crate::http::{self, Client};
use crate::report::{ms, Figures, Summary};
use crate::{log, rss_kib, run_cli, BackendArg, BenchResult, Plan, Scratch, Server};

/// Concurrent in-process submitters while building the data.
const BUILD_WORKERS: usize = 64;
/// How long one build request may wait for the writer (the server's default is 10 s).
const BUILD_SUBMIT_TIMEOUT_MS: u64 = 600_000;
/// Concurrent `CreateUsers` requests while building (each one is large).
const BUILD_USER_WORKERS: usize = 8;
/// Users per `CreateUsers` request while building.
const BUILD_USERS_PER_CALL: usize = 100;
/// Requests one HTTP phase may send at most, whatever its duration.
const PHASE_REQUESTS_MAX: usize = 1_000_000;
/// Calls of a sequential one-client measurement at most (user calls, get_enrolments).
const SEQUENTIAL_CALLS_MAX: usize = 2_000;
/// Rows per page of the raw log read.
const RAW_READ_PAGE_ROWS: i64 = 10_000;
/// Timestarts of the HTTP phase's enrolments begin here, above every period the build made.
const HTTP_TIMESTART_BASE: i64 = 100_000_000;

fn actor(what: &str) -> Actor {
    Actor { user_id: Some(3), token_id: None, request_id: format!("bench-{what}") }
}

/// What the build made, for the later steps.
pub struct Built {
    pub users: Vec<i64>,
    pub courses: Vec<i64>,
    pub big_course: i64,
    pub history_booking: String,
}

/// Runs `count` jobs on `workers` tasks; results in job order.
async fn parallel<F, Fut, T>(workers: usize, count: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers.min(count.max(1)))
        .map(|_| {
            let (job, next) = (job.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return done;
                    }
                    done.push((i, job(i).await));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await.expect("a build task panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

async fn head(db: &Db) -> BenchResult<i64> {
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(&db.pool)
        .await
        .map_err(|e| format!("log head: {e}"))
}

fn enrol_request(op: usize, user: i64, course: i64) -> Request {
    let timestart = 1 + op as i64 * 10;
    Request::Enrol {
        user_id: user,
        course_id: course,
        booking_id: format!("bk-{op}"),
        timestart,
        timeend: timestart + 5,
        suspend: false,
        require_recompletion: false,
    }
}

/// Enrols `ops` (op number, user, course) concurrently; returns the enrolids.
async fn enrol_all(ledger: &Ledger, ops: Vec<(usize, i64, i64)>) -> BenchResult<Vec<i64>> {
    let ops = Arc::new(ops);
    let count = ops.len();
    let ledger = ledger.clone();
    let results = parallel(BUILD_WORKERS, count, move |i| {
        let (ledger, ops) = (ledger.clone(), ops.clone());
        async move {
            let (op, user, course) = ops[i];
            match ledger.submit(enrol_request(op, user, course), actor("build")).await {
                Ok(outcome) => Ok(outcome.enrolid),
                other => Err(format!("build enrol {op}: {other:?}")),
            }
        }
    })
    .await;
    results.into_iter().collect()
}

/// Submits `requests` concurrently; every one must succeed.
async fn submit_all(ledger: &Ledger, requests: Vec<Request>) -> BenchResult<()> {
    let requests = Arc::new(requests);
    let count = requests.len();
    let ledger = ledger.clone();
    let results = parallel(BUILD_WORKERS, count, move |i| {
        let (ledger, requests) = (ledger.clone(), requests.clone());
        async move { ledger.submit(requests[i].clone(), actor("build")).await.map_err(|e| format!("build: {e}")) }
    })
    .await;
    results.into_iter().try_for_each(|r| r.map(|_| ()))
}

/// Users and courses first, then the large course's enrolments, then enrolments spread over
/// every user and course with one in five edited and one in ten unenrolled, until the log
/// holds `plan.events`.
async fn build(url: &str, plan: &Plan) -> BenchResult<Built> {
    let db = enrol_ledger::cli::open(url).await.map_err(|e| format!("open: {e}"))?;
    // The build is not measured: a busy machine must not make a large batch time out.
    let options =
        WriterOptions { submit_timeout: Duration::from_millis(BUILD_SUBMIT_TIMEOUT_MS), ..Default::default() };
    let ledger = Ledger::start_with(db.clone(), options).await.map_err(|e| format!("start the ledger: {e}"))?;
    let calls = plan.users.div_ceil(BUILD_USERS_PER_CALL);
    let l = ledger.clone();
    let created = parallel(BUILD_USER_WORKERS, calls, move |call| {
        let ledger = l.clone();
        async move {
            let users = (call * BUILD_USERS_PER_CALL..((call + 1) * BUILD_USERS_PER_CALL))
                .map(|i| UserInput {
                    user: NewUser {
                        username: format!("u{i}"),
                        auth: "manual".into(),
                        firstname: "Bench".into(),
                        lastname: format!("User {i}"),
                        email: format!("u{i}@example.org"),
                        lang: "en".into(),
                        ..Default::default()
                    },
                    createpassword: true,
                    ..Default::default()
                })
                .collect();
            match ledger.submit(Request::CreateUsers(users), actor("build-users")).await {
                Ok(outcome) => Ok(outcome.created.into_iter().map(|(id, _)| id).collect::<Vec<_>>()),
                other => Err(format!("create users: {other:?}")),
            }
        }
    })
    .await;
    let mut users = Vec::with_capacity(plan.users);
    for batch in created {
        users.extend(batch?);
    }
    let mut courses = Vec::with_capacity(plan.courses);
    for chunk in (0..plan.courses).collect::<Vec<_>>().chunks(100) {
        let batch = chunk
            .iter()
            .map(|i| NewCourse {
                fullname: format!("Bench course {i}"),
                shortname: format!("bench-{i}"),
                categoryid: 1,
                visible: true,
                ..Default::default()
            })
            .collect();
        match ledger.submit(Request::CreateCourses(batch), actor("build-courses")).await {
            Ok(outcome) => courses.extend(outcome.created.into_iter().map(|(id, _)| id)),
            other => return Err(format!("create courses: {other:?}")),
        }
    }
    log(format!("{} users, {} courses; enrolling {} in the large course", users.len(), courses.len(), plan.big_rows));
    let big_course = courses[0];
    let before = head(&db).await?;
    let big: Vec<_> = (0..plan.big_rows).map(|op| (op, users[op % users.len()], big_course)).collect();
    enrol_all(&ledger, big).await?;
    let per_enrol = ((head(&db).await? - before) as f64 / plan.big_rows as f64).max(1.0);
    let mut op = plan.big_rows;
    let mut history_booking = None;
    // Each spread enrolment brings its own events plus 0.2 edits and 0.1 unenrols.
    for round in 0..4 {
        let missing = plan.events - head(&db).await?;
        if missing <= 0 {
            break;
        }
        let count = ((missing as f64 / (per_enrol + 0.3)).ceil() as usize).max(1);
        log(format!("round {round}: {count} enrolments ({per_enrol:.1} events each), 1/5 edited, 1/10 unenrolled"));
        let ops: Vec<_> =
            (op..op + count).map(|op| (op, users[op % users.len()], courses[1 + op % (courses.len() - 1)])).collect();
        history_booking.get_or_insert_with(|| format!("bk-{op}"));
        op += count;
        let ids = enrol_all(&ledger, ops).await?;
        let edits = ids[..ids.len() / 5]
            .iter()
            .map(|&enrolid| Request::Edit {
                enrolid,
                booking_id: None,
                timestart: None,
                timeend: None,
                suspend: Some(true),
            })
            .collect();
        submit_all(&ledger, edits).await?;
        let unenrols = ids[..ids.len() / 10].iter().map(|&enrolid| Request::Unenrol { enrolid }).collect();
        submit_all(&ledger, unenrols).await?;
    }
    ledger.shutdown().await;
    db.pool.close().await;
    Ok(Built { users, courses, big_course, history_booking: history_booking.unwrap_or_else(|| "bk-0".into()) })
}

fn stored_event(row: &sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        position: row.try_get(0)?,
        stream_id: row.try_get(1)?,
        stream_type: row.try_get(2)?,
        stream_key: row.try_get(3)?,
        stream_version: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get::<i32, _>(6)? as i64,
        recorded_at: row.try_get(7)?,
        actor_user_id: row.try_get(8)?,
        actor_token_id: row.try_get(9)?,
        request_id: row.try_get(10)?,
        booking_id: row.try_get(11)?,
        payload: row.try_get(12)?,
        hash: row.try_get(13)?,
    })
}

const EVENT_COLUMNS: &str = "position, stream_id, stream_type, stream_key, stream_version, event_type, \
     schema_version, recorded_at, actor_user_id, actor_token_id, request_id, booking_id, payload, hash";

/// Reads the whole log in pages and decodes every payload into its domain event: the rate
/// rebuild and verify cannot beat. Returns (rows, rows/s, a typical enrolment event row).
async fn raw_read_decode(db: &Db) -> BenchResult<(i64, f64, StoredEvent)> {
    let started = Instant::now();
    let (mut after, mut rows, mut sample) = (0i64, 0i64, None);
    loop {
        let page = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT {RAW_READ_PAGE_ROWS}"
        ))
        .bind(after)
        .fetch_all(&db.pool)
        .await
        .map_err(|e| format!("raw read: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.try_get(0).map_err(|e| e.to_string())?;
        for row in &page {
            let stored = stored_event(row).map_err(|e| format!("raw read: {e}"))?;
            stored.event().map_err(|e| format!("decode {}: {e}", stored.position))?;
            if sample.is_none() && stored.booking_id.is_some() {
                sample = Some(stored);
            }
            rows += 1;
        }
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((rows, rate, sample.ok_or("the log holds no enrolment event")?))
}

fn free_port() -> BenchResult<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn token(bin: &Path, url: &str, service: &str) -> BenchResult<String> {
    let (out, _, _) = run_cli(bin, url, &["token", "create", "--service", service])?;
    out.lines().last().map(str::to_string).ok_or_else(|| format!("no token for {service}"))
}

/// Starts `enrol-ledger serve` and waits for `/healthz`, then `/readyz`.
async fn start_server(bin: &Path, url: &str, dir: &Path) -> BenchResult<(Server, Duration, Duration)> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log_file = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = std::process::Command::new(bin)
        .arg("--database-url")
        .arg(url)
        .args(["serve", "--listen", &addr])
        // BENCH_SERVER_LOG: the server's RUST_LOG, e.g. `warn,enrol_ledger::app::writer=debug`
        // for the writer's batch sizes in the scratch directory's server.log while profiling.
        .env("RUST_LOG", std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
        .env("SIGNING_KEY", crate::signing_key_for(url))
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let mut server = Server { child, addr: addr.clone() };
    let healthz = wait_for(&mut server, dir, started, "/healthz").await?;
    let readyz = wait_for(&mut server, dir, started, "/readyz").await?;
    Ok((server, healthz, readyz))
}

/// Polls `path` until it answers 200; the time since `started`. Fails if the server exits.
async fn wait_for(server: &mut Server, dir: &Path, started: Instant, path: &str) -> BenchResult<Duration> {
    let deadline = Instant::now() + Duration::from_secs(crate::STARTUP_WAIT_S);
    while Instant::now() < deadline {
        if http::get_status(&server.addr, path).await == Some(200) {
            return Ok(started.elapsed());
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("the server exited ({status}) before {path}: {log}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("no {path} within {} s", crate::STARTUP_WAIT_S))
}

/// Where a load phase's requests come from: the form for client `c`, or None when done.
type Forms = Arc<dyn Fn(usize) -> Option<String> + Send + Sync>;

/// `clients` keep-alive clients send forms for `phase`; every answer must be a success.
/// Returns the latencies' summary and, when `collect` names a field, its value per answer.
async fn load(
    addr: &str,
    clients: usize,
    phase: Duration,
    forms: Forms,
    collect: Option<&'static str>,
) -> (Summary, Vec<i64>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + phase;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (forms, sent, addr) = (forms.clone(), sent.clone(), addr.to_string());
            tokio::spawn(async move {
                let mut client = Client::new(&addr);
                let (mut latencies, mut ids, mut errors, mut first_error) = (Vec::new(), Vec::new(), 0usize, None);
                while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < PHASE_REQUESTS_MAX {
                    let Some(form) = forms(c) else { break };
                    let t = Instant::now();
                    let answer = client.rest(&form).await;
                    latencies.push(t.elapsed());
                    match answer.and_then(|body| parse_answer(&body, collect)) {
                        Ok(Some(id)) => ids.push(id),
                        Ok(None) => {}
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (latencies, ids, errors, first_error)
            })
        })
        .collect();
    let (mut latencies, mut ids, mut errors, mut first_error) = (Vec::new(), Vec::new(), 0, None);
    for task in tasks {
        let (l, i, e, f) = task.await.expect("a load client panicked");
        latencies.extend(l);
        ids.extend(i);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    if let Some(error) = &first_error {
        log(format!("{errors} failed answer(s), the first: {error}"));
    }
    (Summary::of(latencies, started.elapsed(), errors), ids)
}

/// A Moodle answer: an exception envelope is an error; else the `collect` field if asked.
fn parse_answer(body: &[u8], collect: Option<&str>) -> Result<Option<i64>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(body)))?;
    if value.get("exception").is_some() {
        return Err(value.to_string());
    }
    let Some(field) = collect else { return Ok(None) };
    let object = if let Some(first) = value.as_array().and_then(|a| a.first()) { first } else { &value };
    Ok(object.get(field).and_then(|v| v.as_i64()))
}

/// Hands out each id once, then None.
fn ids_forms(ids: Vec<i64>, form: impl Fn(i64) -> String + Send + Sync + 'static) -> Forms {
    let (ids, next) = (Arc::new(ids), AtomicUsize::new(0));
    Arc::new(move |_| ids.get(next.fetch_add(1, Ordering::Relaxed)).map(|&id| form(id)))
}

pub async fn all(url: &str, bin: &Path, plan: &Plan, scratch: &Scratch, figures: &mut Figures) -> BenchResult<()> {
    let t = Instant::now();
    let built = build(url, plan).await?;
    let db = Db::connect(url).await.map_err(|e| e.to_string())?;
    let events = head(&db).await?;
    figures.events = events;
    figures.build = t.elapsed();
    log(format!("built {events} events in {:.1} s; reading and decoding the log raw", figures.build.as_secs_f64()));
    let (_, raw_rate, sample) = raw_read_decode(&db).await?;
    figures.raw_read_rate = raw_rate;

    let semco = token(bin, url, "enrol_semco")?;
    let audit = token(bin, url, "ledger_audit")?;
    log("starting the server");
    let (mut server, healthz, readyz) = start_server(bin, url, &scratch.dir).await?;
    figures.healthz = healthz;
    figures.readyz = readyz;
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.rss_rest_kib = rss_kib(server.pid()).0;
    log(format!("ready in {:.3} s, {} MiB at rest; HTTP load", readyz.as_secs_f64(), figures.rss_rest_kib / 1024));
    let addr = server.addr.clone();

    let period = Arc::new(AtomicUsize::new(0));
    let enrol_forms = |users: Vec<i64>, courses: Vec<i64>, semco: String, period: Arc<AtomicUsize>| -> Forms {
        // Each call books another user (then another course once every user had one), as a
        // SEMCO system does. Until 2026-12-01 a client booked the same user into the same
        // course on every call, so one (user, course) pair piled up thousands of live
        // enrolments and each enrol's overlap check grew with them (docs/PERFORMANCE.md).
        Arc::new(move |_| {
            let n = period.fetch_add(1, Ordering::Relaxed);
            let start = HTTP_TIMESTART_BASE + n as i64 * 10;
            Some(format!(
                "wstoken={semco}&wsfunction=enrol_semco_enrol_user&moodlewsrestformat=json&userid={}&courseid={}\
                 &semcobookingid=http-{n}&timestart={start}&timeend={}&suspend=0",
                users[n % users.len()],
                courses[1 + (n / users.len()) % (courses.len() - 1)],
                start + 5
            ))
        })
    };
    // Warm-up (not measured): the server's pool and caches, the clients' connections.
    let forms = enrol_forms(built.users.clone(), built.courses.clone(), semco.clone(), period.clone());
    let (warm, _) = load(&addr, 16, plan.phase / 2, forms, None).await;
    log(format!("warm-up, 16 clients: {}", warm.line()));
    let forms = enrol_forms(built.users.clone(), built.courses.clone(), semco.clone(), period.clone());
    let (enrol16, ids16) = load(&addr, 16, plan.phase, forms, Some("enrolid")).await;
    log(format!("enrol, 16 clients: {}", enrol16.line()));
    let forms = enrol_forms(built.users.clone(), built.courses.clone(), semco.clone(), period.clone());
    let (enrol64, ids64) = load(&addr, 64, plan.phase, forms, Some("enrolid")).await;
    log(format!("enrol, 64 clients: {}", enrol64.line()));
    let s = semco.clone();
    let forms = ids_forms(ids64, move |id| {
        format!("wstoken={s}&wsfunction=enrol_semco_edit_enrolment&moodlewsrestformat=json&enrolid={id}&suspend=1")
    });
    let (edit16, _) = load(&addr, 16, plan.phase, forms, None).await;
    log(format!("edit, 16 clients: {}", edit16.line()));
    let s = semco.clone();
    let forms = ids_forms(ids16, move |id| {
        format!("wstoken={s}&wsfunction=enrol_semco_unenrol_user&moodlewsrestformat=json&enrolid={id}")
    });
    let (unenrol16, _) = load(&addr, 16, plan.phase, forms, None).await;
    log(format!("unenrol, 16 clients: {}", unenrol16.line()));
    figures.enrol16 = Some(enrol16);
    figures.enrol64 = Some(enrol64);
    figures.edit16 = Some(edit16);
    figures.unenrol16 = Some(unenrol16);

    // One user per call, one client: create, then update and delete the users just created.
    let s = semco.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let forms: Forms = Arc::new(move |_| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        (n < SEQUENTIAL_CALLS_MAX).then(|| {
            format!(
                "wstoken={s}&wsfunction=core_user_create_users&moodlewsrestformat=json&users[0][username]=h{n}\
                 &users[0][firstname]=Http&users[0][lastname]=User&users[0][email]=h{n}%40example.org\
                 &users[0][createpassword]=1"
            )
        })
    });
    let (create, created) = load(&addr, 1, plan.phase, forms, Some("id")).await;
    let s = semco.clone();
    let forms = ids_forms(created.clone(), move |id| {
        format!(
            "wstoken={s}&wsfunction=core_user_update_users&moodlewsrestformat=json&users[0][id]={id}\
             &users[0][firstname]=Renamed"
        )
    });
    let (update, _) = load(&addr, 1, plan.phase, forms, None).await;
    let s = semco.clone();
    let forms = ids_forms(created, move |id| {
        format!("wstoken={s}&wsfunction=core_user_delete_users&moodlewsrestformat=json&userids[0]={id}")
    });
    let (delete, _) = load(&addr, 1, plan.phase, forms, None).await;
    log(format!("users, one per call: create {}; update {}; delete {}", create.line(), update.line(), delete.line()));
    figures.user_create = Some(create);
    figures.user_update = Some(update);
    figures.user_delete = Some(delete);

    // get_enrolments for the large course over HTTP, then the same rows fetched raw.
    let big = built.big_course;
    let mut client = Client::new(&addr);
    let form = format!("wstoken={audit}&wsfunction=enrol_semco_get_enrolments&moodlewsrestformat=json&courseid={big}");
    let body = client.rest(&form).await?;
    let rows: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("get_enrolments: {e}"))?;
    figures.big_rows = rows.as_array().map(|a| a.len()).ok_or_else(|| format!("get_enrolments: {rows}"))?;
    let calls = SEQUENTIAL_CALLS_MAX.min(50);
    let counter = Arc::new(AtomicUsize::new(0));
    let forms: Forms = {
        let counter = counter.clone();
        Arc::new(move |_| (counter.fetch_add(1, Ordering::Relaxed) < calls).then(|| form.clone()))
    };
    let (get, _) = load(&addr, 1, plan.phase, forms, None).await;
    let (fetch, fetch_encode) = raw_fetch(&db, big, get.count.max(3)).await?;
    log(format!("get_enrolments, {} rows: HTTP {}; raw fetch {}", figures.big_rows, get.line(), fetch.line()));
    figures.get_enrolments = Some(get);
    figures.raw_fetch = Some(fetch);
    figures.raw_fetch_encode = Some(fetch_encode);
    // The audit API on the running server (warm caches, no process start or connection set-up,
    // which are most of a CLI's wall time on PostgreSQL): history by booking and by user, and
    // the as-of of the large course.
    let median = |mut walls: Vec<Duration>| {
        walls.sort();
        walls[walls.len() / 2]
    };
    let timed = |path: String| {
        let (addr, audit) = (addr.clone(), audit.clone());
        async move {
            let mut client = Client::new(&addr);
            client.get_bearer(&path, &audit).await?;
            let mut walls = Vec::new();
            let mut body = Vec::new();
            for _ in 0..AUDIT_API_CALLS {
                let started = Instant::now();
                body = client.get_bearer(&path, &audit).await?;
                walls.push(started.elapsed());
            }
            BenchResult::Ok((walls, body))
        }
    };
    let (walls, _) = timed(format!("/api/v1/history/bookings/{}", built.history_booking)).await?;
    figures.api_history = Some(median(walls));
    if let Some(user) = built.users.first() {
        let (walls, _) = timed(format!("/api/v1/history/users/{user}")).await?;
        figures.api_history_user = Some(median(walls));
    }
    let (walls, body) = timed(format!("/api/v1/as-of?course={big}")).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("as-of: {e}"))?;
    let rows = answer["enrolments"].as_array().map_or(0, Vec::len);
    figures.api_as_of = Some((median(walls), rows));
    log(format!(
        "audit API, median of {AUDIT_API_CALLS}: history by booking {}, by user {}, as-of of {rows} rows {}",
        figures.api_history.map_or("–".into(), ms),
        figures.api_history_user.map_or("–".into(), ms),
        figures.api_as_of.map_or("–".into(), |(wall, _)| ms(wall)),
    ));
    figures.rss_peak_kib = rss_kib(server.pid()).1;
    server.stop();
    drop(server);
    db.pool.close().await;

    // The CLI, with the server stopped (rebuild needs the writer lock; the others as an
    // operator runs them). Rebuild last: it rewrites the projections.
    log("CLI: history, as-of, verify, rebuild");
    let mut history = Vec::new();
    for _ in 0..5 {
        history.push(run_cli(bin, url, &["history", "--booking", &built.history_booking])?.1);
    }
    history.sort();
    figures.history = Some(history[history.len() / 2]);
    if let Some(user) = built.users.first() {
        let mut of_user = Vec::new();
        for _ in 0..5 {
            of_user.push(run_cli(bin, url, &["history", "--user", &user.to_string()])?.1);
        }
        of_user.sort();
        figures.history_user = Some(of_user[of_user.len() / 2]);
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut as_of = Vec::new();
    for _ in 0..3 {
        let (out, wall, rss) = run_cli(bin, url, &["as-of", "--known-at", &now, "--course", &big.to_string()])?;
        figures.as_of_rows = out.lines().count();
        as_of.push((wall, rss));
    }
    as_of.sort();
    figures.as_of = Some(as_of[as_of.len() / 2]);
    let (_, wall, rss) = run_cli(bin, url, &["verify"])?;
    figures.verify = Some((wall, rss));
    let (_, wall, rss) = run_cli(bin, url, &["rebuild"])?;
    figures.rebuild = Some((wall, rss));
    log(format!(
        "verify {:.2} s ({} MiB), rebuild {:.2} s ({} MiB)",
        figures.verify.unwrap().0.as_secs_f64(),
        figures.verify.unwrap().1 / 1024,
        wall.as_secs_f64(),
        rss / 1024
    ));

    // The database's own limit, same run, same machine.
    // pgbench spends up to a second connecting its clients on a busy machine: at least 3 s.
    let seconds = plan.phase.as_secs().max(3);
    for clients in [16, 64] {
        let rate = match (&scratch.pg, figures.backend) {
            (Some((base, schema)), BackendArg::Postgres) => {
                let admin = Db::connect(base).await.map_err(|e| e.to_string())?;
                let rate =
                    crate::limits::pgbench(&admin.pool, base, schema, &sample, clients, seconds, &scratch.dir).await;
                admin.pool.close().await;
                rate?
            }
            _ => {
                let file = url.trim_start_matches("sqlite://");
                crate::limits::sqlite_loop(Path::new(file), &scratch.dir, &sample, clients, seconds).await?
            }
        };
        log(format!("database limit, {clients} clients: {rate:.0} tx/s"));
        if clients == 16 {
            figures.limit16 = rate;
        } else {
            figures.limit64 = rate;
        }
    }
    Ok(())
}

/// The `get_enrolments` query run directly `calls` times, without and with JSON encoding of
/// the rows (the same fields the web service returns).
async fn raw_fetch(db: &Db, course: i64, calls: usize) -> BenchResult<(Summary, Summary)> {
    let sql = "SELECT ue.id, ue.userid, e.customchar1, ue.timestart, ue.timeend, ue.status \
               FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
               WHERE e.courseid = $1 AND e.enrol = 'semco' ORDER BY ue.id";
    let (mut fetch, mut encode) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let rows = sqlx::query(sql).bind(course).fetch_all(&db.pool).await.map_err(|e| format!("raw fetch: {e}"))?;
        fetch.push(t.elapsed());
        let list = rows
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "enrolid": r.try_get::<i64, _>(0)?,
                    "userid": r.try_get::<i64, _>(1)?,
                    "semcobookingid": r.try_get::<Option<String>, _>(2)?,
                    "timestart": r.try_get::<i64, _>(3)?,
                    "timeend": r.try_get::<i64, _>(4)?,
                    "suspend": r.try_get::<i64, _>(5)? == 1,
                }))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| format!("raw fetch: {e}"))?;
        let _bytes = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
        encode.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    Ok((Summary::of(fetch, elapsed, 0), Summary::of(encode, elapsed, 0)))
}

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn given_a_moodle_exception_envelope_when_parsed_then_it_is_an_error() {
        let body = br#"{"exception":"moodle_exception","errorcode":"bookingoverlap","message":"x"}"#;
        assert!(parse_answer(body, Some("enrolid")).is_err());
    }

    #[test]
    fn given_a_list_or_an_object_when_parsed_then_the_field_of_the_first_is_collected() {
        assert_eq!(parse_answer(br#"[{"id":7,"username":"h1"}]"#, Some("id")), Ok(Some(7)));
        assert_eq!(parse_answer(br#"{"enrolid":9,"warnings":[]}"#, Some("enrolid")), Ok(Some(9)));
        assert_eq!(parse_answer(b"null", None), Ok(None));
        assert!(parse_answer(b"<html>", None).is_err());
    }
}
