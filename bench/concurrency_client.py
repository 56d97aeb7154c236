#!/usr/bin/env python3
"""N concurrent streamed chat completions against one OpenAI-compatible server;
prints one JSON line of measurements (used by bench/concurrency.sh).

Each round starts N streams at once (distinct prompts, so no stream reuses
another's cached prefix) and waits for all of them. Per round:
  aggregate decode tokens/s = sum over streams of (completion tokens - 1)
                              / (last token of any stream - first token of any stream)
so prompt evaluation before the first token is left out, while prompts that
interleave with other streams' decoding slow it down, as they would in service.
Over all rounds: time to first token (request sent -> first content delta) and
inter-token latency (gap between consecutive content deltas of a stream; a
delta holding several tokens counts as one gap, which only happens when the
client falls behind). p99 of a few dozen samples is close to the maximum.

With --long-words W (the long-prompt interference case), each round also sends one
request whose prompt is a document of W words (max_tokens 4) as soon as every
stream has its first token, and reports that request's time to first token and the
streams' inter-token gaps while it was read (gaps that end between the long
request being sent and its first token): what a long prompt costs running streams.
usage: concurrency_client.py --port P --streams N --tokens T --rounds R [--label L] [--long-words W]
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time

TIMEOUT_S = 600


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]



def sse_events(resp):
    """The JSON events of a server-sent-events response, up to [DONE] or its end."""
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            return
        yield json.loads(line[6:])

def one_stream(port, prompt, tokens, out, started=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
                       "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    sent = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        out["error"] = "HTTP %d: %s" % (resp.status, resp.read()[:300])
        return
    deltas, usage = [], None
    for event in sse_events(resp):
        if "error" in event:
            out["error"] = str(event["error"])
            return
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                deltas.append(time.monotonic())
                if started is not None and len(deltas) == 1:
                    started.release()
    conn.close()
    if not deltas:
        out["error"] = "no content"
        return
    out["deltas"] = deltas
    out["sent"] = sent
    out["ttft"] = deltas[0] - sent
    out["gaps"] = [b - a for a, b in zip(deltas, deltas[1:])]
    out["first"], out["last"] = deltas[0], deltas[-1]
    out["tokens"] = usage["completion_tokens"] if usage else len(deltas)


def long_document(round_no, words):
    vocab = ("the keeper climbed the stairs of the lighthouse each evening and lit the lamp while "
             "the sea rolled against the rocks below").split()
    return "Document %d: " % round_no + " ".join(vocab[(i * 7 + round_no) % len(vocab)] for i in range(words)) + \
        "\nSummarise it."


def run_round(port, streams, tokens, round_no, long_words=0):
    results = [{} for _ in range(streams)]
    started = threading.Semaphore(0)
    threads = [threading.Thread(target=one_stream,
                                args=(port, "Tell story %d of round %d, a long one about a lighthouse keeper." %
                                      (i, round_no), tokens, results[i], started))
               for i in range(streams)]
    for t in threads:
        t.start()
    long_out = {}
    if long_words:
        for _ in range(streams):
            started.acquire(timeout=TIMEOUT_S)
        one_stream(port, long_document(round_no, long_words), 4, long_out)
    for t in threads:
        t.join()
    errors = [r["error"] for r in results + [long_out] if "error" in r]
    if errors:
        raise RuntimeError("round %d: %s" % (round_no, errors[0]))
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    decoded = sum(r["tokens"] - 1 for r in results)
    during = []
    if long_words:
        lo, hi = long_out["sent"], long_out["first"]
        for r in results:
            d = r["deltas"]
            during.extend(b - a for a, b in zip(d, d[1:]) if lo < b <= hi)
    return results, decoded / span if span > 0 else 0.0, long_out, during


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--streams", type=int, required=True)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--label", default="")
    p.add_argument("--long-words", type=int, default=0)
    a = p.parse_args()
    one_stream(a.port, "Warm up.", 4, {})   # pages the weights in
    rates, ttft, gaps, tokens, long_ttft, during = [], [], [], [], [], []
    for r in range(a.rounds):
        results, rate, long_out, gaps_during = run_round(a.port, a.streams, a.tokens, r, a.long_words)
        rates.append(rate)
        if a.long_words:
            long_ttft.append(long_out["ttft"])
            during.extend(gaps_during)
        for x in results:
            ttft.append(x["ttft"])
            gaps.extend(x["gaps"])
            tokens.append(x["tokens"])
    ms = lambda v: round(v * 1000, 1) if v is not None else None
    extra = {}
    if a.long_words:
        extra = {"long_words": a.long_words, "long_ttft_ms_p50": ms(statistics.median(long_ttft)),
                 "itl_during_long_ms_p50": ms(statistics.median(during) if during else None),
                 "itl_during_long_ms_p99": ms(percentile(during, 99)),
                 "itl_during_long_ms_max": ms(max(during) if during else None), "gaps_during_long": len(during)}
    print(json.dumps({"label": a.label, "streams": a.streams, "rounds": a.rounds,
                      "tokens_per_stream": round(statistics.mean(tokens), 1),
                      "decode_tps": round(statistics.median(rates), 2), "decode_tps_rounds": [round(x, 2) for x in rates],
                      "ttft_ms_p50": ms(statistics.median(ttft)), "ttft_ms_p99": ms(percentile(ttft, 99)),
                      "itl_ms_p50": ms(statistics.median(gaps) if gaps else None), "itl_ms_p99": ms(percentile(gaps, 99)), **extra}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        print("concurrency_client: %s" % e, file=sys.stderr)
        sys.exit(1)
