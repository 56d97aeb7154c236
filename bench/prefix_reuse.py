#!/usr/bin/env python3
"""Time to first token of a conversation's second turn against its first, on a long
conversation (bench/prefix-reuse.sh starts the server).

Each round opens a conversation whose first user message is a long document
(WORDS words, distinct per round, so no round reuses another's cache), asks for a
short answer, then sends the second turn: the whole history (document, answer, a
new question). Between the turns, OTHER short conversations run on the server
(distinct prompts), so that the second turn finds its prefix in a slot that has
been passed over, not simply the last one used. A server that reuses the cached
prefix evaluates only the second turn's new tokens.
Prints one JSON line: median TTFT of turn 1 and turn 2 (ms) and their ratio.
usage: prefix_reuse.py --port P [--words W] [--rounds R] [--others K] [--tokens T]
"""
import argparse
import http.client
import json
import statistics
import sys
import time

from concurrency_client import sse_events

TIMEOUT_S = 900
WORDS = ("the keeper climbed the stairs of the lighthouse each evening and lit the lamp while the sea "
         "rolled against the rocks below and ships passed far out in the dark").split()


def stream(port, messages, tokens):
    """Sends one streamed chat completion; returns (ttft seconds, answer text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    body = json.dumps({"messages": messages, "max_tokens": tokens, "temperature": 0, "stream": True})
    sent = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError("HTTP %d: %s" % (resp.status, resp.read()[:300]))
    ttft, text = None, []
    for event in sse_events(resp):
        if "error" in event:
            raise RuntimeError(str(event["error"]))
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                if ttft is None:
                    ttft = time.monotonic() - sent
                text.append(piece)
    conn.close()
    if ttft is None:
        raise RuntimeError("no content")
    return ttft, "".join(text)


def document(round_no, words):
    out = ["Document %d." % round_no]
    for i in range(words):
        out.append(WORDS[(i * 7 + round_no) % len(WORDS)])
    return " ".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--words", type=int, default=1200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--others", type=int, default=3)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--label", default="")
    a = p.parse_args()
    stream(a.port, [{"role": "user", "content": "Warm up."}], 2)
    first, second = [], []
    for r in range(a.rounds):
        history = [{"role": "user", "content": document(r, a.words) + "\n\nSummarise the document."}]
        t1, answer = stream(a.port, history, a.tokens)
        for k in range(a.others):
            stream(a.port, [{"role": "user", "content": "Other conversation %d of round %d." % (k, r)}], 4)
        history += [{"role": "assistant", "content": answer},
                    {"role": "user", "content": "What did the keeper light?"}]
        t2, _ = stream(a.port, history, a.tokens)
        first.append(t1)
        second.append(t2)
    m1, m2 = statistics.median(first), statistics.median(second)
    print(json.dumps({"label": a.label, "words": a.words, "rounds": a.rounds, "others": a.others,
                      "ttft_turn1_ms": round(m1 * 1000, 1), "ttft_turn2_ms": round(m2 * 1000, 1),
                      "turn2_vs_turn1": round(m2 / m1, 3) if m1 > 0 else None,
                      "turn1_ms": [round(x * 1000, 1) for x in first],
                      "turn2_ms": [round(x * 1000, 1) for x in second]}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        print("prefix_reuse: %s" % e, file=sys.stderr)
        sys.exit(1)
