//! Benchmark harness for the append path (no HTTP): N concurrent clients each submit enrols
//! through `Ledger::submit` and wait for the durable acknowledgement. Prints requests/s and
//! latency percentiles per backend.
//!
//! ```sh
//! cargo run --release --example append_throughput -- [CLIENTS] [ENROLS_PER_CLIENT] [DATABASE_URL...]
//! ```
//! Without URLs it measures a temporary SQLite file only.

use std::time::{Duration, Instant};

use enrol_ledger::app::command::UserInput;
use enrol_ledger::app::{Ledger, Request};
use enrol_ledger::registry::{NewCourse, NewUser};
use enrol_ledger::store::log::Actor;

fn actor(i: usize) -> Actor {
    Actor { user_id: Some(3), token_id: Some(1), request_id: format!("bench-{i}") }
}

async fn measure(url: &str, clients: usize, per_client: usize) {
    let db = enrol_ledger::cli::open(url).await.expect("open database");
    let ledger = Ledger::start(db).await.expect("start ledger");
    let course = NewCourse {
        fullname: "Bench".into(),
        shortname: format!("bench-{}", std::process::id()),
        categoryid: 1,
        ..Default::default()
    };
    let course = match ledger.submit(Request::CreateCourses(vec![course]), actor(0)).await {
        Ok(outcome) => outcome.created[0].0,
        other => panic!("{other:?}"),
    };
    let users: Vec<UserInput> = (0..clients)
        .map(|i| UserInput {
            user: NewUser {
                username: format!("bench{}-{i}", std::process::id()),
                auth: "manual".into(),
                firstname: "B".into(),
                lastname: "C".into(),
                email: format!("bench{}-{i}@example.org", std::process::id()),
                lang: "en".into(),
                ..Default::default()
            },
            createpassword: true,
            ..Default::default()
        })
        .collect();
    let users = match ledger.submit(Request::CreateUsers(users), actor(0)).await {
        Ok(outcome) => outcome.created,
        other => panic!("{other:?}"),
    };
    let started = Instant::now();
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(c, (user, _))| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let start = 1 + i as i64 * 10;
                    let request = Request::Enrol {
                        user_id: user,
                        course_id: course,
                        booking_id: format!("bench-{}-{c}-{i}", std::process::id()),
                        timestart: start,
                        timeend: start + 5,
                        suspend: false,
                        require_recompletion: false,
                    };
                    let t = Instant::now();
                    ledger.submit(request, actor(i)).await.expect("enrol");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{:<10} clients={clients:<3} enrols={:<6} {:>8.0} enrols/s  p50={:?} p99={:?}",
        if url.starts_with("postgres") { "postgres" } else { "sqlite" },
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    ledger.shutdown().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clients = args.first().and_then(|a| a.parse().ok()).unwrap_or(16);
    let per_client = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut urls: Vec<String> = args.iter().skip(2).cloned().collect();
    if urls.is_empty() {
        urls.push(format!("sqlite://{}", dir.path().join("bench.db").display()));
    }
    for url in urls {
        measure(&url, clients, per_client).await;
    }
}
