#!/usr/bin/env python3
"""Hostile clients against `elliott serve`, with Python's standard library only.

usage: hostile_client.py GROUP --port PORT [--key KEY] [options]

Every loop is bounded in count and time, and every socket goes to 127.0.0.1.
Each GROUP prints one line per failed check and exits 1 if any failed; timings
are printed for information, never checked (benchmarks check speed)."""
import argparse
import json
import os
import resource
import signal
import socket
import struct
import sys
import time

FAILURES = []
ARGS = None


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)
    return bool(cond)


def connect(timeout=10):
    return socket.create_connection(("127.0.0.1", ARGS.port), timeout=timeout)


def auth_header():
    return ("Authorization: Bearer %s\r\n" % ARGS.key).encode() if ARGS.key else b""


def read_all(s, limit=1 << 20, timeout=10):
    """Everything the server sends until it closes (or the timeout)."""
    s.settimeout(timeout)
    data = b""
    try:
        while len(data) < limit:
            part = s.recv(65536)
            if not part:
                return data, True
            data += part
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True
    return data, False


def split_response(data):
    """(status, headers dict, body) of the first response in data."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body


def raw(request, half_close=False, timeout=10):
    s = connect(timeout)
    s.sendall(request)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    data, closed = read_all(s, timeout=timeout)
    s.close()
    return data, closed


def health(timeout=10):
    """(status, seconds) of one GET /health on a new connection."""
    t = time.time()
    try:
        data, _ = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=timeout)
    except OSError:
        return 0, time.time() - t
    return split_response(data)[0], time.time() - t


def completion_request(max_tokens=2, stream=False, extra_headers=b""):
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens,
                       "stream": stream}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth_header() +
            extra_headers + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


def completion_ok(what, timeout=60):
    data, _ = raw(completion_request(), timeout=timeout)
    status, _, body = split_response(data)
    check(status == 200 and b'"chat.completion"' in body, "%s: a short completion (status %d)" % (what, status))


def metric(name):
    data, _ = raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth_header() + b"\r\n")
    for line in split_response(data)[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1


def raise_fd_limit():
    """Raises the soft descriptor limit to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_many(n, first_bytes=b""):
    socks = []
    for _ in range(n):
        s = connect()
        if first_bytes:
            s.sendall(first_bytes)
        socks.append(s)
    return socks


