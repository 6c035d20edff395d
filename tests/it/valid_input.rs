//! Issue 6, build item 1: every input that reaches an event or a registry row fits the Moodle
//! column it stands for, or the request is answered as Moodle 4.5 answers (`dmlwriteexception`
//! where Moodle's database would refuse it) before anything is written. Through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use enrol_ledger::api::{self, services, tokens};
use enrol_ledger::app::{audit, Ledger};
use enrol_ledger::store::Backend;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::on_both_backends;
use crate::support::*;

const DML_WRITE: &str =
    r#"{"exception":"dml_write_exception","errorcode":"dmlwriteexception","message":"Error writing to database"}"#;
const RESULT_TRUE: &str = r#"{"result":true,"warnings":[]}"#;

/// A ledger served by the real router, with the ledger handle kept so it can be restarted.
struct Site {
    test: TestDb,
    ledger: Ledger,
    router: Router,
}

impl Site {
    async fn new(backend: Backend) -> Self {
        let test = TestDb::new(backend).await;
        let ledger = test.ledger().await;
        let router = router(&ledger);
        Self { test, ledger, router }
    }

    async fn token(&self, service: &str) -> String {
        tokens::create(&self.test.db, service, services::service_user(service), 0, "").await.unwrap()
    }

    async fn call(&self, token: &str, function: &str, params: &str) -> String {
        call(&self.router, token, function, params).await
    }

    async fn events(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&self.test.db.pool).await.unwrap()
    }

    /// Stops the writer and starts a new one on the same database, as a server restart does;
    /// then the log must still verify.
    async fn restart(&mut self) {
        self.ledger.clone().shutdown().await;
        self.ledger = Ledger::start(self.test.db.clone()).await.expect("the ledger starts again");
        self.router = router(&self.ledger);
        let report = audit::verify(&self.test.db).await.unwrap();
        assert!(report.is_ok(), "verify: {:?}", report.problems);
    }
}

fn router(ledger: &Ledger) -> Router {
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: false };
    api::router(ledger.clone(), settings)
}

