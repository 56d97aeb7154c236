#!/bin/bash
# The official OpenAI client library (npm `openai`, pinned in
# tests/e2e/openai/package.json), unchanged, against elliott serve.
# Installs it with npm into tests/e2e/openai/node_modules (git-ignored) on first use.
# usage: bash tests/e2e/serve_openai.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
DIR=$E2E_DIR/openai

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "FAIL: node and npm are needed for the OpenAI client test (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if [ ! -f "$DIR/node_modules/openai/package.json" ]; then
    if ! (cd "$DIR" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >"$TMP/npm.log" 2>&1); then
        echo "FAIL: npm install of the openai package failed:" >&2
        cat "$TMP/npm.log" >&2
        exit 1
    fi
fi

KEY="k-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
start_server "$TMP/server.log" --api-key "$KEY"
wait_ready || exit 1
node "$DIR/test.mjs" "$PORT" "$KEY" || fail "the openai client test"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/server.log"
grep -q 'Once upon a time' "$TMP/server.log" && fail "message text in the log"

# Structured output through the client's helpers, on a random-weight model with the
# real Gemma 3 vocabulary (the grammar alone makes the answers valid).
ROOT=$(cd "$E2E_DIR/../.." && pwd)
"$ELLIOTT" make-model --arch gemma3 --shape tiny --type q8_0 --vocab "$ROOT/tests/data/vocab-gemma3.gguf" \
    "$TMP/model.gguf" >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; exit 1; }
start_server "$TMP/server2.log" -m "$TMP/model.gguf"
wait_ready || exit 1
node "$DIR/structured.mjs" "$PORT" || fail "the openai client's structured-output helpers"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/server2.log"
exit $FAILED
