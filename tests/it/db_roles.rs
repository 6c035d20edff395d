//! Least privilege in the database (issue 9, item 5), PostgreSQL only: SQLite has no roles,
//! its file's permissions are the boundary (docs/OPERATIONS.md). The owner migrates; the
//! server runs as a runtime role with only `enrol-ledger grants`, which can neither skip the
//! log's triggers nor delete from it.

use std::time::Duration;

use enrol_ledger::api::services;
use enrol_ledger::store::{Backend, Db};

use crate::faults_support::{binary, call_ok, cli, create_token, is_envelope, params, BlankDb, ServerProc};
use crate::faults_support::{free_port, READY_WAIT_MS};
use crate::support::{runtime_role, runtime_url};

async fn serve_as(url: &str, migrate_url: Option<&str>) -> ServerProc {
    let port = free_port();
    let mut command = binary(url);
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    if let Some(migrate_url) = migrate_url {
        command.env("MIGRATE_DATABASE_URL", migrate_url);
    }
    let mut server = ServerProc::spawn(command, port);
    server.wait_ready(Duration::from_millis(READY_WAIT_MS)).await.unwrap();
    server
}

const ALTERABLE: &str = "could alter the event log";

/// Why 5: as the runtime role, `SET session_replication_role = replica`, DELETE, UPDATE and
/// TRUNCATE on `events` all fail; the server migrates through the owner's URL, starts and works
/// under that role without the warning; started as the owner it warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_5_database_can_be_told_to_skip_the_triggers() {
    let blank = BlankDb::new(Backend::Postgres).await;
    let owner = crate::support::owner_url(&blank.url);
    let owner = owner.as_str();
    let runtime = runtime_url(owner);
    // The one step before the first start: the runtime role may see the schema (OPERATIONS.md).
    let owner_db = Db::connect(owner).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&owner_db.pool).await.unwrap();
    sqlx::query(&format!("GRANT USAGE ON SCHEMA {schema} TO {}", runtime_role()))
        .execute(&owner_db.pool)
        .await
        .unwrap();

    // serve as the runtime role, migrating and installing through the owner's URL.
    let server = serve_as(&runtime, Some(owner)).await;
    assert!(!server.stderr().contains(ALTERABLE), "no warning for the runtime role:\n{}", server.stderr());
    let token = create_token(&runtime, services::LEDGER_ADMIN).await;
    let (course, users) = crate::faults_support::seed_course_and_users(server.port, &token, 1).await;
    let enrolled = call_ok(
        server.port,
        &token,
        "enrol_semco_enrol_user",
        &params(&[
            ("userid", users[0].to_string()),
            ("courseid", course.to_string()),
            ("semcobookingid", "ROLE-1".into()),
            ("timestart", "0".into()),
            ("timeend", "0".into()),
        ]),
    )
    .await;
    assert!(!is_envelope(&enrolled), "{enrolled}");
    let (code, text) = crate::faults_support::verify(&runtime).await;
    assert_eq!(code, 0, "verify as the runtime role: {text}");

    // What the runtime role cannot do to the log.
    let as_runtime = Db::connect(&runtime).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&as_runtime.pool).await.unwrap();
    assert!(events > 0);
    for sql in [
        "SET session_replication_role = replica",
        "DELETE FROM events",
        "UPDATE events SET payload = '{}'",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER USER",
        "DROP TRIGGER events_refuse_update_delete ON events",
    ] {
        let refused = sqlx::raw_sql(sql).execute(&as_runtime.pool).await;
        let error = refused.expect_err(sql).to_string();
        assert!(error.contains("permission denied") || error.contains("must be owner"), "{sql}: {error}");
    }
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&as_runtime.pool).await.unwrap();
    assert_eq!(after, events);
    as_runtime.pool.close().await;
    drop(server);

    // A restart as the runtime role alone (already migrated) works too; as the owner it warns.
    let server = serve_as(&runtime, None).await;
    assert!(!is_envelope(&call_ok(server.port, &token, "core_webservice_get_site_info", &[]).await));
    drop(server);
    let server = serve_as(owner, None).await;
    assert!(server.stderr().contains(ALTERABLE), "the owner is warned about:\n{}", server.stderr());
    drop(server);

    // `grants` prints what the runtime role got: only SELECT and INSERT on the log.
    let output = cli(owner, &["grants", "--runtime-role", &runtime_role()]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sql = String::from_utf8(output.stdout).unwrap();
    assert!(sql.contains(&format!("GRANT SELECT, INSERT ON {schema}.events TO {};", runtime_role())), "{sql}");
    owner_db.pool.close().await;
}
