//! As-of on two time axes (issue 8 item 2): the regression of "as-of answers the wrong
//! question", the CLI flags, and a property test that checks every answer (course and user,
//! both axes, random times and positions) against a replay of the raw log written here,
//! independent of the production fold.

use std::collections::BTreeMap;

use enrol_ledger::app::asof::{self, Answer, KnownAt, Question, Scope};
use enrol_ledger::app::{Ledger, Request};
use enrol_ledger::store::{log, Backend, Db};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::on_both_backends;
use crate::support::*;

/// 2031-01-01T00:00:00Z and 2031-06-01T00:00:00Z.
const START_2031: i64 = 1_924_992_000;
const JUNE_2031: i64 = 1_938_038_400;

fn ask(known: KnownAt, active_on: Option<i64>, scope: Scope) -> Question {
    Question { known, active_on, scope }
}

fn bookings(answer: &Answer) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> =
        answer.enrolments.iter().map(|e| (e.semcobookingid.clone().unwrap_or_default(), e.active)).collect();
    out.sort();
    out
}

/// Regression (issue 8, "`as-of` answers the wrong question"): `as-of --time now --course C`
/// listed an enrolment whose `timestart` is in 2031 as enrolled now.
async fn defect_as_of_answers_the_wrong_question(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "AO1", false).await;
    let (now_user, future_user, ended_user) = (
        create_user(&ledger, "ao-now").await,
        create_user(&ledger, "ao-2031").await,
        create_user(&ledger, "ao-ended").await,
    );
    enrol(&ledger, now_user, course, "AO-NOW", 0, 0).await;
    enrol(&ledger, future_user, course, "AO-2031", START_2031, 0).await;
    enrol(&ledger, ended_user, course, "AO-ENDED", 1_000, 2_000).await;
    let db = &test.db;

    let now = chrono::Utc::now().timestamp();
    let active_now = asof::as_of(db, &ask(KnownAt::Now, Some(now), Scope::Course(course))).await.unwrap();
    assert_eq!(bookings(&active_now), vec![("AO-NOW".to_owned(), true)], "only the current enrolment is active now");
    let known = asof::as_of(db, &ask(KnownAt::Now, None, Scope::Course(course))).await.unwrap();
    let expected = vec![("AO-2031".to_owned(), false), ("AO-ENDED".to_owned(), false), ("AO-NOW".to_owned(), true)];
    assert_eq!(bookings(&known), expected, "every record known, each with whether it is active now");
    let in_2031 = asof::as_of(db, &ask(KnownAt::Now, Some(JUNE_2031), Scope::Course(course))).await.unwrap();
    let expected_2031 = vec![("AO-2031".to_owned(), true), ("AO-NOW".to_owned(), true)];
    assert_eq!(bookings(&in_2031), expected_2031);
    let in_1970 = asof::as_of(db, &ask(KnownAt::Now, Some(1_500), Scope::Course(course))).await.unwrap();
    assert!(in_1970.enrolments.is_empty(), "nothing was recorded in 1970: {in_1970:?}");
    let per_user = asof::as_of(db, &ask(KnownAt::Now, Some(JUNE_2031), Scope::User(future_user))).await.unwrap();
    assert_eq!(bookings(&per_user), vec![("AO-2031".to_owned(), true)]);
    let first: i64 = sqlx::query_scalar("SELECT MIN(position) FROM events WHERE event_type = 'Enrolled'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let before_second = asof::as_of(db, &ask(KnownAt::Position(first), None, Scope::All)).await.unwrap();
    assert_eq!(bookings(&before_second), vec![("AO-NOW".to_owned(), true)]);
    ledger.shutdown().await;

    // The CLI: --active-on, --known-at and its old name --time, --user, --format json.
    let url = test.url.clone();
    let course_arg = course.to_string();
    let user_arg = future_user.to_string();
    tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().to_rfc3339();
        let (code, out, err) = run_cli(&url, &["as-of", "--active-on", &now, "--course", &course_arg]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("AO-NOW") && !out.contains("AO-2031") && !out.contains("AO-ENDED"), "{out}");
        let (_, out, _) = run_cli(&url, &["as-of", "--time", "2999-01-01T00:00:00Z", "--course", &course_arg]);
        assert_eq!(out.lines().count(), 3, "{out}");
        let args = ["as-of", "--known-at", &now, "--active-on", "2031-06-01T00:00:00Z", "--user", &user_arg];
        let (code, out, err) = run_cli(&url, &[&args[..], &["--format", "json"]].concat());
        assert_eq!(code, 0, "{err}");
        let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer["enrolments"].as_array().unwrap().len(), 1, "{answer}");
        assert_eq!(answer["enrolments"][0]["semcobookingid"], "AO-2031");
        assert_eq!(answer["evaluated_at"], JUNE_2031);
        let (code, _, err) = run_cli(&url, &["as-of", "--known-at", &now, "--position", "3"]);
        assert_ne!(code, 0, "--known-at and --position exclude each other");
        assert!(err.contains("--position"), "{err}");
        let (code, _, err) = run_cli(&url, &["as-of", "--active-on", "yesterday"]);
        assert_ne!(code, 0);
        assert!(err.contains("--active-on \"yesterday\""), "{err}");
    })
    .await
    .unwrap();
}

