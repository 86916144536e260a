import math
import statistics

import pytest

from v7stats.stats import percentile, summarize, summarize_groups


def test_percentile_linear_interpolation():
    vals = [1.0, 2.0, 3.0, 4.0]
    assert percentile(vals, 0.0) == 1.0
    assert percentile(vals, 1.0) == 4.0
    assert percentile(vals, 0.5) == pytest.approx(2.5)
    assert percentile(vals, 0.95) == pytest.approx(3.85)


def test_percentile_matches_statistics_inclusive():
    vals = sorted([5.0, 1.0, 9.0, 7.5, 3.25, 2.0, 8.0])
    cuts = statistics.quantiles(vals, n=100, method="inclusive")
    assert percentile(vals, 0.50) == pytest.approx(cuts[49])
    assert percentile(vals, 0.95) == pytest.approx(cuts[94])


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_summarize_basic():
    s = summarize("k", [1, 2, 3, 4, 10])
    assert s["kind"] == "k"
    assert s["count"] == 5
    assert s["mean"] == pytest.approx(4.0)
    assert s["min"] == 1.0 and s["max"] == 10.0
    assert s["p50"] == 3.0
    assert s["p95"] == pytest.approx(8.8)
    assert s["stddev"] == pytest.approx(statistics.pstdev([1, 2, 3, 4, 10]))


def test_summarize_single_value():
    s = summarize("one", [2.5])
    assert s == {"kind": "one", "count": 1, "mean": 2.5, "min": 2.5, "max": 2.5,
                 "p50": 2.5, "p95": 2.5, "stddev": 0.0}


def test_summarize_unsorted_input():
    assert summarize("k", [3.0, 1.0, 2.0])["p50"] == 2.0


@pytest.mark.parametrize("bad", [[], ["x"], [True], [math.inf], [math.nan], [None]])
def test_summarize_rejects(bad):
    with pytest.raises(ValueError):
        summarize("k", bad)


def test_summarize_groups_sorted_and_skips_empty():
    out = summarize_groups({"b": [1.0], "a": [2.0, 4.0], "empty": []})
    assert [k["kind"] for k in out] == ["a", "b"]
    assert out[0]["mean"] == 3.0


def test_summarize_groups_rejects_non_list():
    with pytest.raises(ValueError):
        summarize_groups({"a": 1.0})
