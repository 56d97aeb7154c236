#!/bin/bash
# /v1/completions, /v1/embeddings and Ollama's API against elliott serve: curl
# checks (shapes, errors, goldens), then the unchanged npm clients (`ollama`,
# pinned in tests/e2e/ollama/package.json, and `openai`'s completions.create and
# embeddings.create), installed with npm on first use (node_modules is git-ignored).
# Two servers: the built-in stories model (generative), and the tiny
# gemma-embedding model of tests/data/goldens-arch, whose embeddings are checked
# against llama.cpp's.
# usage: bash tests/e2e/serve_endpoints.sh path/to/elliott
set -u
ELLIOTT=$1
. "$(dirname "$0")/serve_lib.bash"
TMP=$(mktemp -d)
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
ROOT=$(cd "$E2E_DIR/../.." && pwd)
GOLDEN=$ROOT/tests/data/goldens-arch/tiny-gemma-embedding-f32.embed.json

# The embedding model of the golden: same arch, shape, type, seed and vocabulary.
read -r _ arch shape type seed _ < <(grep '^tiny-gemma-embedding-f32	' "$ROOT/tests/data/goldens-arch/models.tsv")
"$ELLIOTT" make-model --arch "$arch" --shape "$shape" --type "$type" --seed "$seed" \
    --vocab "$ROOT/tests/data/vocab-gemma3.gguf" "$TMP/emb.gguf" >"$TMP/make.log" 2>&1 ||
    { cat "$TMP/make.log" >&2; exit 1; }

KEY="k-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
start_server "$TMP/gen.log" --api-key "$KEY"
GEN_PORT=$PORT
GEN_PID=$SERVER_PID
wait_ready || exit 1
start_server "$TMP/emb.log" -m "$TMP/emb.gguf"
EMB_PORT=$PORT
EMB_PID=$SERVER_PID
wait_ready || exit 1

python3 - "$GEN_PORT" "$EMB_PORT" "$KEY" "$GOLDEN" <<'PY' || fail "curl-level checks"
import base64, json, math, struct, sys, urllib.request, urllib.error
gen, emb, key, golden_path = sys.argv[1:]
def call(port, method, path, body=None, auth=True):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if auth and port == gen:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()
def j(port, method, path, body=None, auth=True):
    s, ct, text = call(port, method, path, body, auth)
    return s, json.loads(text)

# Every new route is behind the API key; Ollama's errors are {"error": "..."}.
for path in ("/api/tags", "/api/version"):
    s, b = j(gen, "GET", path, auth=False)
    assert s == 401 and isinstance(b["error"], str), (path, s, b)
s, b = j(gen, "POST", "/v1/embeddings", {"input": "x"}, auth=False)
assert s == 401 and b["error"]["code"] == "invalid_api_key", b

# Ollama: version, tags, show, 404 for another model, 405 for a wrong method
s, b = j(gen, "GET", "/api/version"); assert s == 200 and b["version"], b
s, b = j(gen, "GET", "/api/tags")
m = b["models"][0]
assert m["name"] == "elliott-1" and m["details"]["format"] == "gguf" and m["size"] > 0 and len(m["digest"]) == 64, m
s, b = j(gen, "POST", "/api/show", {"model": "elliott-1"}); assert s == 200 and "model_info" in b, b
s, b = j(gen, "POST", "/api/show", {"model": "other"}); assert s == 404 and "not found" in b["error"], b
s, b = j(gen, "GET", "/api/chat"); assert s == 405, s

# /api/generate streams NDJSON by default: parts, then one done line with durations in ns
s, ct, text = call(gen, "POST", "/api/generate", {"model": "m", "prompt": "Once upon a time",
                                                  "options": {"num_predict": 6, "temperature": 0}})
lines = [json.loads(l) for l in text.splitlines()]
assert s == 200 and ct == "application/x-ndjson" and len(lines) >= 2, (s, ct, text)
assert all(not l["done"] for l in lines[:-1]) and lines[-1]["done"] and lines[-1]["done_reason"] == "length", lines
last = lines[-1]
assert last["eval_count"] == 6 and last["total_duration"] >= last["eval_duration"] > 0, last
# stream false: one object, the same greedy text
s, b = j(gen, "POST", "/api/generate", {"model": "m", "prompt": "Once upon a time", "stream": False,
                                        "options": {"num_predict": 6, "temperature": 0}})