on_both_backends!(defect_as_of_answers_the_wrong_question);

// ---------------------------------------------------------------------------------------------
// The property: every answer equals the replay below.

const USERS: usize = 3;
const COURSES: usize = 2;
const CASES: u32 = 10;
const QUESTIONS: usize = 25;

#[derive(Debug, Clone)]
enum Op {
    Enrol { user: usize, course: usize, booking: u8, start: Option<i64>, len: Option<i64> },
    Edit { enrolid: i64, start: Option<i64>, end: Option<i64>, suspend: Option<bool> },
    Unenrol { enrolid: i64 },
    DeleteUser { user: usize },
    Suspend { user: usize, suspended: bool },
    Cleanup,
}

/// Times are offsets in seconds around the case's start (so `active_on` also cuts the log).
fn op() -> impl Strategy<Value = Op> {
    let offset = || proptest::option::of(-20i64..20);
    prop_oneof![
        5 => (0..USERS, 0..COURSES, 0u8..10, offset(), proptest::option::of(1i64..30))
            .prop_map(|(user, course, booking, start, len)| Op::Enrol { user, course, booking, start, len }),
        3 => (1i64..10, offset(), offset(), proptest::option::of(any::<bool>()))
            .prop_map(|(enrolid, start, end, suspend)| Op::Edit { enrolid, start, end, suspend }),
        1 => (1i64..10).prop_map(|enrolid| Op::Unenrol { enrolid }),
        1 => (0..USERS).prop_map(|user| Op::DeleteUser { user }),
        2 => (0..USERS, any::<bool>()).prop_map(|(user, suspended)| Op::Suspend { user, suspended }),
        1 => Just(Op::Cleanup),
    ]
}

fn request(op: &Op, base: i64, users: &[i64], courses: &[i64]) -> Request {
    let at = |offset: Option<i64>| offset.map_or(0, |o| base + o);
    match op.clone() {
        Op::Enrol { user, course, booking, start, len } => {
            let timestart = at(start);
            let timeend = match len {
                Some(len) => timestart.max(base - 25) + len,
                None => 0,
            };
            enrol_request(users[user], courses[course], &format!("P{booking}"), timestart, timeend)
        }
        Op::Edit { enrolid, start, end, suspend } => Request::Edit {
            enrolid,
            booking_id: None,
            timestart: start.map(|o| base + o),
            timeend: end.map(|o| if o < -15 { 0 } else { base + o }),
            suspend,
        },
        Op::Unenrol { enrolid } => Request::Unenrol { enrolid },
        Op::DeleteUser { user } => Request::DeleteUsers(vec![users[user]]),
        Op::Suspend { user, suspended } => Request::UpdateUsers(vec![enrol_ledger::registry::UserUpdate {
            id: users[user],
            suspended: Some(suspended),
            ..Default::default()
        }]),
        Op::Cleanup => Request::CleanupOrphans,
    }
}

/// One raw event: position, time and payload, read straight from the log's columns.
struct Raw {
    position: i64,
    recorded_at: i64,
    payload: serde_json::Value,
}

