#!/bin/bash
# Many models in one elliott serve: -m, --models-dir, --alias NAME=FILE; routing by
# the request's "model" on every endpoint, /v1/models and /api/tags, loading on
# first use, unloading the least recently used idle model under --max-models and
# --models-memory, 404 model_not_found, a load that never blocks other models'
# requests, a failed load, and the unchanged `openai` npm client choosing a model.
# The models are tiny random ones made by `elliott make-model`.
# usage: bash tests/e2e/serve_models.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
CHECK="python3 $E2E_DIR/serve_models.py"
D=$TMP/models
mkdir -p "$D"
make_model() {
    "$ELLIOTT" make-model "$@" >>"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; exit 1; }
}
make_model --arch llama --shape tiny --type q8_0 --seed 1 "$D/alpha.gguf"
make_model --arch llama --shape tiny --type q4_0 --seed 2 "$D/beta.gguf"
make_model --arch llama --shape tiny --type q8_0 --seed 3 "$D/gamma.gguf"

# 1. Three models, at most one loaded: routing, lists, lazy loading, unloading.
start_server "$TMP/routing.log" -m "$D/alpha.gguf" --models-dir "$D" --alias chat="$D/gamma.gguf" \
    --max-models 1 --threads 1
wait_ready || exit 1
$CHECK routing --port "$PORT" || fail "group routing"
if command -v node >/dev/null && [ -f "$E2E_DIR/openai/node_modules/openai/package.json" ]; then
    node "$E2E_DIR/openai/models.mjs" "$PORT" || fail "the openai client choosing models"
elif command -v node >/dev/null && command -v npm >/dev/null; then
    if (cd "$E2E_DIR/openai" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >"$TMP/npm.log" 2>&1); then
        node "$E2E_DIR/openai/models.mjs" "$PORT" || fail "the openai client choosing models"
    else
        fail "npm install of the openai package failed: $(tail -5 "$TMP/npm.log")"
    fi
else
    fail "node and npm are needed for the OpenAI client test (Debian: apt-get install nodejs npm)"
fi
grep -q 'unloaded elliott-1' "$TMP/routing.log" || fail "no log line for an unload"
grep -q 'model ready: beta' "$TMP/routing.log" || fail "no log line for beta's load"
grep -q 'Tell me a story' "$TMP/routing.log" && fail "message text in the log"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/routing.log"

# 2. A load that does not end (a FIFO keeps the loader in open()) beside a quick
# model, then fails (an empty "file").
mkfifo "$TMP/slow.gguf"
start_server "$TMP/slow.log" -m "$D/alpha.gguf" --alias slow="$TMP/slow.gguf" --load-timeout 3 --threads 1
wait_ready || exit 1
$CHECK slow --port "$PORT" || fail "group slow"
: > "$TMP/slow.gguf"
$CHECK failed --port "$PORT" || fail "group failed"
grep -q 'the model failed to load (slow)' "$TMP/slow.log" || fail "no log line for the failed load"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/slow.log"

# 3. --alias NAME names the default model; one model answers any name.
start_server "$TMP/renamed.log" -m "$D/alpha.gguf" --alias mine --threads 1
wait_ready || exit 1
$CHECK renamed --port "$PORT" || fail "group renamed"
stop_server
check_log "$TMP/renamed.log"

# 4. A byte budget with room for one model at a time.
budget=$(( $(stat -c %s "$D/alpha.gguf") + 1000 ))
start_server "$TMP/budget.log" -m "$D/alpha.gguf" -m "$D/beta.gguf" --models-memory "$budget" --threads 1
wait_ready || exit 1
$CHECK budget --port "$PORT" || fail "group budget"
stop_server
check_log "$TMP/budget.log"

# 5. Refused at start: a model larger than the budget, two models with one name,
# an empty directory.
refused() {
    local what=$1 want=$2; shift 2
    "$ELLIOTT" serve --port 0 "$@" >"$TMP/refused.log" 2>&1
    local rc=$?
    [ "$rc" = 1 ] && grep -q "$want" "$TMP/refused.log" || fail "$what: exit $rc: $(cat "$TMP/refused.log")"
}
refused "a model over the budget" "larger than the memory budget" -m "$D/alpha.gguf" --models-memory 1000
refused "one name for two models" "two models are named 'x'" -m "x=$D/alpha.gguf" -m "x=$D/beta.gguf"
mkdir -p "$TMP/empty"
refused "an empty models directory" "has no .gguf file" --models-dir "$TMP/empty"
exit $FAILED