assert b["response"] == "".join(l["response"] for l in lines), (b, lines)
# a generate without a prompt: "loaded"
s, b = j(gen, "POST", "/api/generate", {"model": "m"}); assert b["done"] and b["done_reason"] == "load", b
# refusals name the field
for body, word in (({"model": "m", "prompt": "x", "options": {"num_ctx": 1 << 30}}, "num_ctx"),
                   ({"model": "m", "prompt": "x", "options": {"temperature": 9}}, "temperature"),
                   ({"model": "m", "prompt": "x", "images": ["aGk="]}, "images"),
                   ({"model": "m", "prompt": "x", "bogus": 1}, "bogus"),
                   ({"model": "m", "prompt": "x", "format": "yaml"}, "format")):
    s, b = j(gen, "POST", "/api/generate", body)
    assert s == 400 and word in b["error"], (body, s, b)
s, b = j(gen, "POST", "/api/chat", {"model": "m", "messages": []}); assert s == 400, b
# format as a JSON Schema: the grammar layer holds the answer to it
s, b = j(gen, "POST", "/api/chat", {"model": "m", "stream": False, "messages": [{"role": "user", "content": "hi"}],
                                    "format": {"type": "object", "properties": {"a": {"type": "boolean"}},
                                               "required": ["a"]}, "options": {"num_predict": 64}})
assert s == 200 and isinstance(json.loads(b["message"]["content"])["a"], bool), b

