"""Exact percentiles of an output column, bit for bit ``np.percentile``'s, at a fraction of its cost.

Why its own module: a summary's percentiles are the one statistic that needs the column's order, which costs more
than every other statistic together on long columns (a batch model's 10M values); how they are found, sort or
selection, is chosen by measurement here (docs/benchmarks.md, "Batch models").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: the percentiles every numeric output's summary gives (p5 … p95)
PERCENTILES = (5, 25, 50, 75, 95)


#: the percentiles as fractions, as ``np.percentile`` makes them (``np.true_divide(q, 100)``)
_QUANTILES = np.true_divide(PERCENTILES, 100)


def percentiles(values: np.ndarray) -> np.ndarray:
    """``np.percentile(values, PERCENTILES)``, bit for bit; ``values`` (no NaN) may be reordered in place.

    Why not ``np.percentile``: it partitions the column once per call and, the first time, imports ``numpy.ma``;
    here a short column is sorted (NumPy's vectorised sort was cheaper than that partition: 10M Black–Scholes
    payoffs, 0.13 s of CPU against 0.26 s) and a long one has its few order statistics selected
    (:func:`_select`). The interpolation is NumPy's own "linear" method, step for step (``_quantile``,
    ``_get_indexes``, ``_lerp`` of NumPy 2): the same indexes, weights and roundings, checked against
    ``np.percentile`` bit for bit in tests/test_batch_percentiles.py.
    """
    n = values.shape[-1]
    virtual = (n - 1) * _QUANTILES
    previous = np.floor(virtual)
    following = previous + 1
    top = virtual >= n - 1  # past the last index: the largest value
    previous[top] = -1
    following[top] = -1
    previous_i, following_i = previous.astype(np.intp), following.astype(np.intp)
    gamma = np.asanyarray(virtual - previous_i)
    ranked = _order_statistics(values, np.concatenate([previous_i, following_i]))
    a, b = ranked[..., : len(previous_i)], ranked[..., len(previous_i) :]
    diff = b - a
    result = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe", dtype=type(result.dtype))
    return result


#: a column at least this long has its order statistics selected (:func:`_select`) instead of sorted
SELECT_FROM = 1 << 21

#: the strided sample :func:`_select` sorts to bracket each rank has about this many values
SAMPLE = 1 << 16


def _order_statistics(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The ``ranks``-th smallest of ``values`` (from 0; −1 the largest) along the last axis (the rows of a 2-D
    ``values`` are columns, see describe_many), sorting a short ``values`` in place. The same numbers as a whole
    sort's; where −0.0 and 0.0 both occur, the one picked at a tie may differ (they are equal)."""
    n = values.shape[-1]
    if n < SELECT_FROM:
        values.sort()
        return values[..., ranks]
    wanted = [r % n for r in ranks.tolist()]
    if values.ndim == 1:
        return _select(values, wanted)
    return np.stack([_select(row, wanted) for row in values])


def _select(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    """The ``ranks``-th smallest (from 0) of a long 1-D ``values`` without sorting it.

    Why: a whole sort is more work than ten order statistics need, and NumPy's sort, vectorised with AVX-512, is
    slow on AMD Zen 4 (its memory-destination compress stores are microcoded there: 62 ns a value, against 10 with
    NumPy's AVX2 sort; numpy/x86-simd-sort#6). 10M values here: 0.06–0.09 s on either path, where sorting two
    halves on two threads took 0.15–0.31 s on Zen 4 (docs/benchmarks.md, "Batch models", tenth pass).

    How: a strided sample of ~:data:`SAMPLE` values, sorted, brackets each rank between two sample values, five
    standard deviations of a sample rank either side; one pass over each half of ``values`` (two threads: NumPy's
    comparisons let go of the GIL) counts the values below a bracket and gathers those inside it, and the rank is
    selected among the gathered few. A bracket that misses (a sample unlike the column: periodic data) falls back
    to partitioning the whole column in place, so the answer is exact whatever the data.
    """
    n = values.size
    sample = np.sort(values[:: max(1, n // SAMPLE)])
    m = sample.size
    brackets: list[tuple[Any, Any, list[int]]] = []  # (low or None, high or None, ranks): merged where they overlap
    for r in sorted(set(ranks)):
        at = r * m / n
        spread = 5 * math.sqrt(at * (m - at) / m) + 2
        low = sample[int(at - spread)] if at - spread >= 0 else None
        high = sample[int(math.ceil(at + spread))] if at + spread < m - 1 else None
        if brackets and (low is None or brackets[-1][1] is None or low <= brackets[-1][1]):
            brackets[-1] = (brackets[-1][0], high, [*brackets[-1][2], r])
        else:
            brackets.append((low, high, [r]))
    picked: dict[int, Any] = {}
    for low, high, within in brackets:
        if low is None and high is None:
            break
        if low is not None and low == high:  # (all of them tied: counted, not gathered)
            (below_first, tied_first), (below_second, tied_second) = _on_halves(partial(_tied, value=low), values)
            below, tied = below_first + below_second, tied_first + tied_second
            if not all(below <= r < below + tied for r in within):
                break
            picked.update((r, low) for r in within)
            continue
        (below_first, first), (below_second, second) = _on_halves(partial(_bracketed, low=low, high=high), values)
        below, gathered = below_first + below_second, np.concatenate([first, second])
        if not all(below <= r < below + gathered.size for r in within):
            break
        gathered.partition([r - below for r in within])
        picked.update((r, gathered[r - below]) for r in within)
    else:
        return np.array([picked[r] for r in ranks], dtype=values.dtype)
    values.partition(sorted(set(ranks)))
    return values[ranks]


def _tied(a: np.ndarray, value: Any) -> tuple[int, int]:
    """How many of ``a`` are below ``value``, and how many equal it."""
    return int(np.count_nonzero(a < value)), int(np.count_nonzero(a == value))


def _bracketed(a: np.ndarray, low: Any, high: Any) -> tuple[int, np.ndarray]:
    """How many of ``a`` are below ``low`` (None: no bound), and those from ``low`` to ``high`` inclusive."""
    below = 0 if low is None else int(np.count_nonzero(a < low))
    if low is None:
        return below, a[a <= high]
    if high is None:
        return below, a[a >= low]
    return below, a[(a >= low) & (a <= high)]


def _on_halves(fn: Callable[[np.ndarray], T], values: np.ndarray) -> tuple[T, T]:
    """``fn`` of each half of ``values``, the first half's on a helper thread."""
    half = values.size // 2
    out: list = []

    def first() -> None:
        try:
            out.append(fn(values[:half]))
        except BaseException as exc:  # (raised again below, in the caller's thread)
            out.append(exc)

    helper = threading.Thread(target=first, name="ancho-select")
    helper.start()
    try:
        second = fn(values[half:])
    finally:
        helper.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0], second
