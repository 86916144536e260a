#!/usr/bin/env python3
"""STAND-IN for backend's /api/*, for checking the dashboard in a real browser by hand ONLY.

It is not backend and proves nothing about backend: it answers the way docs/contracts.md says
backend does, from memory, so that `test/browser/dashboard_test.py` can be tried against
`npx vite preview` without a deployed stack (scripts/browser-check-standin.sh wires the three
together). The shipped browser test never starts it; against a deployed stack it talks to the real
backend through the real nginx.

  GET  /api/health                  the six services of the contract, all ok
  GET  /api/stats?series_minutes=N  the stored events per kind, with per_minute when N > 0
  POST /api/events                  202 {"id"} (a repeated id is stored once), 400 on a bad body;
                                    a kind starting with "standin503" gets one 503 with
                                    Retry-After: 1 per id first, to see the form's retry path
  GET  /healthz, /readyz            200

Usage: standin_api.py PORT   (listens on 127.0.0.1 only)
"""
import json
import re
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KIND = re.compile(r"^[a-z0-9_.-]{1,64}$")
ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
LOCK = threading.Lock()
EVENTS = {}  # id -> {"kind", "value", "ts"}
FAILED_ONCE = set()
SERVICES = ["backend", "nats", "analytics-engine", "clickhouse", "python", "prometheus"]


def stats(series_minutes):
    now_ms = int(time.time() * 1000)
    end = now_ms // 60000 * 60000
    with LOCK:
        events = list(EVENTS.values())
    by_kind = {}
    for e in events:
        by_kind.setdefault(e["kind"], []).append(e)
    kinds = []
    for kind in sorted(by_kind):
        evs = by_kind[kind]
        values = sorted(e["value"] for e in evs)
        entry = {
            "kind": kind, "count": len(evs), "mean": statistics.fmean(values),
            "min": values[0], "max": values[-1], "p50": statistics.median(values),
            "p95": values[min(len(values) - 1, int(0.95 * len(values)))],
            "stddev": statistics.pstdev(values),
        }
        if series_minutes > 0:
            start = end - (series_minutes - 1) * 60000
            counts = [0] * series_minutes
            for e in evs:
                i = (e["ts"] // 60000 * 60000 - start) // 60000
                if 0 <= i < series_minutes:
                    counts[i] += 1
            entry["per_minute"] = [
                {"minute_unix_ms": start + i * 60000, "count": c} for i, c in enumerate(counts)
            ]
        kinds.append(entry)
    return {"total_events": len(events), "kinds": kinds, "computed_at_unix_ms": now_ms}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path in ("/healthz", "/readyz"):
            self._send(200, {"status": "ok"})
        elif url.path == "/api/health":
            self._send(200, {"services": [
                {"name": n, "ok": True, "detail": "stand-in: not a real check"} for n in SERVICES]})
        elif url.path == "/api/stats":
            q = parse_qs(url.query)
            try:
                minutes = int((q.get("series_minutes") or ["0"])[0] or 0)
            except ValueError:
                self._send(400, {"error": "series_minutes: must be an integer"})
                return
            self._send(200, stats(minutes))
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urlsplit(self.path).path != "/api/events":
            self._send(404, {"error": "not found"})
            return
        try:
            ev = json.loads(raw)
            kind, value = ev["kind"], float(ev["value"])
            eid = ev.get("id") or "standin-%d" % time.time_ns()
            assert isinstance(kind, str) and KIND.match(kind) and ID.match(eid)
        except Exception:
            self._send(400, {"error": "stand-in: kind, value or id invalid"})
            return
        with LOCK:
            if kind.startswith("standin503") and eid not in FAILED_ONCE:
                FAILED_ONCE.add(eid)
                self._send(503, {"error": "stand-in: NATS JetStream did not store the event"},
                           [("Retry-After", "1")])
                return
            EVENTS.setdefault(eid, {"kind": kind, "value": value, "ts": int(time.time() * 1000)})
        self._send(202, {"id": eid})

    def log_message(self, fmt, *args):
        sys.stderr.write("standin_api: %s %s\n" % (self.command, self.path))


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
