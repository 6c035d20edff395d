//! Issue 8 item 6, undo without loss: an unenrolment by mistake is reinstated and a reset
//! completion restored, each by a new compensating event pointing to the undone one; the
//! history shows both, today's rules still apply, and the log verifies.

use enrol_ledger::app::history::{self, Subject};
use enrol_ledger::app::undo::{request_for, UndoKind};
use enrol_ledger::app::{audit, LedgerError, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::domain::DomainError;
use enrol_ledger::store::Backend;

use crate::on_both_backends;
use crate::support::*;

async fn position_of(test: &TestDb, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT MAX(position) FROM events WHERE event_type = $1")
        .bind(event_type.to_owned())
        .fetch_one(&test.db.pool)
        .await
        .unwrap()
}

async fn undo_reinstates_and_restores_with_compensating_events(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", true).await;
    let user = create_user(&ledger, "anna").await;
    let enrolid = enrol(&ledger, user, course, "B-1", 100, 200).await;
    let grade = GradeInput { finalgrade: Some(30.0), ..GradeInput::default() };
    submit(&ledger, Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 180, grade })
        .await
        .unwrap();
    submit(&ledger, Request::SetRecompletion { course_id: course, recompletion_type: "ondemand".into() })
        .await
        .unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.unwrap();
    let reset = position_of(&test, "CompletionReset").await;
    submit(&ledger, Request::Unenrol { enrolid }).await.unwrap();
    let unenrolled = position_of(&test, "Unenrolled").await;

    // Not undoable: an enrolment event, a position past the log.
    let enrolled = position_of(&test, "Enrolled").await;
    let refused = request_for(&test.db, enrolled, UndoKind::Any, None).await.unwrap_err().to_string();
    assert!(refused.contains(&format!("position {enrolled} cannot be undone")), "{refused}");
    assert!(request_for(&test.db, 9_999, UndoKind::Reinstate, None).await.is_err());
    assert!(request_for(&test.db, unenrolled, UndoKind::Restore, None).await.is_err(), "the kind must match");

    // Reinstate: same booking, user, course and period; a new user enrolment id.
    let request =
        request_for(&test.db, unenrolled, UndoKind::Reinstate, Some("unenrolled by mistake".into())).await.unwrap();
    let back = submit(&ledger, request.clone()).await.unwrap().enrolid;
    assert!(back > enrolid, "ids are never reused");
    let row: (i64, i64, i64, String) = sqlx::query_as(
        "SELECT ue.userid, ue.timestart, ue.timeend, e.customchar1 FROM user_enrolments ue \
         JOIN enrol e ON e.id = ue.enrolid WHERE ue.id = $1",
    )
    .bind(back)
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(row, (user, 100, 200, "B-1".to_owned()));
    // Today's rules: the booking ID is taken now by the reinstated enrolment.
    assert_eq!(submit(&ledger, request).await, Err(LedgerError::Domain(DomainError::BookingIdDuplicate("B-1".into()))));

    // Restore the reset completion.
    let request = request_for(&test.db, reset, UndoKind::Restore, None).await.unwrap();
    submit(&ledger, request.clone()).await.unwrap();
    let completions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM course_completions WHERE userid = $1")
        .bind(user)
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(completions, 1);
    assert!(
        matches!(submit(&ledger, request).await, Err(LedgerError::Domain(DomainError::NotUndoable { .. }))),
        "a current completion is not replaced"
    );

    // The history shows the undone events and the compensating ones pointing to them.
    let booking = history::history(&test.db, Subject::Booking("B-1".into())).await.unwrap();
    let types: Vec<&str> = booking.entries.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "Enrolled",
            "CompletionRecorded",
            "CompletionReset",
            "Unenrolled",
            "EnrolmentReinstated",
            "CompletionRestored"
        ]
    );
    assert_eq!(booking.entries[4].undoes, Some(unenrolled));
    assert_eq!(booking.entries[4].reason.as_deref(), Some("unenrolled by mistake"));
    assert_eq!(booking.entries[5].undoes, Some(reset));
    let of_user = history::history(&test.db, Subject::User(user)).await.unwrap();
    assert!(of_user.entries.iter().any(|e| e.event_type == "EnrolmentReinstated"));

    // The writer's state after a restart and the projections equal a fold of the log.
    ledger.shutdown().await;
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
    let ledger = test.ledger().await;
    assert_eq!(
        submit(&ledger, Request::Unenrol { enrolid: back }).await.map(|o| o.enrolid),
        Ok(0),
        "the reinstated enrolment is live after a restart"
    );
}

on_both_backends!(undo_reinstates_and_restores_with_compensating_events);

/// The two admin functions through the real router, JSON and XML: success and Moodle errors.
async fn undo_functions_answer_in_moodles_envelope(backend: Backend) {
    let api = crate::http::Api::new(backend).await;
    let (admin, semco) = (api.token("ledger_admin").await, api.token("enrol_semco").await);
    let course =
        "courses[0][fullname]=C&courses[0][shortname]=C1&courses[0][categoryid]=1&courses[0][enablecompletion]=1";
    api.call(&admin, "core_course_create_courses", "json", course).await;
    let user = "users[0][username]=anna&users[0][firstname]=A&users[0][lastname]=B\
                &users[0][email]=anna%40example.org&users[0][createpassword]=1";
    api.call(&semco, "core_user_create_users", "json", user).await;
    let enrolled = api.call(&semco, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B-1").await;
    assert!(enrolled.contains(r#""enrolid":1"#), "{enrolled}");
    api.call(&semco, "enrol_semco_unenrol_user", "json", "enrolid=1").await;
    let unenrolled = position_of(&api.test, "Unenrolled").await;

    // Without --debug Moodle's envelope carries no debuginfo (the reason is in the server log).
    let invalid = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#;
    let wrong = api.call(&admin, "ledger_restore_completion", "json", &format!("position={unenrolled}")).await;
    assert_eq!(wrong, invalid);
    let missing = api.call(&admin, "ledger_reinstate_enrolment", "xml", "position=9999").await;
    assert!(missing.contains("<ERRORCODE>invalidparameter</ERRORCODE>"), "{missing}");

    let body = api
        .call(&admin, "ledger_reinstate_enrolment", "json", &format!("position={unenrolled}&reason=by+mistake"))
        .await;
    assert_eq!(body, r#"{"enrolid":2,"warnings":[]}"#);
    let again = api.call(&admin, "ledger_reinstate_enrolment", "xml", &format!("position={unenrolled}")).await;
    assert!(again.contains("<ERRORCODE>bookingidduplicate</ERRORCODE>"), "{again}");
    let denied = api.call(&semco, "ledger_reinstate_enrolment", "json", &format!("position={unenrolled}")).await;
    assert!(denied.contains("accessexception"), "only ledger_admin: {denied}");
}

on_both_backends!(undo_functions_answer_in_moodles_envelope);