def still_open(socks):
    """How many of socks the server has not closed."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1):
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def close_all(socks):
    for s in socks:
        s.close()


# ---- groups ------------------------------------------------------------------------


def group_flood():
    """Idle and slowloris connections at once; /health and a completion still served."""
    limit = raise_fd_limit() - 100  # the server runs under the same limit
    n_idle, n_slow = ARGS.idle, ARGS.slow
    if n_idle + n_slow > limit:
        n_idle, n_slow = limit * n_idle // (n_idle + n_slow), limit * n_slow // (n_idle + n_slow)
        print("the descriptor limit (ulimit -Hn) allows %d idle and %d slowloris connections" % (n_idle, n_slow))
    t0 = time.time()
    idle = open_many(n_idle)
    slow = open_many(n_slow, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    print("opened %d idle and %d slowloris connections in %.1f s" % (len(idle), len(slow), time.time() - t0))
    worst = 0.0
    end = time.time() + ARGS.seconds
    rounds = 0
    while time.time() < end and rounds < 1000:
        rounds += 1
        for s in slow:  # one header byte each, every round
            try:
                s.send(b"X")
            except OSError:
                pass
        st, secs = health()
        worst = max(worst, secs)
        check(st == 200, "/health during the flood (round %d): status %d" % (rounds, st))
        time.sleep(0.5)
    completion_ok("during the flood")
    print("/health during the flood: %d answers, slowest %.1f ms" % (rounds, worst * 1000))
    check(still_open(idle) == len(idle), "the idle connections are held (within --idle-timeout)")
    close_all(idle + slow)
    st, _ = health()
    check(st == 200, "/health after the flood")


def group_deadlines():
    """--idle-timeout and --request-timeout close idle and dribbling connections
    although bytes keep coming (server started with 2 s for both)."""
    idle = open_many(20)
    slow = open_many(20, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    slow_body = []
    for _ in range(5):  # a head announcing a body that then dribbles in
        s = connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth_header() +
                  b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        slow_body.append(s)
    t0 = time.time()
    while time.time() - t0 < 10 and still_open(idle + slow + slow_body) > 0:
        for s in slow + slow_body:
            try:
                s.send(b"x")
            except OSError:
                pass
        time.sleep(0.3)
    took = time.time() - t0
    check(still_open(idle) == 0, "idle connections closed after --idle-timeout")
    check(still_open(slow) == 0, "connections dribbling a head closed after --request-timeout")
    check(still_open(slow_body) == 0, "connections dribbling a body closed after --request-timeout")
    print("every idle and dribbling connection closed after %.1f s (limits 2 s)" % took)
    close_all(idle + slow + slow_body)
    st, _ = health()
    check(st == 200, "/health after the deadlines")
    # The 25 dribbling ones at least (an idle one may meet MHD's own inactivity timeout first).
    check(metric("elliott_http_connections_timed_out_total") >= 25, "/metrics counts the timed-out connections")


def refused_at_once(s):
    """The server closed s without answering (a refused connection)."""
    data, closed = read_all(s, timeout=5)
    return closed and data == b""


def group_limits():
    """--max-connections-per-ip 20 (and --max-connections 40): the 21st
    connection from one address is closed at once."""
    held = open_many(20)
    time.sleep(0.2)
    extra = connect()
    check(refused_at_once(extra), "the 21st connection from one address is refused")
    extra.close()
    close_all(held)
    time.sleep(0.3)
    st, _ = health()
    check(st == 200, "/health once the connections are closed")


def expect_json_refusal(name, request, want_status, half_close=False):
    data, closed = raw(request, half_close=half_close)
    status, headers, body = split_response(data)
    check(status == want_status, "%s: status %d, want %d (%r)" % (name, status, want_status, data[:120]))
    check(data.startswith(b"HTTP/1.1 ") and b"\nHTTP/1." not in data, "%s: exactly one response" % name)
    check(headers.get("content-type") == "application/json", "%s: a JSON error" % name)
    try:
        err = json.loads(body)["error"]
        check(isinstance(err.get("message"), str) and err["message"], "%s: error.message" % name)
    except (ValueError, KeyError, TypeError):
        check(False, "%s: the body is the project's error shape: %r" % (name, body[:200]))
    check(closed, "%s: the connection is closed after the refusal" % name)


def expect_closed_refusal(name, request):
    """Cases libmicrohttpd 0.9.75 refuses itself, before elliott sees the request:
    a 400 and the connection closed (its body is libmicrohttpd's HTML)."""
    data, closed = raw(request)
    status, _, _ = split_response(data)
    check(status == 400, "%s: status %d, want 400 (%r)" % (name, status, data[:120]))
    check(closed, "%s: the connection is closed" % name)
    check(b"chat.completion" not in data, "%s: no request was served" % name)


def group_framing():
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).encode()
    post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth_header()
    n = b"%d" % len(body)
    expect_json_refusal("two different Content-Length",
                        post + b"Content-Length: " + n + b"\r\nContent-Length: 5\r\n\r\n" + body, 400)
    expect_json_refusal("the same Content-Length twice",
                        post + b"Content-Length: " + n + b"\r\nContent-Length: " + n + b"\r\n\r\n" + body, 400)
    expect_json_refusal("Content-Length and Transfer-Encoding",
                        post + b"Content-Length: " + n + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body, 400)
    expect_json_refusal("Transfer-Encoding: gzip", post + b"Transfer-Encoding: gzip\r\n\r\n" + body, 501)
    expect_json_refusal("Transfer-Encoding: gzip, chunked",
                        post + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + body, 501)
    expect_json_refusal("a bare CR in a header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400)
    expect_json_refusal("a control byte in a header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400)
    expect_json_refusal("%00 in the path", b"POST /v1/chat/completions%00 HTTP/1.1\r\nHost: x\r\n" + auth_header() +
                        b"Content-Length: " + n + b"\r\n\r\n" + body, 400)
    expect_json_refusal("%2F in the path", b"GET /v1%2Fmodels HTTP/1.1\r\nHost: x\r\n\r\n", 400)
    expect_json_refusal("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n", 400)
    expect_json_refusal("two Host headers", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
    for value in (b"-1", b"+38", b"0x10", b"1e30", b"38 38"):
        expect_closed_refusal("Content-Length: " + value.decode(),
                              post + b"Content-Length: " + value + b"\r\n\r\n" + body)
    expect_closed_refusal("whitespace before a colon", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n")
    # A refused request does not leave the server confused: the next one is served.
    st, _ = health()
    check(st == 200, "/health after the framing cases")


def group_continue():
    """Expect: 100-continue: a wrong or missing key is refused before the body
    is sent; with the key, 100 Continue, then the answer."""
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).encode()
    for name, key_header in (("no key", b""), ("a wrong key", b"Authorization: Bearer wrong\r\n")):
        s = connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                  key_header + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        data, closed = read_all(s, timeout=10)
        status, headers, _ = split_response(data)
        check(status == 401, "100-continue with %s: status %d before the body (%r)" % (name, status, data[:80]))
        check(b"100 Continue" not in data, "100-continue with %s: no 100 Continue" % name)
        check(closed, "100-continue with %s: closed (the body is not wanted)" % name)
        s.close()
    s = connect(60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth_header() +
              b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    s.settimeout(10)
    first = s.recv(4096)
    check(first.startswith(b"HTTP/1.1 100 Continue"), "100-continue with the key: 100 Continue first (%r)" % first[:40])
    s.sendall(body)
    data, _ = read_all(s, timeout=60)
    status, _, rest = split_response(data if not data.startswith(b"HTTP/1.1 100") else data.split(b"\r\n\r\n", 1)[1])
    check(status == 200, "100-continue with the key: then 200 (%r)" % data[:60])
    s.close()


def group_half_close():
    """A client that shuts down its sending side after the request gets its answer."""
    data, closed = raw(completion_request(max_tokens=8), half_close=True, timeout=60)
    status, _, body = split_response(data)
    check(status == 200 and b'"chat.completion"' in body, "half-closed completion: status %d" % status)
    data, _ = raw(completion_request(max_tokens=8, stream=True), half_close=True, timeout=60)
    check(data.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in data, "half-closed stream: the whole stream")
    data, _ = raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", half_close=True)
    check(split_response(data)[0] == 200, "half-closed GET /health")
    # A reset, on the other hand, cancels (counted in /metrics).
    s = connect()
    s.sendall(completion_request(max_tokens=100000))
    time.sleep(0.3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def group_queued():
    """Run with --parallel 1: one long generation holds the slot and two more
    wait in the queue; the caller sends SIGTERM after 'started'. The queued
    ones end with 503 at once, a new request during the grace period gets 503
    shutting_down, /health says shutting_down, the running one goes on. This
    group sends the SIGTERM itself (--server-pid)."""
    hold = connect(120)
    hold.sendall(completion_request(max_tokens=100000, stream=True))
    hold.settimeout(60)
    got = b""
    while b"data: " not in got:
        part = hold.recv(4096)
        if not part:
            break
        got += part
    check(b"data: " in got, "the long stream started")
    queued = []
    for _ in range(2):
        s = connect(120)
        s.sendall(completion_request(max_tokens=4))
        queued.append(s)
    time.sleep(0.5)
    os.kill(ARGS.server_pid, signal.SIGTERM)
    t0 = time.time()
    for i, s in enumerate(queued):
        data, _ = read_all(s, timeout=60)
        status, headers, body = split_response(data)
        check(status == 503, "queued request %d: status %d, want 503" % (i, status))
        check("retry-after" in headers, "queued request %d: Retry-After" % i)
        s.close()
    took = time.time() - t0
    print("queued requests answered 503 %.2f s after SIGTERM" % took)
    check(took < 10, "the queued requests did not wait for the grace period (%.1f s)" % took)
    data, _ = raw(completion_request(), timeout=30)
    status, headers, body = split_response(data)
    check(status == 503 and b"shutting down" in body, "a new request during the grace period: 503 shutting down")
    check("retry-after" in headers, "a new request during the grace period: Retry-After")
    st, _ = health()
    check(st == 503, "/health during the grace period: 503")
    rest, _ = read_all(hold, timeout=120)
    check(b"data: " in rest, "the running stream went on during the grace period")
    hold.close()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("group")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key")
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--slow", type=int, default=300)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--server-pid", type=int)
    ARGS = p.parse_args()
    globals()["group_" + ARGS.group]()
    if not FAILURES:
        print("ok: group", ARGS.group)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
