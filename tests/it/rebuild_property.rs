//! Property: for any sequence of commands, the live projections equal a rebuild from the log,
//! and the hash chain verifies. Runs random sequences on both backends.

use enrol_ledger::app::audit;
use enrol_ledger::app::{Ledger, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::projection::tables;
use enrol_ledger::store::Backend;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::*;

const USERS: usize = 4;
const COURSES: usize = 2;
const CASES: u32 = 12;

#[derive(Debug, Clone)]
enum Op {
    Enrol { user: usize, course: usize, booking: u8, start: i64, len: i64 },
    Edit { enrolid: i64, booking: Option<u8>, start: Option<i64>, end: Option<i64>, suspend: Option<bool> },
    Unenrol { enrolid: i64 },
    Record { user: usize, course: usize, time: i64, grade: Option<f64> },
    Reset { enrolid: i64 },
    Recompletion { course: usize, kind: u8 },
    OverlapRule { strict: bool },
    DeleteUser { user: usize },
    Cleanup,
}

fn op() -> impl Strategy<Value = Op> {
    let time = prop_oneof![Just(0i64), 1i64..50];
    prop_oneof![
        4 => (0..USERS, 0..COURSES, 0u8..12, time.clone(), prop_oneof![Just(0i64), 0i64..30])
            .prop_map(|(user, course, booking, start, len)| Op::Enrol { user, course, booking, start, len }),
        3 => (1i64..12, proptest::option::of(0u8..12), proptest::option::of(time.clone()), proptest::option::of(time), proptest::option::of(any::<bool>()))
            .prop_map(|(enrolid, booking, start, end, suspend)| Op::Edit { enrolid, booking, start, end, suspend }),
        1 => (1i64..12).prop_map(|enrolid| Op::Unenrol { enrolid }),
        2 => (0..USERS, 0..COURSES, 1i64..100, proptest::option::of(0.0f64..100.0))
            .prop_map(|(user, course, time, grade)| Op::Record { user, course, time, grade }),
        1 => (1i64..12).prop_map(|enrolid| Op::Reset { enrolid }),
        1 => (0..COURSES, 0u8..4).prop_map(|(course, kind)| Op::Recompletion { course, kind }),
        1 => any::<bool>().prop_map(|strict| Op::OverlapRule { strict }),
        1 => (0..USERS).prop_map(|user| Op::DeleteUser { user }),
        1 => Just(Op::Cleanup),
    ]
}

fn request(op: &Op, users: &[i64], courses: &[i64]) -> Request {
    match op.clone() {
        Op::Enrol { user, course, booking, start, len } => enrol_request(
            users[user],
            courses[course],
            &format!("B{booking}"),
            start,
            if len == 0 { 0 } else { start + len },
        ),
        Op::Edit { enrolid, booking, start, end, suspend } => Request::Edit {
            enrolid,
            booking_id: booking.map(|b| format!("B{b}")),
            timestart: start,
            timeend: end,
            suspend,
        },
        Op::Unenrol { enrolid } => Request::Unenrol { enrolid },
        Op::Record { user, course, time, grade } => Request::RecordCompletion {
            user_id: users[user],
            course_id: courses[course],
            timecompleted: time,
            grade: GradeInput { finalgrade: grade, ..GradeInput::default() },
        },
        Op::Reset { enrolid } => Request::ResetCompletion { enrolid },
        Op::Recompletion { course, kind } => Request::SetRecompletion {
            course_id: courses[course],
            recompletion_type: ["", "period", "ondemand", "schedule"][kind as usize].to_owned(),
        },
        Op::OverlapRule { strict } => Request::SetConfig {
            name: "overlap_rule".into(),
            value: if strict { "strict" } else { "enrol_semco" }.into(),
        },
        Op::DeleteUser { user } => Request::DeleteUsers(vec![users[user]]),
        Op::Cleanup => Request::CleanupOrphans,
    }
}

async fn run_case(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let test = TestDb::new(backend).await;
    let ledger: Ledger = test.ledger().await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(create_user(&ledger, &format!("p{i}")).await);
    }
    let mut courses = Vec::new();
    for i in 0..COURSES {
        courses.push(create_course(&ledger, &format!("PC{i}"), i == 0).await);
    }
    for op in &ops {
        // Rule violations are expected; what matters is what the log and projections become.
        let _ = submit(&ledger, request(op, &users, &courses)).await;
    }
    let report = audit::verify(&test.db).await.unwrap();
    prop_assert!(report.is_ok(), "verify after {:?}: {:?}", ops, report.problems);
    let live = tables::read_all(&mut test.db.pool.acquire().await.unwrap()).await.unwrap();
    audit::rebuild(&test.db).await.unwrap();
    let rebuilt = tables::read_all(&mut test.db.pool.acquire().await.unwrap()).await.unwrap();
    prop_assert_eq!(live, rebuilt);
    Ok(())
}

fn property(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let strategy = proptest::collection::vec(op(), 1..40);
    runner.run(&strategy, |ops| runtime.block_on(run_case(backend, ops))).unwrap();
}

#[test]
fn rebuild_equals_live_projections_sqlite() {
    property(Backend::Sqlite);
}

#[test]
fn rebuild_equals_live_projections_postgres() {
    property(Backend::Postgres);
}
