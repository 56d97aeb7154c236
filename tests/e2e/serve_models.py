"""Checks for tests/e2e/serve_models.sh: one elliott serve, several models.

usage: python3 serve_models.py GROUP --port PORT
  routing   -m alpha.gguf --models-dir DIR (alpha, beta, gamma) --alias chat=gamma.gguf
            --max-models 1: names, lists, lazy loading, unloading while alternating,
            concurrent requests for two models, 404s, Ollama's routes
  slow      a model whose load never ends (a FIFO) beside a quick one: the quick one
            answers while the other loads; its requests wait, then 503
  failed    the FIFO's load has failed: 503 for it, /health still 200
  renamed   --alias mine: the default model's name
  budget    --models-memory with room for one model: unloading under the budget
"""
import argparse
import http.client
import json
import sys
import threading
import time

ARGS = None
FAILURES = 0
PROMPT = [{"role": "user", "content": "Tell me a story about a cat"}]


def check(cond, what):
    global FAILURES
    if not cond:
        FAILURES += 1
        print("FAIL:", what, file=sys.stderr)
    return cond


def request(method, path, body=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, out


def jrequest(method, path, body=None, timeout=120):
    st, h, data = request(method, path, body, timeout)
    try:
        return st, h, json.loads(data)
    except ValueError:
        return st, h, data


def chat(model, max_tokens=12, stream=False, timeout=120):
    body = {"messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    if model is not None:
        body["model"] = model
    st, h, data = request("POST", "/v1/chat/completions", body, timeout)
    if st != 200:
        try:
            return st, h, json.loads(data), None
        except ValueError:
            return st, h, data, None
    if not stream:
        v = json.loads(data)
        return st, h, v, v["choices"][0]["message"]["content"]
    text, model_seen, done = "", None, False
    for line in data.decode().split("\n"):
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            continue
        v = json.loads(line[6:])
        model_seen = v.get("model")
        for c in v.get("choices", []):
            text += c.get("delta", {}).get("content") or ""
    return st, h, {"model": model_seen, "done": done}, text


def health():
    st, _, v = jrequest("GET", "/health")
    return st, v, {m["id"]: m["state"] for m in v.get("models", [])} if isinstance(v, dict) else {}


def metric(name, model):
    _, _, data = request("GET", "/metrics")
    want = '%s{model="%s"} ' % (name, model)
    for line in data.decode().split("\n"):
        if line.startswith(want):
            return int(line[len(want):])
    return None


def expect_not_found(st, v, name, what):
    want = {"error": {"message": "The model `%s` does not exist or you do not have access to it." % name,
                      "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
    check(st == 404 and v == want, "%s: 404 model_not_found, got %s %s" % (what, st, v))


def wait_until(cond, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


# ---- routing --------------------------------------------------------------------------------


def check_lists():
    st, v, states = health()
    check(st == 200 and v["status"] == "ok", "/health 200 ok: %s" % v)
    check(states == {"elliott-1": "ready", "beta": "unloaded", "gamma": "unloaded"}, "only the default loads at start: %s" % states)
    st, _, v = jrequest("GET", "/v1/models")
    ids = [m["id"] for m in v["data"]]
    check(st == 200 and ids == ["elliott-1", "beta", "gamma"], "/v1/models lists all: %s" % ids)
    check(all(m["object"] == "model" and m["owned_by"] == "elliott" for m in v["data"]), "model objects")
    for name, id_ in (("beta", "beta"), ("alpha", "elliott-1"), ("alpha.gguf", "elliott-1"), ("chat", "gamma")):
        st, _, v = jrequest("GET", "/v1/models/" + name)
        check(st == 200 and v["id"] == id_, "/v1/models/%s is %s: %s" % (name, id_, v))
    st, _, v = jrequest("GET", "/v1/models/nope")
    expect_not_found(st, v, "nope", "/v1/models/nope")
    check(metric("elliott_model_loads_total", "beta") == 0, "beta not loaded before its first use")


def reference_texts():
    """Each model's greedy answer, asked by each of its names: the same text."""
    texts = {}
    for names in (("elliott-1", "alpha", None), ("beta", "beta.gguf", "beta:latest"), ("gamma", "chat")):
        for name in names:
            st, _, v, text = chat(name)
            served = names[0]
            check(st == 200 and v["model"] == served, "model %s answered as %s: %s %s" % (name, served, st, v))
            if served in texts:
                check(text == texts[served], "%s gives %s's text" % (name, served))
            else:
                texts[served] = text
    check(len(set(texts.values())) == 3, "the three models answer differently: %s" % texts)
    return texts


def check_alternating(texts):
    before = metric("elliott_model_unloads_total", "elliott-1")
    for i in range(6):
        name = ("elliott-1", "beta")[i % 2]
        st, _, v, text = chat(name)
        check(st == 200 and v["model"] == name and text == texts[name], "alternating request %d (%s)" % (i, name))
        _, _, states = health()
        check(sum(1 for s in states.values() if s == "ready") <= 1, "--max-models 1 holds: %s" % states)
    after = metric("elliott_model_unloads_total", "elliott-1")
    check(after is not None and before is not None and after - before >= 3, "elliott-1 unloaded while alternating: %s -> %s" % (before, after))
    check(metric("elliott_model_loads_total", "beta") >= 4, "beta loaded again each time")


def check_concurrent(texts):
    """Requests for two models at once under --max-models 1: each waits for its
    model, none is answered by the other model or cut (a model in use is never
    unloaded)."""
    results = []

    def one(i):
        name = ("elliott-1", "beta", "gamma")[i % 3]
        st, _, v, text = chat(name, stream=(i % 2 == 0))
        results.append((name, st, v, text))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, st, v, text in results:
        ok = st == 200 and v.get("model") == name and text == texts[name]
        if isinstance(v, dict) and "done" in v:
            ok = ok and v["done"]
        check(ok, "concurrent request for %s: %s %s" % (name, st, v))


def check_not_found():
    st, _, v, _ = chat("nope")
    expect_not_found(st, v, "nope", "chat")
    st, _, v = jrequest("POST", "/v1/completions", {"model": "nope", "prompt": "x"})
    expect_not_found(st, v, "nope", "completions")
    st, _, v = jrequest("POST", "/v1/embeddings", {"model": "nope", "input": "x"})
    expect_not_found(st, v, "nope", "embeddings")
    for path, body in (("/api/chat", {"model": "nope", "messages": PROMPT}),
                       ("/api/generate", {"model": "nope", "prompt": "x"}),
                       ("/api/embed", {"model": "nope", "input": "x"}),
                       ("/api/show", {"model": "nope"})):
        st, _, v = jrequest("POST", path, body)
        check(st == 404 and v == {"error": 'model "nope" not found'}, "%s: Ollama's 404: %s %s" % (path, st, v))


def check_other_routes(texts):
    st, _, v = jrequest("POST", "/v1/completions", {"model": "beta", "prompt": "Once", "max_tokens": 4})
    check(st == 200 and v["model"] == "beta", "completions routed: %s" % v)
    st, _, v = jrequest("POST", "/v1/embeddings", {"model": "gamma", "input": "a cat", "pooling": "mean"})
    check(st == 200 and v["model"] == "gamma" and len(v["data"][0]["embedding"]) > 0, "embeddings routed: %s" % st)
    st, _, v = jrequest("POST", "/api/chat", {"model": "beta:latest", "messages": PROMPT, "stream": False,
                                               "options": {"temperature": 0, "num_predict": 12}})
    check(st == 200 and v["model"] == "beta" and v["message"]["content"] == texts["beta"], "/api/chat routed: %s" % v)
    st, _, v = jrequest("POST", "/api/generate", {"model": "gamma", "prompt": "Once", "stream": False,
                                                   "options": {"num_predict": 4}})
    check(st == 200 and v["model"] == "gamma", "/api/generate routed: %s" % st)
    st, _, v = jrequest("POST", "/api/embed", {"model": "beta", "input": "a cat"})
    check(st == 400, "/api/embed on a generative model is refused as before: %s" % st)
    st, _, tags = jrequest("GET", "/api/tags")
    names = [m["name"] for m in tags["models"]]
    check(st == 200 and names == ["elliott-1", "beta", "gamma"], "/api/tags lists all: %s" % names)
    st, _, v = jrequest("POST", "/api/show", {"model": "beta"})
    check(st == 200 and v["details"]["family"] == "llama", "/api/show beta: %s" % st)
    # A model's digest is the same loaded or not.
    _, _, states = health()
    st, _, tags2 = jrequest("GET", "/api/tags")
    d1 = {m["name"]: m["digest"] for m in tags["models"]}
    d2 = {m["name"]: m["digest"] for m in tags2["models"]}
    check(d1 == d2, "digests stable across loads and unloads")
    loaded = [m for m in tags2["models"] if states.get(m["name"]) == "ready"]
    unloaded = [m for m in tags2["models"] if states.get(m["name"]) == "unloaded"]
    check(all(m["details"]["family"] for m in loaded), "a loaded model's details")
    check(all(m["details"]["family"] == "" for m in unloaded), "an unloaded model is not loaded to be listed")


def check_keep_alive():
    """Ollama's keep_alive: 0 unloads as the request ends, a duration that long after."""
    st, _, v = jrequest("POST", "/api/generate", {"model": "gamma", "prompt": "", "keep_alive": 0})
    check(st == 200 and v["done_reason"] == "unload", "empty generate with keep_alive 0: %s" % v)
    check(wait_until(lambda: health()[2].get("gamma") == "unloaded", 10), "keep_alive 0 unloads gamma")
    t0 = time.time()
    st, _, v = jrequest("POST", "/api/generate", {"model": "beta", "prompt": "Once", "stream": False,
                                                   "keep_alive": "1s", "options": {"num_predict": 2}})
    check(st == 200 and health()[2].get("beta") == "ready", "beta answers and stays for a while: %s" % st)
    check(wait_until(lambda: health()[2].get("beta") == "unloaded", 15), "keep_alive 1s unloads beta")
    check(time.time() - t0 >= 1.0, "not before its second")
    st, _, v = jrequest("POST", "/api/chat", {"model": "beta", "messages": PROMPT, "keep_alive": "5"})
    check(st == 400 and "keep_alive" in v["error"], "a duration without a unit is refused: %s %s" % (st, v))


def group_routing():
    check_lists()
    texts = reference_texts()
    check_alternating(texts)
    check_concurrent(texts)
    check_not_found()
    check_other_routes(texts)
    check_keep_alive()
    # a request's hold ends when the server has finished with it, just after its answer
    check(wait_until(lambda: all(m["requests"] == 0 for m in health()[1]["models"]), 5),
          "no request holds a model at the end: %s" % (health()[1],))


# ---- a load that does not end, then fails ------------------------------------------------------------


def group_slow():
    done = {}

    def ask_slow():
        t0 = time.time()
        st, h, data = request("POST", "/v1/chat/completions", {"model": "slow", "messages": PROMPT, "max_tokens": 4})
        done["slow"] = (st, h, data, time.time() - t0)

    t = threading.Thread(target=ask_slow)
    t.start()
    check(wait_until(lambda: health()[2].get("slow") == "loading"), "the slow model loads on first use")
    # The quick model answers while the other loads, on every event loop.
    for _ in range(8):
        t0 = time.time()
        st, _, v, _ = chat("elliott-1", max_tokens=4)
        check(st == 200 and time.time() - t0 < 20, "the default model answers while another loads")
    check("slow" not in done, "the request for the loading model waits (--load-timeout 3)")
    t.join()
    st, h, data, seconds = done["slow"]
    check(st == 503 and h.get("retry-after") == "5" and seconds >= 2.5,
          "503 Retry-After once --load-timeout passed: %s %s after %.1fs" % (st, data, seconds))
    st, v, states = health()
    check(st == 200 and states.get("slow") == "loading", "/health stays ok while another model loads: %s" % v)
    check(metric("elliott_model_loading", "slow") == 1, "/metrics shows the load")


def group_failed():
    check(wait_until(lambda: health()[2].get("slow") == "failed"), "the failed load shows on /health")
    st, v, _ = health()
    check(st == 200 and v["status"] == "ok", "/health stays 200 when another model failed: %s" % v)
    check(metric("elliott_model_failed", "slow") == 1, "/metrics shows the failure")
    st, _, v = jrequest("POST", "/v1/chat/completions", {"model": "slow", "messages": PROMPT})
    check(st == 503 and "failed to load" in v["error"]["message"], "503 for the failed model: %s %s" % (st, v))
    st, _, v, _ = chat("elliott-1", max_tokens=4)
    check(st == 200, "the default model still answers")


# ---- other configurations ------------------------------------------------------------------------


def group_renamed():
    st, _, v = jrequest("GET", "/v1/models")
    check([m["id"] for m in v["data"]] == ["mine"], "--alias NAME renames the default: %s" % v)
    st, _, v, _ = chat("mine")
    check(st == 200 and v["model"] == "mine", "answers as mine")
    st, _, v, _ = chat("something-else")
    check(st == 200 and v["model"] == "mine", "one model: any name is answered by it, as before")
    st, _, v = jrequest("POST", "/api/show", {"model": "something-else"})
    check(st == 404, "/api/show stays exact")


def group_budget():
    for i in range(4):
        name = ("elliott-1", "beta")[i % 2]
        st, _, v, _ = chat(name)
        check(st == 200 and v["model"] == name, "request %d for %s" % (i, name))
        _, _, states = health()
        check(sum(1 for s in states.values() if s == "ready") <= 1, "the budget holds: %s" % states)
    check((metric("elliott_model_unloads_total", "elliott-1") or 0) >= 2, "unloaded under the budget")


GROUPS = {name[6:]: fn for name, fn in globals().items() if name.startswith("group_")}


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("group", choices=sorted(GROUPS))
    p.add_argument("--port", type=int, required=True)
    ARGS = p.parse_args()
    GROUPS[ARGS.group]()
    if FAILURES:
        print("%d check(s) failed in group %s" % (FAILURES, ARGS.group), file=sys.stderr)
        sys.exit(1)


main()
