#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of an OCI registry, for the `cargo xtask pull` tests
and benchmark. Standard library only.

    python3 faultproxy.py --upstream 127.0.0.1:5000 [--port 0] [--delay-ms 200]
                          [--fail-rate 0.3] [--seed 1]
                          [--tls-cert server.crt --tls-key server.key] [--upstream-ca ca.crt]

Prints `PORT <n>` on stdout once listening.

TLS (Python's ssl module): with --tls-cert/--tls-key it serves registry requests over TLS only;
a plain-HTTP registry request gets Go's answer to plain HTTP on a TLS port (400 "Client sent an
HTTP request to an HTTPS server."). The control endpoints below answer on the same port in plain
HTTP as well (the first byte tells a ClientHello from a request line), so the tests drive a TLS
proxy like a plain one. With --upstream-ca it reaches the upstream over TLS, trusting that CA
(and checking the upstream's name) instead of the system's store. Control endpoints (never forwarded):

    POST /__faults   JSON {"rules": [...], "delay_ms": 0, "fail_rate": 0.0, "seed": 1}
                     replaces the fault configuration. A rule:
                     {"path": "regex", "method": "GET", "times": 2,   # times: -1 = forever
                      "action": "status", "status": 503, "retry_after": "2"}
                     actions: status (answer with `status`, optional Retry-After header),
                              reset (close the connection with RST before answering),
                              cut (send headers and half the body, then RST),
                              delay (sleep `ms` then forward).
                     The first matching rule with times left applies.
    GET  /__log      JSON list of {"t", "method", "path", "status", "fault"} for every request.
    GET  /__find?method=&path=REGEX&status=&fault=&after=SECS   {"count": n, "first": t}
    GET  /__overlap  {"max": n}: most repositories with requests in flight at once (first..last).
    POST /__clear    empties the log.

fail_rate: that share of requests (seeded random) fails with a 503, a reset or a cut blob;
           "fail_kinds" (default ["status", "reset", "cut"]) narrows the mix, e.g. ["status",
           "reset"] for half 503, half reset; "fail_v2": true lets the `/v2/` probe fail too
           (by default it never fails at random).
delay_ms: added to every forwarded request.
"""

import argparse
import http.client
import json
import random
import re
import socket
import ssl
import struct
import sys
import threading
import urllib.parse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"rules": [], "delay_ms": 0, "fail_rate": 0.0, "rng": random.Random(1), "log": [],
         "fail_kinds": ["status", "reset", "cut"], "fail_v2": False}
ALL_KINDS = ["status", "reset", "cut"]
UPSTREAM = ("127.0.0.1", 5000)
# An ssl.SSLContext when the upstream speaks TLS.
UPSTREAM_TLS = None
T0 = time.time()


def rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def record(self, status, fault):
        with LOCK:
            STATE["log"].append(
                {"t": round(time.time() - T0, 4), "method": self.command, "path": self.path,
                 "status": status, "fault": fault})

    def reply_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def control(self):
        if self.path == "/__log":
            with LOCK:
                return self.reply_json(list(STATE["log"]))
        if self.path.startswith("/__find"):
            # /__find?method=GET&path=REGEX&status=503&fault=cut&after=1.5 -> {"count", "first"}
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            one = lambda k: q[k][0] if k in q else None
            with LOCK:
                hits = [e for e in STATE["log"]
                        if (one("method") is None or e["method"] == one("method"))
                        and (one("path") is None or re.search(one("path"), e["path"]))
                        and (one("status") is None or str(e["status"]) == one("status"))
                        and (one("fault") is None or str(e["fault"]) == one("fault"))
                        and (one("after") is None or e["t"] > float(one("after")))]
            return self.reply_json({"count": len(hits), "first": hits[0]["t"] if hits else None})
        if self.path == "/__overlap":
            # The most repositories whose requests (first to last) overlapped in time.
            spans = {}
            with LOCK:
                for e in STATE["log"]:
                    m = re.match(r"^/v2/(.+)/(manifests|blobs)/", e["path"])
                    if m:
                        a, b = spans.get(m.group(1), (e["t"], e["t"]))
                        spans[m.group(1)] = (min(a, e["t"]), max(b, e["t"]))
            points = sorted([(a, 1) for a, _ in spans.values()] + [(b, -1) for _, b in spans.values()],
                            key=lambda p: (p[0], -p[1]))
            cur = best = 0
            for _, d in points:
                cur += d
                best = max(best, cur)
            return self.reply_json({"max": best, "repositories": len(spans)})
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__clear":
            with LOCK:
                STATE["log"].clear()
            return self.reply_json({"ok": True})
        if self.path == "/__faults":
            cfg = json.loads(body or b"{}")
            with LOCK:
                STATE["rules"] = [dict(r) for r in cfg.get("rules", [])]
                STATE["delay_ms"] = cfg.get("delay_ms", 0)
                STATE["fail_rate"] = cfg.get("fail_rate", 0.0)
                STATE["rng"] = random.Random(cfg.get("seed", 1))
                STATE["fail_kinds"] = list(cfg.get("fail_kinds", ALL_KINDS))
                STATE["fail_v2"] = bool(cfg.get("fail_v2", False))
            return self.reply_json({"ok": True})
        return self.reply_json({"error": "unknown control path"}, 404)

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk

    def pick_fault(self):
        with LOCK:
            for rule in STATE["rules"]:
                if rule.get("times", -1) == 0:
                    continue
                if "method" in rule and rule["method"] != self.command:
                    continue
                if "path" in rule and not re.search(rule["path"], self.path):
                    continue
                if rule.get("times", -1) > 0:
                    rule["times"] -= 1
                return dict(rule)
            rate = STATE["fail_rate"]
            if rate and (self.path != "/v2/" or STATE["fail_v2"]) and STATE["rng"].random() < rate:
                kind = STATE["rng"].choice(STATE["fail_kinds"])
                return {"action": kind, "status": 503, "random": True}
            return None

    def handle_any(self):
        if self.path.startswith("/__"):
            return self.control()
        if self.server.tls is not None and not isinstance(self.connection, ssl.SSLSocket):
            # What Go's TLS servers (docker-registry among them) answer to plain HTTP.
            msg = b"Client sent an HTTP request to an HTTPS server.\n"
            self.send_response(400)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(msg)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(msg)
            self.close_connection = True
            return  # not logged: the log is of what reached the registry side, all over TLS
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # podman push uploads layers chunked; forwarded whole, with a Content-Length.
            body = self.read_chunked()
        fault = self.pick_fault()
        delay = STATE["delay_ms"]
        if delay:
            time.sleep(delay / 1000.0)
        action = fault["action"] if fault else None
        if action == "delay":
            self.record(0, "delaying")
            time.sleep(fault.get("ms", 1000) / 1000.0)
            action = None
        if action == "status":
            status = int(fault.get("status", 503))
            code, text = {401: ("UNAUTHORIZED", "authentication required"),
                          403: ("DENIED", "requested access to the resource is denied"),
                          404: ("MANIFEST_UNKNOWN", "manifest unknown"),
                          429: ("TOOMANYREQUESTS", "too many requests")}.get(status, ("UNAVAILABLE", "service unavailable"))
            msg = json.dumps({"errors": [{"code": code, "message": text}]}).encode()
            self.send_response(status)
            if fault.get("retry_after") is not None:
                self.send_header("Retry-After", str(fault["retry_after"]))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            self.record(status, "status")
            return
        if action == "reset":
            self.record(0, "reset")
            self.close_connection = True
            rst_close(self.connection)
            return
        try:
            if UPSTREAM_TLS is not None:
                conn = http.client.HTTPSConnection(*UPSTREAM, timeout=60, context=UPSTREAM_TLS)
            else:
                conn = http.client.HTTPConnection(*UPSTREAM, timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            # Repeated headers (podman sends one Accept per manifest type) are kept as they are.
            for k, v in self.headers.items():
                if k.lower() not in ("connection", "keep-alive", "content-length", "transfer-encoding"):
                    conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            self.record(502, "upstream: %s" % e)
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        finally:
            try:
                conn.close()
            except Exception:
                pass
        # A blob can only be cut when it has a body worth cutting.
        if action == "cut" and (self.command != "GET" or len(data) < 2):
            action = None
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                continue
            self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            self.record(resp.status, None)
            return
        if action == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.record(resp.status, "cut")
            self.close_connection = True
            rst_close(self.connection)
            return
        self.wfile.write(data)
        self.record(resp.status, None)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    """Plain HTTP, or TLS when `tls` is a server SSLContext; the handshake runs in the
    connection's own thread, so a slow client never holds up the others."""

    daemon_threads = True
    request_queue_size = 128
    tls = None

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request.settimeout(30)
                first = request.recv(1, socket.MSG_PEEK)
                if first[:1] == b"\x16":  # a TLS handshake record: a ClientHello
                    request = self.tls.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        self.RequestHandlerClass(request, client_address, self)
        request.close()


def main():
    global UPSTREAM, UPSTREAM_TLS
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="the certificate's key (PEM)")
    ap.add_argument("--upstream-ca", help="the upstream speaks TLS; trust this CA (PEM) only")
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    UPSTREAM = (host, int(port))
    STATE["delay_ms"] = a.delay_ms
    STATE["fail_rate"] = a.fail_rate
    STATE["rng"] = random.Random(a.seed)
    if a.upstream_ca:
        UPSTREAM_TLS = ssl.create_default_context(cafile=a.upstream_ca)
    srv = Server(("127.0.0.1", a.port), Handler)
    if a.tls_cert:
        srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.tls.load_cert_chain(a.tls_cert, a.tls_key)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
