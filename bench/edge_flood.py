#!/usr/bin/env python3
"""The HTTP edge under a connection flood: how many idle and slowloris
connections `elliott serve` holds at once, what they cost in memory, and how
fast /health and a short completion are answered meanwhile.

usage: bench/edge_flood.py [--idle 10000] [--slow 1000] [--seconds 20] [ELLIOTT]

ELLIOTT defaults to build/elliott. The server runs with the built-in model on
a free loopback port, with --idle-timeout and --request-timeout raised so that
the connections stay for the whole run (the worst case for memory). Slowloris
connections send a request line, then one header byte each every 0.5 s.
Reported: resident memory per idle connection (RSS growth / connections; the
kernel's socket buffers are not in it), /health latency without load and
during the flood (median, 99th percentile, worst) and the completion latency.
The client needs as many descriptors as connections: it raises its soft limit
to the hard one (ulimit -Hn)."""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(port, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    got = b""
    while True:
        part = s.recv(65536)
        if not part:
            break
        got += part
    s.close()
    return got


def health_ms(port):
    t = time.perf_counter()
    got = request(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    ms = (time.perf_counter() - t) * 1000
    return ms if got.startswith(b"HTTP/1.1 200") else float("inf")


def completion_ms(port):
    body = json.dumps({"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 8}).encode()
    t = time.perf_counter()
    got = request(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body, timeout=60)
    ms = (time.perf_counter() - t) * 1000
    return ms if got.startswith(b"HTTP/1.1 200") else float("inf")


def summary(samples):
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return "median %.2f ms, p99 %.2f ms, worst %.2f ms (%d requests)" % (statistics.median(s), p99, s[-1], len(s))


def start_server(elliott, n_conns):
    log = open("/tmp/edge_flood_server.log", "w")
    p = subprocess.Popen([elliott, "serve", "--port", "0", "--idle-timeout", "3600", "--request-timeout", "3600",
                          "--max-connections", str(n_conns + 100)], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        time.sleep(0.1)
        text = open("/tmp/edge_flood_server.log").read()
        if "listening on http://" in text and "model ready" in text:
            port = int(text.split("listening on http://")[1].split("\n")[0].rsplit(":", 1)[1])
            return p, port
    p.kill()
    sys.exit("the server did not start: see /tmp/edge_flood_server.log")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("elliott", nargs="?", default="build/elliott")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.idle + a.slow + 100:
        sys.exit("the descriptor limit (%d) is too low for %d connections" % (hard, a.idle + a.slow))
    server, port = start_server(a.elliott, a.idle + a.slow)
    try:
        base = [health_ms(port) for _ in range(50)]
        base_completion = [completion_ms(port) for _ in range(5)]
        rss0 = rss_kib(server.pid)
        t0 = time.time()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(a.idle)]
        opened = time.time() - t0
        time.sleep(1)
        rss1 = rss_kib(server.pid)
        slow = []
        for _ in range(a.slow):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        loaded, comp = [], []
        end = time.time() + a.seconds
        last_drip = 0
        while time.time() < end:
            if time.time() - last_drip >= 0.5:
                last_drip = time.time()
                for s in slow:
                    s.send(b"X")
            loaded.append(health_ms(port))
            if len(loaded) % 20 == 0:
                comp.append(completion_ms(port))
            time.sleep(0.05)
        rss2 = rss_kib(server.pid)
        alive = 0
        for s in idle + slow:
            s.setblocking(False)
            try:
                alive += 1 if s.recv(1) else 0
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        for s in idle + slow:
            s.close()
        print("load: %s" % os.getloadavg().__repr__())
        print("connections: %d idle (opened in %.1f s) + %d slowloris; still open at the end: %d" %
              (a.idle, opened, a.slow, alive))
        print("server RSS: %d KiB before, %d KiB with the idle connections, %d KiB with all" % (rss0, rss1, rss2))
        print("memory per idle connection: %.2f KiB (RSS growth / %d)" % ((rss1 - rss0) / a.idle, a.idle))
        print("/health without load: %s" % summary(base))
        print("/health during the flood: %s" % summary(loaded))
        print("completion (8 tokens) without load: %s" % summary(base_completion))
        print("completion (8 tokens) during the flood: %s" % summary(comp))
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
