//! Signed checkpoints and proofs (issue 8 item 4): a log cut off, rewritten with its chain
//! recomputed, with an event removed or reordered, is refused by `verify --checkpoint`; forged
//! proofs are refused by `check-proof`; `serve` signs every N events and at shutdown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use enrol_ledger::app::{audit, Request};
use enrol_ledger::proof::check::check_proof;
use enrol_ledger::proof::{public_key_from_hex, Checkpoint};
use enrol_ledger::store::log::{self, StoredEvent, GENESIS_HASH};
use enrol_ledger::store::{Backend, Db};
use serde_json::Value;

use crate::faults_support::{call_ok, create_token, params, seed_course_and_users, BlankDb};
use crate::on_both_backends;
use crate::support::*;

/// A ledger, its key and export file in a directory of their own, and a copy of checkpoint
/// lines kept "elsewhere" (the auditor's).
struct Signed {
    test: TestDb,
    dir: tempfile::TempDir,
    course: i64,
    enrolled: usize,
    enrolids: Vec<i64>,
}

impl Signed {
    async fn new(backend: Backend) -> Self {
        let test = TestDb::new(backend).await;
        let ledger = test.ledger().await;
        let course = create_course(&ledger, "C1", true).await;
        ledger.shutdown().await;
        Self { test, dir: tempfile::tempdir().unwrap(), course, enrolled: 0, enrolids: Vec::new() }
    }

    async fn enrol(&mut self, n: usize) {
        let ledger = self.test.ledger().await;
        for _ in 0..n {
            let i = self.enrolled;
            let user = create_user(&ledger, &format!("u{i}")).await;
            self.enrolids.push(enrol(&ledger, user, self.course, &format!("B-{i}"), 0, 0).await);
            self.enrolled += 1;
        }
        ledger.shutdown().await;
    }

    /// Suspends the enrolments of the given bookings, one event each (on their own streams).
    async fn suspend(&self, which: &[usize]) {
        let ledger = self.test.ledger().await;
        for &i in which {
            let edit = Request::Edit {
                enrolid: self.enrolids[i],
                booking_id: None,
                timestart: None,
                timeend: None,
                suspend: Some(true),
            };
            submit(&ledger, edit).await.unwrap();
        }
        ledger.shutdown().await;
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("ledger.signing-key")
    }

    fn export_file(&self) -> PathBuf {
        self.dir.path().join("ledger.checkpoints.jsonl")
    }

    /// The binary on this ledger: exit code and stdout + stderr.
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"));
        command.args(args).env("DATABASE_URL", &self.test.url).env("RUST_LOG", "warn").env("SIGNING_KEY", self.key());
        let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// `enrol-ledger checkpoint`, its line saved in a file of its own (the copy kept elsewhere).
    async fn checkpoint(&self, name: &str) -> (Checkpoint, PathBuf) {
        let (code, out, err) = self.cli(&["checkpoint"]).await;
        assert_eq!(code, 0, "{out}{err}");
        let checkpoint: Checkpoint = serde_json::from_str(out.trim()).expect("a checkpoint line");
        let copy = self.dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&copy, &out).unwrap();
        (checkpoint, copy)
    }

    async fn head(&self) -> i64 {
        log::head(&self.test.db).await.unwrap().0
    }
}

/// Switches the append-only triggers off, as only someone with owner rights could.
async fn bypass_triggers(db: &Db) {
    let sql = match db.backend {
        Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER USER",
        Backend::Sqlite => "DROP TRIGGER events_refuse_update; DROP TRIGGER events_refuse_delete;",
    };
    sqlx::raw_sql(sql).execute(&db.pool).await.expect("bypass triggers");
}

