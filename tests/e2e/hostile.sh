#!/bin/bash
# Hostile clients against elliott serve on loopback: a connection flood (idle
# and slowloris connections at once while /health and a completion are
# served), the idle and request deadlines, the per-address connection limit,
# framing attacks, Expect: 100-continue with and without a key, half-closed
# clients, and SIGTERM with requests queued. Sizes are CI sizes; the 10,000 /
# 1,000 figures come from bench/edge_flood.py (docs/api.md).
# usage: bash tests/e2e/hostile.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
HOSTILE="python3 $E2E_DIR/hostile_client.py"
KEY="k-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
MODEL=${ELLIOTT_SHARED:-../shared}/golden/models/tiny-gemma-q8_0.gguf

run_group() { # GROUP ARGS...: one client group against the running server
    local group=$1; shift
    $HOSTILE "$group" --port "$PORT" "$@" || fail "group $group"
}

finish_server() { # LOG
    stop_server
    [ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC ($1)"
    check_log "$1"
    grep -q -- "$KEY" "$1" && fail "the key in $1"
}

# 1. The flood, the framing cases, 100-continue and half-close: default limits
#    except the idle deadline, raised so that the idle connections stay for
#    the whole flood.
start_server "$TMP/flood.log" --api-key "$KEY" --idle-timeout 120
wait_ready || exit 1
run_group flood --key "$KEY" --idle 2000 --slow 300 --seconds 5
run_group framing --key "$KEY"
run_group continue --key "$KEY"
run_group half_close --key "$KEY"
finish_server "$TMP/flood.log"
lines=$(wc -l < "$TMP/flood.log")
[ "$lines" -lt 400 ] || fail "the flood wrote $lines log lines (MHD's messages are rate-limited)"

# 2. Deadlines that dribbling does not extend.
start_server "$TMP/deadline.log" --api-key "$KEY" --idle-timeout 2 --request-timeout 2
wait_ready || exit 1
run_group deadlines --key "$KEY"
finish_server "$TMP/deadline.log"

# 3. Connection limits: per address, and in all.
start_server "$TMP/limits.log" --max-connections-per-ip 20 --max-connections 40
wait_ready || exit 1
run_group limits
finish_server "$TMP/limits.log"

# 4. SIGTERM with requests queued behind a long one (a model slow enough to
#    hold the slot).
if [ -r "$MODEL" ]; then
    start_server "$TMP/term.log" -m "$MODEL" --parallel 1 --max-queue 4 --grace-ms 60000
    wait_ready || exit 1
    $HOSTILE queued --port "$PORT" --server-pid "$SERVER_PID" || fail "group queued"
    for _ in $(seq 1 600); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    wait "$SERVER_PID"
    [ $? = 0 ] || fail "exit status after SIGTERM with queued requests"
    check_log "$TMP/term.log"
else
    echo "SKIP: $MODEL absent: the SIGTERM-with-a-queue check needs it"
fi
exit $FAILED
