//! A throwaway PostgreSQL 15 cluster of the test's own, for faults that would hurt the shared
//! test server: an outage (`stop_immediate` / `start_again`), unsafe settings (`fsync=off`).
//!
//! The cluster lives in a temporary directory owned by the `postgres` OS user (the server
//! refuses to run as root; tests run as root in CI, so every PostgreSQL binary is run through
//! `runuser -u postgres --`), listens on a free port on 127.0.0.1 with `trust` authentication,
//! and has the role `enrol_ledger` owning the database `ledger`. Drop stops it and removes
//! the directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Connection;

/// Where Debian/Ubuntu put PostgreSQL 15's server binaries.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// How long `pg_ctl start`/`stop` may take before the helper gives up.
const PG_CTL_WAIT_S: u32 = 60;

pub struct PrivateCluster {
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
    port: u16,
    running: bool,
}

fn as_postgres(program: &str) -> Command {
    let path = Path::new(PG_BIN_DIR).join(program);
    if crate::faults_support::is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivateCluster {
    /// initdb + start with `extra_settings` written to postgresql.conf (so they survive
    /// `start_again`), then creates role and database. `None`, with a loud message, when the
    /// PostgreSQL 15 binaries are not installed.
    pub fn start(extra_settings: &[(&str, &str)]) -> Option<PrivateCluster> {
        if !Path::new(PG_BIN_DIR).join("initdb").exists() || !Path::new(PG_BIN_DIR).join("pg_ctl").exists() {
            eprintln!("SKIPPED: {PG_BIN_DIR}/initdb or pg_ctl is missing; no private PostgreSQL cluster for this test");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        if crate::faults_support::is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(dir.path());
                    c
                },
                "chown the cluster directory",
            );
        }
        let data = dir.path().join("data");
        let mut initdb = as_postgres("initdb");
        initdb.args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"]).arg(&data);
        run(initdb, "initdb");
        let port = crate::faults_support::free_port();
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 60\n",
            dir.path().display()
        );
        for (name, value) in extra_settings {
            conf.push_str(&format!("{name} = '{value}'\n"));
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("write postgresql.conf");
        let mut cluster = PrivateCluster { dir: Some(dir), data, port, running: false };
        cluster.start_again();
        cluster.setup_role_and_database();
        Some(cluster)
    }

    fn setup_role_and_database(&self) {
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        // On a thread (and runtime) of its own: the caller may be inside a runtime.
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.expect("connect as postgres");
                    for sql in [
                        "CREATE ROLE enrol_ledger LOGIN PASSWORD 'enrol_ledger'",
                        "CREATE DATABASE ledger OWNER enrol_ledger",
                    ] {
                        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    }
                    conn.close().await.ok();
                })
            })
            .join()
            .unwrap()
        });
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// postgres:// URL for role enrol_ledger on the database `ledger`.
    pub fn url(&self) -> String {
        format!("postgres://enrol_ledger:enrol_ledger@127.0.0.1:{}/ledger", self.port)
    }

    /// The superuser's URL on the database `ledger`.
    #[allow(dead_code)] // part of the reusable API (durability tests)
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ledger", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = as_postgres("pg_ctl");
        command.arg("-D").arg(&self.data).args(["-t", &PG_CTL_WAIT_S.to_string()]).args(args);
        command
    }

    /// `pg_ctl stop -m immediate`: every backend killed, no checkpoint (a crash, for the data).
    pub fn stop_immediate(&mut self) {
        run(self.pg_ctl(&["stop", "-m", "immediate", "-w"]), "pg_ctl stop -m immediate");
        self.running = false;
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub fn start_again(&mut self) {
        let log = self.data.parent().unwrap().join("server.log");
        let mut start = self.pg_ctl(&["start", "-w", "-l"]);
        start.arg(&log);
        let output = start.output().expect("pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
        // `-w` waits for the postmaster; give recovery a moment to accept TCP too.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]).output();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
