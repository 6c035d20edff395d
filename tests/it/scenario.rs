//! A booking's life through the ledger, checked in the projections and the log.

use enrol_ledger::app::{audit, LedgerError, Outcome, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::domain::DomainError;
use enrol_ledger::store::{log, Backend};
use sqlx::Row;

use crate::on_both_backends;
use crate::support::*;

async fn user_enrolment(test: &TestDb, id: i64) -> Option<(i64, i64, i64, i64)> {
    sqlx::query("SELECT status, userid, timestart, timeend FROM user_enrolments WHERE id = $1")
        .bind(id)
        .fetch_optional(&test.db.pool)
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

async fn booking_lifecycle_is_projected_and_auditable(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", true).await;
    let user = create_user(&ledger, "anna").await;
    let enrolid = enrol(&ledger, user, course, "B-1", 100, 200).await;
    assert_eq!(user_enrolment(&test, enrolid).await, Some((0, user, 100, 200)));

    // Suspend, then an edit of only dates re-activates (the plugin's quirk).
    let edit = |timestart, suspend| Request::Edit { enrolid, booking_id: None, timestart, timeend: None, suspend };
    submit(&ledger, edit(None, Some(true))).await.unwrap();
    assert_eq!(user_enrolment(&test, enrolid).await, Some((1, user, 100, 200)));
    submit(&ledger, edit(Some(150), None)).await.unwrap();
    assert_eq!(user_enrolment(&test, enrolid).await, Some((0, user, 150, 200)));

    // Resending the own booking ID fails; a new one moves the booking.
    let rebook =
        |b: &str| Request::Edit { enrolid, booking_id: Some(b.into()), timestart: None, timeend: None, suspend: None };
    assert_eq!(
        submit(&ledger, rebook("B-1")).await,
        Err(LedgerError::Domain(DomainError::BookingIdDuplicateMustChange("B-1".into())))
    );
    submit(&ledger, rebook("B-2")).await.unwrap();
    let booking: String = sqlx::query_scalar("SELECT customchar1 FROM enrol").fetch_one(&test.db.pool).await.unwrap();
    assert_eq!(booking, "B-2");

    // Completion, then a reset on demand archives it.
    let grade = GradeInput { finalgrade: Some(30.0), gradepass: Some(25.0), ..GradeInput::default() };
    submit(&ledger, Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 180, grade })
        .await
        .unwrap();
    assert_eq!(
        submit(&ledger, Request::ResetCompletion { enrolid }).await,
        Err(LedgerError::Domain(DomainError::RecompletionNotEnabled(enrol_ledger::domain::ids::CourseId(course))))
    );
    submit(&ledger, Request::SetRecompletion { course_id: course, recompletion_type: "ondemand".into() })
        .await
        .unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.unwrap();
    let completions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM course_completions").fetch_one(&test.db.pool).await.unwrap();
    assert_eq!(completions, 0);
    let archived = sqlx::query("SELECT timecompleted, finalgrade, gradepass, semcobookingid FROM recompletion_history")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(archived.get::<Option<i64>, _>(0), Some(180));
    assert_eq!(archived.get::<Option<f64>, _>(1), Some(30.0));
    assert_eq!(archived.get::<Option<f64>, _>(2), Some(25.0));
    assert_eq!(archived.get::<Option<String>, _>(3).as_deref(), Some("B-2"));

    // Unenrol frees the booking ID; it can be used again.
    submit(&ledger, Request::Unenrol { enrolid }).await.unwrap();
    assert_eq!(user_enrolment(&test, enrolid).await, None);
    let second = enrol(&ledger, user, course, "B-2", 0, 0).await;
    assert!(second > enrolid, "ids are never reused");

    // The history of B-1 follows its stream through the booking change to the unenrolment.
    let history = log::read_booking(&test.db, "B-1").await.unwrap();
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Enrolled", "EnrolmentEdited", "EnrolmentEdited", "BookingIdChanged", "Unenrolled"]);
    assert!(history.iter().all(|e| e.actor_user_id == Some(3) && e.actor_token_id == Some(1)));
    let b2: Vec<String> =
        log::read_booking(&test.db, "B-2").await.unwrap().iter().map(|e| e.event_type.clone()).collect();
    assert!(b2.contains(&"CompletionReset".to_owned()) && b2.contains(&"CompletionRecorded".to_owned()), "{b2:?}");

    // As of its Enrolled event the first enrolment existed with its original period.
    let mut conn = test.db.pool.acquire().await.unwrap();
    let first = history[0].position;
    let then = audit::as_of_position(&mut conn, first, Some(course)).await.unwrap();
    assert_eq!(then.len(), 1);
    assert_eq!((then[0].enrolid, then[0].timestart, then[0].semcobookingid.as_deref()), (enrolid, 100, Some("B-1")));
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
}

async fn user_deletion_orphans_instances_until_cleanup(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let user = create_user(&ledger, "bert").await;
    let other = create_user(&ledger, "carl").await;
    enrol(&ledger, user, course, "B-1", 0, 0).await;
    submit(&ledger, Request::DeleteUsers(vec![user])).await.unwrap();
    let email: String =
        sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(user).fetch_one(&test.db.pool).await.unwrap();
    assert_eq!(email, "", "personal data is erased");
    // The empty instance keeps its booking ID until the clean-up.
    assert_eq!(
        submit(&ledger, enrol_request(other, course, "B-1", 0, 0)).await,
        Err(LedgerError::Domain(DomainError::BookingIdDuplicate("B-1".into())))
    );
    assert_eq!(submit(&ledger, Request::CleanupOrphans).await, Ok(Outcome::removed(1)));
    assert_eq!(submit(&ledger, Request::CleanupOrphans).await, Ok(Outcome::removed(0)));
    enrol(&ledger, other, course, "B-1", 0, 0).await;
    let reasons: Vec<Option<&str>> =
        log::read_booking(&test.db, "B-1").await.unwrap().iter().map(|e| e.event().unwrap().reason()).collect();
    assert_eq!(reasons, [None, Some("user_deleted"), Some("orphan_cleanup"), None]);
    assert_eq!(
        submit(&ledger, enrol_request(user, course, "B-9", 0, 0)).await,
        Err(LedgerError::Domain(DomainError::UserNotExist(enrol_ledger::domain::ids::UserId(user))))
    );
}

async fn state_survives_a_restart(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (user, course) = {
        let ledger = test.ledger().await;
        let course = create_course(&ledger, "C1", false).await;
        let user = create_user(&ledger, "dora").await;
        enrol(&ledger, user, course, "B-1", 10, 20).await;
        ledger.shutdown().await;
        (user, course)
    };
    let ledger = test.ledger().await;
    assert_eq!(
        submit(&ledger, enrol_request(user, course, "B-1", 0, 0)).await,
        Err(LedgerError::Domain(DomainError::BookingIdDuplicate("B-1".into())))
    );
    assert_eq!(
        submit(&ledger, enrol_request(user, course, "B-2", 20, 30)).await,
        Err(LedgerError::Domain(DomainError::BookingOverlap))
    );
    let next = enrol(&ledger, user, course, "B-2", 21, 30).await;
    assert_eq!(next, 2);
    assert!(audit::verify(&test.db).await.unwrap().is_ok());
}

on_both_backends!(
    booking_lifecycle_is_projected_and_auditable,
    user_deletion_orphans_instances_until_cleanup,
    state_survives_a_restart,
);

/// esrs tooling sees the ledger's streams: load an enrolment through the `EventStore` trait
/// and fold it with `AggregateState`.
async fn esrs_event_store_loads_streams_and_refuses_deletes(backend: Backend) {
    use enrol_ledger::domain::enrolment::{Enrolment, EnrolmentState};
    use enrol_ledger::store::esrs_store::LedgerStore;
    use esrs::store::EventStore;
    use esrs::{Aggregate, AggregateState};

    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "C1", false).await;
    let user = create_user(&ledger, "fred").await;
    let enrolid = enrol(&ledger, user, course, "B-1", 0, 0).await;
    let suspend = Request::Edit { enrolid, booking_id: None, timestart: None, timeend: None, suspend: Some(true) };
    submit(&ledger, suspend).await.unwrap();

    let store = LedgerStore::<Enrolment>::new(test.db.clone());
    let stream = enrol_ledger::app::decide::enrolment_stream(1).uuid();
    let events = store.by_aggregate_id(stream).await.unwrap();
    assert_eq!(events.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), [1, 2]);
    let state = AggregateState::<EnrolmentState>::with_id(stream).apply_store_events(events, Enrolment::apply_event);
    let live = state.inner().live().expect("live enrolment");
    assert!(live.suspended);
    assert!(store.delete(stream).await.is_err());
}

on_both_backends!(esrs_event_store_loads_streams_and_refuses_deletes);
