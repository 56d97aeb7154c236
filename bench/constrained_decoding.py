#!/usr/bin/env python3
"""Constrained decoding's cost at generation time: tokens per second of free decoding
and of decoding held to a JSON Schema (and json_object), measured alternately on the
same running `elliott serve`, from the first streamed token to the last.

usage: bench/constrained_decoding.py --port PORT [--reps N] [--max-tokens N]
(bench/constrained-decoding.sh starts the server.)
"""
import argparse
import http.client
import json
import statistics
import time

SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string"}, "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
    "summary": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    "characters": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "role": {"enum": ["hero", "villain", "other"]}},
        "required": ["name", "role"], "additionalProperties": False}}},
    "required": ["title", "year", "summary", "tags", "characters"], "additionalProperties": False}

MODES = {
    "free": {},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "film", "schema": SCHEMA}}},
    "json_object": {"response_format": {"type": "json_object"}},
}


def run(port, extra, max_tokens, seed):
    body = {"messages": [{"role": "user", "content": "Describe a film you like, in detail, as JSON."}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}}
    body.update(extra)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    first = last = None
    tokens = 0
    buf = b""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            tokens = ev["usage"]["completion_tokens"]
        for ch in ev.get("choices", []):
            if ch["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
    c.close()
    if not first or tokens < 2 or last <= first:
        return None
    return (tokens - 1) / (last - first)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=128)
    a = p.parse_args()
    rates = {m: [] for m in MODES}
    for rep in range(a.reps):
        for mode, extra in MODES.items():
            r = run(a.port, extra, a.max_tokens, rep)
            if r:
                rates[mode].append(r)
    free = statistics.median(rates["free"])
    print("| mode | runs | median tokens/s | vs free |")
    print("|---|---|---|---|")
    for mode, rs in rates.items():
        med = statistics.median(rs) if rs else float("nan")
        print("| %s | %d | %.2f | %.1f %% |" % (mode, len(rs), med, 100 * med / free))


if __name__ == "__main__":
    main()
