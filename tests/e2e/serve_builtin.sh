#!/bin/bash
# Any elliott binary, with no model file, serves its built-in model: `serve` on a free
# loopback port answers POST /v1/chat/completions with a story. CI also runs it on the binary the Debian package installed.
# usage: bash tests/e2e/serve_builtin.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT

start_server "$TMP/server.log" --host 127.0.0.1
wait_ready || exit 1
OUT=$(curl -s -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/v1/chat/completions" \
    -d '{"model":"elliott-1","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":32,"temperature":0}')
python3 - "$OUT" <<'PY' || fail "the answer: $OUT"
import json, sys
v = json.loads(sys.argv[1])
assert v["object"] == "chat.completion" and v["model"] == "elliott-1", v
text = v["choices"][0]["message"]["content"]
assert len(text.split()) >= 5, text
print("ok   /v1/chat/completions answered:", text[:60].replace("\n", " "), "...")
PY
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status after SIGTERM: $SERVER_RC"
check_log "$TMP/server.log"
exit $FAILED
