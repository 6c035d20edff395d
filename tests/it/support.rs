//! Test harness: a fresh database per test on either backend, and small helpers that drive the
//! ledger the way the API does.

use std::sync::atomic::{AtomicU64, Ordering};

use enrol_ledger::app::command::UserInput;
use enrol_ledger::app::{Ledger, LedgerError, Outcome, Request};
use enrol_ledger::registry::{NewCourse, NewUser};
use enrol_ledger::store::log::Actor;
use enrol_ledger::store::{Backend, Db};

/// Where the PostgreSQL test database is; `scripts/test.sh` sets it.
pub const PG_URL_VAR: &str = "ENROL_LEDGER_TEST_PG";

/// A fresh, migrated database of one backend. SQLite lives in a temporary directory;
/// PostgreSQL in a schema of its own (`search_path`), dropped at the end.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}_{}_{}", std::process::id(), nanos % 1_000_000_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub fn postgres_base_url() -> String {
    std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
        panic!("{PG_URL_VAR} is not set: run the suite with scripts/test.sh, which starts PostgreSQL and sets it")
    })
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let (url, dir, schema) = fresh_location(backend, "").await;
        let db = enrol_ledger::cli::open(&url).await.expect("open and migrate");
        Self { db, url, _dir: dir, schema }
    }

    pub async fn ledger(&self) -> Ledger {
        Ledger::start(self.db.clone()).await.expect("start the ledger")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            drop_schema(base, schema);
        }
    }
}

/// Where a fresh database of one backend lives: a SQLite file in a temporary directory, or a
/// new PostgreSQL schema (`search_path`; `extra_query` is appended to the URL's options).
pub type Location = (String, Option<tempfile::TempDir>, Option<(String, String)>);

pub async fn fresh_location(backend: Backend, extra_query: &str) -> Location {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
            (url, Some(dir), None)
        }
        Backend::Postgres => {
            let base = postgres_base_url();
            let schema = unique_name();
            let admin = Db::connect(&base).await.expect("connect to the PostgreSQL test database");
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin.pool).await.expect("create schema");
            admin.pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}{extra_query}");
            let url = if pg_as_runtime() { installed_for_runtime_role(&url, &schema).await } else { url };
            (url, None, Some((base, schema)))
        }
    }
}

/// Drops a test schema, best effort, on a thread of its own: Drop cannot await inside the
/// test's runtime.
pub fn drop_schema(base: String, schema: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async {
            let admin = Db::connect(&base).await.ok()?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin.pool).await.ok()
        })
    })
    .join();
}

/// Runs an async test body on SQLite and on PostgreSQL, as two named tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(enrol_ledger::store::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(enrol_ledger::store::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn actor() -> Actor {
    Actor { user_id: Some(3), token_id: Some(1), request_id: unique_name() }
}

pub async fn submit(ledger: &Ledger, request: Request) -> Result<Outcome, LedgerError> {
    ledger.submit(request, actor()).await
}

pub async fn create_user(ledger: &Ledger, username: &str) -> i64 {
    let input = UserInput {
        user: NewUser {
            username: username.to_owned(),
            auth: "manual".into(),
            firstname: "First".into(),
            lastname: format!("Last {username}"),
            email: format!("{username}@example.org"),
            lang: "en".into(),
            profile: vec![("semco_userid".into(), format!("S-{username}"))],
            ..NewUser::default()
        },
        password_given: false,
        createpassword: true,
    };
    match submit(ledger, Request::CreateUsers(vec![input])).await {
        Ok(outcome) => outcome.created[0].0,
        other => panic!("create user {username}: {other:?}"),
    }
}

pub async fn create_course(ledger: &Ledger, shortname: &str, enablecompletion: bool) -> i64 {
    let course = NewCourse {
        fullname: format!("Course {shortname}"),
        shortname: shortname.to_owned(),
        categoryid: 1,
        visible: true,
        enablecompletion,
        ..NewCourse::default()
    };
    match submit(ledger, Request::CreateCourses(vec![course])).await {
        Ok(outcome) => outcome.created[0].0,
        other => panic!("create course {shortname}: {other:?}"),
    }
}

