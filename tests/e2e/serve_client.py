#!/usr/bin/env python3
"""End-to-end checks of `elliott serve` with Python's standard library only.

usage: serve_client.py GROUP --port PORT [--marker TEXT] [--key KEY] [--log FILE]

Each GROUP is one set of checks against a running server; it prints one line per
failed check and exits 1 if any failed. Every message sent carries the marker so
that the caller can grep the server's log for it afterwards."""
import argparse
import http.client
import json
import re
import socket
import struct
import sys
import threading
import time

FAILURES = []
ARGS = None
ID_RE = re.compile(r"^cfai-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)
    return bool(cond)


def conn(timeout=120):
    return http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=timeout)


def request(method, path, body=None, headers=None, c=None):
    """One request; returns (status, headers dict with lower-case names, body bytes)."""
    own = c is None
    c = c or conn()
    h = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    if ARGS.key and "Authorization" not in h:
        h["Authorization"] = "Bearer " + ARGS.key
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if own:
        c.close()
    return r.status, hdrs, data


def msg(text):
    return [{"role": "user", "content": "%s %s" % (ARGS.marker, text)}]


def chat(extra=None, text="Once upon a time", path="/v1/chat/completions", c=None):
    body = {"messages": msg(text), "max_tokens": 8, "temperature": 0}
    body.update(extra or {})
    return request("POST", path, body, c=c)


def health_ok(after):
    st, _, data = request("GET", "/health")
    return check(st == 200 and json.loads(data) == {"status": "ok"}, "/health answers 200 after " + after)


def error_of(status, data, want_status, want_param, what):
    ok = check(status == want_status, "%s: status %d, want %d (%r)" % (what, status, want_status, data[:200]))
    try:
        err = json.loads(data)["error"]
    except Exception:
        return check(False, "%s: error body is not OpenAI-style JSON: %r" % (what, data[:200]))
    ok &= check(isinstance(err.get("message"), str) and err["message"], what + ": error.message")
    ok &= check(isinstance(err.get("type"), str), what + ": error.type")
    ok &= check("code" in err and "param" in err, what + ": error.code and error.param present")
    ok &= check(err.get("param") == want_param, "%s: param %r, want %r" % (what, err.get("param"), want_param))
    return ok, err


