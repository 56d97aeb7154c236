#!/bin/bash
# The KV pool end to end (built-in model): `-c` is shared by the `--parallel` slots (its
# gauges on /metrics: capacity, reserved, cached, cache type); a
# prompt that can never fit (alone, or as n choices) is a 400 context_length_exceeded,
# requests that do not fit beside each other wait and all answer 200, max_tokens is cut
# to what the pool leaves; `--parallel auto` (the default) starts and says what it chose.
# usage: bash tests/e2e/serve_pool.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT

# "model ready" is logged within 100 ms of /health turning 200
ready_line() {
    for _ in $(seq 1 100); do
        grep -q "model ready" "$1" && return 0
        sleep 0.1
    done
}

start_server "$TMP/pool.log" --parallel 2 -c 200 --max-queue 8
wait_ready || exit 1
ready_line "$TMP/pool.log"
grep -q "2 slots sharing a KV cache of 200 positions" "$TMP/pool.log" ||
    fail "the log does not state the slots and the pool: $(grep 'model ready' "$TMP/pool.log")"
python3 - "$PORT" <<'PY' || fail "pool requests"
import http.client, json, sys, threading
port = int(sys.argv[1])
failed = []

def post(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return r.status, data

def check(cond, what):
    if not cond:
        failed.append(what)
        print("FAIL: " + what, file=sys.stderr)

def ask(words, **extra):
    body = {"messages": [{"role": "user", "content": " ".join(["the cat sat"] * words)}], "temperature": 0}
    body.update(extra)
    return post(body)

# longer than the pool: refused
st, d = ask(150, max_tokens=4)
check(st == 400 and d.get("error", {}).get("code") == "context_length_exceeded", "too long: %d %s" % (st, d))
# a prompt that fits once but not twice: n=2 is refused naming the pool
words = 1
while True:
    st, d = ask(words, max_tokens=1)
    if st != 200 or d["usage"]["prompt_tokens"] > 100:
        break
    words += 6
check(st == 200, "growing prompt: %d %s" % (st, d))
prompt = d["usage"]["prompt_tokens"]
if prompt < 199:
    st, d = ask(words, max_tokens=1, n=2)
    err = d.get("error", {})
    check(st == 400 and err.get("code") == "context_length_exceeded" and "pool" in err.get("message", ""),
          "n=2 of %d tokens: %d %s" % (prompt, st, d))
# max_tokens is cut to what the pool leaves two choices
st, d = ask(1, max_tokens=1000, n=2)
check(st == 200 and all(c["finish_reason"] in ("length", "stop") for c in d.get("choices", [])),
      "n=2 capped: %d %s" % (st, d))
if st == 200:
    check(d["usage"]["completion_tokens"] <= 200 - 2 * d["usage"]["prompt_tokens"],
          "n=2 within the pool: %s" % d["usage"])
# four requests of 150 tokens each: one fits at a time, all answer
results = [None] * 4
def one(i):
    results[i] = ask(1 + i, max_tokens=150)
threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i, (st, d) in enumerate(results):
    check(st == 200 and d["choices"][0]["message"]["content"], "waiting request %d: %d %s" % (i, st, d))

# /metrics: the pool's gauges for the model (Prometheus text, one line each)
def metrics():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}
m = metrics()
check(m.get('elliott_model_kv_tokens_capacity{model="elliott-1"}') == 200, "pool capacity 200: %s" % m)
check(m.get('elliott_model_kv_cache_type{model="elliott-1",type="f16"}') == 1, "cache type f16")
check(m.get('elliott_model_kv_tokens_reserved{model="elliott-1"}') == 0, "nothing reserved when idle")
check(0 < m.get('elliott_model_kv_tokens_cached{model="elliott-1"}', 0) <= 200, "finished conversations cached")
sys.exit(1 if failed else 0)
PY
curl -s "http://127.0.0.1:$PORT/health" | grep -q ok || fail "unhealthy after the pool requests"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/pool.log"

start_server "$TMP/auto.log"
wait_ready || exit 1
ready_line "$TMP/auto.log"
grep -qE "model ready: .* [1-9][0-9]* slots sharing a KV cache of [0-9]+ positions" "$TMP/auto.log" ||
    fail "--parallel auto: $(grep 'model ready' "$TMP/auto.log")"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
check_log "$TMP/auto.log"
exit $FAILED
