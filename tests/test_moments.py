"""A long column's count, extremes, mean and standard deviation, in fixed blocks on two threads: the exact values to
rounding (``math.fsum``, closed forms), NaN left out, the same numbers however the blocks are shared out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ancho import moments as M
from ancho.percentiles import PERCENTILES
from ancho.stats import describe

B = M.BLOCK


def _exact(x: np.ndarray) -> tuple[float, float]:
    """Mean and sample std of ``x`` from exactly rounded sums."""
    values = x.tolist()
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum([(v - mean) ** 2 for v in values]) / (len(values) - 1))


def test_floats_equal_the_exactly_rounded_moments():
    x = np.random.default_rng(3).normal(5, 2, size=3 * B + 17)
    m = M.moments(x)
    mean, std = _exact(x)
    assert m.n == x.size and m.lo == x.min() and m.hi == x.max()
    assert m.mean == pytest.approx(mean, rel=1e-15)
    assert m.std == pytest.approx(std, rel=1e-14)


def test_ints_equal_their_closed_forms():
    n = 3 * B + 1
    m = M.moments(np.arange(n, dtype=np.int64))
    assert (m.n, m.lo, m.hi) == (n, 0, n - 1)
    assert m.mean == (n - 1) / 2  # exact: every partial sum is an integer below 2**53
    assert m.std == pytest.approx(math.sqrt(n * (n + 1) / 12), rel=1e-14)


def test_nan_is_left_out_block_by_block():
    x = np.random.default_rng(4).random(2 * B + 9)
    x[B : 2 * B] = np.nan  # a whole block of NaN
    x[::1000] = np.nan
    kept = x[~np.isnan(x)]
    m = M.moments(x)
    mean, std = _exact(kept)
    assert m.n == kept.size and m.lo == kept.min() and m.hi == kept.max()
    assert m.mean == pytest.approx(mean, rel=1e-15) and m.std == pytest.approx(std, rel=1e-14)
    assert M.moments(np.full(B + 1, np.nan)) is None


def test_the_same_numbers_whichever_thread_took_a_block():
    x = np.random.default_rng(5).standard_normal(5 * B + 3)
    buffer = np.empty(B)
    one_thread = M.combine([M._part(x[s : s + B], buffer) for s in range(0, x.size, B)])
    assert M.moments(x) == one_thread


def test_describe_of_a_long_column():
    """Its moments from the blocks, its percentiles NumPy's, its mean within rounding of NumPy's."""
    x = np.random.default_rng(6).exponential(2.0, size=2 * B + 11)
    x[[5, B + 7]] = np.nan
    kept = x[~np.isnan(x)]
    out = describe(x.copy(), "float")
    assert out["count"] == kept.size and out["min"] == kept.min() and out["max"] == kept.max()
    assert out["mean"] == pytest.approx(float(np.mean(kept)), rel=1e-14)
    assert out["std"] == pytest.approx(float(np.std(kept, ddof=1)), rel=1e-12)
    assert [out[f"p{q}"] for q in PERCENTILES] == np.percentile(kept, PERCENTILES).tolist()
    ints = describe(np.arange(B + 2, dtype=np.int64), "int")
    assert ints["min"] == 0 and ints["max"] == B + 1 and ints["mean"] == (B + 1) / 2


def test_infinite_values_give_null_statistics_without_warnings():
    x = np.ones(B + 5)
    x[B + 2] = np.inf
    with np.errstate(all="raise"):  # (the helper thread keeps its own error state)
        out = describe(x, "float")
    assert out["mean"] is None and out["std"] is None and out["max"] is None and out["min"] == 1.0


def test_an_error_on_the_helper_thread_reaches_the_caller(monkeypatch):
    import threading

    real = M._part

    def failing(block, buffer):
        if threading.current_thread().name == "ancho-moments":
            raise MemoryError("helper")
        return real(block, buffer)

    monkeypatch.setattr(M, "_part", failing)
    with pytest.raises(MemoryError, match="helper"):
        M.moments(np.zeros(2 * B + 1))


def test_a_column_given_in_pieces_has_the_moments_of_the_whole():
    """The same fixed blocks of positions however the pieces are cut (a store's chunks): the same numbers."""
    rng = np.random.default_rng(4)
    column = np.where(rng.random(3 * B + 5) < 0.01, np.nan, rng.standard_normal(3 * B + 5))
    for values, sizes in ((column, (4_097, B, B + 1, 300_001)), (column[: B + 3000], (1_000, 1))):
        whole = M.moments(values)
        for size in sizes:
            pieces = M.Accumulated()
            for start in range(0, values.size, size):
                pieces.add(values[start : start + size])
            assert pieces.result() == whole
