"""The stdin/stdout protocol, exercised on a real child process."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from v7stats.server import handle_line, serve

PKG_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def proc():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen(
        [sys.executable, "-m", "v7stats.server"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )
    yield p
    if p.poll() is None:
        p.kill()
        p.wait(timeout=5)


def ask(p, line: str) -> dict:
    p.stdin.write(line + "\n")
    p.stdin.flush()
    out = p.stdout.readline()
    assert out, f"no response; stderr: {p.stderr.read()}"
    return json.loads(out)


def test_stats_request(proc):
    resp = ask(proc, json.dumps({"id": 1, "op": "stats",
                                 "groups": {"b": [1, 2, 3], "a": [10.0]}}))
    assert resp["id"] == 1
    assert "error" not in resp
    kinds = resp["kinds"]
    assert [k["kind"] for k in kinds] == ["a", "b"]
    b = kinds[1]
    assert b["count"] == 3 and b["mean"] == 2.0 and b["p50"] == 2.0
    assert set(b) == {"kind", "count", "mean", "min", "max", "p50", "p95", "stddev"}


def test_ping(proc):
    resp = ask(proc, '{"id": "x", "op": "ping"}')
    assert resp["id"] == "x" and resp["ok"] is True


@pytest.mark.parametrize("line,req_id", [
    ("this is not json", None),
    ("[1, 2]", None),
    ('{"id": 3, "op": "nope"}', 3),
    ('{"id": 4, "op": "stats"}', 4),
    ('{"id": 5, "op": "stats", "groups": {"a": ["x"]}}', 5),
    ('{"id": 6, "op": "stats", "groups": {"a": [1e308, 1e308]}}', 6),
])
def test_malformed_request_gets_error_and_process_survives(proc, line, req_id):
    resp = ask(proc, line)
    assert resp["id"] == req_id
    assert isinstance(resp["error"], str) and resp["error"]
    # Still alive and answering.
    assert ask(proc, '{"id": 99, "op": "ping"}')["ok"] is True
    assert proc.poll() is None


def test_many_requests_in_order(proc):
    for i in range(50):
        resp = ask(proc, json.dumps({"id": i, "op": "stats", "groups": {"k": [i, i + 1]}}))
        assert resp["id"] == i
        assert resp["kinds"][0]["mean"] == i + 0.5


def test_exits_cleanly_on_eof(proc):
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_serve_in_process_skips_blank_lines():
    out = io.StringIO()
    serve(io.StringIO('\n{"id":1,"op":"ping"}\n  \n'), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == 1


def test_handle_line_never_raises():
    assert "error" in handle_line('{"id": 1, "op": "stats", "groups": {"a": 5}}')