/// What a forger with owner rights does: changes the events, renumbers them 1..n, recomputes
/// the whole hash chain, writes the log back and rebuilds the projections, so that plain
/// `verify` finds nothing.
async fn forge(db: &Db, change: impl FnOnce(&mut Vec<StoredEvent>)) {
    let mut conn = db.pool.acquire().await.unwrap();
    let mut events = log::read_after(&mut conn, 0, 1_000_000).await.unwrap();
    drop(conn);
    change(&mut events);
    let mut prev = GENESIS_HASH.to_owned();
    for (i, event) in events.iter_mut().enumerate() {
        event.position = i as i64 + 1;
        event.hash = event.chain_hash(&prev);
        prev.clone_from(&event.hash);
    }
    bypass_triggers(db).await;
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("DELETE FROM events").execute(&mut *tx).await.unwrap();
    log::append(&mut tx, &events).await.unwrap();
    tx.commit().await.unwrap();
    audit::rebuild(db).await.unwrap();
    let report = audit::verify(db).await.unwrap();
    assert!(report.is_ok(), "the forgery is invisible to the hash chain: {:?}", report.problems);
}

/// Regression (issue 8, "A cut-off tail passes `verify`"): on a copy, with the trigger dropped,
/// `DELETE FROM events WHERE position >= 38` then `rebuild` left `verify OK: 37 events`.
/// A checkpoint kept elsewhere now names the truncation, and so does plain `verify` (the
/// stored checkpoints and the export file).
async fn defect_cut_off_tail_passes_verify(backend: Backend) {
    let mut ledger = Signed::new(backend).await;
    ledger.enrol(40).await;
    let head = ledger.head().await;
    assert!(head >= 40);
    let (checkpoint, copy) = ledger.checkpoint("elsewhere").await;
    assert_eq!(checkpoint.position, head);
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", copy.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    // Stored, in the export file and in the copy.
    assert!(out.contains("matches 3 signed checkpoint(s)"), "{out}");

    bypass_triggers(&ledger.test.db).await;
    sqlx::query("DELETE FROM events WHERE position >= 38").execute(&ledger.test.db.pool).await.unwrap();
    let (code, out, err) = ledger.cli(&["rebuild"]).await;
    assert_eq!(code, 0, "{out}{err}");
    // The chain alone still holds: what the defect was.
    assert!(audit::verify(&ledger.test.db).await.unwrap().is_ok());

    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", copy.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TRUNCATED"), "{out}");
    assert!(out.contains(&format!("it covers {head} events, the log has only 37")), "{out}");
    assert!(out.contains(copy.to_str().unwrap()), "the message names the checkpoint's file: {out}");
    // The forger also removes the stored checkpoints and the export file: the copy still tells.
    sqlx::query("DELETE FROM checkpoints").execute(&ledger.test.db.pool).await.unwrap();
    std::fs::remove_file(ledger.export_file()).unwrap();
    let (code, out, _) = ledger.cli(&["verify"]).await;
    assert_eq!(code, 0, "nothing left to compare with: {out}");
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", copy.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TRUNCATED"), "{out}");
}

/// Checkpoints at 20 and 40 events, kept elsewhere; returns their files.
async fn two_checkpoints(ledger: &mut Signed) -> (PathBuf, PathBuf) {
    ledger.enrol(20).await;
    let (first, first_file) = ledger.checkpoint("first").await;
    ledger.enrol(20).await;
    let (second, second_file) = ledger.checkpoint("second").await;
    assert!(first.position >= 20 && second.position >= first.position + 20);
    // Both in one file, as an auditor collects them.
    let both = ledger.dir.path().join("both.jsonl");
    let text =
        format!("{}{}", std::fs::read_to_string(&first_file).unwrap(), std::fs::read_to_string(&second_file).unwrap());
    std::fs::write(&both, text).unwrap();
    (first_file, both)
}

/// The index of the `Enrolled` event of booking `B-i` in the log.
fn enrolled(events: &[StoredEvent], booking: &str) -> usize {
    events.iter().position(|e| e.event_type == "Enrolled" && e.booking_id.as_deref() == Some(booking)).unwrap()
}

