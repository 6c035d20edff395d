//! The benchmark harness (issue 7): builds a ledger of N events, starts the real server on it,
//! drives it over HTTP with concurrent Moodle REST clients, times the CLI's audit commands,
//! measures the database's own limit in the same run, and prints one table of figures, limits,
//! ratios and targets. It measures; it asserts nothing (docs/PERFORMANCE.md).
//!
//! ```sh
//! cargo build --release && ./target/release/bench --backend sqlite --scale 100k
//! ./target/release/bench --backend postgres --scale 1m --database-url postgres://u:p@127.0.0.1/db
//! ```
//! Everything it creates (a temporary directory; on PostgreSQL a schema of its own) is removed
//! at the end, and its server child is stopped, also when a step fails.

mod http;
mod limits;
mod measure;
mod report;
mod state_memory;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::report::Figures;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// ≈ 3,000 events: checks that every step works (CI); the figures mean little.
    Tiny,
    #[value(name = "100k")]
    K100,
    /// 300,000 events: the largest that finishes in about 15 minutes per backend on the
    /// shared project machine, for a run when a 1m one cannot finish in time.
    #[value(name = "300k")]
    K300,
    #[value(name = "1m")]
    M1,
}

#[derive(Debug, Parser)]
#[command(name = "bench", about = "Benchmark harness: build a ledger, serve it, measure, print one table")]
pub struct Args {
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BackendArg,
    #[arg(long, value_enum, default_value = "tiny")]
    pub scale: Scale,
    /// PostgreSQL: the database to create a scratch schema in (default: $ENROL_LEDGER_TEST_PG).
    /// SQLite: a file that must not exist yet (default: a file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// The enrol-ledger binary to serve with (default: the one beside this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Seconds each HTTP load phase and each database-limit run lasts (default by scale).
    #[arg(long)]
    pub phase_seconds: Option<u64>,
    /// Keep the PostgreSQL scratch schema at the end (its name is printed) to look into it
    /// afterwards: `DROP SCHEMA name CASCADE` removes it. A SQLite --database-url file is always kept.
    #[arg(long)]
    pub keep_schema: bool,
    /// Build nothing: load the writer's state from the existing ledger at --database-url and
    /// print the heap each part of it holds.
    #[arg(long)]
    pub state_memory: bool,
}

/// The data a scale builds and how long it measures.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub events: i64,
    pub users: usize,
    pub courses: usize,
    /// Enrolments in the one large course that `get_enrolments` and `as-of --course` read.
    pub big_rows: usize,
    pub phase: Duration,
}

impl Plan {
    fn of(scale: Scale, phase_seconds: Option<u64>) -> Self {
        let (events, users, courses, big_rows, seconds) = match scale {
            Scale::Tiny => (3_000, 600, 10, 300, 1),
            Scale::K100 => (100_000, 20_000, 100, 10_000, 8),
            Scale::K300 => (300_000, 60_000, 300, 10_000, 8),
            Scale::M1 => (1_000_000, 200_000, 1_000, 10_000, 10),
        };
        let phase = Duration::from_secs(phase_seconds.unwrap_or(seconds));
        Self { events, users, courses, big_rows, phase }
    }
}

/// A temporary directory and, on PostgreSQL, a scratch schema: removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
    pub pg: Option<(String, String)>,
    /// Leave the PostgreSQL schema in place on drop (`--keep-schema`).
    pub keep_schema: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg.take().filter(|_| !self.keep_schema) {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let admin = enrol_ledger::store::Db::connect(&base).await.ok()?;
                    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin.pool).await.ok()
                })
            })
            .join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server child: stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

/// How long the server may take to answer `/healthz` and `/readyz` before the run gives up.
const STARTUP_WAIT_S: u64 = 1_800;
/// How long a stopped server may take to exit before it is killed.
const STOP_WAIT_MS: u64 = 30_000;