async fn raw_log(db: &Db) -> Vec<Raw> {
    let mut conn = db.pool.acquire().await.unwrap();
    let mut out = Vec::new();
    log::replay(&mut conn, None, |stored| {
        let payload = serde_json::from_str(&stored.payload).expect("a JSON payload");
        out.push(Raw { position: stored.position, recorded_at: stored.recorded_at, payload });
        Ok(())
    })
    .await
    .unwrap();
    out
}

/// (enrolid, userid, courseid, booking, timestart, timeend, suspended, active)
type Expected = (i64, i64, i64, Option<String>, i64, i64, bool, bool);

/// A user enrolment of the model: (instance, user, course, booking, timestart, timeend, suspended).
type ModelRow = (i64, i64, i64, Option<String>, i64, i64, bool);

/// The model: user enrolments after the events up to `until`, from the payloads alone.
fn replay(events: &[Raw], until: i64) -> BTreeMap<i64, ModelRow> {
    let mut instances: BTreeMap<i64, (i64, Option<String>)> = BTreeMap::new();
    // ue id → (instance, user, course, booking placeholder, timestart, timeend, suspended)
    let mut ues: BTreeMap<i64, ModelRow> = BTreeMap::new();
    let int = |v: &serde_json::Value, k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"));
    for e in events.iter().take_while(|e| e.position <= until) {
        let p = &e.payload;
        match p["type"].as_str().unwrap() {
            "Enrolled" => {
                let instance = int(p, "instance_id");
                let booking = p["booking_id"].as_str().map(str::to_owned);
                instances.insert(instance, (int(p, "course_id"), booking));
                let suspended = p["suspended"].as_bool().unwrap();
                let row = (
                    instance,
                    int(p, "user_id"),
                    int(p, "course_id"),
                    None,
                    int(p, "timestart"),
                    int(p, "timeend"),
                    suspended,
                );
                ues.insert(int(p, "user_enrolment_id"), row);
            }
            "EnrolmentEdited" => {
                let ue = ues.get_mut(&int(p, "user_enrolment_id")).expect("edit of a live enrolment");
                if let Some(v) = p["timestart"]["new"].as_i64() {
                    ue.4 = v;
                }
                if let Some(v) = p["timeend"]["new"].as_i64() {
                    ue.5 = v;
                }
                if let Some(v) = p["suspended"]["new"].as_bool() {
                    ue.6 = v;
                }
            }
            "BookingIdChanged" => {
                let instance = instances.get_mut(&int(p, "instance_id")).unwrap();
                instance.1 = p["new"].as_str().map(str::to_owned);
            }
            "Unenrolled" => {
                ues.remove(&int(p, "user_enrolment_id"));
            }
            "InstanceDeleted" => {
                instances.remove(&int(p, "instance_id"));
            }
            _ => {}
        }
    }
    ues.into_iter()
        .filter_map(|(id, mut ue)| {
            ue.3 = instances.get(&ue.0)?.1.clone();
            Some((id, ue))
        })
        .collect()
}

/// The users suspended or deleted after the events up to `until`, from the payloads alone (a
/// user is created unsuspended).
fn inactive_users(events: &[Raw], until: i64) -> std::collections::BTreeSet<i64> {
    let mut suspended: BTreeMap<i64, bool> = BTreeMap::new();
    let mut out = std::collections::BTreeSet::new();
    for e in events.iter().take_while(|e| e.position <= until) {
        let user = e.payload["user_id"].as_i64();
        match (e.payload["type"].as_str(), user) {
            (Some("UserUpdated"), Some(user)) => {
                if let Some(new) = e.payload["suspended"]["new"].as_bool() {
                    suspended.insert(user, new);
                }
            }
            (Some("UserDeleted"), Some(user)) => {
                out.insert(user);
            }
            _ => {}
        }
    }
    out.extend(suspended.into_iter().filter(|(_, s)| *s).map(|(u, _)| u));
    out
}

