#!/usr/bin/env python3
"""The privacy scan: requests of every shape carry a random marker in their
messages; once they are over, the server's whole memory is searched for it.

usage: privacy_scan.py clients --port PORT --marker M [--ca CERT]
       privacy_scan.py scan --pid PID --marker M      (prints the number of copies)

Reading /proc/PID/mem needs ptrace rights over the server (same user; with
Yama's ptrace_scope 1 the scanner must be an ancestor: the caller runs it as
root or checks `scan` on a positive control first)."""
import argparse
import http.client
import json
import re
import socket
import ssl
import struct
import sys
import time


def clients(a):
    m = a.marker

    def conn():
        if a.ca:
            ctx = ssl.create_default_context(cafile=a.ca)
            return http.client.HTTPSConnection("127.0.0.1", a.port, context=ctx, timeout=60)
        return http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)

    def msg(t):
        return [{"role": "system", "content": "be brief " + m}, {"role": "user", "content": t + " " + m}]

    c = conn()  # one kept-alive connection through every shape of request
    for body in ({"messages": msg("hello"), "max_tokens": 8},
                 {"messages": msg("hi"), "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}},
                 {"messages": msg("bad"), "max_tokens": -1},
                 {"messages": msg("x"), "stop": [m], "max_tokens": 8},
                 {"messages": msg("y"), "temperature": "hot"}):
        c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        c.getresponse().read()
    c.request("POST", "/v1/chat/completions", '{"messages":[{"role":"user","content":"' + m + '"',
              {"Content-Type": "application/json"})
    c.getresponse().read()
    c.close()
    c = conn()  # a body over the limit
    try:
        c.request("POST", "/v1/chat/completions", json.dumps({"messages": msg("z" * (2 << 20))}),
                  {"Content-Type": "application/json"})
        c.getresponse().read()
    except OSError:
        pass
    c.close()
    if not a.ca:
        body = json.dumps({"messages": msg("half"), "max_tokens": 8}).encode()
        s = socket.create_connection(("127.0.0.1", a.port), timeout=60)  # half-closed
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
        body = json.dumps({"messages": msg("reset"), "max_tokens": 400, "stream": True}).encode()
        s = socket.create_connection(("127.0.0.1", a.port), timeout=60)  # reset mid-stream
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(1)  # the cancelled generation stops and is released


CHUNK = 64 << 20
MAX_REGION = 1 << 34


def scan(a):
    marker = a.marker.encode()
    copies = 0
    with open("/proc/%d/maps" % a.pid) as maps, open("/proc/%d/mem" % a.pid, "rb", 0) as mem:
        for line in maps:
            r = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            start, end, perm = int(r.group(1), 16), int(r.group(2), 16), r.group(3)
            if perm[0] != "r" or "[vvar]" in line or "[vsyscall]" in line:
                continue
            if end - start > MAX_REGION:
                continue  # a sanitizer's shadow reservation, not data
            found = 0
            tail = b""
            try:
                for pos in range(start, end, CHUNK):
                    mem.seek(pos)
                    data = tail + mem.read(min(CHUNK, end - pos))
                    found += data.count(marker)
                    tail = data[-(len(marker) - 1):]
            except (OSError, ValueError, OverflowError):
                pass
            if found:
                print("%d in %s" % (found, line.strip()), file=sys.stderr)
            copies += found
    print(copies)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["clients", "scan"])
    p.add_argument("--port", type=int)
    p.add_argument("--pid", type=int)
    p.add_argument("--marker", required=True)
    p.add_argument("--ca")
    a = p.parse_args()
    clients(a) if a.what == "clients" else scan(a)


if __name__ == "__main__":
    main()