# /v1/completions: tokens as the prompt give the same answer as the text
s, a = j(gen, "POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0})
assert s == 200 and a["object"] == "text_completion", a
s, t = j(gen, "POST", "/v1/completions", {"prompt": [[1, 403, 407, 261, 378]], "max_tokens": 5, "temperature": 0})
assert s == 200 and t["usage"]["prompt_tokens"] == 5, t
# several prompts: choice i answers prompt i (n 1), each as it would alone; usage sums them;
# streamed with echo, each choice's chunks carry its index and start with its prompt
s, m = j(gen, "POST", "/v1/completions", {"prompt": ["Once upon a time", [1, 403, 407, 261, 378]], "max_tokens": 5,
                                          "temperature": 0})
assert s == 200 and [c["index"] for c in m["choices"]] == [0, 1], m
assert m["choices"][0]["text"] == a["choices"][0]["text"] and m["choices"][1]["text"] == t["choices"][0]["text"], m
assert m["usage"]["prompt_tokens"] == a["usage"]["prompt_tokens"] + 5, m["usage"]
assert m["usage"]["completion_tokens"] == a["usage"]["completion_tokens"] + t["usage"]["completion_tokens"], m
s, ct, text = call(gen, "POST", "/v1/completions", {"prompt": ["Once upon a time", "One day"], "max_tokens": 5,
                                                    "temperature": 0, "stream": True, "echo": True})
got = {}
for line in text.splitlines():
    if line.startswith("data: {"):
        for c in json.loads(line[6:])["choices"]:
            got[c["index"]] = got.get(c["index"], "") + c["text"]
assert s == 200 and sorted(got) == [0, 1] and got[0] == "Once upon a time" + a["choices"][0]["text"], got
assert got[1].startswith("One day") and len(got[1]) > len("One day"), got
for body, param in (({"prompt": ["a"] * 9}, "prompt"), ({"prompt": ["a", "b", "c"], "n": 3}, "n"),
                    ({"prompt": ["a", [1]], "echo": True}, "echo"), ({"prompt": "a", "logprobs": 6}, "logprobs"),
                    ({"prompt": "a", "echo": True, "logprobs": 1}, "echo"), ({"prompt": "a", "suffix": "b"}, "suffix"),
                    ({"prompt": "a", "messages": []}, "messages"), ({"prompt": "a", "best_of": 3}, "best_of"),
                    ({"prompt": [99999999]}, "prompt")):
    s, b = j(gen, "POST", "/v1/completions", body)
    assert s == 400 and b["error"]["param"] == param, (body, s, b)

# /v1/embeddings on a generative model: refused, unless mean pooling is asked for
s, b = j(gen, "POST", "/v1/embeddings", {"input": "hello"})
assert s == 400 and "embedding model" in b["error"]["message"], b
s, b = j(gen, "POST", "/v1/embeddings", {"input": ["hello", "world"], "pooling": "mean"})
assert s == 200 and len(b["data"]) == 2 and abs(math.hypot(*b["data"][0]["embedding"]) - 1) < 1e-5, b
# an embedding model cannot chat
s, b = j(emb, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
assert s == 400 and "embedding model" in b["error"]["message"], b

# Goldens: llama.cpp's normalised embeddings of the same file, all inputs in one batch
golden = json.load(open(golden_path))
texts = [t["text"] for t in golden["texts"]]
s, b = j(emb, "POST", "/v1/embeddings", {"input": texts, "model": "whatever"})
assert s == 200, b
for t, d in zip(golden["texts"], b["data"]):
    want, got = t["embd"], d["embedding"]
    err = max(abs(x - y) for x, y in zip(want, got))
    assert len(want) == len(got) and err < 1e-3, (t["name"], err)
assert b["usage"]["prompt_tokens"] == sum(len(t["ids"]) for t in golden["texts"]), b["usage"]
# token ids as input: the same vector
s, tb = j(emb, "POST", "/v1/embeddings", {"input": [golden["texts"][0]["ids"]]})
assert max(abs(x - y) for x, y in zip(tb["data"][0]["embedding"], b["data"][0]["embedding"])) < 1e-5
# base64: little-endian float32 of the same vector
s, bb = j(emb, "POST", "/v1/embeddings", {"input": texts[0], "encoding_format": "base64"})
raw = base64.b64decode(bb["data"][0]["embedding"])
floats = struct.unpack("<%df" % (len(raw) // 4), raw)
assert max(abs(x - y) for x, y in zip(floats, b["data"][0]["embedding"])) < 1e-6
# dimensions: the first k, renormalised
s, db = j(emb, "POST", "/v1/embeddings", {"input": texts[0], "dimensions": 8})
full = b["data"][0]["embedding"][:8]
norm = math.sqrt(sum(x * x for x in full))
assert max(abs(x / norm - y) for x, y in zip(full, db["data"][0]["embedding"])) < 1e-5
for body, param in (({"input": texts[0], "dimensions": 100000}, "dimensions"), ({"input": ""}, "input"),
                    ({"input": texts[0], "encoding_format": "int8"}, "encoding_format"), ({"input": []}, "input"),
                    ({"input": texts[0], "pooling": "max"}, "pooling")):
    s, e = j(emb, "POST", "/v1/embeddings", body)
    assert s == 400 and e["error"]["param"] == param, (body, e)
# Ollama's embed and the older embeddings
s, ob = j(emb, "POST", "/api/embed", {"model": "m", "input": texts[:2]})
assert s == 200 and len(ob["embeddings"]) == 2 and ob["prompt_eval_count"] > 0, ob
assert max(abs(x - y) for x, y in zip(ob["embeddings"][1], b["data"][1]["embedding"])) < 1e-5
s, lb = j(emb, "POST", "/api/embeddings", {"model": "m", "prompt": texts[0]})
assert s == 200 and len(lb["embedding"]) == len(full and b["data"][0]["embedding"]), lb
s, e = j(emb, "POST", "/api/embed", {"model": "m", "input": "x", "options": {"temperature": 1}})
assert s == 400 and "temperature" in e["error"], e
PY

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    fail "node and npm are needed for the client tests (Debian: apt-get install nodejs npm)"
else
    for pkg in ollama openai; do
        if [ ! -f "$E2E_DIR/$pkg/node_modules/$pkg/package.json" ] &&
            ! (cd "$E2E_DIR/$pkg" && npm install --no-audit --no-fund --no-package-lock --loglevel=error \
                >"$TMP/npm-$pkg.log" 2>&1); then
            fail "npm install of $pkg failed: $(cat "$TMP/npm-$pkg.log")"
        fi
    done
    node "$E2E_DIR/ollama/test.mjs" "$GEN_PORT" "$KEY" "$EMB_PORT" || fail "the ollama client test"
    # the openai client test's generative server has no key (a second server would cost time)
    SERVER_PID=$GEN_PID stop_server
    start_server "$TMP/gen2.log" --parallel 4
    GEN_PID=$SERVER_PID
    wait_ready || exit 1
    node "$E2E_DIR/openai/endpoints.mjs" "$PORT" "$EMB_PORT" || fail "the openai client's completions and embeddings"
fi

for pid in "$GEN_PID" "$EMB_PID"; do
    SERVER_PID=$pid stop_server
    [ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"
done
for log in "$TMP"/*.log; do
    case $log in *npm*|*make*) continue ;; esac
    check_log "$log"
    grep -q 'Once upon a time\|rainbows' "$log" && fail "request text in $log"
done
exit $FAILED
