#!/usr/bin/env bash
# Runs the whole test suite on both backends: SQLite (temporary files) and PostgreSQL.
# Installs and starts PostgreSQL from Debian's packages when it is not there yet (and chromium
# with its WebDriver for the browser tests), creates the
# test role and database, then runs `cargo test`. Extra arguments go to `cargo test`.
# With `--bench-smoke` (first argument) it then runs the benchmark harness once per backend at
# `--scale tiny` in the debug build, to check that it works (docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_SMOKE=0
if [ "${1:-}" = --bench-smoke ]; then BENCH_SMOKE=1; shift; fi

PG_VERSION=15
PG_PORT="${ENROL_LEDGER_TEST_PG_PORT:-5432}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ]; then
    echo "== installing PostgreSQL $PG_VERSION from Debian packages"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$PG_VERSION" postgresql-client-$PG_VERSION
fi
# The browser tests (tests/it/browser.rs) drive Debian's headless chromium over WebDriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "== installing chromium and chromium-driver from Debian packages (browser tests)"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
fi
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
    as_root pg_createcluster "$PG_VERSION" main -p "$PG_PORT"
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $4}' | grep -qx online; then
    echo "== starting PostgreSQL $PG_VERSION"
    as_root pg_ctlcluster "$PG_VERSION" main start
fi
PG_PORT=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $3}')
psql_admin() { as_root runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }
for _ in $(seq 1 30); do psql_admin -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'enrol_ledger'")" != 1 ]; then
    psql_admin -c "CREATE ROLE enrol_ledger LOGIN PASSWORD 'enrol_ledger'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'enrol_ledger_test'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE enrol_ledger_test OWNER enrol_ledger"
fi
# The least-privilege runtime role (docs/OPERATIONS.md): no ownership, only the grants that
# `enrol-ledger grants` prints, applied per test schema by its owner.
RUNTIME_ROLE="${ENROL_LEDGER_TEST_PG_RUNTIME_ROLE:-enrol_ledger_runtime}"
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$RUNTIME_ROLE'")" != 1 ]; then
    psql_admin -c "CREATE ROLE $RUNTIME_ROLE LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$RUNTIME_ROLE'"
fi
export ENROL_LEDGER_TEST_PG_RUNTIME_ROLE="$RUNTIME_ROLE"
export ENROL_LEDGER_TEST_PG="postgres://enrol_ledger:enrol_ledger@127.0.0.1:$PG_PORT/enrol_ledger_test"
echo "== PostgreSQL ready at 127.0.0.1:$PG_PORT; running the test suite on SQLite and PostgreSQL"
cargo test --all-targets "$@"
# The PostgreSQL part again with the ledger under the runtime role: the owner installs each
# test schema, the test's ledger, CLI and server use the runtime role. A representative
# subset: the tests that tamper with the log or kill the first start need the owner.
echo "== the PostgreSQL part under the runtime role $RUNTIME_ROLE (api_doc, scenario, http, tokens, faults crash loop, signed checkpoints)"
ENROL_LEDGER_TEST_PG_AS_RUNTIME=1 cargo test --test it "$@" -- \
    api_doc::documented_curl_session_replays::postgres hr_doc::documented_hr_sync_replays::postgres hr::hr_contract \
    scenario:: http:: tokens:: \
    faults::crash_loop_loses_no_acknowledged_change::postgres \
    proofs::serve_signs_every_n_events_and_at_shutdown::postgres --skip sqlite
if [ "$BENCH_SMOKE" = 1 ]; then
    # The debug build `cargo test` just made: a release build would add minutes on 2 cores.
    echo "== benchmark smoke (debug build, --scale tiny: checks it works; the figures mean nothing)"
    cargo build --bin bench --bin enrol-ledger
    for backend in sqlite postgres; do
        timeout 300 ./target/debug/bench --backend "$backend" --scale tiny
    done
fi
