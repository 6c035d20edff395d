//! Issue 8, "History is by booking only": the history of a user and of a course, every event in
//! order with time, actor (username, token, service), reason and old → new values, from the
//! library (what the audit API serves) and the CLI (`history --user|--course`, text and JSON).

use enrol_ledger::app::history::{self, Subject};
use enrol_ledger::app::Request;
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::registry::{CourseUpdate, UserUpdate};
use enrol_ledger::store::Backend;

use crate::on_both_backends;
use crate::support::*;

/// Exit code and stdout of the binary.
fn run(url: &str, args: &[&str]) -> (i32, String) {
    let (code, out, _) = run_cli(url, args);
    (code, out)
}

async fn defect_history_by_booking_only(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let other_course = create_course(&ledger, "C2", false).await;
    let user = create_user(&ledger, "anna").await;
    let other = create_user(&ledger, "bert").await;
    let enrolid = enrol(&ledger, user, course, "B-1", 100, 200).await;
    enrol(&ledger, other, other_course, "B-2", 0, 0).await;
    let edit = Request::Edit { enrolid, booking_id: None, timestart: None, timeend: Some(300), suspend: None };
    submit(&ledger, edit).await.unwrap();
    let flip = CourseUpdate { id: course, enablecompletion: Some(true), ..CourseUpdate::default() };
    submit(&ledger, Request::UpdateCourses(vec![flip])).await.unwrap();
    let grade = GradeInput { finalgrade: Some(30.0), ..GradeInput::default() };
    submit(&ledger, Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 180, grade })
        .await
        .unwrap();
    submit(&ledger, Request::SetRecompletion { course_id: course, recompletion_type: "ondemand".into() })
        .await
        .unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.unwrap();
    submit(&ledger, Request::Unenrol { enrolid }).await.unwrap();
    let suspend = UserUpdate { id: user, suspended: Some(true), ..UserUpdate::default() };
    submit(&ledger, Request::UpdateUsers(vec![suspend])).await.unwrap();

    let of_user = history::history(&test.db, Subject::User(user)).await.unwrap();
    let types: Vec<&str> = of_user.entries.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "UserRegistered",
            "Enrolled",
            "EnrolmentEdited",
            "CompletionRecorded",
            "CompletionReset",
            "Unenrolled",
            "UserUpdated"
        ]
    );
    let positions: Vec<i64> = of_user.entries.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in log order: {positions:?}");
    let first = &of_user.entries[0];
    assert_eq!(first.actor.username.as_deref(), Some("semcowebservice"));
    assert_eq!((first.actor.token_id, first.actor.service.as_deref()), (Some(1), Some("enrol_semco")));
    let edited = &of_user.entries[2].changes[0];
    assert_eq!(
        (edited.field.as_str(), &edited.old, &edited.new),
        ("timeend", &serde_json::json!(200), &serde_json::json!(300))
    );
    let unenrolled = &of_user.entries[5];
    assert_eq!(unenrolled.reason.as_deref(), Some("semco"));
    let suspended = &of_user.entries[6].changes[0];
    assert_eq!((suspended.field.as_str(), &suspended.new), ("suspended", &serde_json::json!(true)));

    let of_course = history::history(&test.db, Subject::Course(course)).await.unwrap();
    let types: Vec<&str> = of_course.entries.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CourseCreated",
            "ManualInstanceCreated",
            "Enrolled",
            "EnrolmentEdited",
            "CourseUpdated",
            "CompletionRecorded",
            "RecompletionTypeSet",
            "CompletionReset",
            "Unenrolled"
        ],
        "no event of the other course or of the users' registry streams"
    );
    let enablecompletion = &of_course.entries[4].changes[0];
    assert_eq!(
        (enablecompletion.field.as_str(), &enablecompletion.old, &enablecompletion.new),
        ("enablecompletion", &serde_json::json!(false), &serde_json::json!(true))
    );

    // The booking's history is what it was: its stream's events (and the completion events
    // tagged with it).
    let of_booking = history::history(&test.db, Subject::Booking("B-1".into())).await.unwrap();
    let types: Vec<&str> = of_booking.entries.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Enrolled", "EnrolmentEdited", "CompletionRecorded", "CompletionReset", "Unenrolled"]);

    // The CLI: text and JSON, by user and by course; an unknown subject exits 1.
    let url = test.url.clone();
    let (user_arg, course_arg) = (user.to_string(), course.to_string());
    let (text, json, by_course, unknown) = tokio::task::spawn_blocking(move || {
        (
            run(&url, &["history", "--user", &user_arg, "--format", "text"]),
            run(&url, &["history", "--user", &user_arg]),
            run(&url, &["history", "--course", &course_arg, "--format", "text"]),
            run(&url, &["history", "--user", "999"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(text.0, 0, "{}", text.1);
    assert_eq!(text.1.lines().count(), 7, "{}", text.1);
    assert!(
        text.1.contains(
            "EnrolmentEdited enrolment/3 [B-1] by semcowebservice (user 3, token 1 of enrol_semco): timeend 200 → 300"
        ),
        "{}",
        text.1
    );
    assert!(text.1.contains("UserUpdated user/"), "{}", text.1);
    assert_eq!(json.1.lines().count(), 7);
    let line: serde_json::Value = serde_json::from_str(json.1.lines().next().unwrap()).unwrap();
    assert_eq!(line["event_type"], "UserRegistered");
    assert_eq!(line["actor"]["service"], "enrol_semco");
    assert!(by_course.1.contains("enablecompletion false → true"), "{}", by_course.1);
    assert_eq!(unknown.0, 1);
}

on_both_backends!(defect_history_by_booking_only);
