#!/bin/bash
# elliott serve: API keys (flag, file, environment), CORS, settings from the
# environment, and command-line validation.
# usage: bash tests/e2e/serve_auth.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
MARKER="zq$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')qz"
KEY="k-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# 1. --api-key, with CORS.
start_server "$TMP/a.log" --api-key "$KEY" --cors https://chat.example
wait_ready || exit 1
$CLIENT auth --port "$PORT" --key "$KEY" --marker "$MARKER" || fail "group auth (--api-key)"
$CLIENT cors --port "$PORT" --key "$KEY" --marker "$MARKER" --origin https://chat.example || fail "group cors"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
grep -q -- "$KEY" "$TMP/a.log" && fail "the API key is in the log"
check_log "$TMP/a.log"

# 2. The key from a file named in the environment; the alias from the environment.
printf '%s\n' "$KEY" > "$TMP/key"
ELLIOTT_API_KEY_FILE=$TMP/key ELLIOTT_ALIAS=house-model ELLIOTT_MAX_BODY=2K start_server "$TMP/b.log"
wait_ready || exit 1
$CLIENT auth --port "$PORT" --key "$KEY" --marker "$MARKER" --alias house-model || fail "group auth (key file)"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    --data-binary "{\"messages\":[{\"role\":\"user\",\"content\":\"$(head -c 3000 /dev/zero | tr '\0' a)\"}]}" \
    "http://127.0.0.1:$PORT/v1/chat/completions")" = 413 ] || fail "ELLIOTT_MAX_BODY=2K: a 3 KB body is not a 413"
MODEL=$(curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/models")
grep -q '"id":"house-model"' <<<"$MODEL" || fail "ELLIOTT_ALIAS not used: $MODEL"
stop_server
check_log "$TMP/b.log"

# 3. The environment's key, overridden by the flag; ELLIOTT_PORT/HOST read.
ELLIOTT_API_KEY=not-this-one start_server "$TMP/c.log" --api-key "$KEY"
wait_ready || exit 1
$CLIENT auth --port "$PORT" --key "$KEY" --marker "$MARKER" || fail "group auth (flag over environment)"
stop_server
check_log "$TMP/c.log"

# 4. Usage errors exit 2 with a message; --help exits 0.
"$ELLIOTT" serve --help | grep -q -- '--api-key-file' || fail "serve --help"
for args in "--port 70000" "--port x" "--history some" "--max-body 12" "--api-key a --api-key-file b" \
            "--parallel 0" "--bogus" "extra-arg" "--api-key" "--ctx -1"; do
    # shellcheck disable=SC2086
    "$ELLIOTT" serve $args >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc = 2 ] || fail "serve $args: exit $rc, want 2"
    [ -s "$TMP/err" ] || fail "serve $args: no message"
done
"$ELLIOTT" serve --api-key-file "$TMP/missing" >/dev/null 2>"$TMP/err"
[ $? = 1 ] && grep -q 'cannot open' "$TMP/err" || fail "a missing key file"
"$ELLIOTT" serve --api-key 'has space' >/dev/null 2>&1
[ $? = 2 ] || fail "a key with a space"
ELLIOTT_PORT=notaport "$ELLIOTT" serve >/dev/null 2>&1
[ $? = 2 ] || fail "a bad ELLIOTT_PORT"

# 5. A port in use is a clear error.
start_server "$TMP/d.log"
"$ELLIOTT" serve --port "$PORT" >/dev/null 2>"$TMP/err"
[ $? = 1 ] && grep -q 'cannot listen' "$TMP/err" || fail "a port in use: $(cat "$TMP/err")"
stop_server
check_log "$TMP/d.log"

for f in "$TMP"/*.log; do
    grep -q -- "$MARKER" "$f" && fail "message text in $f"
done
exit $FAILED
