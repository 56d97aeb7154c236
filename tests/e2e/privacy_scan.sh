#!/bin/bash
# The privacy scan: after requests of every shape (answered, streamed, refused,
# too large, half-closed, reset mid-stream; over HTTP and HTTPS), each carrying
# a random marker in its messages, the server's memory holds no copy of it.
# A positive control (the marker given as --alias, which the server keeps)
# shows that the scan can see the process's memory at all.
# usage: bash tests/e2e/privacy_scan.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
SCAN="python3 $E2E_DIR/privacy_scan.py"
MARKER="zq$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')qz"

start_server "$TMP/control.log" --alias "$MARKER"
n=$($SCAN scan --pid "$SERVER_PID" --marker "$MARKER" 2>/dev/null)
stop_server
if [ -z "$n" ] || [ "$n" -lt 1 ]; then
    echo "SKIP: cannot read the server's memory (ptrace rights: /proc/sys/kernel/yama/ptrace_scope)"
    exit 0
fi

start_server "$TMP/http.log"
wait_ready || exit 1
$SCAN clients --port "$PORT" --marker "$MARKER" || fail "the HTTP clients"
n=$($SCAN scan --pid "$SERVER_PID" --marker "$MARKER")
[ "$n" = 0 ] || fail "$n copies of the message marker in the server's memory after the HTTP requests"
stop_server
check_log "$TMP/http.log"

# GnuTLS frees its decrypted records without wiping them. In a normal build
# glibc reuses that memory and the scan finds nothing; AddressSanitizer keeps
# freed memory intact in its quarantine, where the scan finds them, so the
# HTTPS half is skipped under it (a known gap: see docs/api.md, Privacy).
if grep -q __asan_init "$ELLIOTT"; then
    echo "SKIP: the HTTPS scan under AddressSanitizer (GnuTLS's freed records sit in its quarantine)"
elif command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    : > "$TMP/https.log"
    "$ELLIOTT" serve --port 0 --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" >>"$TMP/https.log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    for _ in $(seq 1 600); do
        PORT=$(sed -n 's/.*listening on https:\/\/[^ ]*:\([0-9][0-9]*\)$/\1/p' "$TMP/https.log")
        [ -n "$PORT" ] && grep -q "model ready" "$TMP/https.log" && break
        sleep 0.1
    done
    $SCAN clients --port "$PORT" --marker "$MARKER" --ca "$TMP/cert.pem" || fail "the HTTPS clients"
    n=$($SCAN scan --pid "$SERVER_PID" --marker "$MARKER")
    [ "$n" = 0 ] || fail "$n copies of the message marker in the server's memory after the HTTPS requests"
    stop_server
    check_log "$TMP/https.log"
fi
for f in "$TMP"/http*.log; do
    grep -q -- "$MARKER" "$f" && fail "the marker in $f"
done
exit $FAILED
