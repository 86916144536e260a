"""Descriptive statistics over plain lists of floats (stdlib only).

Definitions (the Rust side and the tests rely on them):

- ``mean``: arithmetic mean (``statistics.fmean``).
- ``min`` / ``max``: smallest / largest value.
- ``p50`` / ``p95``: percentiles by linear interpolation between closest ranks
  (rank ``q * (n - 1)`` on the sorted values; NumPy's default "linear" method, equal to
  ``statistics.quantiles(method="inclusive")``). With one value every percentile is that value.
- ``stddev``: population standard deviation (``statistics.pstdev``); 0 for one value.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Mapping, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Percentile ``q`` (0..1) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile {q!r} outside 0..1")
    rank = q * (len(sorted_values) - 1)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(sorted_values[lo])
    frac = rank - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def _check_values(values: Iterable[object]) -> list[float]:
    out: list[float] = []
    for v in values:
        # bool is an int subclass: refuse it, it is never a measurement.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"value {v!r} is not a number")
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"value {v!r} is not finite")
        out.append(f)
    return out


def summarize(kind: str, values: Iterable[object]) -> dict:
    """Statistics of one kind. Raises ``ValueError`` on an empty list or a non-number."""
    vals = sorted(_check_values(values))
    if not vals:
        raise ValueError(f"kind {kind!r} has no values")
    return {
        "kind": kind,
        "count": len(vals),
        "mean": statistics.fmean(vals),
        "min": vals[0],
        "max": vals[-1],
        "p50": percentile(vals, 0.50),
        "p95": percentile(vals, 0.95),
        "stddev": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
    }


def summarize_groups(groups: Mapping[str, Iterable[object]]) -> list[dict]:
    """Statistics of every non-empty group, sorted by kind."""
    out = []
    for kind in sorted(groups):
        if not isinstance(kind, str):
            raise ValueError(f"kind {kind!r} is not a string")
        values = groups[kind]
        if not isinstance(values, list):
            raise ValueError(f"values of kind {kind!r} are not a list")
        if values:
            out.append(summarize(kind, values))
    return out
