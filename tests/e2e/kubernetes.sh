#!/bin/bash
# The Kubernetes manifests (deploy/kubernetes/) without a cluster (kubectl is
# not part of the test dependencies): every file parses, the fields a cluster
# needs are there and agree (kubernetes_check.py), and elliott starts, answers
# and drains with the container's ELLIOTT_* settings (model, address and port
# replaced by the built-in model on a free loopback port). Needs python3-yaml
# (scripts/install-deps.sh --test); without it the test is skipped.
# usage: bash tests/e2e/kubernetes.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
ROOT=$(cd "$E2E_DIR/../.." && pwd)
if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "SKIP: python3-yaml is not installed (bash scripts/install-deps.sh --test)"
    exit 0
fi
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT

python3 "$E2E_DIR/kubernetes_check.py" "$ROOT/deploy/kubernetes" "$ROOT/docs/commands.md" > "$TMP/env" ||
    fail "deploy/kubernetes does not pass its checks"
grep -q '^ELLIOTT_PARALLEL=' "$TMP/env" || fail "the container sets no ELLIOTT_PARALLEL"

# The container's settings, started for real.
while IFS= read -r line; do
    export "${line?}"
done < "$TMP/env"
export ELLIOTT_MODEL= ELLIOTT_HOST=127.0.0.1
start_server "$TMP/serve.log"
wait_ready
code=$(curl -s -o "$TMP/reply" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/chat/completions" \
    -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"Once"}],"max_tokens":8}')
[ "$code" = 200 ] || fail "a completion with the container's settings: HTTP $code $(head -c 300 "$TMP/reply")"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status after SIGTERM: $SERVER_RC"
check_log "$TMP/serve.log"
exit $FAILED