def check_completion(data, what, max_tokens=None):
    try:
        v = json.loads(data)
    except Exception:
        return check(False, what + ": body is not JSON"), None
    ok = check(ID_RE.match(v.get("id", "")) is not None, what + ": id is cfai-UUIDv4: %r" % v.get("id"))
    ok &= check(v.get("object") == "chat.completion", what + ": object")
    ok &= check(isinstance(v.get("created"), int) and abs(v["created"] - time.time()) < 600, what + ": created")
    ok &= check(v.get("model") == ARGS.alias, what + ": model is the alias")
    ch = v.get("choices") or [{}]
    ok &= check(len(v.get("choices", [])) == 1 and ch[0].get("index") == 0, what + ": one choice, index 0")
    m = ch[0].get("message", {})
    ok &= check(m.get("role") == "assistant" and isinstance(m.get("content"), str), what + ": message")
    ok &= check(ch[0].get("finish_reason") in ("stop", "length"), what + ": finish_reason")
    u = v.get("usage", {})
    ok &= check(all(isinstance(u.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
                and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0,
                what + ": usage %r" % u)
    if max_tokens is not None and u.get("completion_tokens") is not None:
        ok &= check(u["completion_tokens"] <= max_tokens, what + ": completion_tokens <= max_tokens")
        if ch[0].get("finish_reason") == "length":
            ok &= check(u["completion_tokens"] == max_tokens, what + ": 'length' means max_tokens were made")
    return ok, v


def read_sse(resp):
    """Yields the data payloads of an SSE response, as they arrive."""
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if event.startswith(b":"):  # a keep-alive comment
                continue
            check(event.startswith(b"data: "), "every SSE event is 'data: ...': %r" % event[:80])
            yield event[6:].decode()
    check(buf == b"", "the stream ends on an event boundary")


def stream(extra=None, text="Once upon a time"):
    """Runs a streaming request; returns (headers, list of parsed chunks, saw_done)."""
    c = conn()
    body = {"messages": msg(text), "max_tokens": 8, "temperature": 0, "stream": True}
    body.update(extra or {})
    h = {"Content-Type": "application/json"}
    if ARGS.key:
        h["Authorization"] = "Bearer " + ARGS.key
    c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=h)
    r = c.getresponse()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    chunks, done = [], False
    for data in read_sse(r):
        check(not done, "nothing follows [DONE]")
        if data == "[DONE]":
            done = True
        else:
            chunks.append(json.loads(data))
    c.close()
    return r.status, hdrs, chunks, done


def check_stream(chunks, done, include_usage, what):
    check(done, what + ": ends with data: [DONE]")
    check(len(chunks) >= 2, what + ": has chunks")
    if len(chunks) < 2:
        return ""
    ids = {c["id"] for c in chunks}
    check(len(ids) == 1 and ID_RE.match(chunks[0]["id"]), what + ": one cfai id in every chunk")
    check(len({c["created"] for c in chunks}) == 1, what + ": same created")
    check(all(c["model"] == ARGS.alias for c in chunks), what + ": model is the alias")
    check(all(c["object"] == "chat.completion.chunk" for c in chunks), what + ": object")
    body = chunks[:-1] if include_usage else chunks
    first, last = body[0]["choices"][0], body[-1]["choices"][0]
    check(first["delta"].get("role") == "assistant", what + ": the first delta carries the role")
    check(last["finish_reason"] in ("stop", "length") and last["delta"] == {}, what + ": finish chunk")
    text = ""
    for c in body[1:-1]:
        ch = c["choices"][0]
        check(ch["finish_reason"] is None and set(ch["delta"]) == {"content"}, what + ": content deltas")
        text += ch["delta"]["content"]
    if include_usage:
        u = chunks[-1]
        check(u["choices"] == [] and u["usage"]["total_tokens"] ==
              u["usage"]["prompt_tokens"] + u["usage"]["completion_tokens"], what + ": usage chunk")
        check(all(c.get("usage", 0) is None for c in body), what + ": usage null in the other chunks")
    else:
        check(all("usage" not in c for c in chunks), what + ": no usage without include_usage")
    return text


def metric(name):
    st, _, data = request("GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# ---- groups ----------------------------------------------------------------------

def group_main():
    """Routes, bodies, streaming, keep-alive and every error row (no API key)."""
    st, h, data = request("GET", "/health")
    check(st == 200 and json.loads(data) == {"status": "ok"}, "/health is 200 {status: ok}")
    st, h, data = request("HEAD", "/health")
    check(st == 200, "HEAD /health")
    st, h, data = request("GET", "/v1/models")
    v = json.loads(data)
    check(st == 200 and v["object"] == "list" and v["data"][0]["id"] == ARGS.alias, "/v1/models lists the alias")
    st, _, data = request("GET", "/v1/models/" + ARGS.alias)
    check(st == 200 and json.loads(data)["id"] == ARGS.alias, "/v1/models/ALIAS")
    st, _, data = request("GET", "/v1/models/gpt-4")
    error_of(st, data, 404, None, "unknown model id")
    st, h, data = request("GET", "/")
    check(st == 200 and h["content-type"].startswith("text/html") and b"<html" in data and b"fetch(" in data
          and b"stream: true" in data, "GET / serves the chat page")
    st, h, data = request("GET", "/metrics")
    text = data.decode()
    check(st == 200 and h["content-type"].startswith("text/plain"), "/metrics is text")
    for name in ("elliott_http_requests_total{", "elliott_prompt_tokens_total", "elliott_completion_tokens_total",
                 "elliott_queue_depth", "elliott_active_slots", "elliott_http_request_duration_seconds_bucket",
                 "elliott_time_to_first_token_seconds_bucket", "elliott_requests_cancelled_total"):
        check(name in text, "/metrics has " + name)

    # Both completion paths (the original with and without a trailing slash).
    for path in ("/v1/ai/chat/completions", "/v1/ai/chat/completions/", "/v1/chat/completions"):
        st, h, data = chat(path=path)
        check(st == 200 and h.get("content-type") == "application/json", path + ": 200 JSON")
        check_completion(data, path, max_tokens=8)

    # Every request field, valid; the model name asked for is not echoed.
    st, _, data = chat({"model": "gpt-4o", "max_completion_tokens": 5, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
                        "seed": 7, "stop": ["\n\n", "zzz"], "presence_penalty": 0.5, "frequency_penalty": 0.5,
                        "repetition_penalty": 1.1, "temperature": 0.8, "n": 1, "user": "ignored",
                        "metadata": {"k": "v"}, "store": False, "service_tier": "auto"})
    check(st == 200, "all parameters accepted: %d %r" % (st, data[:200]))
    check_completion(data, "all parameters", max_tokens=5)
    st, _, data = request("POST", "/v1/chat/completions", {"messages": [
        {"role": "system", "content": ARGS.marker + " be kind"},
        {"role": "user", "content": [{"type": "text", "text": ARGS.marker}, {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": ARGS.marker + " hello"},
        {"role": "user", "content": ARGS.marker + " tell me a story"}], "max_tokens": 4})
    check(st == 200, "a conversation with system, parts and assistant turns: %d %r" % (st, data[:200]))
    check_completion(data, "conversation", max_tokens=4)

    # Greedy is deterministic, and streaming returns the same text.
    _, _, a = chat({"max_tokens": 12})
    _, _, b = chat({"max_tokens": 12})
    ta, tb = (json.loads(x)["choices"][0]["message"]["content"] for x in (a, b))
    check(ta == tb and ta, "greedy requests agree")
    st, h, chunks, done = stream({"max_tokens": 12})
    check(st == 200 and h.get("content-type") == "text/event-stream" and h.get("cache-control") == "no-cache",
          "stream headers: %r" % h)
    text = check_stream(chunks, done, False, "stream")
    check(text == ta, "streamed text equals the non-streamed text: %r vs %r" % (text, ta))
    st, h, chunks, done = stream({"max_tokens": 12, "stream_options": {"include_usage": True}})
    text = check_stream(chunks, done, True, "stream with usage")
    check(text == ta, "streamed text (with usage) equals the non-streamed text")
    u = chunks[-1]["usage"]
    check(u["completion_tokens"] == 12 or chunks[-2]["choices"][0]["finish_reason"] == "stop", "usage counts")

    # Keep-alive: many requests, good and bad, over one connection.
    c = conn()
    st, _, _ = request("GET", "/health", c=c)
    sock = c.sock
    for path, method, body in (("/v1/models", "GET", None), ("/nope", "GET", None), ("/health", "POST", None),
                               ("/v1/chat/completions", "POST", "{bad json")):
        request(method, path, body, c=c)
    st, _, data = chat(c=c)
    check(st == 200 and c.sock is sock, "keep-alive: one connection served every request")
    c.close()

    # max_tokens beyond the context is capped, not refused.
    st, _, data = chat({"max_tokens": 2 ** 31 - 1, "stop": ["."]}, text="Hi")
    check(st == 200, "a huge max_tokens is capped at the context")
    health_ok("the capped request")
    group_errors()


BAD_PARAMS = [
    ("model", 5), ("max_tokens", "5"), ("max_tokens", 0), ("max_tokens", 1.5), ("max_completion_tokens", -1),
    ("temperature", "hot"), ("temperature", -1), ("temperature", 2.5), ("top_p", [1]), ("top_p", 1.5),
    ("top_p", 0), ("top_k", 1.5), ("top_k", -3), ("min_p", {}), ("min_p", 2), ("seed", 1.5), ("seed", "7"),
    ("stop", 5), ("stop", ["a", 5]), ("stop", ["a", "b", "c", "d", "e"]), ("stop", ""), ("stream", "yes"),
    ("stream_options", True), ("presence_penalty", "0"), ("presence_penalty", 3), ("frequency_penalty", False),
    ("frequency_penalty", -3), ("repetition_penalty", "1"), ("repetition_penalty", 0), ("n", 9),
]


def group_errors():
    def bad(body, want_param, what, raw=False, status=400):
        h = {"Content-Type": "application/json"}
        st, _, data = request("POST", "/v1/chat/completions", body if raw else json.dumps(body), h)
        error_of(st, data, status, want_param, what)
        health_ok(what)

    bad(b"{\"messages\": [", None, "invalid JSON", raw=True)
    bad(b"", None, "empty body", raw=True)
    bad(b"{\"messages\":[{\"role\":\"user\",\"content\":\"" + ARGS.marker.encode() + b" \xff\xfe\"}]}", None,
        "invalid UTF-8", raw=True)
    st, _, data = request("POST", "/v1/chat/completions",
                          b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}")
    ok, err = error_of(st, data, 400, None, "invalid UTF-8 (2)")
    check("UTF-8" in err.get("message", ""), "the UTF-8 error says so")
    deep = b"{\"messages\":" + b"[" * 100000 + b"]" * 100000 + b"}"
    st, _, data = request("POST", "/v1/chat/completions", deep)
    ok, err = error_of(st, data, 400, None, "100k-deep JSON")
    check("deep" in err.get("message", ""), "the nesting error says so")
    health_ok("100k-deep JSON")
    bad({"model": "m"}, "messages", "missing messages")
    bad({"messages": [{"role": "user", "content": "x"}], "unknown_field": {"x": [1, 2]}}, "unknown_field",
        "an unknown field")
    bad({"messages": []}, "messages", "empty messages")
    bad({"messages": "hi"}, "messages", "messages not an array")
    bad({"messages": [{"role": "robot", "content": ARGS.marker}]}, "messages[0].role", "bad role")
    bad({"messages": [{"role": "user"}]}, "messages[0].content", "missing content")
    bad({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "content of the wrong type")
    bad({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "messages[0].content[0]", "image content part")
    bad({"messages": [{"role": "system", "content": ARGS.marker}]}, "messages", "no user message")
    bad([1, 2], None, "body not an object")
    for name, value in BAD_PARAMS:
        bad({"messages": msg("x"), name: value}, name, "%s=%r" % (name, value))
    bad({"messages": msg("x"), "stream": True, "stream_options": {"include_usage": 1}},
        "stream_options.include_usage", "include_usage not a boolean")
    # A prompt longer than the context.
    long_text = " ".join(["Once upon a time there was a little girl."] * 2000)
    st, _, data = request("POST", "/v1/chat/completions", {"messages": msg(long_text)})
    ok, err = error_of(st, data, 400, "messages", "prompt beyond the context")
    check(err.get("code") == "context_length_exceeded", "code context_length_exceeded: %r" % err)
    health_ok("prompt beyond the context")
    # 413: by Content-Length, and streamed in chunks without one.
    big = b"{\"messages\":[{\"role\":\"user\",\"content\":\"" + b"a" * (3 << 20) + b"\"}]}"
    st, _, data = request("POST", "/v1/chat/completions", big, {"Content-Type": "application/json"})
    error_of(st, data, 413, None, "3 MiB body")
    health_ok("3 MiB body")
    c = conn()
    c.putrequest("POST", "/v1/chat/completions")
    c.putheader("Transfer-Encoding", "chunked")
    c.putheader("Content-Type", "application/json")
    if ARGS.key:
        c.putheader("Authorization", "Bearer " + ARGS.key)
    c.endheaders()
    piece = b"a" * 65536
    for _ in range(48):
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    error_of(r.status, r.read(), 413, None, "3 MiB chunked body")
    c.close()
    health_ok("3 MiB chunked body")
    # Paths and methods.
    for path in ("/nope", "/v1", "/v1/chat", "/v1/chat/completions/extra", "/v2/chat/completions"):
        st, _, data = request("GET", path)
        error_of(st, data, 404, None, "GET " + path)
    for method, path, allow in (("GET", "/v1/chat/completions", "POST, OPTIONS"),
                                ("PUT", "/v1/ai/chat/completions", "POST, OPTIONS"),
                                ("DELETE", "/v1/ai/chat/completions/", "POST, OPTIONS"),
                                ("POST", "/health", "GET, HEAD, OPTIONS"), ("POST", "/v1/models", "GET, HEAD, OPTIONS"),
                                ("PATCH", "/metrics", "GET, HEAD, OPTIONS"), ("POST", "/", "GET, HEAD, OPTIONS")):
        st, h, data = request(method, path, "{}" if method != "GET" else None)
        error_of(st, data, 405, None, method + " " + path)
        check(h.get("allow") == allow, "%s %s: Allow %r" % (method, path, h.get("allow")))
    st, h, _ = request("OPTIONS", "/v1/chat/completions")
    check(st == 204 and h.get("allow") == "POST, OPTIONS", "OPTIONS answers 204 with Allow")
    # Raw garbage on a socket.
    for junk in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=30)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)  # the server sees the end, whatever it made of the bytes
        try:
            s.recv(4096)
        except OSError:
            pass
        s.close()
        health_ok("garbage %r" % junk[:20])


def group_concurrent():
    """16 clients at once, each with its own prompt, compared with the serial answers."""
    prompts = ["Once upon a time %d" % i for i in range(16)]
    expected = {}
    for p in prompts:
        st, _, data = chat({"max_tokens": 16}, text=p)
        expected[p] = json.loads(data)["choices"][0]["message"]["content"]
    results = {}

    def worker(p, i):
        if i % 2:
            st, _, chunks, done = stream({"max_tokens": 16}, text=p)
            results[p] = (st, check_stream(chunks, done, False, "concurrent stream"))
        else:
            st, _, data = chat({"max_tokens": 16}, text=p)
            ok, v = check_completion(data, "concurrent", max_tokens=16)
            results[p] = (st, v["choices"][0]["message"]["content"] if v else None)

    threads = [threading.Thread(target=worker, args=(p, i)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in prompts:
        st, text = results.get(p, (None, None))
        check(st == 200, "concurrent client %r answered: %r" % (p, st))
        check(text == expected[p], "concurrent client %r got its own answer: %r vs %r" % (p, text, expected[p]))
    health_ok("16 concurrent clients")


def group_disconnect():
    """A streaming client that hangs up mid-stream cancels its generation."""
    before = metric("elliott_requests_cancelled_total")
    s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=60)
    body = json.dumps({"messages": msg("Hi"), "stream": True, "max_tokens": 100000}).encode()
    auth = ("Authorization: Bearer %s\r\n" % ARGS.key).encode() if ARGS.key else b""
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while got.count(b"data: ") < 3:  # the role chunk and two content chunks
        part = s.recv(65536)
        if not part:
            break
        got += part
    check(got.startswith(b"HTTP/1.1 200"), "the stream started")
    s.close()
    # The cancellation is counted once the generation has stopped.
    deadline = time.time() + 60
    while time.time() < deadline and metric("elliott_requests_cancelled_total") == before:
        time.sleep(0.1)
    check(metric("elliott_requests_cancelled_total") == before + 1, "/metrics counts the cancelled request")
    st, _, data = chat({"max_tokens": 2})
    check(st == 200, "the next request is served after a disconnect")
    health_ok("a client disconnect")

    # The same for a non-streaming request: hang up while it generates. Nothing
    # is written to the client before the answer, so only a reset tells a
    # hang-up from a client that half-closed its side and still reads.
    before = metric("elliott_requests_cancelled_total")
    s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=60)
    body = json.dumps({"messages": msg("Hi"), "max_tokens": 100000}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    deadline = time.time() + 60
    while time.time() < deadline and metric("elliott_http_requests_in_flight") < 2:
        time.sleep(0.01)  # in flight: this request and the /metrics request itself
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    while time.time() < deadline and metric("elliott_requests_cancelled_total") == before:
        time.sleep(0.1)
    check(metric("elliott_requests_cancelled_total") == before + 1, "a non-streaming hang-up is cancelled too")
    st, _, data = chat({"max_tokens": 2})
    check(st == 200, "the next request is served after a non-streaming disconnect")


def open_long_stream(started, release):
    """A stream that would run to the end of the context; hangs up on release."""
    c = conn(timeout=300)
    body = json.dumps({"messages": msg("Hi"), "stream": True, "max_tokens": 100000})
    c.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    check(r.status == 200, "a long stream starts")
    r.read1(64)  # the role chunk comes at once, even while queued
    started.release()
    release.wait()
    c.close()


def wait_metric(name, value, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and metric(name) != value:
        time.sleep(0.05)
    return check(metric(name) == value, "%s reaches %s (is %s)" % (name, value, metric(name)))


def group_queue_full():
    """--parallel 1 --max-queue 1: one generating, one waiting, the third gets 503 + Retry-After;
    hanging up cancels both the running and the queued request."""
    cancelled = metric("elliott_requests_cancelled_total")
    started, release = threading.Semaphore(0), threading.Event()
    t1 = threading.Thread(target=open_long_stream, args=(started, release))
    t1.start()
    started.acquire()
    wait_metric("elliott_active_slots", 1)
    t2 = threading.Thread(target=open_long_stream, args=(started, release))
    t2.start()
    started.acquire()
    wait_metric("elliott_queue_depth", 1)
    for stream_it in (False, True):
        st, h, data = chat({"stream": stream_it})
        error_of(st, data, 503, None, "queue full (stream=%s)" % stream_it)
        check(h.get("retry-after", "").isdigit(), "503 for a full queue has Retry-After: %r" % h.get("retry-after"))
    health_ok("a full queue")
    release.set()
    t1.join()
    t2.join()
    wait_metric("elliott_queue_depth", 0)
    wait_metric("elliott_active_slots", 0)
    wait_metric("elliott_requests_cancelled_total", cancelled + 2)
    st, _, data = chat({"max_tokens": 2})
    check(st == 200, "served again once the queue drained")


def stream_until_end(max_tokens):
    """Streams; says "started" after the first event, then returns every event."""
    c = conn(timeout=300)
    c.request("POST", "/v1/chat/completions", body=json.dumps(
        {"messages": msg("Hi"), "stream": True, "max_tokens": max_tokens}),
        headers={"Content-Type": "application/json"})
    r = c.getresponse()
    events = []
    for data in read_sse(r):
        if not events:
            print("started", flush=True)
        events.append(data)
    c.close()
    return events


def group_finishing():
    """A short stream sent just before SIGTERM: it finishes normally within the grace period."""
    events = stream_until_end(24)
    check(events and events[-1] == "[DONE]", "the stream in flight at SIGTERM completed")
    check(len(events) >= 3 and json.loads(events[-2])["choices"][0]["finish_reason"] == "length",
          "the stream in flight at SIGTERM has its finish chunk")


def group_inflight():
    """An endless stream; the caller sends SIGTERM: after the grace period the
    stream ends with an error event and no [DONE]."""
    events = stream_until_end(100000)
    check(len(events) >= 2 and events[-1] != "[DONE]" and "error" in json.loads(events[-1]),
          "the cancelled stream ends with an error event: %r" % events[-1:])


def group_auth():
    """Run with --key: no key, wrong keys and the right key."""
    key = ARGS.key
    for path, method in (("/v1/chat/completions", "POST"), ("/v1/ai/chat/completions/", "POST"),
                         ("/v1/models", "GET"), ("/metrics", "GET")):
        body = json.dumps({"messages": msg("x"), "max_tokens": 2}) if method == "POST" else None
        for auth in (None, "Bearer wrong", "Bearer " + key + "x", "Bearer " + key[:-1], key, "Basic " + key):
            c = conn()
            c.putrequest(method, path)
            c.putheader("Content-Type", "application/json")
            if auth is not None:
                c.putheader("Authorization", auth)
            if body:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body.encode() if body else None)
            r = c.getresponse()
            data = r.read()
            c.close()
            ok, err = error_of(r.status, data, 401, None, "%s %s with %r" % (method, path, auth))
            check(err.get("code") == "invalid_api_key", "401 code invalid_api_key")
            check(r.getheader("WWW-Authenticate") == "Bearer", "401 has WWW-Authenticate")
        st, _, data = request(method, path, body, {"Content-Type": "application/json",
                                                   "Authorization": "Bearer " + key})
        check(st == 200, "%s %s with the right key: %d" % (method, path, st))
    for path in ("/health", "/"):
        st, _, _ = request("GET", path, headers={"Authorization": ""})
        check(st == 200, path + " stays open without a key")


def group_cors():
    st, h, _ = request("OPTIONS", "/v1/chat/completions", headers={
        "Origin": ARGS.origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    check(st == 204, "preflight 204")
    check(h.get("access-control-allow-origin") == ARGS.origin, "preflight allows the origin")
    check("POST" in h.get("access-control-allow-methods", ""), "preflight allows POST")
    hdrs = h.get("access-control-allow-headers", "").lower()
    check("authorization" in hdrs and "content-type" in hdrs, "preflight allows the headers")
    st, h, _ = chat(extra={"max_tokens": 2})
    check(h.get("access-control-allow-origin") == ARGS.origin, "responses carry Access-Control-Allow-Origin")
    st, h, _ = request("GET", "/nope")
    check(h.get("access-control-allow-origin") == ARGS.origin, "errors carry Access-Control-Allow-Origin too")


def group_loading():
    st, h, data = request("GET", "/health")
    check(st == 503 and json.loads(data)["status"] == "loading", "/health is 503 while loading")
    st, h, data = chat()
    error_of(st, data, 503, None, "completion while loading")
    check(h.get("retry-after", "").isdigit(), "503 while loading has Retry-After")
    st, _, _ = request("GET", "/v1/models")
    check(st == 200, "/v1/models answers while loading")


def group_failed():
    st, h, data = request("GET", "/health")
    check(st == 503 and json.loads(data)["status"] == "failed", "/health is 503 after a failed load")
    st, h, data = chat()
    error_of(st, data, 503, None, "completion after a failed load")


GROUPS = {name[6:]: fn for name, fn in globals().items() if name.startswith("group_")}


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("group", choices=sorted(GROUPS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--marker", default="MARKER")
    p.add_argument("--key", default=None)
    p.add_argument("--alias", default="elliott-1")
    p.add_argument("--origin", default="https://chat.example")
    ARGS = p.parse_args()
    GROUPS[ARGS.group]()
    if FAILURES:
        print("%d check(s) failed in group %s" % (len(FAILURES), ARGS.group), file=sys.stderr)
        sys.exit(1)
    print("ok: group %s" % ARGS.group, file=sys.stderr)


if __name__ == "__main__":
    main()
