//! Replays the worked HR sync of docs/API.md ("A worked HR sync", the `shell` blocks) against
//! the real server binary, with tokens made by `token create`, on both backends; then sets the
//! criterion again through the CLI (`enrol-ledger criteria`) and checks the log and verify.

use std::process::Stdio;
use std::time::Duration;

use enrol_ledger::store::Backend;

use crate::api_doc::{binary, create_token, data_args, post, Server};
use crate::on_both_backends;
use crate::support::*;

const DOC: &str = include_str!("../../docs/API.md");

/// The (curl arguments, expected answer) pairs of the HR session, in order.
fn hr_steps() -> Vec<(Vec<String>, String)> {
    let mut steps = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if line != "```shell" {
            continue;
        }
        let command = lines.next().unwrap().to_owned();
        assert_eq!(lines.next(), Some("```"));
        assert_eq!(lines.next(), Some("```json"), "every curl is followed by its answer");
        steps.push((data_args(&command), lines.next().unwrap().to_owned()));
    }
    steps
}

/// `"timecreated":N` and `"timemodified":N` are the server's clock.
fn without_times(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let next =
            ["\"timecreated\":", "\"timemodified\":"].iter().filter_map(|k| rest.find(k).map(|at| (at, k.len()))).min();
        let Some((at, len)) = next else { break };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('T');
    }
    out.push_str(rest);
    out
}

async fn documented_hr_sync_replays(backend: Backend) {
    let test = TestDb::new(backend).await;
    let url = test.url.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (admin, hr, lms) =
        (create_token(&url, "ledger_admin"), create_token(&url, "ledger_hr"), create_token(&url, "ledger_lms"));
    let server = Server(
        binary(&url).args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stdout(Stdio::null()).spawn().unwrap(),
    );
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let steps = hr_steps();
    assert_eq!(steps.len(), 10);
    for (args, expected) in steps {
        let body = args
            .iter()
            .map(|a| a.replace("$ADMIN", &admin).replace("$HR", &hr).replace("$LMS", &lms))
            .collect::<Vec<_>>()
            .join("&");
        let expected = expected.replace("PORT", &port.to_string());
        assert_eq!(without_times(&post(port, &body).await), without_times(&expected), "{body}");
    }
    drop(server);

    // The CLI sets criteria as the function does: each change one event.
    let url2 = url.clone();
    let (set, again, verify) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| binary(&url2).args(args).output().unwrap();
        (
            run(&["criteria", "--course", "2", "--gradepass", "60"]),
            run(&["criteria", "--course", "2", "--gradepass", "60"]),
            run(&["verify"]),
        )
    })
    .await
    .unwrap();
    assert!(set.status.success() && again.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("verify OK"),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let db = enrol_ledger::store::Db::connect(&owner_url(&url)).await.unwrap();
    let sets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'CompletionCriteriaSet'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(sets, 2, "50 by the function, 60 by the CLI; setting 60 again is no change");
    let pass: f64 = sqlx::query_scalar("SELECT gradepass FROM course_completion_criteria WHERE course = 2")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(pass, 60.0);
}

on_both_backends!(documented_hr_sync_replays);
