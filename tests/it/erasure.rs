//! Erasure that leaves nothing, and a person's export (issue 8 item 5): the raw database files
//! are scanned for the erased strings after `core_user_delete_users` (through the real router)
//! and after `enrol-ledger user erase` (the real binary).

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use enrol_ledger::api;
use enrol_ledger::app::command::UserInput;
use enrol_ledger::app::{audit, erasure, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::registry::{NewUser, UserUpdate};
use enrol_ledger::store::{Backend, Db};

use crate::http::Api;
use crate::on_both_backends;
use crate::support::*;

/// A string no test data contains by chance: 20 random hex digits after a tag.
fn distinctive(tag: &str) -> String {
    let random = |_| std::collections::hash_map::RandomState::new().build_hasher().finish();
    let bits: Vec<u64> = (0..2).map(random).collect();
    format!("{tag}{:016x}{:04x}", bits[0], bits[1] & 0xffff)
}

/// Every personal value of one person: name, e-mail, company, place and date of birth.
#[derive(Debug, Clone)]
struct Person {
    username: String,
    firstname: String,
    lastname: String,
    email: String,
    company: String,
    placeofbirth: String,
    birthday: String,
}

impl Person {
    fn new() -> Self {
        Self {
            username: distinctive("usr").to_lowercase(),
            firstname: distinctive("First"),
            lastname: distinctive("Last"),
            email: format!("{}@example.org", distinctive("mail")),
            company: distinctive("Company"),
            placeofbirth: distinctive("Town"),
            birthday: distinctive("Birthday"),
        }
    }

    fn strings(&self) -> Vec<String> {
        vec![
            self.username.clone(),
            self.firstname.clone(),
            self.lastname.clone(),
            self.email.clone(),
            self.company.clone(),
            self.placeofbirth.clone(),
            self.birthday.clone(),
        ]
    }

    fn profile(&self) -> Vec<(String, String)> {
        vec![
            ("semco_usercompany".into(), self.company.clone()),
            ("semco_userplaceofbirth".into(), self.placeofbirth.clone()),
            ("semco_userbirthday".into(), self.birthday.clone()),
        ]
    }
}

async fn create_person(ledger: &enrol_ledger::app::Ledger, p: &Person) -> i64 {
    let user = NewUser {
        username: p.username.clone(),
        auth: "manual".into(),
        firstname: p.firstname.clone(),
        lastname: p.lastname.clone(),
        email: p.email.clone(),
        lang: "en".into(),
        profile: p.profile(),
        ..NewUser::default()
    };
    let input = UserInput { user, password_given: false, createpassword: true };
    match submit(ledger, Request::CreateUsers(vec![input])).await {
        Ok(outcome) if !outcome.created.is_empty() => outcome.created[0].0,
        other => panic!("create user: {other:?}"),
    }
}

async fn update_person(ledger: &enrol_ledger::app::Ledger, id: i64, p: &Person) {
    let update = UserUpdate {
        id,
        username: Some(p.username.clone()),
        firstname: Some(p.firstname.clone()),
        lastname: Some(p.lastname.clone()),
        email: Some(p.email.clone()),
        profile: p.profile(),
        ..UserUpdate::default()
    };
    let outcome = submit(ledger, Request::UpdateUsers(vec![update])).await.expect("update user");
    assert!(outcome.warnings.is_empty(), "{outcome:?}");
}

/// The raw bytes that hold the registry: the SQLite file and its WAL; on PostgreSQL the relation
/// files of the registry tables, their indexes and TOAST after a CHECKPOINT, and `pg_dump`.
async fn raw_bytes(backend: Backend, db: &Db, url: &str) -> Vec<(String, Vec<u8>)> {
    match backend {
        Backend::Sqlite => {
            let path = PathBuf::from(url.strip_prefix("sqlite://").unwrap());
            let wal = PathBuf::from(format!("{}-wal", path.display()));
            [path, wal].iter().filter(|p| p.exists()).map(|p| (p.display().to_string(), read(p))).collect()
        }
        Backend::Postgres => {
            as_postgres("CHECKPOINT");
            let data_dir = as_postgres("SHOW data_directory");
            let files: Vec<String> = sqlx::query_scalar(
                "WITH t AS (SELECT oid, reltoastrelid FROM pg_class \
                            WHERE oid IN ('users'::regclass, 'user_profile_data'::regclass)) \
                 SELECT pg_relation_filepath(oid) FROM t \
                 UNION SELECT pg_relation_filepath(indexrelid) FROM pg_index WHERE indrelid IN (SELECT oid FROM t) \
                 UNION SELECT pg_relation_filepath(reltoastrelid) FROM t WHERE reltoastrelid <> 0 \
                 UNION SELECT pg_relation_filepath(indexrelid) FROM pg_index \
                       WHERE indrelid IN (SELECT reltoastrelid FROM t WHERE reltoastrelid <> 0)",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            assert!(files.len() >= 6, "tables, their indexes and TOAST: {files:?}");
            let mut out: Vec<(String, Vec<u8>)> = Vec::new();
            for file in files {
                let base = Path::new(data_dir.trim()).join(file);
                out.push((base.display().to_string(), read(&base)));
                for segment in 1.. {
                    let more = PathBuf::from(format!("{}.{segment}", base.display()));
                    if !more.exists() {
                        break;
                    }
                    out.push((more.display().to_string(), read(&more)));
                }
            }
            let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&db.pool).await.unwrap();
            let dump = Command::new("pg_dump")
                .args(["--schema", &schema, &postgres_base_url()])
                .output()
                .expect("run pg_dump");
            assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
            out.push(("pg_dump".into(), dump.stdout));
            out
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs one statement as the cluster's superuser (tests run as root), for CHECKPOINT and the
/// data directory.
fn as_postgres(sql: &str) -> String {
    let port = postgres_base_url().rsplit_once(':').and_then(|(_, p)| p.split('/').next().map(str::to_owned));
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-p", port.as_deref().unwrap_or("5432"), "-qAtc", sql])
        .output()
        .expect("run psql as postgres");
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Which of `strings` occur in any of the files.
fn found(files: &[(String, Vec<u8>)], strings: &[String]) -> BTreeSet<String> {
    let mut hits = BTreeSet::new();
    for s in strings {
        for (name, bytes) in files {
            if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                hits.insert(format!("{s} in {name}"));
            }
        }
    }
    hits
}

/// Regression (issue 8, "Erased personal data stays on disk"): after `core_user_delete_users`
/// the old name, e-mail, company, place and date of birth stayed readable in free pages, WAL
/// frames and dead tuples.
async fn defect_erased_personal_data_stays_on_disk(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: false };
    let api = Api { router: api::router(ledger.clone(), settings), test, ledger: ledger.clone() };
    let course = create_course(&ledger, "ER1", true).await;
    let (first_a, then_a, first_b, then_b, bystander) =
        (Person::new(), Person::new(), Person::new(), Person::new(), Person::new());
    let a = create_person(&ledger, &first_a).await;
    let b = create_person(&ledger, &first_b).await;
    let kept = create_person(&ledger, &bystander).await;
    for (user, booking) in [(a, "ER-A"), (b, "ER-B"), (kept, "ER-K")] {
        enrol(&ledger, user, course, booking, 0, 0).await;
        let grade = GradeInput::default();
        let completion = Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 100, grade };
        submit(&ledger, completion).await.expect("record a completion");
    }
    update_person(&ledger, a, &then_a).await;
    update_person(&ledger, b, &then_b).await;

    let db = api.test.db.clone();
    let url = api.test.url.clone();
    // The scan sees what is there: the current values are on disk before the erasure.
    let files = raw_bytes(backend, &db, &url).await;
    for s in [&then_a.email, &then_b.company] {
        assert!(!found(&files, std::slice::from_ref(s)).is_empty(), "the scan finds live data: {s}");
    }
    // ... and, before any scrub, the overwritten values too (WAL frames, dead tuples).
    let overwritten = found(&files, &first_a.strings());
    assert!(!overwritten.is_empty(), "the old values are on disk before the erasure");

    // A through the web service, B through the CLI.
    let token = api.token("ledger_admin").await;
    let body = api.call(&token, "core_user_delete_users", "json", &format!("userids[0]={a}")).await;
    assert_eq!(body, "null", "{body}");
    ledger.scrubber.wait_all().await.expect("the scrub after the web-service deletion");
    ledger.shutdown().await;
    let cli_url = url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run_cli(&cli_url, &["user", "erase", "--id", &b.to_string()]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("erased user {b}")), "{out}");

    let erased: Vec<String> = [&first_a, &then_a, &first_b, &then_b].iter().flat_map(|p| p.strings()).collect();
    let files = raw_bytes(backend, &db, &url).await;
    let left = found(&files, &erased);
    assert!(left.is_empty(), "erased personal data still on disk: {left:?}");
    for s in [&bystander.email, &bystander.company] {
        assert!(!found(&files, std::slice::from_ref(s)).is_empty(), "the other user's {s} is untouched");
    }

    // The ledger still verifies, rebuilds and reports the users as erased: read through a pool
    // of its own, as an auditor's process would (the server's pool is the ledger's).
    let db = Db::connect(&crate::support::owner_url(&url)).await.expect("connect for the checks");
    let report = audit::verify(&db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    audit::rebuild(&db).await.unwrap();
    assert!(audit::verify(&db).await.unwrap().is_ok());
    for user in [a, b] {
        let export = erasure::export_user(&db, user).await.unwrap();
        let row = export.user.clone().expect("the row stays: ids are never reused");
        assert_eq!(row["deleted"], 1, "{row}");
        assert_eq!(row["email"], "", "{row}");
        assert!(export.profile.is_empty() && export.user_enrolments.is_empty(), "{export:?}");
        assert!(export.events.iter().any(|e| e["payload"]["reason"] == "user_deleted"), "{:?}", export.events);
    }
    let report: Vec<i64> = sqlx::query_scalar("SELECT moodleuserid FROM semco_enrolment_report ORDER BY moodleuserid")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(report, vec![kept], "only the kept user is in the enrolment report");
}

/// `user export` and `erasure::export_user`: every row and event about the user, nothing of others.
async fn user_export_has_every_row_and_event_and_nothing_of_others(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "EX1", true).await;
    let other_course = create_course(&ledger, "EX2", true).await;
    let (anna, bert) = (Person::new(), Person::new());
    let a = create_person(&ledger, &anna).await;
    let b = create_person(&ledger, &bert).await;
    let ea = enrol(&ledger, a, course, "EX-A1", 0, 0).await;
    enrol(&ledger, a, other_course, "EX-A2", 10, 20).await;
    enrol(&ledger, b, course, "EX-B1", 0, 0).await;
    let edit = Request::Edit { enrolid: ea, booking_id: None, timestart: Some(5), timeend: None, suspend: Some(true) };
    submit(&ledger, edit).await.expect("edit");
    for user in [a, b] {
        let grade = GradeInput::default();
        let completion = Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 50, grade };
        submit(&ledger, completion).await.expect("record a completion");
    }
    let ondemand = Request::SetRecompletion { course_id: course, recompletion_type: "ondemand".into() };
    submit(&ledger, ondemand).await.expect("recompletion on demand");
    submit(&ledger, Request::ResetCompletion { enrolid: ea }).await.expect("reset");
    // The web-service function gives the same export as the CLI.
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: false };
    let api = Api { router: api::router(ledger.clone(), settings), test, ledger: ledger.clone() };
    let token = api.token("ledger_admin").await;
    let body = api.call(&token, "ledger_export_user", "json", &format!("userid={a}")).await;
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["userid"], a, "{body}");
    let ws_export: serde_json::Value = serde_json::from_str(reply["export"].as_str().unwrap()).unwrap();
    let unknown = api.call(&token, "ledger_export_user", "json", "userid=999999").await;
    assert!(unknown.contains("invalid_parameter_exception"), "{unknown}");
    let semco = api.token("enrol_semco").await;
    let refused = api.call(&semco, "ledger_export_user", "json", &format!("userid={a}")).await;
    assert!(refused.contains("exception"), "only ledger_admin may export: {refused}");
    ledger.shutdown().await;
    let test = api.test;

    let url = test.url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run_cli(&url, &["user", "export", "--id", &a.to_string()])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let export: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(export["user"]["email"], anna.email.as_str());
    let profile: BTreeSet<String> =
        export["profile"].as_array().unwrap().iter().map(|p| p["data"].as_str().unwrap().to_owned()).collect();
    assert_eq!(profile, BTreeSet::from([anna.company.clone(), anna.placeofbirth.clone(), anna.birthday.clone()]));
    assert_eq!(export["user_enrolments"].as_array().unwrap().len(), 2);
    assert_eq!(export["course_completions"].as_array().unwrap().len(), 0, "the reset archived it");
    assert_eq!(export["recompletion_history"].as_array().unwrap().len(), 1);

    // Every event about A: a fold-independent look at the whole log.
    let mut conn = test.db.pool.acquire().await.unwrap();
    let mut all = Vec::new();
    enrol_ledger::store::log::replay(&mut conn, None, |stored| {
        all.push(audit::export_line(&stored));
        Ok(())
    })
    .await
    .unwrap();
    let a_streams: BTreeSet<String> = all
        .iter()
        .filter(|e| e["payload"]["user_id"] == a)
        .map(|e| e["stream_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<i64> = all
        .iter()
        .filter(|e| a_streams.contains(e["stream_id"].as_str().unwrap()))
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    let positions: Vec<i64> =
        export["events"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert_eq!(positions, expected);
    assert_eq!(positions.len(), 6, "registered, 2 enrolments, the edit, the completion, the reset: {positions:?}");
    let text = out.as_str();
    for s in bert.strings() {
        assert!(!text.contains(&s), "the export holds another user's data: {s}");
    }
    assert!(!text.contains("EX-B1"), "the export holds another user's booking");
    assert!(export["events"].as_array().unwrap().iter().any(|e| e["event_type"] == "UserRegistered"));
    assert_eq!(ws_export, export, "the web-service export equals the CLI's");
    for event in export["events"].as_array().unwrap() {
        let user = &event["payload"]["user_id"];
        assert!(user.is_null() || *user == a, "{event}");
    }
}

on_both_backends!(defect_erased_personal_data_stays_on_disk, user_export_has_every_row_and_event_and_nothing_of_others);

/// PostgreSQL only (roles): as the runtime role the deletion works but the scrub needs the
/// owner (VACUUM FULL): `user erase` says so and fails; with `--migrate-url` it scrubs, and
/// `user scrub --migrate-url` catches up (docs/OPERATIONS.md, "Erasure").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_as_the_runtime_role_needs_the_owner_for_the_scrub() {
    let test = TestDb::new(Backend::Postgres).await;
    let owner = owner_url(&test.url);
    let ledger = test.ledger().await;
    let (p, q) = (Person::new(), Person::new());
    let first = create_person(&ledger, &p).await;
    let second = create_person(&ledger, &q).await;
    ledger.shutdown().await;
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&test.db.pool).await.unwrap();
    sqlx::query(&format!("GRANT USAGE ON SCHEMA {schema} TO {}", runtime_role())).execute(&test.db.pool).await.unwrap();
    let runtime = runtime_url(&owner);
    enrol_ledger::cli::open_as(&runtime, Some(&owner)).await.expect("grants for the runtime role").pool.close().await;

    let (rt, ow) = (runtime.clone(), owner.clone());
    let (alone, with_owner, scrub) = tokio::task::spawn_blocking(move || {
        let alone = run_cli(&rt, &["user", "erase", "--id", &first.to_string()]);
        let with_owner = run_cli(&rt, &["--migrate-url", &ow, "user", "erase", "--id", &second.to_string()]);
        let scrub = run_cli(&rt, &["--migrate-url", &ow, "user", "scrub"]);
        (alone, with_owner, scrub)
    })
    .await
    .unwrap();
    assert_eq!(alone.0, 1, "{alone:?}");
    assert!(alone.2.contains("was deleted") && alone.2.contains("--migrate-url"), "{}", alone.2);
    let deleted: i32 = sqlx::query_scalar("SELECT deleted FROM users WHERE id = $1")
        .bind(first)
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the deletion itself is done");
    assert_eq!(with_owner.0, 0, "{with_owner:?}");
    assert_eq!(scrub.0, 0, "{scrub:?}");
    let left = found(&raw_bytes(Backend::Postgres, &test.db, &test.url).await, &[p.strings(), q.strings()].concat());
    assert!(left.is_empty(), "{left:?}");
}
