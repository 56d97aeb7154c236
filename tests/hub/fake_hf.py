#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub, for tests of `elliott pull`.

Serves, for repositories given as --repo OWNER/NAME=DIR (every file in DIR):
  GET /api/models/OWNER/NAME/tree/main       JSON listing (paged by ?cursor= and a
                                              Link header when --page-size is set)
  GET /OWNER/NAME/resolve/main/FILE          302 to http://REDIRECT_HOST:PORT/cdn/...
                                              with X-Linked-Etag (sha256), X-Linked-Size
  GET /cdn/OWNER/NAME/FILE                   the bytes, with Range support (206/416)
Control (the test's side channel):
  GET /_control/set?KEY=VALUE...              drop_once=1: the next full /cdn/ answer
                                              stops half way; bad_sha=1: publish a wrong
                                              sha256; no_range=1: ignore Range headers
  GET /_control/stats                         JSON: every request with its path, Range
                                              header, bytes of body sent, whether it
                                              carried Authorization
  GET /_control/reset                         clears stats and modes
Repositories named in --private need "Authorization: Bearer TOKEN" (--token) on the
/api and /resolve paths; the /cdn/ paths are open, as signed CDN URLs are.
Only the Python standard library is used.
"""
import argparse
import hashlib
import json
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"stats": [], "drop_once": False, "bad_sha": False, "no_range": False}


def load_repos(specs):
    repos = {}
    for spec in specs:
        name, directory = spec.split("=", 1)
        files = {}
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    data = f.read()
                files[entry] = {"data": data, "sha256": hashlib.sha256(data).hexdigest()}
        repos[name] = files
    return repos


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def record(self, body_bytes):
        with LOCK:
            STATE["stats"].append({
                "path": urllib.parse.urlsplit(self.path).path,
                "range": self.headers.get("Range"),
                "bytes": body_bytes,
                "auth": self.headers.get("Authorization") is not None,
            })

    def reply(self, status, body=b"", headers=None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.record(len(body))

    def error(self, status, message):
        self.reply(status, json.dumps({"error": message}).encode(), {"X-Error-Message": message})

    def authorized(self, repo):
        if repo not in self.server.private:
            return True
        return self.headers.get("Authorization") == "Bearer " + self.server.token

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        query = urllib.parse.parse_qs(url.query)
        if parts[:1] == ["_control"]:
            return self.control(parts[1:], query)
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            return self.listing("/".join(parts[2:4]), query)
        if parts[:1] == ["cdn"] and len(parts) >= 4:
            return self.cdn("/".join(parts[1:3]), "/".join(parts[3:]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve("/".join(parts[0:2]), "/".join(parts[4:]))
        self.error(404, "no such path")

    def control(self, parts, query):
        with LOCK:
            if parts == ["set"]:
                for key in ("drop_once", "bad_sha", "no_range"):
                    if key in query:
                        STATE[key] = query[key][0] == "1"
            elif parts == ["reset"]:
                STATE.update(stats=[], drop_once=False, bad_sha=False, no_range=False)
            body = json.dumps(STATE["stats"]).encode()
        if parts == ["stats"]:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def listing(self, repo, query):
        if not self.authorized(repo):
            return self.error(401, "Invalid credentials in Authorization header")
        if repo not in self.server.repos:
            return self.error(404, "Repository not found")
        entries = [{"type": "directory", "oid": "0" * 40, "path": "docs", "size": 0}]
        for name, f in self.server.repos[repo].items():
            entry = {"type": "file", "oid": hashlib.sha1(f["data"]).hexdigest(),
                     "size": len(f["data"]), "path": name}
            if name.endswith(".gguf"):
                entry["size"] = 135  # what a git LFS pointer weighs
                entry["lfs"] = {"oid": f["sha256"], "size": len(f["data"]), "pointerSize": 135}
            entries.append(entry)
        start = int(query.get("cursor", ["0"])[0])
        size = self.server.page_size or len(entries)
        headers = {}
        if start + size < len(entries):
            host = self.headers.get("Host")
            nxt = "http://%s/api/models/%s/tree/main?recursive=true&cursor=%d" % (host, repo, start + size)
            headers["Link"] = '<%s>; rel="next"' % nxt
        self.reply(200, json.dumps(entries[start:start + size]).encode(), headers)

    def resolve(self, repo, name):
        if not self.authorized(repo):
            return self.error(401, "Invalid credentials in Authorization header")
        if repo not in self.server.repos:
            return self.error(404, "Repository not found")
        f = self.server.repos[repo].get(name)
        if f is None:
            return self.error(404, "Entry not found")
        sha = f["sha256"]
        if STATE["bad_sha"]:
            sha = hashlib.sha256(b"something else").hexdigest()
        location = "http://%s:%d/cdn/%s/%s" % (self.server.redirect_host, self.server.server_port,
                                              repo, urllib.parse.quote(name))
        self.reply(302, b"", {"Location": location, "X-Linked-Etag": '"%s"' % sha,
                              "X-Linked-Size": str(len(f["data"])), "ETag": '"%s"' % sha[:40]})

    def cdn(self, repo, name):
        f = self.server.repos.get(repo, {}).get(name)
        if f is None:
            return self.error(404, "no such object")
        data = f["data"]
        total = len(data)
        start = 0
        rng = self.headers.get("Range")
        if rng and not STATE["no_range"]:
            spec = rng.split("=", 1)[1]
            first, _, last = spec.partition("-")
            start = int(first)
            end = int(last) if last else total - 1
            if start >= total:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % total)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.record(0)
                return
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(body) - 1, total))
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"cdn-%s"' % hashlib.md5(data).hexdigest())
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with LOCK:
            drop = STATE["drop_once"] and start == 0
            STATE["drop_once"] = STATE["drop_once"] and not drop
        if drop:
            half = body[:len(body) // 2]
            self.wfile.write(half)
            self.wfile.flush()
            self.record(len(half))
            self.close_connection = True
            return
        self.wfile.write(body)
        self.record(len(body))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", action="append", default=[], help="OWNER/NAME=DIR")
    ap.add_argument("--private", action="append", default=[])
    ap.add_argument("--token", default="")
    ap.add_argument("--redirect-host", default="localhost")
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.repos = load_repos(args.repo)
    server.private = set(args.private)
    server.token = args.token
    server.redirect_host = args.redirect_host
    server.page_size = args.page_size
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_port))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
