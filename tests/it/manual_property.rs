//! Property: random interleavings of SEMCO and manual enrolments of the same users in the same
//! courses. SEMCO's overlap and booking rules see only SEMCO instances (a twin ledger that gets
//! only the SEMCO requests answers every one of them alike and ends with the same SEMCO
//! enrolments), `core_enrol_get_enrolled_users` (through the real router) agrees with
//! `user_enrolments`, and a rebuild equals the live projections (verify passes). Both backends.

use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

use enrol_ledger::api::{self, services, tokens};
use enrol_ledger::app::audit;
use enrol_ledger::app::command::{ManualEnrolItem, ManualUnenrolItem};
use enrol_ledger::app::{Ledger, LedgerError, Request};
use enrol_ledger::projection::tables;
use enrol_ledger::store::Backend;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::*;

const USERS: usize = 3;
const COURSES: usize = 2;
const CASES: u32 = 8;

#[derive(Debug, Clone)]
enum Op {
    Semco {
        user: usize,
        course: usize,
        booking: u8,
        start: i64,
        len: i64,
    },
    /// Unenrols the n-th SEMCO enrolment made so far (if still live).
    SemcoUnenrol {
        nth: usize,
    },
    Manual {
        user: usize,
        course: usize,
        start: Option<i64>,
        end: Option<i64>,
        suspend: bool,
        role: i64,
    },
    ManualUnenrol {
        user: usize,
        course: usize,
    },
    DeleteUser {
        user: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let time = prop_oneof![Just(0i64), 1i64..40];
    prop_oneof![
        4 => (0..USERS, 0..COURSES, 0u8..6, time.clone(), prop_oneof![Just(0i64), 0i64..20])
            .prop_map(|(user, course, booking, start, len)| Op::Semco { user, course, booking, start, len }),
        1 => (0usize..8).prop_map(|nth| Op::SemcoUnenrol { nth }),
        4 => (0..USERS, 0..COURSES, proptest::option::of(time.clone()), proptest::option::of(time), any::<bool>(), prop_oneof![Just(5i64), Just(3i64), Just(8i64)])
            .prop_map(|(user, course, start, end, suspend, role)| Op::Manual { user, course, start, end, suspend, role }),
        2 => (0..USERS, 0..COURSES).prop_map(|(user, course)| Op::ManualUnenrol { user, course }),
        1 => (0..USERS).prop_map(|user| Op::DeleteUser { user }),
    ]
}

/// A ledger with its users, courses and the SEMCO enrolids it handed out.
struct Side {
    test: TestDb,
    ledger: Ledger,
    users: Vec<i64>,
    courses: Vec<i64>,
    semco: Vec<i64>,
}

impl Side {
    async fn new(backend: Backend) -> Self {
        let test = TestDb::new(backend).await;
        let ledger = test.ledger().await;
        let mut users = Vec::new();
        for i in 0..USERS {
            users.push(create_user(&ledger, &format!("m{i}")).await);
        }
        let mut courses = Vec::new();
        for i in 0..COURSES {
            courses.push(create_course(&ledger, &format!("MC{i}"), true).await);
        }
        Self { test, ledger, users, courses, semco: Vec::new() }
    }

    /// Submits a SEMCO op; the answer without ids (ids differ between the two ledgers).
    async fn semco(&mut self, op: &Op) -> Option<Result<(), LedgerError>> {
        let request = match op.clone() {
            Op::Semco { user, course, booking, start, len } => enrol_request(
                self.users[user],
                self.courses[course],
                &format!("B{booking}"),
                start,
                if len == 0 { 0 } else { start + len },
            ),
            Op::SemcoUnenrol { nth } => Request::Unenrol { enrolid: *self.semco.get(nth)? },
            Op::DeleteUser { user } => Request::DeleteUsers(vec![self.users[user]]),
            _ => return None,
        };
        let outcome = submit(&self.ledger, request).await;
        if let (Op::Semco { .. }, Ok(o)) = (op, &outcome) {
            self.semco.push(o.enrolid);
        }
        Some(outcome.map(|_| ()).map_err(|e| match e {
            LedgerError::Domain(d) => LedgerError::Domain(without_ids(d)),
            other => other,
        }))
    }

