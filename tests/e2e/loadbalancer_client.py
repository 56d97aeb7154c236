#!/usr/bin/env python3
"""Load, kills and checks for tests/e2e/loadbalancer.sh (not a test by itself).

Sends chat completions through HAProxy (deploy/haproxy/elliott.cfg) to three
elliott replicas from many client threads, SIGTERMs one replica and SIGKILLs
another while the load runs, each time while a stream of its own is in flight
on it, and checks what a client of the load balancer sees:

- every request that had not started on the killed replica is answered 200 (a
  refused connection, a closed one or a 503 from a draining replica is retried
  on another by HAProxy, unseen by the client);
- a stream cut by SIGKILL ends at once (a truncated body, no [DONE]); streams on
  the SIGTERMed replica finish normally (it drains);
- a conversation key (prompt_cache_key, or user) stays on one replica;
- no request hangs (a per-request socket timeout and an overall deadline).

Which replica answered comes from the X-Served-By header the configuration adds.
usage: loadbalancer_client.py --port LB_PORT --replica NAME=PID ... [--requests N]
"""
import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

SOCKET_TIMEOUT_S = 30.0
OVERALL_DEADLINE_S = 150.0
PROBE_TOKENS = 1000   # long enough to be cut (the model writes ~1000 tokens/s here), short
                      # enough to fit a 2048-position KV pool shared with other requests
SIGNAL_NOTICE_S = 0.5  # the server notices SIGTERM asynchronously, within this
# HAProxy takes a replica out within 2 s (2 failed checks, 1 s apart). The kill
# waits that long after the SIGTERM: two replicas failing within the same
# second can use up a request's retries (they alternate between the two).
TERM_TO_KILL_S = 3.0


class Result:
    def __init__(self, spec):
        self.spec = spec
        self.status = None        # HTTP status, None when no answer came
        self.served_by = None     # X-Served-By
        self.outcome = None       # "done", "json", "truncated", "error_event", "failed"
        self.detail = ""
        self.started = None       # time.monotonic() before the request was sent
        self.ended = None         # when its answer ended (or failed)
        self.first_content = None  # when a stream's first content delta arrived


def request_body(spec):
    body = {"messages": [{"role": "user", "content": spec["prompt"]}],
            "max_tokens": spec["max_tokens"], "stream": spec["stream"]}
    if spec.get("cache_key"):
        body["prompt_cache_key"] = spec["cache_key"]
    if spec.get("user"):
        body["user"] = spec["user"]
    return json.dumps(body)