impl Server {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn log(message: impl std::fmt::Display) {
    eprintln!("[bench {}] {message}", chrono::Utc::now().format("%H:%M:%S%.3f"));
}

type BenchResult<T> = Result<T, String>;

fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == MEASURE_CHILD) {
        return measure_child();
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let outcome = match (&args.database_url, args.state_memory) {
        (Some(url), true) => runtime.block_on(state_memory::run(url)),
        (None, true) => Err("--state-memory needs --database-url".to_string()),
        (_, false) => runtime.block_on(run(args)),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> BenchResult<()> {
    let plan = Plan::of(args.scale, args.phase_seconds);
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("enrol-ledger"),
    };
    if !server_bin.exists() {
        return Err(format!("{} not found: build it first (cargo build --release)", server_bin.display()));
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("enrol-ledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut scratch = Scratch { dir: dir.clone(), pg: None, keep_schema: false };
    let url = match args.backend {
        BackendArg::Sqlite => match &args.database_url {
            Some(file) => {
                let path = file.trim_start_matches("sqlite://");
                if Path::new(path).exists() {
                    return Err(format!("{path} exists: the benchmark builds a fresh ledger"));
                }
                format!("sqlite://{path}")
            }
            None => format!("sqlite://{}", dir.join("ledger.db").display()),
        },
        BackendArg::Postgres => {
            let base = match &args.database_url {
                Some(url) => url.clone(),
                None => std::env::var("ENROL_LEDGER_TEST_PG")
                    .map_err(|_| "--backend postgres needs --database-url or ENROL_LEDGER_TEST_PG".to_string())?,
            };
            let schema = format!("bench_{}_{}", std::process::id(), chrono::Utc::now().timestamp());
            let admin = enrol_ledger::store::Db::connect(&base).await.map_err(|e| format!("connect {base}: {e}"))?;
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin.pool)
                .await
                .map_err(|e| format!("create schema: {e}"))?;
            admin.pool.close().await;
            if args.keep_schema {
                log(format!("the scratch schema {schema} is kept (--keep-schema)"));
            }
            scratch.keep_schema = args.keep_schema;
            scratch.pg = Some((base.clone(), schema.clone()));
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
    };
    log(format!("{:?} at scale {:?}: building {} events in {}", args.backend, args.scale, plan.events, redact(&url)));
    let mut figures = Figures::new(args.backend, args.scale, &plan);
    measure::all(&url, &server_bin, &plan, &scratch, &mut figures).await?;
    figures.total = started.elapsed();
    println!("{}", figures.table());
    drop(scratch);
    Ok(())
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The checkpoint signing key of the ledger at `url`, in the temporary directory: one per
/// ledger, so checkpoints of earlier runs (the PostgreSQL default is a file in the working
/// directory) never meet this run's `verify`.
pub fn signing_key_for(url: &str) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut hasher);
    std::env::temp_dir().join(format!("enrol-ledger-bench-{:016x}.signing-key", hasher.finish()))
}

/// The first argument that makes `bench` the measuring parent of one command (`run_cli`).
const MEASURE_CHILD: &str = "--measure-child";

/// `bench --measure-child REPORT PROGRAM ARGS...`: runs PROGRAM with the inherited stdio and
/// environment, reaps it with `wait4` and writes `status maxrss_kib wall_ns` to REPORT.
///
/// Why a separate process: Linux keeps a process's peak RSS (`ru_maxrss`) across `execve`, and
/// a child forked from the bench starts with the bench's own resident memory as its peak (the
/// bench holds the ledger it built in-process: ~1 GiB at `--scale 1m`), so every CLI measured
/// directly showed the bench's size, not its own. Forked from this small, freshly exec'd
/// process the CLI's peak is its own.
fn measure_child() -> std::process::ExitCode {
    let mut argv = std::env::args_os().skip(2);
    let (Some(report), Some(program)) = (argv.next(), argv.next()) else {
        eprintln!("usage: bench {MEASURE_CHILD} REPORT PROGRAM [ARGS...]");
        return std::process::ExitCode::FAILURE;
    };
    let started = Instant::now();
    let outcome = Command::new(&program)
        .args(argv)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", Path::new(&program).display()))
        .and_then(|child| wait4(child.id() as i32));
    let wall = started.elapsed();
    match outcome.and_then(|(status, maxrss)| {
        std::fs::write(&report, format!("{status} {maxrss} {}", wall.as_nanos())).map_err(|e| e.to_string())
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench {MEASURE_CHILD}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the enrol-ledger CLI with `args`; returns stdout, wall time and the child's peak RSS
/// (KiB), both taken by a small measuring parent (`measure_child`) so that neither includes
/// the bench's own memory.
pub fn run_cli(bin: &Path, url: &str, args: &[&str]) -> BenchResult<(String, Duration, u64)> {
    let out = tempfile_in(&std::env::temp_dir(), "cli-out")?;
    let err = tempfile_in(&std::env::temp_dir(), "cli-err")?;
    let report = tempfile_in(&std::env::temp_dir(), "cli-rusage")?;
    let me = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let parent = Command::new(me)
        .arg(MEASURE_CHILD)
        .arg(&report)
        .arg(bin)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("SIGNING_KEY", signing_key_for(url))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(&err).map_err(|e| e.to_string())?)
        .status()
        .map_err(|e| format!("spawn the measuring parent of {}: {e}", bin.display()))?;
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let measured = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&err);
    let _ = std::fs::remove_file(&report);
    let fields: Vec<u128> = measured.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let [status, maxrss_kib, wall_ns] = fields[..] else {
        return Err(format!("enrol-ledger {}: no measurement ({parent}): {stderr}", args.join(" ")));
    };
    let (status, maxrss_kib) = (status as i32, maxrss_kib as u64);
    let wall = Duration::from_nanos(wall_ns as u64);
    if status != 0 {
        return Err(format!("enrol-ledger {} exited {status}: {stderr}{stdout}", args.join(" ")));
    }
    Ok((stdout, wall, maxrss_kib))
}

fn tempfile_in(dir: &Path, what: &str) -> BenchResult<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(dir.join(format!("enrol-ledger-bench-{}-{what}-{n}", std::process::id())))
}

/// Reaps `pid` and returns its exit status and peak RSS in KiB.
fn wait4(pid: i32) -> BenchResult<(i32, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; the pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        return Err(format!("wait4({pid}): {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    Ok((code, usage.ru_maxrss as u64))
}

/// VmRSS and VmHWM of a process, KiB.
pub fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_a_url_with_a_password_when_logged_then_the_password_is_hidden() {
        assert_eq!(super::redact("postgres://u:secret@127.0.0.1/db"), "postgres://u:***@127.0.0.1/db");
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
