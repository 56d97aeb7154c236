#!/bin/bash
# elliott serve under pressure, on a model slow enough to hold a slot: a client
# that hangs up mid-stream, a full queue (503 + Retry-After), SIGTERM with
# requests in flight (finished within the grace period, or cancelled after it),
# and 503 while the model loads or after it failed to load.
# usage: bash tests/e2e/serve_limits.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
MARKER="zq$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')qz"

# 1. Loading: a FIFO as the model keeps the loader waiting in open().
mkfifo "$TMP/model.gguf"
# --load-timeout 0: requests do not wait for the load (serve_models.sh checks that they do).
start_server "$TMP/load.log" -m "$TMP/model.gguf" --load-timeout 0
$CLIENT loading --port "$PORT" --marker "$MARKER" || fail "group loading"
: > "$TMP/model.gguf"   # an empty "file": the load fails
for _ in $(seq 1 100); do
    grep -q 'failed to load' "$TMP/load.log" && break
    sleep 0.1
done
grep -q 'the model failed to load' "$TMP/load.log" || fail "no log line for the failed load"
$CLIENT failed --port "$PORT" --marker "$MARKER" || fail "group failed"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status after SIGTERM while failed: $SERVER_RC"
check_log "$TMP/load.log"

# The slot-holding checks need a model slower than the built-in one: a golden gemma model.
MODEL=$TMP/gemma-tiny-q8_0.gguf
bash tests/golden/golden-model.sh "$ELLIOTT" gemma-tiny-q8_0 "$MODEL" || { fail "make-model did not regenerate the golden model"; exit 1; }

# 2. Hang-ups and a full queue: one slot, a queue of one.
start_server "$TMP/queue.log" -m "$MODEL" --parallel 1 --max-queue 1
wait_ready || exit 1
$CLIENT disconnect --port "$PORT" --marker "$MARKER" || fail "group disconnect"
$CLIENT queue_full --port "$PORT" --marker "$MARKER" || fail "group queue_full"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status: $SERVER_RC"
# Each hung-up stream stopped long before the end of its context.
while read -r n; do
    [ "$n" -lt 200 ] || fail "a cancelled generation ran on to $n tokens"
done < <(grep 'cancelled=client_disconnected' "$TMP/queue.log" | sed 's/.*completion_tokens=\([0-9]*\).*/\1/')
[ "$(grep -c "cancelled=client_disconnected" "$TMP/queue.log")" = 4 ] || fail "four cancelled requests in the log"
check_log "$TMP/queue.log"

# Runs a client group in the background; returns once it printed "started".
start_client() {
    local group=$1 out=$2
    $CLIENT "$group" --port "$PORT" --marker "$MARKER" >"$out" 2>&1 &
    CLIENT_PID=$!
    for _ in $(seq 1 600); do
        grep -q '^started' "$out" && return 0
        kill -0 "$CLIENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    fail "client group $group did not start: $(cat "$out")"
}

# 3. SIGTERM with a short request in flight: it finishes, then the server exits 0.
start_server "$TMP/term1.log" -m "$MODEL" --grace-ms 60000
wait_ready || exit 1
start_client finishing "$TMP/fin.out"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status with a request finishing: $SERVER_RC"
wait "$CLIENT_PID" || { fail "group finishing"; cat "$TMP/fin.out" >&2; }
check_log "$TMP/term1.log"

# 4. SIGTERM with an endless request in flight: cancelled after the grace period.
start_server "$TMP/term2.log" -m "$MODEL" --grace-ms 500
wait_ready || exit 1
start_client inflight "$TMP/inf.out"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status with a request cancelled at shutdown: $SERVER_RC"
wait "$CLIENT_PID" || { fail "group inflight"; cat "$TMP/inf.out" >&2; }
grep -q 'grace period over' "$TMP/term2.log" || fail "no log line about cancelling at shutdown"
check_log "$TMP/term2.log"

for f in "$TMP"/*.log; do
    grep -q -- "$MARKER" "$f" && fail "message text in $f"
done
exit $FAILED
