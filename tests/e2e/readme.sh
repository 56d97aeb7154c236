#!/bin/bash
# The README's quick start, as a newcomer would run it: `elliott serve` with no model (the
# bundled stories260K) and the README's own curl command, taken from the README itself, must
# return a story. Only the port differs (the test picks a free one).
# usage: bash tests/e2e/readme.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
LOG=$TMP/server.log

grep -q '^bash scripts/install-deps.sh && make -j && ./build/elliott serve$' README.md \
    || fail "the README's set-up-and-run command changed; update this test with it"
grep -q '^bash scripts/install-deps.sh --test && make -j check$' README.md \
    || fail "the README's test command changed; keep .ci/run and this test in step"

# The README's curl command: the lines from "curl" to the line without a trailing backslash.
CMD=$(awk '/^curl /{on=1} on{print} on && !/\\$/{exit}' README.md)
[ -n "$CMD" ] || { fail "no curl command in the README"; exit 1; }

start_server "$LOG"
wait_ready || exit 1
OUT=$(eval "${CMD//127.0.0.1:8080/127.0.0.1:$PORT}")
python3 - "$OUT" <<'PY' || fail "the README request's answer: $OUT"
import json, sys
v = json.loads(sys.argv[1])
text = v["choices"][0]["message"]["content"]
words = text.split()
# stories260K tells children's stories: a real answer is many words of English.
assert len(words) >= 20, text
assert sum(w.strip(".,!?\"'").isalpha() for w in words) >= 0.8 * len(words), text
print("story:", text[:120].replace("\n", " "), "...")
PY
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status after SIGTERM: $SERVER_RC"
check_log "$LOG"
exit $FAILED
