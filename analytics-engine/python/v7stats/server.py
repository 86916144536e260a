"""The statistics component's process: newline-delimited JSON over stdin/stdout.

The analytics-engine (Rust) starts this module once, as ``$V7_PYTHON -m v7stats.server``,
and restarts it when it dies. Since issue 10 the engine's ``GetStats`` is computed by
ClickHouse; ``stats`` here is the reference implementation of the same definitions (the
engine's integration tests compare the two) and ``ping`` feeds the engine's ``Health`` RPC.
Protocol, one JSON object per line (UTF-8, ``\\n`` terminated):

Request (stdin)::

    {"id": 7, "op": "stats", "groups": {"page_view": [1.5, 2.0], "click": [3.0]}}
    {"id": 8, "op": "ping"}

- ``id``: any JSON scalar chosen by the caller, echoed back unchanged (``null`` if absent
  or if the line was not a JSON object).
- ``op``: ``"stats"`` or ``"ping"``.
- ``groups`` (``stats`` only): object mapping a kind to a list of finite numbers.

Response (stdout), exactly one line per request line, in request order::

    {"id": 7, "kinds": [{"kind": "click", "count": 1, "mean": 3.0, "min": 3.0, "max": 3.0,
                         "p50": 3.0, "p95": 3.0, "stddev": 0.0}, ...]}
    {"id": 8, "ok": true, "version": "0.1.0"}
    {"id": 9, "error": "human readable reason"}

- ``kinds`` is sorted by kind; kinds with an empty list are left out.
- Statistic definitions are in :mod:`v7stats.stats` (linear-interpolated percentiles,
  population standard deviation).
- A malformed line (not JSON, unknown op, bad ``groups``) gets an ``error`` response; the
  process keeps running. Blank lines are ignored.
- The process exits 0 when stdin is closed (that is how the engine stops it). Nothing but
  responses is written to stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import IO

from . import __version__
from .stats import summarize_groups


def handle_line(line: str) -> dict:
    """Turn one request line into one response object (never raises)."""
    try:
        req = json.loads(line)
    except ValueError as exc:
        return {"id": None, "error": f"invalid JSON: {exc}"}
    if not isinstance(req, dict):
        return {"id": None, "error": "request must be a JSON object"}
    req_id = req.get("id")
    op = req.get("op")
    try:
        if op == "ping":
            return {"id": req_id, "ok": True, "version": __version__}
        if op == "stats":
            groups = req.get("groups")
            if not isinstance(groups, dict):
                return {"id": req_id, "error": "`groups` must be an object of kind -> [numbers]"}
            return {"id": req_id, "kinds": summarize_groups(groups)}
        return {"id": req_id, "error": f"unknown op {op!r}"}
    except (ValueError, TypeError) as exc:
        return {"id": req_id, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad request must not kill the process
        return {"id": req_id, "error": f"internal error: {type(exc).__name__}: {exc}"}


def _scalar_id(value: object) -> object:
    return value if isinstance(value, (str, int, type(None))) and not isinstance(value, bool) else None


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """Answer request lines from ``stdin`` until EOF."""
    for line in stdin:
        if not line.strip():
            continue
        resp = handle_line(line)
        try:
            out = json.dumps(resp, allow_nan=False, separators=(",", ":"))
        except (ValueError, TypeError) as exc:
            # e.g. a mean that overflowed to inf: JSON cannot carry it.
            out = json.dumps({"id": _scalar_id(resp.get("id")), "error": f"unencodable result: {exc}"})
        stdout.write(out + "\n")
        stdout.flush()


def main() -> int:
    try:
        serve(sys.stdin, sys.stdout)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The engine went away; nothing left to answer.
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