/// What the answer must be, by the rule of docs/AUDIT.md, computed from the raw log.
fn expected(events: &[Raw], question: &Question, now_seconds: i64) -> Vec<Expected> {
    let head = events.last().map_or(0, |e| e.position);
    let last_at =
        |micros: i64| events.iter().filter(|e| e.recorded_at <= micros).map(|e| e.position).max().unwrap_or(0);
    let (known, known_seconds) = match question.known {
        KnownAt::Now => (head, now_seconds),
        KnownAt::Time(micros) => (last_at(micros), micros.div_euclid(1_000_000)),
        KnownAt::Position(p) => {
            let p = p.clamp(0, head);
            let at = events.iter().find(|e| e.position == p).map_or(0, |e| e.recorded_at.div_euclid(1_000_000));
            (p, at)
        }
    };
    let (until, t) = match question.active_on {
        Some(t) => (known.min(last_at(t * 1_000_000 + 999_999)), t),
        None => (known, known_seconds),
    };
    let inactive = inactive_users(events, until);
    let mut out: Vec<Expected> = replay(events, until)
        .into_iter()
        .filter(|(_, ue)| match question.scope {
            Scope::All => true,
            Scope::Course(c) => ue.2 == c,
            Scope::User(u) => ue.1 == u,
        })
        .map(|(id, ue)| {
            let active = !ue.6 && !inactive.contains(&ue.1) && ue.4 <= t && (ue.5 == 0 || ue.5 > t);
            (id, ue.1, ue.2, ue.3, ue.4, ue.5, ue.6, active)
        })
        .filter(|e| question.active_on.is_none() || e.7)
        .collect();
    out.sort();
    out
}

fn answered(answer: &Answer) -> Vec<Expected> {
    let mut out: Vec<Expected> = answer
        .enrolments
        .iter()
        .map(|e| {
            (e.enrolid, e.userid, e.courseid, e.semcobookingid.clone(), e.timestart, e.timeend, e.suspended, e.active)
        })
        .collect();
    out.sort();
    out
}

async fn run_case(backend: Backend, ops: Vec<Op>, picks: Vec<(u8, u16, u16, u8)>) -> Result<(), TestCaseError> {
    let test = TestDb::new(backend).await;
    let ledger: Ledger = test.ledger().await;
    let base = chrono::Utc::now().timestamp();
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(create_user(&ledger, &format!("q{i}")).await);
    }
    let mut courses = Vec::new();
    for i in 0..COURSES {
        courses.push(create_course(&ledger, &format!("QC{i}"), false).await);
    }
    for (i, op) in ops.iter().enumerate() {
        // Refusals are expected; the log is what counts. A pause now and then spreads the
        // events over more than one second, so `active_on` cuts the log at different places.
        let _ = submit(&ledger, request(op, base, &users, &courses)).await;
        if i % 7 == 6 {
            tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        }
    }
    ledger.shutdown().await;
    let events = raw_log(&test.db).await;
    let head = events.last().map_or(0, |e| e.position);
    let times: Vec<i64> = events.iter().map(|e| e.recorded_at).collect();
    for (kind, a, b, scope) in picks.into_iter().take(QUESTIONS) {
        let known = match kind % 3 {
            0 => KnownAt::Now,
            1 => KnownAt::Position(i64::from(a) % (head + 2)),
            _ => KnownAt::Time(times[usize::from(a) % times.len()] + i64::from(b % 3) - 1),
        };
        let active_on = match kind / 3 % 3 {
            0 => None,
            1 => Some(base + i64::from(b % 60) - 30),
            _ => Some(times[usize::from(b) % times.len()].div_euclid(1_000_000) + i64::from(a % 3) - 1),
        };
        let scope = match scope % 3 {
            0 => Scope::All,
            1 => Scope::Course(courses[usize::from(a) % COURSES]),
            _ => Scope::User(users[usize::from(b) % USERS]),
        };
        let question = ask(known, active_on, scope);
        let answer = asof::as_of(&test.db, &question).await.unwrap();
        let want = expected(&events, &question, answer.evaluated_at);
        prop_assert_eq!(answered(&answer), want, "{:?} after {:?}", question, ops);
    }
    Ok(())
}

fn property(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let strategy = (
        proptest::collection::vec(op(), 1..30),
        proptest::collection::vec((0u8..9, any::<u16>(), any::<u16>(), 0u8..3), QUESTIONS),
    );
    runner.run(&strategy, |(ops, picks)| runtime.block_on(run_case(backend, ops, picks))).unwrap();
}

#[test]
fn as_of_equals_an_independent_replay_sqlite() {
    property(Backend::Sqlite);
}

#[test]
fn as_of_equals_an_independent_replay_postgres() {
    property(Backend::Postgres);
}
