#!/usr/bin/env python3
"""Measures the HTTP layer's latency overhead of a running `elliott serve`: time to
first byte at the client minus the engine's own time (queue + prompt + generation,
which the server logs as engine_ms), for max_tokens=1 requests over one keep-alive
connection. Not a test: a measurement (see docs/api.md).

usage: serve_latency.py --port PORT --log SERVER_LOG [-n 300] [--stream]"""
import argparse
import http.client
import json
import re
import statistics
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("-n", type=int, default=300)
    p.add_argument("--stream", action="store_true")
    a = p.parse_args()
    body = json.dumps({"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 1,
                       "temperature": 0, "stream": a.stream})
    c = http.client.HTTPConnection("127.0.0.1", a.port)
    marks = []
    with open(a.log) as f:
        f.seek(0, 2)
        start_offset = f.tell()
    for i in range(a.n + 20):
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()  # returns once the status line and headers are in
        r.read(1)
        ttfb = time.perf_counter() - t0
        r.read()
        total = time.perf_counter() - t0
        marks.append((ttfb * 1e3, total * 1e3))
    c.close()
    time.sleep(0.3)
    with open(a.log) as f:
        f.seek(start_offset)
        lines = [l for l in f if " POST /v1/chat/completions 200 " in l]
    server_ms = [float(re.search(r" ms=([0-9.]+)", l).group(1)) for l in lines]
    engine_ms = [float(re.search(r" engine_ms=([0-9.]+)", l).group(1)) for l in lines]
    assert len(lines) == len(marks), (len(lines), len(marks))
    skip = 20  # warm-up
    ttfb = [m[0] for m in marks[skip:]]
    total = [m[1] for m in marks[skip:]]
    eng, srv = engine_ms[skip:], server_ms[skip:]
    over = [t - e for t, e in zip(ttfb, eng)]
    srv_over = [s - e for s, e in zip(srv, eng)]

    def q(xs, f):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(f * len(xs)))]

    print("%d requests, max_tokens=1, %s" % (len(ttfb), "streaming" if a.stream else "non-streaming"))
    for name, xs in (("client time to first byte", ttfb), ("client total", total), ("engine (engine_ms)", eng),
                     ("server handling (log ms)", srv), ("overhead: TTFB - engine", over),
                     ("overhead inside the server: log ms - engine", srv_over)):
        print("  %-46s median %7.3f ms   p90 %7.3f ms   mean %7.3f ms" %
              (name, statistics.median(xs), q(xs, 0.9), statistics.mean(xs)))


if __name__ == "__main__":
    main()
