#!/usr/bin/env python3
"""Resident memory of the shared KV pool: one `elliott serve --parallel 4 -c 4*CTX` with
the prefix cache (finished conversations stay cached): its resident size (VmRSS) after a
warm-up conversation of about CTX positions (which touches the scratch buffers of a long
prompt too, and stays cached in one slot), after one more conversation, and after four
more at once (one of which takes the warm-up's slot, whose cache goes); then the same
with --no-prefix-cache, whose conversations give their pages back as they end. The
expected growth is the positions held x the KV bytes per position the server logs:
+1 and +3 conversations with the cache, nothing without.

usage: bench/kv_memory.py [--elliott build/elliott] [-t THREADS] [--ctx 2048] [--only cache|no-cache]
                          [--serve-arg ARG]... MODEL.gguf
"""
import argparse
import http.client
import json
import re
import subprocess
import sys
import threading
import time

VOCAB = ("the keeper climbed the stairs of the lighthouse each evening and lit the lamp while the sea "
         "rolled against the rocks below and ships passed far out in the dark").split()


def rss_bytes(pid):
    # a finished conversation's cache is wiped just after its answer: give it a moment
    time.sleep(1.0)
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start(args, extra):
    proc = subprocess.Popen([args.elliott, "serve", "-m", args.model, "--port", "0", "-t", str(args.threads),
                             "--parallel", "4", "-c", str(4 * args.ctx), "--max-tokens", "4"] + args.serve_arg + extra,
                            stderr=subprocess.PIPE, text=True)
    port, bpt = None, None
    for line in proc.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        m = re.search(r"KV cache of \d+ positions \((\d+) bytes each", line)
        if m:
            bpt = int(m.group(1))
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining the log
    return proc, port, bpt


def ask(port, words, seed):
    text = "Document %d: " % seed + " ".join(VOCAB[(i * 7 + seed) % len(VOCAB)] for i in range(words))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
    c.request("POST", "/v1/chat/completions",
              json.dumps({"messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, body))
    return body["usage"]["prompt_tokens"]


def words_for(port, ctx):
    """Words whose prompt fills most of a conversation's share of the pool."""
    probe = 200
    tokens = ask(port, probe, 999)
    return max(16, int(probe * (ctx - 64) / tokens))


def measure(args, label, extra):
    proc, port, bpt = start(args, extra)
    try:
        words = words_for(port, args.ctx)
        ask(port, words, 1000)  # warm up: weights and scratch paged in
        idle = rss_bytes(proc.pid)
        one_tokens = ask(port, words, 0)
        one = rss_bytes(proc.pid)
        tokens = [0] * 4
        threads = [threading.Thread(target=lambda i=i: tokens.__setitem__(i, ask(port, words, i + 1)))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        four = rss_bytes(proc.pid)
        mib = lambda b: round(b / 2**20, 1)
        cached = label == "prefix cache"
        print(json.dumps({"label": label, "kv_bytes_per_position": round(bpt), "prompt_tokens": one_tokens,
                          "rss_after_warm_up_mib": mib(idle), "rss_plus_one_mib": mib(one),
                          "rss_plus_four_mib": mib(four), "growth_one_mib": mib(one - idle),
                          "growth_four_mib": mib(four - idle),
                          "expected_one_mib": mib(one_tokens * bpt) if cached else 0,
                          "expected_four_mib": mib(3 * one_tokens * bpt) if cached else 0}))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--elliott", default="build/elliott")
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--only", choices=["cache", "no-cache"])
    p.add_argument("--serve-arg", action="append", default=[], help="one more option for elliott serve")
    p.add_argument("model")
    args = p.parse_args()
    if args.only != "no-cache":
        measure(args, "prefix cache", [])
    if args.only != "cache":
        measure(args, "no prefix cache", ["--no-prefix-cache"])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, http.client.HTTPException, RuntimeError, subprocess.SubprocessError) as e:
        print("kv_memory: %s" % e, file=sys.stderr)
        sys.exit(1)