async fn checkpoint_refuses_rewritten_chain(backend: Backend) {
    let mut ledger = Signed::new(backend).await;
    let (_, both) = two_checkpoints(&mut ledger).await;
    forge(&ledger.test.db, |events| {
        let i = enrolled(events, "B-30");
        events[i].payload = events[i].payload.replace("\"timeend\":0", "\"timeend\":1");
        assert!(events[i].payload.contains("\"timeend\":1"));
    })
    .await;
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", both.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("REWRITTEN"), "{out}");
    assert!(out.contains("the chain recomputed"), "{out}");
    // The first checkpoint still holds, so the change is placed after it.
    assert!(out.contains("the log agrees with the checkpoint of position"), "{out}");
}

async fn checkpoint_refuses_removed_event(backend: Backend) {
    let mut ledger = Signed::new(backend).await;
    let (_, both) = two_checkpoints(&mut ledger).await;
    // The enrolment's stream has this one event: removing it leaves every other stream whole.
    forge(&ledger.test.db, |events| {
        let i = enrolled(events, "B-25");
        events.remove(i);
    })
    .await;
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", both.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TRUNCATED") && out.contains("(or removed and the rest renumbered)"), "{out}");
    assert!(out.contains("the log agrees with the checkpoint of position"), "{out}");

    // Removed without renumbering (and the chain recomputed over the gap): named as removed.
    let mut ledger = Signed::new(backend).await;
    let (_, both) = two_checkpoints(&mut ledger).await;
    bypass_triggers(&ledger.test.db).await;
    let mut conn = ledger.test.db.pool.acquire().await.unwrap();
    let mut events = log::read_after(&mut conn, 0, 1_000_000).await.unwrap();
    let i = enrolled(&events, "B-25");
    events.remove(i);
    let mut prev = GENESIS_HASH.to_owned();
    for event in events.iter_mut() {
        event.hash = event.chain_hash(&prev);
        prev.clone_from(&event.hash);
    }
    sqlx::query("DELETE FROM events").execute(&mut *conn).await.unwrap();
    log::append(&mut conn, &events).await.unwrap();
    drop(conn);
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", both.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("REMOVED: position") && out.contains("1 event(s) missing"), "{out}");
}

async fn checkpoint_refuses_reordered_events(backend: Backend) {
    let mut ledger = Signed::new(backend).await;
    ledger.enrol(20).await;
    let (first, _) = ledger.checkpoint("first").await;
    ledger.enrol(18).await;
    // Two changes of two enrolments, whose order the fold does not care about.
    ledger.suspend(&[3, 4]).await;
    let (second, _) = ledger.checkpoint("second").await;
    let both = ledger.dir.path().join("both.jsonl");
    std::fs::write(&both, format!("{}\n{}\n", first.to_line(), second.to_line())).unwrap();
    forge(&ledger.test.db, |events| {
        let n = events.len();
        assert_ne!(events[n - 1].stream_id, events[n - 2].stream_id);
        events.swap(n - 1, n - 2);
    })
    .await;
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", both.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("REWRITTEN") && out.contains("reordered"), "{out}");
}

