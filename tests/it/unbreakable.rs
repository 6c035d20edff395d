//! Regression tests of issue 6 owned by the writer and the store: typed binds, the writer lock,
//! the supervised writer and the durability checks.

use enrol_ledger::app::{audit, Request};
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::store::Backend;
use sqlx::Row;

use crate::on_both_backends;
use crate::support::*;

fn graded(finalgrade: f64) -> GradeInput {
    GradeInput { finalgrade: Some(finalgrade), grademin: Some(0.0), grademax: Some(100.0), gradepass: Some(50.0) }
}

async fn grades(test: &TestDb, table: &str) -> Vec<Option<f64>> {
    let sql = format!("SELECT finalgrade FROM {table} ORDER BY 1");
    let rows = sqlx::query(&sql).fetch_all(&test.db.pool).await.unwrap();
    rows.iter().map(|r| r.get::<Option<f64>, _>(0)).collect()
}

/// Defect 3: on PostgreSQL a completion without a grade, then one with a grade, failed with
/// "incorrect binary data format in bind parameter 4" until a restart. Every nullable column
/// of the projections and the log is written NULL, then a value, then NULL, in one run.
async fn defect_3_null_then_value_binds_fail_on_postgres(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let course = create_course(&ledger, "NULLS", true).await;
    let user = create_user(&ledger, "nulls").await;
    let record = |grade| Request::RecordCompletion { user_id: user, course_id: course, timecompleted: 100, grade };
    submit(&ledger, Request::SetRecompletion { course_id: course, recompletion_type: "ondemand".into() })
        .await
        .unwrap();

    // course_completions: grades NULL → value → NULL.
    submit(&ledger, record(GradeInput::default())).await.expect("completion without a grade");
    assert_eq!(grades(&test, "course_completions").await, vec![None]);
    submit(&ledger, record(graded(70.0))).await.expect("completion with a grade after one without");
    assert_eq!(grades(&test, "course_completions").await, vec![Some(70.0)]);
    submit(&ledger, record(GradeInput::default())).await.expect("completion without a grade after one with");
    assert_eq!(grades(&test, "course_completions").await, vec![None]);

    // recompletion_history: an archived completion without a grade, with one, and none at all
    // (timecompleted and semcobookingid NULL too, once the booking has moved on).
    let enrolid = enrol(&ledger, user, course, "NULL-1", 0, 0).await;
    submit(&ledger, Request::ResetCompletion { enrolid }).await.expect("reset archiving a grade-less completion");
    submit(&ledger, record(graded(80.0))).await.unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.expect("reset archiving a graded completion");
    submit(&ledger, Request::ResetCompletion { enrolid }).await.expect("reset with nothing to archive");
    submit(&ledger, record(GradeInput::default())).await.unwrap();
    submit(&ledger, Request::ResetCompletion { enrolid }).await.unwrap();
    let mut archived = grades(&test, "recompletion_history").await;
    archived.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(archived, vec![None, None, None, Some(80.0)]);

    // enrol.customchar1 NULL while a booking ID moves, then a value; the log's actor columns NULL
    // (the CLI) and set (a token).
    let edit =
        |b: &str| Request::Edit { enrolid, booking_id: Some(b.into()), timestart: None, timeend: None, suspend: None };
    submit(&ledger, edit("NULL-2")).await.unwrap();
    ledger.submit(edit("NULL-3"), enrol_ledger::cli::cli_actor("test")).await.unwrap();
    submit(&ledger, edit("NULL-4")).await.unwrap();
    submit(&ledger, record(graded(90.0))).await.expect("a graded completion after everything else");

    ledger.shutdown().await;
    let report = audit::verify(&test.db).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

on_both_backends!(defect_3_null_then_value_binds_fail_on_postgres);
