"""The summary's percentiles (ancho.stats._percentiles) are ``np.percentile``'s, bit for bit, for every kind of column."""

from __future__ import annotations

import numpy as np
import pytest

from ancho.stats import PERCENTILES, _percentiles, describe


def _columns():
    rng = np.random.default_rng(20)
    for n in [*range(1, 40), 97, 1000, 4096, 100_003]:
        yield f"normal {n}", rng.standard_normal(n)
        yield f"payoff {n}", np.maximum(rng.lognormal(0, 0.3, n) - 1.05, 0.0)  # many exact ties at 0
        yield f"int {n}", rng.integers(-(2**62), 2**62, size=n)
        yield f"small int {n}", rng.integers(0, 4, size=n)
        yield f"bool {n}", (rng.random(n) < 0.3).view(np.uint8)  # how describe passes a bool column
    yield "infinities", np.array([-np.inf, -1.0, 0.0, 2.5, np.inf, np.inf])
    yield "all inf", np.full(7, np.inf)
    yield "signed zeros", np.array([0.0, -0.0, 0.0, -0.0, 1e-300])
    yield "huge", np.array([1.7e308, -1.7e308, 1.7e308, 3.0])
    yield "subnormal", np.array([5e-324, 1e-323, 0.0, 2e-323])


@pytest.mark.parametrize("name,column", list(_columns()), ids=lambda v: v if isinstance(v, str) else "")
def test_percentiles_are_numpys_bit_for_bit(name, column):
    with np.errstate(invalid="ignore"):  # inf - inf: NaN in both, as describe reports it (null)
        expected = np.percentile(column.copy(), PERCENTILES)
        got = _percentiles(column.copy())
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes(), (name, got, expected)


@pytest.mark.parametrize("name,column", list(_columns()), ids=lambda v: v if isinstance(v, str) else "")
def test_percentiles_from_two_halves_sorted_apart_are_numpys(name, column, monkeypatch):
    """A long column is sorted as two halves on two threads and its order statistics picked across them: every
    column here goes that way (HALVES_FROM lowered), with the same numbers (bit for bit but for a zero's sign)."""
    import ancho.stats

    monkeypatch.setattr(ancho.stats, "HALVES_FROM", 2)
    with np.errstate(invalid="ignore"):
        expected = np.percentile(column.copy(), PERCENTILES)
        got = _percentiles(column.copy())
    if name == "signed zeros":  # -0.0 == 0.0: either may be picked at the tie
        assert np.array_equal(got, expected)
    else:
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), (name, got, expected)


def test_order_statistics_across_two_sorted_halves():
    from ancho.stats import _kth

    rng = np.random.default_rng(3)
    for _ in range(500):
        a = np.sort(rng.integers(0, 9, int(rng.integers(0, 30))))
        b = np.sort(rng.integers(0, 9, int(rng.integers(1, 30))))
        whole = np.sort(np.concatenate([a, b]))
        assert [_kth(a, b, k) for k in range(whole.size)] == whole.tolist()
        assert [_kth(b, a, k) for k in range(whole.size)] == whole.tolist()


def test_a_long_column_sorted_in_halves_gives_numpys_percentiles():
    rng = np.random.default_rng(4)
    column = np.maximum(rng.lognormal(0, 0.3, (1 << 21) + 5) - 1.05, 0.0)  # above HALVES_FROM, many ties at 0
    out = describe(column.copy(), "float")
    assert [out[f"p{q}"] for q in PERCENTILES] == np.percentile(column, PERCENTILES).tolist()


def test_percentiles_of_a_known_sample():
    """Closed form: of 0..100 (shuffled), the q-th percentile is q exactly; of 0..10, q/10."""
    rng = np.random.default_rng(1)
    assert _percentiles(rng.permutation(101).astype(float)).tolist() == [5.0, 25.0, 50.0, 75.0, 95.0]
    assert _percentiles(rng.permutation(11)).tolist() == [0.5, 2.5, 5.0, 7.5, 9.5]


def test_describe_leaves_nan_out_and_matches_numpy():
    column = np.array([3.0, np.nan, 1.0, 2.0, np.nan, 10.0])
    out = describe(column.copy(), "float")
    expected = np.percentile([1.0, 2.0, 3.0, 10.0], PERCENTILES)
    assert [out[f"p{q}"] for q in PERCENTILES] == expected.tolist()
    assert out["count"] == 4 and out["min"] == 1.0 and out["max"] == 10.0


def test_blocked_std_is_the_exact_one_to_rounding():
    """Against the exactly rounded sum of squared deviations (math.fsum), from a mean known exactly: no BLAS sum."""
    import math

    from ancho import stats

    x = np.random.default_rng(5).normal(0, 3, size=2 * stats._BLOCK + 5)
    exact = math.sqrt(math.fsum(((x - 0.25) ** 2).tolist()) / (x.size - 1))
    assert stats._std(x, 0.25) == pytest.approx(exact, rel=1e-14)


@pytest.mark.parametrize("nans", [0, 1, 500, "all"])
def test_describe_of_a_float_column_is_numpys_of_its_non_nan_values(nans):
    """min, max, mean and percentiles of the values left once NaNs are dropped, exactly; count without them."""
    x = np.random.default_rng(9).normal(1, 2, size=10_000)
    if nans == "all":
        x[:] = np.nan
    elif nans:
        x[np.random.default_rng(1).choice(x.size, nans, replace=False)] = np.nan
    kept = x[~np.isnan(x)]
    out = describe(x.copy(), "float")
    assert out["count"] == kept.size
    if kept.size == 0:
        assert out["mean"] is None and out["min"] is None
        return
    assert out["min"] == kept.min() and out["max"] == kept.max()
    assert out["mean"] == float(np.mean(kept))
    assert [out[f"p{q}"] for q in PERCENTILES] == np.percentile(kept, PERCENTILES).tolist()
