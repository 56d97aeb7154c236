#!/bin/bash
# elliott serve end to end on the built-in model (stories260K): every route,
# the elliott-1 service's own curl example, every error row, streaming, keep-alive, 16
# concurrent clients, a client that hangs up, privacy of the log, SIGTERM.
# usage: bash tests/e2e/serve.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
LOG=$TMP/server.log
MARKER="zq$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')qz"

start_server "$LOG"
grep -q 'built-in model stories260K' "$LOG" || fail "no log line saying the built-in model is used"
wait_ready || exit 1

# The elliott-1 curl example (docs/api.md), byte for byte (host and port aside).
OUT=$(curl -s -X POST http://127.0.0.1:$PORT/v1/ai/chat/completions/ -H "Content-Type: application/json" -d '{"messages":[{"role":"user","content":"Hello, how are you?"}]}')
python3 - "$OUT" <<'PY' || fail "the elliott-1 example's response"
import json, re, sys, time
v = json.loads(sys.argv[1])
assert re.fullmatch(r"cfai-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", v["id"]), v["id"]
assert v["object"] == "chat.completion" and v["model"] == "elliott-1"
assert isinstance(v["created"], int) and abs(v["created"] - time.time()) < 600
c = v["choices"][0]
assert c["index"] == 0 and c["message"]["role"] == "assistant" and c["message"]["content"]
assert c["finish_reason"] in ("stop", "length")
u = v["usage"]
assert u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
PY

for group in main concurrent disconnect; do
    $CLIENT $group --port "$PORT" --marker "$MARKER" || fail "group $group"
done
grep -q 'cancelled=client_disconnected' "$LOG" || fail "the log does not show the disconnected stream as cancelled"

# A request is logged with method, path, status, sizes, tokens and time.
grep -qE '^[0-9T:.-]+Z POST /v1/chat/completions 200 req=[0-9]+ resp=[0-9]+ prompt_tokens=[1-9][0-9]* completion_tokens=[0-9]+ ms=[0-9.]+ engine_ms=[0-9.]+$' "$LOG" \
    || fail "no complete request log line"

stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status after SIGTERM: $SERVER_RC"
grep -q 'shutting down' "$LOG" || fail "no shutdown line"

# Privacy: the marker went into every message; the whole log must not hold it.
HITS=$(grep -c -- "$MARKER" "$LOG")
[ "$HITS" = 0 ] || fail "message text in the log ($HITS lines)"
grep -q 'Hello, how are you' "$LOG" && fail "the elliott-1 example's message text is in the log"
check_log "$LOG"

# Start-up refusals: one message on stderr and exit 1 (bad files) or 2 (bad
# options), before anything listens. A missing model or a directory is refused
# at once rather than answered with 503s.
refused() { # description, expected exit, expected stderr lines, serve arguments...
    local what=$1 want_rc=$2 want_lines=$3; shift 3
    timeout 20 "$ELLIOTT" serve --port 0 "$@" </dev/null >/dev/null 2>"$TMP/refused.err"
    local rc=$? n
    n=$(wc -l <"$TMP/refused.err")
    [ $rc -eq "$want_rc" ] && [ "$n" -eq "$want_lines" ] && grep -q "^elliott serve: " "$TMP/refused.err" ||
        fail "$what: exit $rc (want $want_rc), $n line(s) (want $want_lines): $(head -c 300 "$TMP/refused.err")"
}
mkdir -p "$TMP/dir"
refused "missing model" 1 1 -m "$TMP/none.gguf"
refused "model is a directory" 1 1 -m "$TMP/dir"
refused "missing --api-key-file" 1 1 --api-key-file "$TMP/none.key"
refused "--api-key-file is a directory" 1 1 --api-key-file "$TMP/dir"
refused "--port out of range" 2 1 --port 70000
refused "--max-body too small" 2 1 --max-body 10
refused "bad --history" 2 2 --history some
refused "unknown option" 2 2 --frobnicate
refused "--mlock given a value" 2 2 --mlock=yes
refused "--port without a value" 2 2 --port
refused "--parallel 0" 2 1 --parallel 0
ELLIOTT_CTX=lots refused "bad ELLIOTT_CTX" 2 1

if [ $FAILED != 0 ]; then
    echo "---- server log (tail)" >&2
    tail -n 40 "$LOG" >&2
fi
exit $FAILED
