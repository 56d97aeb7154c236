#!/bin/bash
# A model file cut short while it is served (issue 9, item 6): the process lives on
# (no SIGBUS), the generation in flight ends with a stream error, the request queued
# behind it with 500 "AI service is unavailable", /health says failed, new requests
# get 503, the log says why, and SIGTERM still ends the server cleanly.
set -u
ELLIOTT=${1:?usage: serve_model_damage.sh ELLIOTT}
cd "$(dirname "$0")/../.."
. tests/e2e/serve_lib.bash
TMP=$(mktemp -d /tmp/elliott-damage-XXXXXX)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT

MODEL=$TMP/served.gguf
bash tests/golden/golden-model.sh "$ELLIOTT" gemma-tiny-q8_0 "$MODEL" || { echo "FAIL: make-model"; exit 1; }

start_server "$TMP/serve.log" -m "$MODEL" --parallel 1 --max-queue 4
wait_ready || exit 1

python3 - "$PORT" "$MODEL" "$SERVER_PID" <<'EOF' || fail "the client's checks"
import http.client, json, os, sys, threading, time
port, model, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
failures = []
def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)

def body(stream):
    return json.dumps({"messages": [{"role": "user", "content": "tell me a long story"}],
                       "max_tokens": 2000, "stream": stream,
                       "logit_bias": {"1": -100, "107": -100}})  # no <eos>, no <end_of_turn>: it runs on

def post(stream):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/chat/completions", body(stream), {"Content-Type": "application/json"})
    return c, c.getresponse()

# The first request streams; the second waits in the queue behind it.
conn, streaming = post(True)
check(streaming.status == 200, "stream status %d" % streaming.status)
first = streaming.readline()
check(first.startswith(b"data: "), "a first chunk: %r" % first)
queued = {}
def queued_request():
    c, r = post(False)
    queued["status"], queued["body"] = r.status, r.read()
t = threading.Thread(target=queued_request)
t.start()
time.sleep(0.3)
os.truncate(model, os.path.getsize(model) // 3)

rest = streaming.read()
events = [l[6:] for l in rest.split(b"\n") if l.startswith(b"data: ")]
errors = [json.loads(e) for e in events if e != b"[DONE]" and "error" in json.loads(e)]
check(len(errors) == 1 and errors[0]["error"]["message"] == "AI service is unavailable",
      "the stream ends with the error event: %r" % rest[-300:])
check(b"[DONE]" not in rest, "no [DONE] after the error")
t.join(60)
check(queued.get("status") in (500, 503), "the queued request: %r" % queued)
if queued.get("status") == 500:
    check(json.loads(queued["body"])["error"]["message"] == "AI service is unavailable",
          "the queued request's error: %r" % queued["body"])

c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("GET", "/health")
r = c.getresponse()
health = r.read()
check(r.status == 503 and json.loads(health) == {"status": "failed"}, "/health: %d %r" % (r.status, health))
c, r = post(False)
later = r.read()
check(r.status == 503 and "error" in json.loads(later), "a request after the failure: %d %r" % (r.status, later))
os.kill(pid, 0)  # still alive
sys.exit(1 if failures else 0)
EOF

kill -0 "$SERVER_PID" 2>/dev/null || fail "the server died"
# Usually a read past the new end (base/mapguard.h) finds it; when the cut falls between
# a pass's last read of the weights and the check after it, the size check does (the
# SIGBUS path itself is tests/base/test_mapguard.c's and tests/gguf/test_gguf_damage.c's).
grep -q "model failed.*damaged while in use.*\(cut short\|changed size\) while in use" "$TMP/serve.log" ||
    fail "the log does not say why the model failed: $(tail -5 "$TMP/serve.log")"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC after SIGTERM"
check_log "$TMP/serve.log"
[ $FAILED = 0 ] && echo "serve_model_damage: ok"
exit $FAILED
