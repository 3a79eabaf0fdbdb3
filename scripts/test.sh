#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and the integration tests on SQLite and on PostgreSQL.
#
# When PostgreSQL 15 is installed (/usr/lib/postgresql/15/bin; PG_BIN overrides it, and the newest
# other version under /usr/lib/postgresql is used when 15 is missing), a throwaway cluster is
# started on a free port for the run (as the `postgres` user when run as root, since PostgreSQL
# refuses to run as root; as the current user otherwise) and removed afterwards. Its URL goes to
# the tests in LOANLEDGER_TEST_PG_URL. Without PostgreSQL the PostgreSQL half is skipped with a
# warning, except under CI=true, where that is a failure.
#
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh --test api full_flow`.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ -z "${PG_BIN:-}" ]; then
    PG_BIN=/usr/lib/postgresql/15/bin
    if [ ! -x "$PG_BIN/initdb" ]; then
        # The newest version with a server (a newer client package's bin holds no initdb).
        newest="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
        newest="${newest%/initdb}"
        if [ -n "$newest" ] && [ -x "$newest/initdb" ] && [ -x "$newest/pg_ctl" ]; then
            echo "test.sh: PostgreSQL 15 is missing; using $newest" >&2
            PG_BIN="$newest"
        fi
    fi
fi
ci="${CI:-}"
pg_dir=""
pg_user=""

as_pg() {
    # Runs a command as the cluster's owner.
    if [ -n "$pg_user" ]; then
        su "$pg_user" -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}

stop_cluster() {
    if [ -n "$pg_dir" ] && [ -d "$pg_dir" ]; then
        if [ -f "$pg_dir/data/postmaster.pid" ]; then
            if ! as_pg "'$PG_BIN/pg_ctl' -D '$pg_dir/data' -m fast -w stop" >/dev/null 2>&1; then
                # Not stopped: its process is killed rather than left running without its
                # directory.
                kill -9 "$(head -n 1 "$pg_dir/data/postmaster.pid")" 2>/dev/null || true
            fi
        fi
        rm -rf "$pg_dir"
    fi
}

# The command running (`run`): bash runs a trap only once its foreground command ends, so a
# TERM sent to this script alone (`kill PID`, a runner's timeout) waited for the whole suite,
# and a SIGKILL after it left the cluster running (since 2026-12-07). Commands run in the
# background and are waited for; a signal's trap stops them and their children, then exits,
# and the EXIT trap removes the cluster.
child=""
run() {
    "$@" &
    child=$!
    wait "$child"
}

stop_child() {
    if [ -n "$child" ]; then
        pkill -TERM -P "$child" 2>/dev/null || true
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
}

# Set whether or not a cluster is started (since 2026-12-08: only its start set them, and with
# LOANLEDGER_TEST_PG_URL given, or no PostgreSQL installed, Ctrl-C ended the script and left
# the tests running in the background, which ignore SIGINT there).
trap 'stop_child; exit 130' INT
trap 'stop_child; exit 143' TERM

free_port() {
    # Asks the kernel for a free port.
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $(( 20000 + RANDOM % 20000 ))
}

start_cluster() {
    pg_dir="$(mktemp -d /tmp/loanledger-pg.XXXXXX)"
    trap stop_cluster EXIT
    if [ "$(id -u)" = "0" ]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "test.sh: running as root but there is no 'postgres' user to run PostgreSQL" >&2
            return 1
        fi
        pg_user=postgres
        chown postgres:postgres "$pg_dir"
        chmod 700 "$pg_dir"
    fi
    as_pg "'$PG_BIN/initdb' -D '$pg_dir/data' -U postgres -A trust -E UTF8 --no-sync" \
        >"$pg_dir/initdb.log" 2>&1 || { cat "$pg_dir/initdb.log" >&2; return 1; }
    local port attempt
    for attempt in 1 2 3; do
        port="$(free_port)"
        # fsync off: the functional suite does not measure durability (benchmarks keep it on).
        if as_pg "'$PG_BIN/pg_ctl' -D '$pg_dir/data' -l '$pg_dir/log' -w -t 30 start \
                -o \"-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off -c max_connections=300\"" \
                >/dev/null; then
            export LOANLEDGER_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
            # The backup tests' pg_dump and pg_restore, of the cluster's own version.
            export LOANLEDGER_TEST_PG_BIN="$PG_BIN"
            echo "test.sh: throwaway PostgreSQL cluster on port $port ($pg_dir)"
            return 0
        fi
        echo "test.sh: PostgreSQL did not start on port $port (attempt $attempt):" >&2
        tail -n 5 "$pg_dir/log" >&2 || true
    done
    return 1
}

if [ -n "${LOANLEDGER_TEST_PG_URL:-}" ]; then
    echo "test.sh: using the PostgreSQL server given in LOANLEDGER_TEST_PG_URL"
    # The tests that make clusters of their own (TLS) and the backup tests' pg_dump and
    # pg_restore find the installed binaries here (Debian keeps them off the PATH).
    if [ -z "${LOANLEDGER_TEST_PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then
        export LOANLEDGER_TEST_PG_BIN="$PG_BIN"
    fi
elif [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ]; then
    start_cluster || { echo "test.sh: could not start a throwaway PostgreSQL cluster" >&2; exit 1; }
elif [ "$ci" = "true" ]; then
    echo "test.sh: CI=true but PostgreSQL is not installed ($PG_BIN): the PostgreSQL half of the suite must run in CI (install postgresql-15, or set LOANLEDGER_TEST_PG_URL)" >&2
    exit 1
else
    echo "test.sh: WARNING: PostgreSQL is not installed ($PG_BIN); running the SQLite half only (the PostgreSQL tests pass vacuously)" >&2
fi

# Not `exec`: the EXIT trap must still remove the cluster. `set -e` makes a failing test fail
# the script with cargo's exit status.
status=0
# With arguments (e.g. `--test api full_flow`) they choose the targets: `--all-targets` beside
# them would still build and run every one.
if [ "$#" -gt 0 ]; then
    run cargo test "$@" || status=$?
else
    run cargo test --all-targets || status=$?
fi
if [ "$status" -ne 0 ]; then
    echo "test.sh: tests FAILED (cargo test exited with $status)" >&2
    exit "$status"
fi

# The benchmark's quick mode (seconds), so that `loanledger bench` keeps working. Its figures are
# not judged here (debug build, fsync off on the throwaway cluster); BENCHMARKS.md has the real
# ones. Skipped when arguments narrow the run to some tests.
if [ "$#" -eq 0 ]; then
    echo "test.sh: quick benchmark on SQLite"
    run env RUST_LOG=warn cargo run --quiet -- bench --quick || status=$?
    if [ "$status" -eq 0 ] && [ -n "${LOANLEDGER_TEST_PG_URL:-}" ]; then
        echo "test.sh: quick benchmark on PostgreSQL"
        run env RUST_LOG=warn cargo run --quiet -- bench --quick --target "$LOANLEDGER_TEST_PG_URL" || status=$?
    fi
    if [ "$status" -ne 0 ]; then
        echo "test.sh: the quick benchmark FAILED (exit $status)" >&2
    fi
fi
exit "$status"
