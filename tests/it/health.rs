//! The health check (issue 11 item 3): the record of `verify` runs, the checks on a real
//! ledger, muting, `enrol-ledger health` and `/api/v1/health`, on both backends.

use enrol_ledger::app::verification::{last_verification, record_verification, VerifyOutcome};
use enrol_ledger::store::Backend;

use crate::on_both_backends;
use crate::support::{run_cli, TestDb};

/// `enrol-ledger verify` appends its run to `verification_runs`; `last_verification` reads the
/// newest, a failed one included.
async fn verify_runs_are_recorded(backend: Backend) {
    let t = TestDb::new(backend).await;
    assert_eq!(last_verification(&t.db).await.unwrap(), None, "no run yet");
    let url = t.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || run_cli(&url, &["verify"])).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let last = last_verification(&t.db).await.unwrap().expect("the run is recorded");
    assert!(last.ok && last.mismatches == 0 && last.source == "cli", "{last:?}");
    assert!(last.log_length > 0 && last.head_position == last.log_length, "{last:?}");
    let failed = VerifyOutcome {
        time_us: last.time_us + 1,
        ok: false,
        mismatches: 3,
        log_length: last.log_length,
        head_position: last.head_position,
        duration_ms: 5,
        source: "api".into(),
    };
    record_verification(&t.db, &failed).await.unwrap();
    assert_eq!(last_verification(&t.db).await.unwrap(), Some(failed));
}

on_both_backends!(verify_runs_are_recorded);
