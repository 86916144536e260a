#!/usr/bin/env python3
"""A caching mirror of crates.io for the `build --mirror cargo=...` tests: a sparse registry
served over plain HTTP (builds cannot use HTTPS to crates.io from inside a container: the host
trusts a CA the containers do not). Standard library only.

    python3 cargo_mirror.py --cache DIR --log FILE [--port 0] [--bind 0.0.0.0]

Prints `PORT <n>` on stdout once listening. Cargo is given `sparse+http://HOST:PORT/index/`.

    GET /index/config.json        {"dl": "http://<Host of the request>/dl", "api": null}: the
                                  downloads come back here, under the name the client used
                                  (127.0.0.1 from the host, host.containers.internal from builds)
    GET /index/<path>             https://index.crates.io/<path>, cached in DIR/index/
    GET /dl/<crate>/<version>/download
                                  https://static.crates.io/crates/<crate>/<crate>-<version>.crate,
                                  cached in DIR/dl/
    HEAD on any of them           the same status, no body (what `cargo xtask mirrors` probes)

Every request is one line of FILE: `<client> <method> <path> <status> <hit|miss|local>`.
Upstream answers 404/410/451 are passed on (cargo reads them as "no such crate"); other upstream
failures are 502 with the reason in the body. HTTPS to the upstream trusts SSL_CERT_FILE, else
/etc/ssl/certs/ca-certificates.crt (the host's bundle, which has this network's extra CA).
"""

import argparse
import json
import os
import re
import ssl
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INDEX = "https://index.crates.io/"
STATIC = "https://static.crates.io/crates/"
LOCK = threading.Lock()
CTX = None
CACHE = "."
LOG = None


def upstream_context():
    cafile = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(cafile):
        return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()


def fetch(url, path):
    """(status, body, source) for url, cached at path."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return 200, f.read(), "hit"
    req = urllib.request.Request(url, headers={"User-Agent": "v7-cargo-mirror-test"})
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=60) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        if e.code in (404, 410, 451):
            return e.code, b"", "miss"
        return 502, ("upstream %s: HTTP %d" % (url, e.code)).encode(), "miss"
    except Exception as e:  # noqa: BLE001 - any failure is the upstream's, reported as 502
        return 502, ("upstream %s: %s" % (url, e)).encode(), "miss"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.%d.tmp" % (path, threading.get_ident())
    with open(tmp, "wb") as f:
        f.write(body)
    os.replace(tmp, path)
    return 200, body, "miss"


SAFE = re.compile(r"^[A-Za-z0-9._/-]+$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, source, ctype="application/octet-stream"):
        with LOCK:
            with open(LOG, "a") as f:
                f.write("%s %s %s %d %s\n" % (self.client_address[0], self.command, self.path, status, source))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if ".." in path or not SAFE.match(path):
            return self.answer(400, b"bad path", "local")
        if path == "/index/config.json":
            host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
            doc = {"dl": "http://%s/dl" % host, "api": None}
            return self.answer(200, json.dumps(doc).encode(), "local", "application/json")
        if path.startswith("/index/"):
            rel = path[len("/index/"):]
            status, body, source = fetch(INDEX + rel, os.path.join(CACHE, "index", rel))
            return self.answer(status, body, source, "text/plain")
        m = re.match(r"^/dl/([A-Za-z0-9_-]+)/([A-Za-z0-9.+_-]+)/download$", path)
        if m:
            name, version = m.groups()
            url = "%s%s/%s-%s.crate" % (STATIC, name, name, version)
            status, body, source = fetch(url, os.path.join(CACHE, "dl", name, "%s-%s.crate" % (name, version)))
            return self.answer(status, body, source)
        return self.answer(404, b"not found", "local")

    do_HEAD = do_GET


def main():
    global CTX, CACHE, LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="0.0.0.0")
    args = ap.parse_args()
    CTX, CACHE, LOG = upstream_context(), args.cache, args.log
    open(LOG, "a").close()
    srv = ThreadingHTTPServer((args.bind, args.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
