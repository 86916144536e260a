#!/usr/bin/env python3
"""Stand-in for backend, used only by nginx-smoke.sh to exercise nginx.conf.

Answers like backend is documented to (docs/contracts.md): /healthz 200, /readyz 503 naming
analytics-engine, GET /api/stats, POST /api/events (202 with an id, 400 with an error). It logs the
path of every request it gets so the smoke test can check what nginx forwarded.
Usage: standin_backend.py PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Standin-Path", self.path)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self._send(200, "ok", "text/plain")
        elif self.path == "/readyz":
            self._send(503, {"ready": False, "nats": "ok", "analytics_engine": "connection refused"})
        elif self.path.startswith("/api/stats"):
            self._send(200, {"total_events": "3", "computed_at_unix_ms": "0", "kinds": [
                {"kind": "page_view", "count": "3", "mean": 1.5, "min": 1, "max": 2,
                 "p50": 1.5, "p95": 1.95, "stddev": 0.5}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/api/events":
            self._send(404, {"error": "not found"})
            return
        try:
            event = json.loads(raw)
            assert isinstance(event.get("kind"), str) and event["kind"]
        except Exception:
            self._send(400, {"error": "kind is required"})
            return
        if event["kind"] == "rejected":  # lets a test see a 400 coming through the page
            self._send(400, {"error": "kind \"rejected\" is refused by the stand-in"})
            return
        self._send(202, {"id": "standin-1"})

    def log_message(self, fmt, *args):
        sys.stderr.write("standin: %s %s\n" % (self.command, self.path))


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
