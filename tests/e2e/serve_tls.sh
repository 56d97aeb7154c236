#!/bin/bash
# HTTPS and API key files: a self-signed certificate made with openssl, checked
# by curl --cacert and by the OpenAI client (NODE_EXTRA_CA_CERTS); certificate
# and key errors refused at start; several keys in a file with comments,
# reread on SIGHUP without dropping an open connection.
# usage: bash tests/e2e/serve_tls.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT

for tool in openssl curl; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is needed (Debian: apt-get install $tool)" >&2; exit 1; }
done
make_cert() { # NAME: NAME.crt and NAME.key for localhost and 127.0.0.1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TMP/$1.key" -out "$TMP/$1.crt" 2>/dev/null || { echo "FAIL: openssl req" >&2; exit 1; }
    chmod 600 "$TMP/$1.key"
}
make_cert a
make_cert b

# Refused before anything listens, each with its reason.
refused() { # WHAT WANT_TEXT ARGS...
    local what=$1 want=$2; shift 2
    out=$("$ELLIOTT" serve --port 0 "$@" 2>&1 </dev/null); rc=$?
    [ "$rc" = 1 ] || fail "$what: exit $rc (want 1)"
    grep -q -- "$want" <<<"$out" || fail "$what: no '$want' in: $out"
}
refused "key of another certificate" "does not belong to the certificate" --tls-cert "$TMP/a.crt" --tls-key "$TMP/b.key"
refused "missing key file" "cannot open" --tls-cert "$TMP/a.crt" --tls-key "$TMP/none.key"
refused "a key as certificate" "cannot be used" --tls-cert "$TMP/a.key" --tls-key "$TMP/a.key"
echo "not pem" > "$TMP/junk.crt"
refused "not PEM" "not a PEM file" --tls-cert "$TMP/junk.crt" --tls-key "$TMP/a.key"
out=$("$ELLIOTT" serve --port 0 --tls-cert "$TMP/a.crt" 2>&1); rc=$?
[ "$rc" = 2 ] || fail "--tls-cert alone: exit $rc (want 2)"
printf '# only comments\n\n' > "$TMP/empty.keys"
refused "a key file without keys" "holds no key" --api-key-file "$TMP/empty.keys"
printf 'good\nbad key\n' > "$TMP/bad.keys"
refused "a key with a space" "line 2" --api-key-file "$TMP/bad.keys"

K1="k1-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
K2="k2-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
K3="k3-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '# production keys\n%s\n\n   %s  \n# %s is not a key\n' "$K1" "$K2" "$K3" > "$TMP/keys"
chmod 600 "$TMP/keys"
: > "$TMP/server.log"
"$ELLIOTT" serve --port 0 --tls-cert "$TMP/a.crt" --tls-key "$TMP/a.key" --api-key-file "$TMP/keys" \
    >>"$TMP/server.log" 2>&1 &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
PORT=
for _ in $(seq 1 600); do
    PORT=$(sed -n 's/.*listening on https:\/\/[^ ]*:\([0-9][0-9]*\)$/\1/p' "$TMP/server.log" | head -n 1)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$TMP/server.log" >&2; echo "FAIL: no https listening line" >&2; exit 1; }
URL="https://127.0.0.1:$PORT"
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/a.crt" "$@"; }
for _ in $(seq 1 600); do [ "$(code "$URL/health")" = 200 ] && break; sleep 0.1; done
[ "$(code "$URL/health")" = 200 ] || fail "/health over https"
[ "$(code "$URL/v1/models" -H "Authorization: Bearer $K1")" = 200 ] || fail "the first key"
[ "$(code "$URL/v1/models" -H "Authorization: Bearer $K2")" = 200 ] || fail "the second key (spaces around it)"
[ "$(code "$URL/v1/models" -H "Authorization: Bearer $K3")" = 401 ] || fail "a key in a comment is no key"
[ "$(code "$URL/v1/models")" = 401 ] || fail "no key"
curl -s -o /dev/null --max-time 5 "$URL/health" && fail "curl without the CA accepted the self-signed certificate"
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/health" && fail "plain HTTP answered on the TLS port"

if command -v node >/dev/null && [ -f "$E2E_DIR/openai/node_modules/openai/package.json" ]; then
    NODE_EXTRA_CA_CERTS="$TMP/a.crt" node "$E2E_DIR/openai/test.mjs" "$PORT" "$K1" https \
        || fail "the openai client over https"
else
    echo "SKIP: the OpenAI client over https (node or tests/e2e/openai/node_modules missing: run serve_openai.sh)"
fi

# SIGHUP rereads the file; a connection kept open across it goes on working.
python3 - "$PORT" "$TMP/a.crt" "$K1" "$K3" "$TMP/keys" "$SERVER_PID" <<'PY' || fail "key reload on SIGHUP"
import http.client, os, signal, ssl, sys, time
port, ca, k1, k3, keyfile, pid = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=30)
def status(key):
    c.request("GET", "/v1/models", headers={"Authorization": "Bearer " + key})
    r = c.getresponse(); r.read(); return r.status
assert status(k1) == 200 and status(k3) == 401, "before the reload"
with open(keyfile, "w") as f:
    f.write(k3 + "\n")
os.kill(int(pid), signal.SIGHUP)
for _ in range(100):
    if status(k3) == 200:
        break
    time.sleep(0.05)
assert status(k3) == 200, "the new key after SIGHUP, on the same connection"
assert status(k1) == 401, "the old key after SIGHUP"
with open(keyfile, "w") as f:
    f.write("# emptied by mistake\n")
os.kill(int(pid), signal.SIGHUP)
time.sleep(0.5)
assert status(k3) == 200, "an unreadable key file keeps the keys in use"
PY
grep -q "SIGHUP: 1 API key loaded" "$TMP/server.log" || fail "no log line for the reload"
grep -q "keeping the keys in use" "$TMP/server.log" || fail "no log line for the refused reload"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/server.log"
for k in "$K1" "$K2" "$K3"; do
    grep -q -- "$k" "$TMP/server.log" && fail "a key in the log"
done
exit $FAILED