    /// The SEMCO enrolments without ids: (user, course, booking, start, end, status).
    async fn semco_rows(&self) -> Vec<(i64, i64, String, i64, i64, i64)> {
        sqlx::query_as(
            "SELECT ue.userid, e.courseid, e.customchar1, ue.timestart, ue.timeend, ue.status \
             FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid WHERE e.enrol = 'semco' \
             ORDER BY e.courseid, e.customchar1",
        )
        .fetch_all(&self.test.db.pool)
        .await
        .unwrap()
    }
}

/// Errors that name a user enrolment id name a different one on the twin.
fn without_ids(error: enrol_ledger::domain::DomainError) -> enrol_ledger::domain::DomainError {
    use enrol_ledger::domain::DomainError::EnrolNoUserInstance;
    match error {
        EnrolNoUserInstance(_) => EnrolNoUserInstance(0),
        other => other,
    }
}

async fn enrolled_users_via_router(router: &axum::Router, token: &str, course: i64) -> Vec<i64> {
    let body =
        format!("wstoken={token}&wsfunction=core_enrol_get_enrolled_users&moodlewsrestformat=json&courseid={course}");
    let request = axum::http::Request::post("/webservice/rest/server.php")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value.as_array().unwrap_or_else(|| panic!("{value}")).iter().map(|u| u["id"].as_i64().unwrap()).collect()
}

async fn run_case(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut mixed = Side::new(backend).await;
    let mut twin = Side::new(backend).await;
    let router =
        api::router(mixed.ledger.clone(), api::Settings { base_url: "http://moodle.example".into(), debug: false });
    let token = tokens::create(&mixed.test.db, services::LEDGER_HR, services::ADMIN_USER_ID, 0, "").await.unwrap();
    for op in &ops {
        match op {
            Op::Manual { user, course, start, end, suspend, role } => {
                let item = ManualEnrolItem {
                    role_id: *role,
                    user_id: mixed.users[*user],
                    course_id: mixed.courses[*course],
                    timestart: *start,
                    timeend: *end,
                    suspend: Some(i64::from(*suspend)),
                };
                let _ = submit(&mixed.ledger, Request::ManualEnrol(vec![item])).await;
            }
            Op::ManualUnenrol { user, course } => {
                let item = ManualUnenrolItem { user_id: mixed.users[*user], course_id: mixed.courses[*course] };
                let _ = submit(&mixed.ledger, Request::ManualUnenrol(vec![item])).await;
            }
            _ => {
                let here = mixed.semco(op).await;
                let there = twin.semco(op).await;
                prop_assert_eq!(here, there, "SEMCO's answer to {:?} depends on manual enrolments", op);
            }
        }
    }
    prop_assert_eq!(mixed.semco_rows().await, twin.semco_rows().await);
    for course in &mixed.courses {
        let listed = enrolled_users_via_router(&router, &token, *course).await;
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT ue.userid FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
             JOIN users u ON u.id = ue.userid AND u.deleted = 0 WHERE e.courseid = $1 ORDER BY ue.userid",
        )
        .bind(*course)
        .fetch_all(&mixed.test.db.pool)
        .await
        .unwrap();
        prop_assert_eq!(listed, rows, "course {}", course);
    }
    let report = audit::verify(&mixed.test.db).await.unwrap();
    prop_assert!(report.is_ok(), "verify after {:?}: {:?}", ops, report.problems);
    let live = tables::read_all(&mut mixed.test.db.pool.acquire().await.unwrap()).await.unwrap();
    audit::rebuild(&mixed.test.db).await.unwrap();
    let rebuilt = tables::read_all(&mut mixed.test.db.pool.acquire().await.unwrap()).await.unwrap();
    prop_assert_eq!(live, rebuilt);
    Ok(())
}

fn property(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let strategy = proptest::collection::vec(op(), 1..30);
    runner.run(&strategy, |ops| runtime.block_on(run_case(backend, ops))).unwrap();
}

#[test]
fn semco_rules_ignore_manual_enrolments_sqlite() {
    property(Backend::Sqlite);
}

#[test]
fn semco_rules_ignore_manual_enrolments_postgres() {
    property(Backend::Postgres);
}