/// A forged checkpoint line (its position or root changed, or signed by another key) is refused.
async fn checkpoint_refuses_forged_checkpoint(backend: Backend) {
    let mut ledger = Signed::new(backend).await;
    ledger.enrol(3).await;
    let (checkpoint, _) = ledger.checkpoint("real").await;
    let mut forged = checkpoint.clone();
    forged.position -= 1;
    let file = ledger.dir.path().join("forged.jsonl");
    std::fs::write(&file, forged.to_line()).unwrap();
    let (code, out, _) = ledger.cli(&["verify", "--checkpoint", file.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FORGED") && out.contains("signature does not verify"), "{out}");
}

fn mutate(proof: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(proof).unwrap();
    change(&mut value);
    value.to_string()
}

const BOGUS: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// Inclusion and consistency proofs check with the public key alone; a wrong sibling, a wrong
/// size, a wrong key, a wrong root and a wrong event are each refused.
async fn forged_proofs_are_refused(backend: Backend) {
    let mut ledger = Signed::new(backend).await;
    let (first_file, both) = two_checkpoints(&mut ledger).await;
    let (code, public, _) = ledger.cli(&["checkpoint", "--public-key"]).await;
    assert_eq!(code, 0);
    let public = public_key_from_hex(public.trim()).unwrap();
    let other = public_key_from_hex(&hex_of_other_key()).unwrap();

    let (code, inclusion, err) =
        ledger.cli(&["prove", "--position", "7", "--checkpoint", both.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    let proof_file = ledger.dir.path().join("inclusion.json");
    std::fs::write(&proof_file, &inclusion).unwrap();
    let (code, out, _) = ledger.cli(&["check-proof", proof_file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("proof OK: the event at position 7"), "{out}");
    assert!(check_proof(&inclusion, &public).is_ok());

    let refused = |proof: String, why: &str| {
        let error = check_proof(&proof, &public).expect_err(why);
        assert!(!error.is_empty());
    };
    refused(mutate(&inclusion, |v| v["audit_path"][0] = BOGUS.into()), "wrong sibling");
    refused(mutate(&inclusion, |v| v["audit_path"].as_array_mut().unwrap().pop().map(|_| ()).unwrap()), "short path");
    refused(mutate(&inclusion, |v| v["tree_size"] = (v["tree_size"].as_u64().unwrap() + 1).into()), "wrong size");
    refused(
        mutate(&inclusion, |v| {
            let size = v["tree_size"].as_u64().unwrap() + 1;
            v["tree_size"] = size.into();
            v["checkpoint"]["position"] = size.into();
        }),
        "wrong size, checkpoint changed to fit",
    );
    refused(mutate(&inclusion, |v| v["checkpoint"]["merkle_root"] = BOGUS.into()), "wrong root");
    refused(mutate(&inclusion, |v| v["event_hash"] = BOGUS.into()), "wrong event");
    refused(
        mutate(&inclusion, |v| {
            v["event_hash"] = BOGUS.into();
            v["event"]["hash"] = BOGUS.into();
        }),
        "wrong event, both hashes",
    );
    refused(
        mutate(&inclusion, |v| {
            v["position"] = 8.into();
            v["leaf_index"] = 7.into();
        }),
        "wrong index",
    );
    assert!(check_proof(&inclusion, &other).unwrap_err().contains("not by key"), "wrong key");
    // The wrong key through the binary, too.
    let other_hex = hex_of_other_key();
    let (code, out, _) = ledger.cli(&["check-proof", proof_file.to_str().unwrap(), "--public-key", &other_hex]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("proof REFUSED"), "{out}");

    let second_only = ledger.dir.path().join("second.jsonl");
    let (code, consistency, err) =
        ledger.cli(&["prove", "--from", first_file.to_str().unwrap(), "--to", second_only.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(check_proof(&consistency, &public).unwrap().contains("is a prefix of the log"));
    refused(mutate(&consistency, |v| v["consistency_path"][0] = BOGUS.into()), "wrong node");
    refused(mutate(&consistency, |v| v["to"]["position"] = (v["to"]["position"].as_i64().unwrap() + 1).into()), "size");
    refused(mutate(&consistency, |v| v["from"]["merkle_root"] = BOGUS.into()), "wrong root");
    refused(
        mutate(&consistency, |v| {
            let from = v["from"].clone();
            v["from"] = v["to"].clone();
            v["to"] = from;
        }),
        "swapped",
    );
    assert!(check_proof(&consistency, &other).is_err(), "wrong key");
    // A proof against a checkpoint the log no longer matches cannot be made.
    forge(&ledger.test.db, |events| {
        let i = enrolled(events, "B-3");
        events[i].payload = events[i].payload.replace("\"timeend\":0", "\"timeend\":1");
    })
    .await;
    let (code, _, err) = ledger.cli(&["prove", "--position", "7", "--checkpoint", both.to_str().unwrap()]).await;
    assert_ne!(code, 0);
    assert!(err.contains("does not match the checkpoint"), "{err}");
}

fn hex_of_other_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol_ledger::proof::LedgerKey::open_or_create(&dir.path().join("other.signing-key"), &[]).unwrap();
    key.public_hex()
}

fn read_checkpoints(path: &Path) -> Vec<Checkpoint> {
    std::fs::read_to_string(path).map(|t| Checkpoint::parse_lines(&t).unwrap()).unwrap_or_default()
}

/// `serve --checkpoint-every-events 5` signs as events come in and once more at a clean
/// shutdown (SIGTERM); `verify` then checks the log against all of them. A missing key, once
/// checkpoints exist, keeps the server from starting.
async fn serve_signs_every_n_events_and_at_shutdown(backend: Backend) {
    let db = BlankDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("srv.signing-key");
    let file = dir.path().join("srv.checkpoints.jsonl");
    let token = create_token(&db.url, "ledger_admin").await;
    let port = crate::faults_support::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--checkpoint-every-events", "5"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("SIGNING_KEY", &key)
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    while crate::faults_support::get(port, "/readyz").await.map(|r| r.0) != Ok(200) {
        assert!(start.elapsed() < Duration::from_secs(20), "server not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let (course, users) = seed_course_and_users(port, &token, 12).await;
    for (i, user) in users.iter().enumerate() {
        call_ok(
            port,
            &token,
            "enrol_semco_enrol_user",
            &params(&[
                ("userid", user.to_string()),
                ("courseid", course.to_string()),
                ("semcobookingid", format!("S-{i}")),
            ]),
        )
        .await;
    }
    let start = Instant::now();
    while read_checkpoints(&file).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no checkpoints every 5 events: {:?}",
            read_checkpoints(&file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_shutdown = read_checkpoints(&file);
    assert!(before_shutdown[0].position >= 5, "{before_shutdown:?}");
    assert!(before_shutdown.windows(2).all(|w| w[1].position >= w[0].position + 5), "{before_shutdown:?}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
    let all = read_checkpoints(&file);
    let opened = Db::connect(&db.url).await.unwrap();
    let head = log::head(&opened).await.unwrap();
    let last = all.last().unwrap();
    assert_eq!((last.position, last.head_hash.clone()), head, "the shutdown checkpoint is at the head");
    assert!(all.len() > before_shutdown.len());
    let mut conn = opened.pool.acquire().await.unwrap();
    let stored = enrol_ledger::proof::store::all(&mut conn).await.unwrap();
    assert_eq!(stored.len(), all.len());
    drop(conn);
    opened.pool.close().await;

    let verify = |extra: Vec<(&'static str, PathBuf)>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"));
        command.arg("verify").env("DATABASE_URL", &db.url).env("RUST_LOG", "warn");
        for (name, value) in extra {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code(), text)
    };
    let (code, out) = verify(vec![("SIGNING_KEY", key.clone())]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("matches {} signed checkpoint(s)", all.len() * 2)), "{out}");

    // The key file gone: serve refuses to make a new one silently.
    std::fs::rename(&key, dir.path().join("moved")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", crate::faults_support::free_port())])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("SIGNING_KEY", &key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("a new key is not made silently"), "{stderr}");
    assert!(!key.exists());
    // A malformed key file is refused too.
    std::fs::write(&key, "garbage\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"))
        .args(["checkpoint"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("SIGNING_KEY", &key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("malformed"));
}

on_both_backends!(
    defect_cut_off_tail_passes_verify,
    checkpoint_refuses_rewritten_chain,
    checkpoint_refuses_removed_event,
    checkpoint_refuses_reordered_events,
    checkpoint_refuses_forged_checkpoint,
    forged_proofs_are_refused,
    serve_signs_every_n_events_and_at_shutdown,
);
