#!/bin/bash
# Structured output end to end: JSON Schema, json_object, GBNF, tools, logprobs and
# n against a random-weight Gemma 3 model with the real 256k vocabulary, where the
# grammar alone makes the answers valid (checked with python3-jsonschema).
# usage: bash tests/e2e/serve_structured.sh path/to/elliott [SEEDS]
set -u
ELLIOTT=$1
SEEDS=${2:-1}
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
ROOT=$(cd "$E2E_DIR/../.." && pwd)

if ! python3 -c 'import jsonschema' 2>/dev/null; then
    echo "FAIL: python3-jsonschema is needed (scripts/install-deps.sh --test)" >&2
    exit 1
fi
"$ELLIOTT" make-model --arch gemma3 --shape tiny --type q8_0 --vocab "$ROOT/tests/data/vocab-gemma3.gguf" \
    "$TMP/model.gguf" >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; exit 1; }
start_server "$TMP/server.log" -m "$TMP/model.gguf" --parallel 2
wait_ready || exit 1
python3 "$E2E_DIR/serve_structured.py" --port "$PORT" --seeds "$SEEDS" || fail "structured output"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/server.log"
exit $FAILED
