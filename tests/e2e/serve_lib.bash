# Shared by tests/e2e/serve*.sh (sourced; not a test itself): start and stop
# `elliott serve` on a free loopback port and check its log.
#   start_server LOG [ARGS...]   sets SERVER_PID and PORT; waits for "listening on"
#   wait_ready                   polls /health until 200
#   stop_server                  SIGTERM, waits, sets SERVER_RC (a failed exit prints the log's end)
#   check_log LOG                no sanitizer report in the log
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENT="python3 $E2E_DIR/serve_client.py"
SERVER_PIDS=()
FAILED=0

fail() { echo "FAIL: $*" >&2; FAILED=1; }

cleanup_servers() {
    for pid in "${SERVER_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
}
trap cleanup_servers EXIT

start_server() {
    local log=$1; shift
    SERVER_LOG=$log
    : > "$log"
    "$ELLIOTT" serve --port 0 "$@" >>"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    PORT=
    for _ in $(seq 1 600); do
        PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\)$/\1/p' "$log" | head -n 1)
        [ -n "$PORT" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "the server did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

wait_ready() {
    for _ in $(seq 1 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && return 0
        sleep 0.1
    done
    fail "the model did not become ready"
    return 1
}

# SIGTERM, then wait (bounded, generously: sanitizer builds are slow).
stop_server() {
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 600); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        fail "the server did not exit after SIGTERM"
        kill -KILL "$SERVER_PID"
    fi
    wait "$SERVER_PID"
    SERVER_RC=$?
    # The log goes with the test's temp dir: a failed exit shows its end here.
    if [ "$SERVER_RC" != 0 ]; then
        echo "the server exited with $SERVER_RC; the end of its log:" >&2
        tail -n 25 "$SERVER_LOG" >&2
    fi
}

check_log() {
    local log=$1
    if grep -qE 'ERROR: AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer' "$log"; then
        fail "sanitizer report in $log:"
        grep -A30 -E 'ERROR: AddressSanitizer|LeakSanitizer|runtime error:' "$log" | head -60 >&2
    fi
}