pub fn enrol_request(user_id: i64, course_id: i64, booking: &str, timestart: i64, timeend: i64) -> Request {
    Request::Enrol {
        user_id,
        course_id,
        booking_id: booking.to_owned(),
        timestart,
        timeend,
        suspend: false,
        require_recompletion: false,
    }
}

/// Enrols and returns the user enrolment id (`enrolid`).
pub async fn enrol(ledger: &Ledger, user_id: i64, course_id: i64, booking: &str, timestart: i64, timeend: i64) -> i64 {
    match submit(ledger, enrol_request(user_id, course_id, booking, timestart, timeend)).await {
        Ok(outcome) => outcome.enrolid,
        other => panic!("enrol {booking}: {other:?}"),
    }
}

impl TestDb {
    /// A fresh database of one backend that nothing has opened yet: the very first start of
    /// the binary migrates and installs it. `db` is a plain pool for the test's own queries.
    pub async fn unopened(backend: Backend) -> Self {
        let (url, dir, schema) = fresh_location(backend, "").await;
        let db = Db::connect(&url).await.expect("connect");
        Self { db, url, _dir: dir, schema }
    }
}

/// The PostgreSQL runtime role the least-privilege tests serve as (`scripts/test.sh` creates
/// it with password = name): `ENROL_LEDGER_TEST_PG_RUNTIME_ROLE`, default `enrol_ledger_runtime`.
pub fn runtime_role() -> String {
    std::env::var("ENROL_LEDGER_TEST_PG_RUNTIME_ROLE").unwrap_or_else(|_| "enrol_ledger_runtime".to_owned())
}

/// `owner_url` with the runtime role's credentials instead of the owner's.
pub fn runtime_url(owner_url: &str) -> String {
    let (scheme, rest) = owner_url.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let role = runtime_role();
    format!("{scheme}://{role}:{role}@{host}")
}

/// `ENROL_LEDGER_TEST_PG_AS_RUNTIME=1` (scripts/test.sh's second pass): every PostgreSQL test
/// ledger is installed by the owner and then used through the runtime role.
pub fn pg_as_runtime() -> bool {
    std::env::var("ENROL_LEDGER_TEST_PG_AS_RUNTIME").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Installs the schema as its owner, granting the runtime role exactly `enrol-ledger grants`
/// (as `serve --migrate-url` does), and returns the runtime role's URL for it.
async fn installed_for_runtime_role(owner_url: &str, schema: &str) -> String {
    let owner = Db::connect(owner_url).await.expect("connect as the owner");
    sqlx::query(&format!("GRANT USAGE ON SCHEMA {schema} TO {}", runtime_role()))
        .execute(&owner.pool)
        .await
        .expect("grant the runtime role the schema");
    owner.pool.close().await;
    let runtime = runtime_url(owner_url);
    let db = enrol_ledger::cli::open_as(&runtime, Some(owner_url)).await.expect("install as the owner");
    db.pool.close().await;
    runtime
}

/// The owner's URL for a test ledger's URL (itself, unless it is the runtime role's): for the
/// changes an operator makes by hand.
pub fn owner_url(url: &str) -> String {
    if !pg_as_runtime() || !url.starts_with("postgres") {
        return url.to_owned();
    }
    let base = postgres_base_url();
    let credentials = base.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(c, _)| c);
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{}@{host}", credentials.expect("credentials in the base URL"))
}

/// A signing key path of its own for each ledger a test runs the binary on (`SIGNING_KEY`), so
/// no test writes `enrol-ledger.signing-key` or its checkpoint file into the working directory
/// (the PostgreSQL default) or shares them with another ledger.
pub fn signing_key_for(url: &str) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut hasher);
    std::env::temp_dir().join(format!("enrol-ledger-test-{:016x}.signing-key", hasher.finish()))
}

/// Runs the real binary on a test ledger (its own signing key): exit code, stdout, stderr.
pub fn run_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_enrol-ledger"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env("SIGNING_KEY", signing_key_for(url))
        .output()
        .expect("run enrol-ledger");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}