class Client:
    """One keep-alive connection to the load balancer, reopened after a failure."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=SOCKET_TIMEOUT_S)
        return self.conn

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, spec, on_first_content=None):
        r = Result(spec)
        r.started = time.monotonic()
        try:
            conn = self._connection()
            conn.request("POST", "/v1/chat/completions", body=request_body(spec),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            r.status = resp.status
            r.served_by = resp.getheader("X-Served-By")
            if resp.status != 200 or not spec["stream"]:
                self._read_whole(resp, r)
            else:
                self._read_stream(resp, r, on_first_content)
        except TimeoutError as e:   # socket.timeout: the answer stalled
            r.outcome = "timeout"
            r.detail = str(e)
        except (OSError, http.client.HTTPException) as e:
            # A stream whose body breaks off (connection reset) was cut; any
            # other broken request failed.
            cut = r.status == 200 and spec["stream"] and r.outcome is None
            r.outcome = "truncated" if cut else (r.outcome or "failed")
            r.detail = "%s: %s" % (type(e).__name__, e)
        r.ended = time.monotonic()
        if r.outcome != "json" and r.outcome != "done":
            self.drop()
        return r

    @staticmethod
    def _read_whole(resp, r):
        raw = resp.read()
        if resp.status != 200:
            r.outcome = "failed"
            r.detail = raw[:200].decode("utf-8", "replace")
            return
        doc = json.loads(raw)
        if doc["choices"][0]["message"]["role"] != "assistant":
            raise http.client.HTTPException("not a chat completion: %r" % raw[:200])
        r.outcome = "json"

    @staticmethod
    def _read_stream(resp, r, on_first_content):
        while True:
            try:
                line = resp.readline()
            except http.client.IncompleteRead:
                r.outcome = "truncated"
                return
            if not line:
                r.outcome = r.outcome or "truncated"
                return
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                if resp.read().strip():   # the end of the body, so the connection can be reused
                    raise http.client.HTTPException("bytes after [DONE]")
                r.outcome = "done"
                return
            event = json.loads(data)
            if "error" in event:
                r.outcome = "error_event"
                r.detail = event["error"].get("message", "")
                return
            delta = event["choices"][0]["delta"] if event["choices"] else {}
            if delta.get("content") and r.first_content is None:
                r.first_content = time.monotonic()
                if on_first_content:
                    on_first_content()


def make_specs(n, keys, rng):
    """A mix: streamed or not; a prompt_cache_key, a user, or no key at all."""
    specs = []
    for i in range(n):
        kind = rng.random()
        spec = {"prompt": "Once upon a time %d" % i, "stream": rng.random() < 0.5,
                "max_tokens": rng.randint(8, 160)}
        if kind < 0.45:
            spec["cache_key"] = rng.choice(keys)
        elif kind < 0.65:
            spec["user"] = rng.choice(keys)   # user alone is a key too
        specs.append(spec)
    return specs


def conversation_key(spec):
    return spec.get("cache_key") or spec.get("user")


class Run:
    def __init__(self, args):
        self.args = args
        self.pids = dict(r.split("=", 1) for r in args.replica)
        self.failures = []
        self.lock = threading.Lock()
        self.results = []
        self.done_count = 0

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)

    def learn_placement(self, keys):
        """One request per key: where does each key live before anything is killed?"""
        client = Client(self.args.port)
        home = {}
        for k in keys:
            r = client.send({"prompt": "hello", "stream": False, "max_tokens": 4, "cache_key": k})
            if r.status != 200 or r.served_by not in self.pids:
                self.fail("warm-up request for key %s: status %s served by %s %s" %
                          (k, r.status, r.served_by, r.detail))
            home[k] = r.served_by
        client.drop()
        return home

    def probe_and_signal(self, key, victim, sig, fired_event):
        """A long stream on the victim; the signal lands while it is generating."""
        fired = {}

        def fire():
            fired["t"] = time.monotonic()
            os.kill(int(self.pids[victim]), sig)
            fired_event.set()

        client = Client(self.args.port)
        r = client.send({"prompt": "Once upon a time", "stream": True, "max_tokens": PROBE_TOKENS,
                         "cache_key": key}, on_first_content=fire)
        client.drop()
        if r.served_by != victim:
            self.fail("probe for %s went to %s" % (victim, r.served_by))
        if "t" not in fired:
            self.fail("probe for %s produced no content (%s %s)" % (victim, r.outcome, r.detail))
            os.kill(int(self.pids[victim]), sig)
            fired["t"] = time.monotonic()
            fired_event.set()
        return r, fired["t"]

    def worker(self, client, queue, events, gate):
        while True:
            # The last requests wait for the kill, so that some are sent after it.
            if len(queue) <= gate[0] and not gate[1].wait(max(0.0, self.deadline - time.monotonic())):
                break
            with self.lock:
                if not queue or time.monotonic() > self.deadline:
                    break
                spec = queue.pop()
            r = client.send(spec)
            with self.lock:
                self.results.append(r)
                self.done_count += 1
                count = self.done_count
            for threshold, event in events:
                if count == threshold:
                    event.set()
        client.drop()

    def main(self):
        rng = random.Random(self.args.seed)
        keys = ["conv-%d" % i for i in range(24)]
        self.deadline = time.monotonic() + OVERALL_DEADLINE_S
        home = self.learn_placement(keys)
        if self.failures:
            return self.report()
        if len(set(home.values())) < 2:
            self.fail("24 keys all hashed to one replica: %s" % home)
        names = sorted(self.pids)
        # Drain the replica holding the most keys, kill another one, keep a third.
        drained = max(names, key=lambda n: sum(1 for v in home.values() if v == n))
        killed = next(n for n in names if n != drained)
        survivor = next(n for n in names if n not in (drained, killed))
        print("ROLES drained=%s killed=%s survivor=%s" % (drained, killed, survivor), flush=True)

        queue = make_specs(self.args.requests, keys, rng)
        queue.reverse()
        term_event, kill_event = threading.Event(), threading.Event()
        term_fired, kill_fired = threading.Event(), threading.Event()
        n = self.args.requests
        events = [(n // 3, term_event), (2 * n // 3, kill_event)]
        gate = (n // 6, kill_fired)
        threads = [threading.Thread(target=self.worker, args=(Client(self.args.port), queue, events, gate))
                   for _ in range(self.args.clients)]
        for t in threads:
            t.start()

        probes = {}

        def probe_when(event, after, name, victim, sig, fired):
            if not event.wait(OVERALL_DEADLINE_S):
                return
            if after is not None:
                if not after.wait(OVERALL_DEADLINE_S):
                    return
                time.sleep(TERM_TO_KILL_S)
            key = next((k for k, v in home.items() if v == victim), None)
            if key is None:
                self.fail("no key lives on %s; cannot aim the %s" % (victim, name))
                fired.set()
                return
            probes[name] = self.probe_and_signal(key, victim, sig, fired)

        probe_threads = [threading.Thread(target=probe_when,
                                          args=(term_event, None, "SIGTERM", drained, signal.SIGTERM, term_fired)),
                         threading.Thread(target=probe_when,
                                          args=(kill_event, term_fired, "SIGKILL", killed, signal.SIGKILL, kill_fired))]
        for t in probe_threads:
            t.start()
        threads += probe_threads
        for t in threads:
            t.join(max(1.0, self.deadline - time.monotonic()))
            if t.is_alive():
                self.fail("a client thread is still waiting at the deadline: something hangs")
        if len(probes) != 2:
            self.fail("the probes did not run: %s" % sorted(probes))
            return self.report()
        self.check(home, drained, killed, survivor, probes)
        return self.report()

    def check(self, home, drained, killed, survivor, probes):
        probe_term, t_term = probes["SIGTERM"]
        probe_kill, t_kill = probes["SIGKILL"]
        if len(self.results) != self.args.requests:
            self.fail("%d of %d requests finished" % (len(self.results), self.args.requests))
        if probe_term.outcome != "done":
            self.fail("the stream in flight on the drained replica did not finish: %s %s" %
                      (probe_term.outcome, probe_term.detail))
        if probe_kill.outcome not in ("truncated", "error_event"):
            self.fail("the stream cut by SIGKILL ended as %s" % probe_kill.outcome)
        shed = 0
        for r in self.results:
            cut_by_kill = r.served_by == killed and r.spec["stream"] and r.status == 200
            if cut_by_kill and r.outcome in ("done", "truncated", "error_event"):
                continue   # started on the killed replica: complete, or cut and ended
            # Waiting in the drained replica's own queue at the signal: the drain
            # ends it at once, cleanly (a 503, or for a stream already answered
            # 200 an error event), never by a hang (docs/api.md, shutdown).
            queued_at_term = r.served_by == drained and r.started <= t_term + SIGNAL_NOTICE_S
            if queued_at_term and r.outcome in ("failed", "error_event") and "shutting down" in str(r.detail):
                shed += 1
                continue
            if r.status != 200 or r.outcome not in ("done", "json"):
                self.fail("request %r: status %s served by %s, %s %s" %
                          (r.spec, r.status, r.served_by, r.outcome, r.detail))
            # After the signal a replica takes no new request (retried elsewhere).
            if r.served_by == drained and r.started > t_term + SIGNAL_NOTICE_S:
                self.fail("%s (SIGTERM) answered a request sent after the signal" % drained)
            if r.served_by == killed and r.started > t_kill:
                self.fail("%s (SIGKILL) answered a request sent after the signal" % killed)
        # Affinity: a request over before any signal went home; a key living on
        # the survivor stays there all along (consistent hashing moves only the
        # keys of the replicas that left). A request in flight at the SIGTERM may
        # meet the drain and be retried elsewhere.
        for r in self.results:
            key = conversation_key(r.spec)
            if key is None or r.status != 200:
                continue
            if (r.ended < t_term or home[key] == survivor) and r.served_by != home[key]:
                self.fail("key %s lives on %s but was served by %s" % (key, home[key], r.served_by))
        unkeyed = {r.served_by for r in self.results if conversation_key(r.spec) is None and r.started < t_term}
        if len(unkeyed) < 2:
            self.fail("requests without a key all went to %s: no round-robin" % unkeyed)
        per_server = {}
        for r in self.results:
            per_server[r.served_by] = per_server.get(r.served_by, 0) + 1
        cut = sum(1 for r in self.results if r.outcome in ("truncated", "error_event"))
        print("requests per replica %s; streams cut %d (+1 probe); shed by the drain %d" % (per_server, cut, shed))

    def report(self):
        for f in self.failures[:20]:
            print("FAIL:", f, file=sys.stderr)
        if len(self.failures) > 20:
            print("... %d failures in all" % len(self.failures), file=sys.stderr)
        return 1 if self.failures else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--replica", action="append", required=True, help="NAME=PID, NAME as in X-Served-By")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seed", type=int, default=10)
    args = p.parse_args()
    if len(args.replica) != 3:
        p.error("three replicas")
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())
