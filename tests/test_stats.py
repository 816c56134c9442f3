import math

import numpy as np
import pytest
import scipy.stats

from ancho.expressions import Goal, Target
from ancho.stats import Running, describe, t975, wilson


@pytest.mark.parametrize("df", [1, 2, 5, 10, 29, 30, 31, 50, 99, 1000, 10**6])
def test_t_quantile_matches_scipy(df):
    assert t975(df) == pytest.approx(scipy.stats.t.ppf(0.975, df), rel=4e-8)


def test_describe_numbers_matches_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = rng.exponential(2.0, size=5001)
    s = describe(x.copy(), "float")
    assert s["count"] == 5001
    assert s["mean"] == pytest.approx(x.mean())
    assert s["std"] == pytest.approx(x.std(ddof=1))
    assert s["sem"] == pytest.approx(scipy.stats.sem(x))
    lo, hi = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    assert s["ci95"] == pytest.approx([lo, hi])
    for q in (5, 25, 50, 75, 95):
        assert s[f"p{q}"] == pytest.approx(np.percentile(x, q))
    assert s["min"] == x.min() and s["max"] == x.max()


def test_describe_ints_keep_int_extremes():
    s = describe(np.array([3, 1, 2], dtype=np.int64), "int")
    assert s["min"] == 1 and isinstance(s["min"], int) and s["max"] == 3
    assert s["p50"] == 2.0


def test_bools_are_proportions_with_wilson_interval():
    b = np.array([True] * 30 + [False] * 70)
    s = describe(b.copy(), "bool")
    assert s["mean"] == 0.3 and s["min"] == 0 and s["max"] == 1
    assert s["std"] == pytest.approx(np.std(b.astype(float), ddof=1))
    # Wilson interval, checked against its textbook formula via scipy's binomtest
    ci = scipy.stats.binomtest(30, 100).proportion_ci(0.95, method="wilson")
    assert s["ci95"] == pytest.approx([ci.low, ci.high])


def test_wilson_at_the_edges():
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0 < hi < 0.2
    lo, hi = wilson(20, 20)
    assert hi == 1.0 and 0.8 < lo < 1
    assert wilson(0, 0) is None
    for n in (1, 7, 100, 10_000, 1_000_000, 123_457):  # (100 gave 3.5e-18; big n a high end of 0.9999999999999999)
        ref = scipy.stats.binomtest(0, n).proportion_ci(0.95, method="wilson")
        lo, hi = wilson(0, n)
        assert lo == 0.0 and hi == pytest.approx(ref.high, rel=1e-12)
        ref = scipy.stats.binomtest(n, n).proportion_ci(0.95, method="wilson")
        lo, hi = wilson(n, n)
        assert hi == 1.0 and lo == pytest.approx(ref.low, rel=1e-12)


def test_nan_is_left_out_and_inf_becomes_null():
    s = describe(np.array([1.0, np.nan, 3.0]), "float")
    assert s["count"] == 2 and s["mean"] == 2.0
    s = describe(np.array([1.0, np.inf]), "float")
    assert s["mean"] is None and s["max"] is None and s["min"] == 1.0


def test_tiny_columns():
    s = describe(np.array([5.0]), "float")
    assert s["count"] == 1 and s["mean"] == 5.0 and s["std"] is None and s["ci95"] is None
    s = describe(np.array([], dtype=float), "float")
    assert s["count"] == 0 and s["mean"] is None


def test_running_merge_equals_batch():
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, size=10_000)
    r = Running()
    t = Target.parse("x>=4")
    for part in np.array_split(x, 37):
        r.add(part, [t])
    assert r.n == 10_000
    assert r.mean == pytest.approx(x.mean(), rel=1e-12)
    assert r.m2 / (r.n - 1) == pytest.approx(x.var(ddof=1), rel=1e-10)
    assert r.hits["x>=4"] == int((x >= 4).sum())
    g = Goal.parse("mean(x)+-0.05")
    assert r.half_width(g) == pytest.approx(t975(9999) * x.std(ddof=1) / math.sqrt(10_000))
    gp = Goal.parse("p(x>=4)+-0.01")
    lo, hi = wilson(int((x >= 4).sum()), 10_000)
    assert r.half_width(gp) == pytest.approx((hi - lo) / 2)


def test_mean_of_a_constant_column_stays_within_min_and_max():
    x = np.full(10, 4.877057549928611)
    s = describe(x.copy(), "float")
    assert s["min"] <= s["mean"] <= s["max"]


def test_outputs_described_beforehand_stay_theirs_after_a_streamed_one(monkeypatch):
    """A column too long to hold, with a target on it, is streamed; the outputs described beforehand (a study's,
    together) are still looked up in the caller's dict afterwards, not in the streamed output's statistics (an output
    named ``count`` got that column's count, a bare number, as its summary)."""
    import ancho.stats as stats_module
    from ancho.expressions import Target
    from ancho.stats import build_summary, describe

    monkeypatch.setattr(stats_module, "_too_long", lambda n: True)
    x, count = np.arange(10.0), np.arange(10.0) * 2
    described = {"x": describe(x.copy(), "float"), "count": describe(count.copy(), "float")}
    record = {"id": "r1", "status": "succeeded", "done": 10, "seed": 1, "params": {}}
    summary = build_summary(
        record,
        {"x": "float", "count": "float"},
        {"x": x, "count": count}.__getitem__,
        [Target.parse("x>4")],
        read_blocks=lambda name: iter([{"x": x, "count": count}[name]]),
        described=described,
    )
    assert summary["outputs"]["count"] == described["count"] and summary["outputs"]["x"] == described["x"]
    assert summary["targets"][0]["probability"] == 0.5


def test_clean_makes_arrays_json_safe_as_value_by_value():
    """Arrays (a trajectory's per-step statistics) are cleaned by NumPy: the same Python values, in the same nesting,
    as cleaning them value by value; NaN and ±inf become None."""
    import json

    from ancho.stats import clean

    def by_value(x):
        if isinstance(x, list):
            return [by_value(v) for v in x]
        return x if not isinstance(x, float) or np.isfinite(x) else None

    cases = [
        np.array([0.5, np.nan, np.inf, -np.inf, -0.0, 1e308]),
        np.array([[1.0, np.nan], [2.0, 3.0]]),
        np.arange(5.0),
        np.array([1, -2, 2**62], dtype=np.int64),
        np.array([7], dtype=np.uint8),
        np.array([True, False]),
        np.array([0.1, np.nan], dtype=np.float32),
        np.empty(0),
    ]
    for x in cases:
        got = clean(x)
        assert got == by_value(x.tolist()) and [type(v) for v in np.ravel(got)] == [
            type(v) for v in np.ravel(by_value(x.tolist()))
        ]
        json.dumps(got, allow_nan=False)
    assert clean({"mean": np.array([np.nan, 2.0])}) == {"mean": [None, 2.0]}