async fn call(router: &Router, token: &str, function: &str, params: &str) -> String {
    let body = format!("wstoken={token}&wsfunction={function}&moodlewsrestformat=json&{params}");
    let request = Request::post("/webservice/rest/server.php")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn user_params(name: &str) -> String {
    format!(
        "users[0][username]={name}&users[0][firstname]=F&users[0][lastname]=L&users[0][email]={name}%40example.org&users[0][createpassword]=1"
    )
}

/// Course 2 with completion enabled, users 4.. named `u0`, `u1`, ...
async fn course_and_users(site: &Site, users: usize) {
    let admin = site.token(services::LEDGER_ADMIN).await;
    let semco = site.token(services::ENROL_SEMCO).await;
    let created = site
        .call(
            &admin,
            "core_course_create_courses",
            "courses[0][fullname]=C&courses[0][shortname]=C1&courses[0][categoryid]=1&courses[0][enablecompletion]=1",
        )
        .await;
    assert_eq!(created, r#"[{"id":2,"shortname":"C1"}]"#);
    for i in 0..users {
        let created = site.call(&semco, "core_user_create_users", &user_params(&format!("u{i}"))).await;
        assert!(created.contains(&format!("\"username\":\"u{i}\"")), "{created}");
    }
}

/// Defect 1: `finalgrade=1e308` overflowed to infinity, was stored as `null` and made the log
/// unreadable: the server would not start again and `verify` failed.
async fn defect_1_huge_grade_bricks_server(backend: Backend) {
    let mut site = Site::new(backend).await;
    course_and_users(&site, 1).await;
    let lms = site.token(services::LEDGER_LMS).await;
    let before = site.events().await;
    for grade in ["finalgrade=1e308", "finalgrade=100000", "finalgrade=-100000", "finalgrade=50&grademax=1e6"] {
        let answer = site
            .call(&lms, "ledger_record_course_completion", &format!("userid=4&courseid=2&timecompleted=5&{grade}"))
            .await;
        assert_eq!(answer, DML_WRITE, "{grade}");
    }
    assert_eq!(site.events().await, before, "nothing of a refused completion is written");
    site.restart().await;

    // The largest numeric(10,5) values are kept, rounded to five decimals as Moodle stores them.
    let answer = site
        .call(
            &lms,
            "ledger_record_course_completion",
            "userid=4&courseid=2&timecompleted=5&finalgrade=99999.999994&grademin=-99999.99999&gradepass=0.123456",
        )
        .await;
    assert_eq!(answer, RESULT_TRUE);
    let row: (f64, f64, f64) =
        sqlx::query_as("SELECT finalgrade, grademin, gradepass FROM course_completions WHERE userid = 4")
            .fetch_one(&site.test.db.pool)
            .await
            .unwrap();
    assert_eq!(row, (99999.99999, -99999.99999, 0.12346));
    site.restart().await;
}

/// `chars` letters and digits that PostgreSQL cannot compress below its btree entry limit.
fn incompressible(chars: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    (0..chars)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Defect 5: a 10,000-character booking ID exceeded PostgreSQL's btree limit and failed every
/// request of its batch; SQLite accepted it. `enrol.customchar1` holds 255 characters.
async fn defect_5_long_booking_id_fails_its_batch(backend: Backend) {
    const VALID: usize = 40;
    let mut site = Site::new(backend).await;
    course_and_users(&site, VALID + 1).await;
    let semco = site.token(services::ENROL_SEMCO).await;
    let before = site.events().await;

    // The long one among concurrent valid enrols, so they share a batch.
    let long = incompressible(10_000);
    let mut tasks = Vec::new();
    for i in 0..=VALID {
        let (router, token) = (site.router.clone(), semco.clone());
        let params = match i {
            VALID => format!("userid={}&courseid=2&semcobookingid={long}", 4 + VALID),
            _ => format!("userid={}&courseid=2&semcobookingid=B-{i}", 4 + i),
        };
        tasks.push(tokio::spawn(async move { call(&router, &token, "enrol_semco_enrol_user", &params).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let answer = task.await.unwrap();
        match i {
            VALID => assert_eq!(answer, DML_WRITE),
            _ => assert!(answer.starts_with(r#"{"enrolid":"#), "request {i}: {answer}"),
        }
    }
    assert_eq!(site.events().await, before + VALID as i64, "every valid enrol and nothing of the long one");

    // The limit is exactly the column's 255 characters (not bytes), on enrol and on edit.
    let at_limit = "é".repeat(255);
    let over = "é".repeat(256);
    let answer = site
        .call(&semco, "enrol_semco_enrol_user", &format!("userid={}&courseid=2&semcobookingid={over}", 4 + VALID))
        .await;
    assert_eq!(answer, DML_WRITE);
    let answer = site.call(&semco, "enrol_semco_edit_enrolment", &format!("enrolid=1&semcobookingid={over}")).await;
    assert_eq!(answer, DML_WRITE);
    let answer = site
        .call(&semco, "enrol_semco_enrol_user", &format!("userid={}&courseid=2&semcobookingid={at_limit}", 4 + VALID))
        .await;
    assert!(answer.starts_with(r#"{"enrolid":"#), "{answer}");
    let stored: String = sqlx::query_scalar("SELECT customchar1 FROM enrol WHERE customchar1 LIKE 'é%'")
        .fetch_one(&site.test.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, at_limit);
    site.restart().await;
}

/// Every other column a write function fills: one character or one second over its Moodle
/// limit is `dmlwriteexception` with nothing written; at the limit it is accepted.
async fn every_column_limit_is_answered_before_writing(backend: Backend) {
    let mut site = Site::new(backend).await;
    course_and_users(&site, 2).await;
    let semco = site.token(services::ENROL_SEMCO).await;
    let admin = site.token(services::LEDGER_ADMIN).await;
    let lms = site.token(services::LEDGER_LMS).await;
    let enrolled = site.call(&semco, "enrol_semco_enrol_user", "userid=4&courseid=2&semcobookingid=B-1").await;
    assert!(enrolled.starts_with(r#"{"enrolid":1"#), "{enrolled}");
    let a = |n: usize| "a".repeat(n);
    let user = |field: &str, value: &str| {
        format!(
            "users[0][username]=new&users[0][firstname]=F&users[0][lastname]=L&users[0][email]=new%40example.org&users[0][createpassword]=1&users[0][{field}]={value}"
        )
    };
    let course = |field: &str, value: &str| {
        format!("courses[0][fullname]=F&courses[0][shortname]=S&courses[0][categoryid]=1&courses[0][{field}]={value}")
    };
    let refused: Vec<(&str, &str, String)> = vec![
        (&semco, "enrol_semco_enrol_user", "userid=5&courseid=2&semcobookingid=B-2&timestart=10000000000".into()),
        (&semco, "enrol_semco_enrol_user", "userid=5&courseid=2&semcobookingid=B-2&timeend=10000000000".into()),
        (&semco, "enrol_semco_edit_enrolment", "enrolid=1&timeend=10000000000".into()),
        (&lms, "ledger_record_course_completion", "userid=4&courseid=2&timecompleted=10000000000".into()),
        (&semco, "core_user_create_users", user("username", &a(101))),
        (&semco, "core_user_create_users", user("firstname", &a(101))),
        (&semco, "core_user_create_users", user("lastname", &a(101))),
        (&semco, "core_user_create_users", user("idnumber", &a(256))),
        // A valid address (local part within 64 characters) longer than the column.
        (&semco, "core_user_create_users", user("email", &format!("{}%40{}.example.org", a(60), a(40)))),
        (&admin, "core_course_create_courses", course("fullname", &a(255))),
        (&admin, "core_course_create_courses", course("shortname", &a(256))),
        (&admin, "core_course_create_courses", course("idnumber", &a(101))),
        (&admin, "core_course_create_courses", course("startdate", "10000000000")),
    ];
    let before = site.events().await;
    for (token, function, params) in &refused {
        let answer = site.call(token, function, params).await;
        assert_eq!(answer, DML_WRITE, "{function} {}", &params[..params.len().min(120)]);
    }
    // The update functions turn a database failure into a per-item warning, as Moodle's do.
    let warned: Vec<(&str, &str, String)> = vec![
        (&semco, "core_user_update_users", format!("users[0][id]=4&users[0][lastname]={}", a(101))),
        (&semco, "core_user_update_users", format!("users[0][id]=4&users[0][idnumber]={}", a(256))),
        (&admin, "core_course_update_courses", format!("courses[0][id]=2&courses[0][shortname]={}", a(256))),
        (&admin, "core_course_update_courses", "courses[0][id]=2&courses[0][enddate]=10000000000".into()),
    ];
    for (token, function, params) in &warned {
        let (item, id) = if function.contains("user") { ("user", 4) } else { ("course", 2) };
        let answer = site.call(token, function, params).await;
        let expected = format!(
            r#"{{"warnings":[{{"item":"{item}","itemid":{id},"warningcode":"dmlwriteexception","message":"Error writing to database"}}]}}"#
        );
        assert_eq!(answer, expected, "{function} {}", &params[..params.len().min(120)]);
    }
    assert_eq!(site.events().await, before);
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username = 'new' OR length(lastname) > 100")
        .fetch_one(&site.test.db.pool)
        .await
        .unwrap();
    let courses: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM courses WHERE id <> 2 OR length(shortname) > 255 OR enddate > 9999999999",
    )
    .fetch_one(&site.test.db.pool)
    .await
    .unwrap();
    assert_eq!((users, courses), (0, 0), "no registry row of a refused request");

    // At the limits.
    let answer = site.call(&semco, "core_user_create_users", &user("idnumber", &a(255))).await;
    assert!(answer.contains(r#""username":"new""#), "{answer}");
    let answer = site.call(&admin, "core_course_create_courses", &course("fullname", &a(254))).await;
    assert!(answer.contains(r#""shortname":"S""#), "{answer}");
    let answer = site.call(&semco, "enrol_semco_edit_enrolment", "enrolid=1&timeend=9999999999").await;
    assert_eq!(answer, RESULT_TRUE);
    let answer =
        site.call(&lms, "ledger_record_course_completion", "userid=4&courseid=2&timecompleted=9999999999").await;
    assert_eq!(answer, RESULT_TRUE);
    site.restart().await;
}

on_both_backends!(
    defect_1_huge_grade_bricks_server,
    defect_5_long_booking_id_fails_its_batch,
    every_column_limit_is_answered_before_writing,
);
