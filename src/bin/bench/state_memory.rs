//! `bench --state-memory --database-url URL`: loads the writer's state from an existing ledger
//! as the server does at start-up and prints the heap each part of it holds, measured by glibc's
//! own count of bytes in use (`mallinfo2`) as each part is loaded and then dropped. It answers
//! "where do the server's resident megabytes go" (issue 7) without a profiler.

use enrol_ledger::app::state::LedgerState;
use enrol_ledger::registry::RegistryIndex;
use enrol_ledger::store::Db;

use crate::BenchResult;

/// Bytes of heap in use right now (small allocations plus mmapped large ones).
fn in_use() -> i64 {
    // SAFETY: mallinfo2 only reads glibc's allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as i64
}

fn mib(bytes: i64) -> String {
    format!("{:8.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Drops `part` and returns the heap that freed.
fn freed<T>(part: T) -> i64 {
    let before = in_use();
    drop(part);
    before - in_use()
}

pub async fn run(url: &str) -> BenchResult<()> {
    let db = Db::connect(url).await.map_err(|e| format!("connect: {e}"))?;
    let base = in_use();
    let registry = RegistryIndex::load(&db).await.map_err(|e| format!("registry: {e}"))?;
    enrol_ledger::app::state::release_freed_memory();
    let registry_bytes = in_use() - base;
    let users = registry.user_count();
    drop(registry);
    let before = in_use();
    let (mut state, report) = LedgerState::load_reporting(&db).await.map_err(|e| format!("load: {e}"))?;
    let total = in_use() - before;
    let live = state.open.live_count();
    let open = state.open.len();
    println!("state loaded: snapshot at {:?}, {} events replayed", report.snapshot_position, report.replayed_events);
    println!("{users} users, {open} open enrolment streams ({live} live), heap in use by the state:");
    // Each part is measured as it is dropped, in this order.
    let mut rows: Vec<(&str, i64)> = vec![
        ("registry (users, courses, digests)", freed(std::mem::take(&mut state.registry))),
        ("open enrolment streams and indexes", freed(std::mem::take(&mut state.open))),
        ("completions", freed(std::mem::take(&mut state.completions))),
        ("courses", freed(std::mem::take(&mut state.courses))),
        ("user stream versions", freed(std::mem::take(&mut state.user_versions))),
        ("manual enrolments", freed(std::mem::take(&mut state.manual))),
        ("manual instances", freed(std::mem::take(&mut state.manual_instances))),
        ("criteria", freed(std::mem::take(&mut state.criteria))),
        ("tokens", freed(std::mem::take(&mut state.tokens))),
    ];
    let named: i64 = rows.iter().map(|(_, b)| b).sum();
    rows.push(("the rest", freed(state)));
    for (part, bytes) in &rows {
        println!("  {part:<40} {}", mib(*bytes));
    }
    println!("  {:<40} {}", "total", mib(total));
    println!("  {:<40} {}", "registry loaded alone", mib(registry_bytes));
    println!("  {:<40} {}", "(named parts)", mib(named));
    Ok(())
}
