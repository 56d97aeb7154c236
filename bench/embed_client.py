#!/usr/bin/env python3
"""Embedding throughput (inputs/s) of servers that speak OpenAI's /v1/embeddings.
usage: embed_client.py --inputs N --rounds R NAME=PORT [NAME=PORT ...]
Each round posts the same N inputs (one request, the server batches them) to every
server in turn, so that load changes hit all of them alike; prints the median."""
import argparse, json, statistics, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--inputs", type=int, default=64)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("servers", nargs="+")
a = ap.parse_args()
texts = ["task: search result | query: document number %d about rainbows, rivers and the weather over the hills" % i
         for i in range(a.inputs)]
rates = {s: [] for s in a.servers}
tokens = {}
for _ in range(a.rounds):
    for s in a.servers:
        port = s.split("=")[1]
        req = urllib.request.Request("http://127.0.0.1:%s/v1/embeddings" % port, method="POST",
                                     data=json.dumps({"input": texts, "model": "m"}).encode(),
                                     headers={"Content-Type": "application/json"})
        t0 = time.time()
        body = json.loads(urllib.request.urlopen(req, timeout=600).read())
        rates[s].append(a.inputs / (time.time() - t0))
        assert len(body["data"]) == a.inputs
        tokens[s] = body.get("usage", {}).get("prompt_tokens")
for s in a.servers:
    print("%-10s %3d inputs (%s tokens): median %.2f inputs/s over %d rounds %s" % (
        s.split("=")[0], a.inputs, tokens[s], statistics.median(rates[s]), a.rounds,
        " ".join("%.2f" % r for r in rates[s])))
