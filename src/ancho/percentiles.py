"""Exact percentiles of an output column, bit for bit ``np.percentile``'s, at a fraction of its cost.

Why its own module: a summary's percentiles are the one statistic that needs the column's order, which costs more
than every other statistic together on long columns (a batch model's 10M values); how they are found, sort or
selection, is chosen by measurement here (docs/benchmarks.md, "Batch models").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar

import numpy as np

from .threads import on_halves

T = TypeVar("T")

#: the percentiles every numeric output's summary gives (p5 … p95)
PERCENTILES = (5, 25, 50, 75, 95)


#: the percentiles as fractions, as ``np.percentile`` makes them (``np.true_divide(q, 100)``)
_QUANTILES = np.true_divide(PERCENTILES, 100)


def percentiles(values: np.ndarray) -> np.ndarray:
    """``np.percentile(values, PERCENTILES)``, bit for bit; ``values`` (no NaN) may be reordered in place.

    Why not ``np.percentile``: it partitions the column once per call and, the first time, imports ``numpy.ma``;
    here a short column is partitioned once at all its ranks, as order keys (:func:`_partitioned_in_place`), and a
    long one has its few order statistics selected (:func:`_select`). The interpolation is NumPy's own "linear" method, step for step (``_quantile``,
    ``_get_indexes``, ``_lerp`` of NumPy 2): the same indexes, weights and roundings, checked against
    ``np.percentile`` bit for bit in tests/test_batch_percentiles.py.
    """
    return interpolated(values.shape[-1], partial(_order_statistics, values))


def interpolated(n: int, order_statistics: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The percentiles of ``n`` values from ``order_statistics(ranks)``, their ``ranks``-th smallest (from 0; −1
    the largest) along the last axis: :func:`percentiles`' interpolation, shared with a column read in blocks
    (:func:`ancho.streamed.describe_blocks`)."""
    virtual = (n - 1) * _QUANTILES
    previous = np.floor(virtual)
    following = previous + 1
    top = virtual >= n - 1  # past the last index: the largest value
    previous[top] = -1
    following[top] = -1
    previous_i, following_i = previous.astype(np.intp), following.astype(np.intp)
    gamma = np.asanyarray(virtual - previous_i)
    ranked = order_statistics(np.concatenate([previous_i, following_i]))
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
    ``values`` are columns, see describe_many), partitioning a short ``values`` in place. The same numbers as a whole
    sort's; where −0.0 and 0.0 both occur, the one picked at a tie may differ (they are equal)."""
    n = values.shape[-1]
    if n < SELECT_FROM:
        return _partitioned_in_place(values, ranks)
    wanted = [r % n for r in ranks.tolist()]
    if values.ndim == 1:
        return _select(values, wanted)
    return np.stack([_select(row, wanted) for row in values])


#: the bits of a float64 below its sign: flipped in a negative float, its bits order as an int64 as the float does
_BELOW_SIGN = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _partitioned_in_place(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The ``ranks``-th smallest along the last axis, by one partition at all the ranks (``values`` reordered).

    Why not a sort: it orders every value for ten of them. NumPy's float partition is no faster than its sort where
    the sort is vectorised (AVX2: 1M normal values, 48 against 22 ms), but partitioning the floats' bits as int64 order
    keys is as fast as that sort there, and 4× faster than the sort (54 against 13 ms of CPU) where the sort is slow
    (Zen 4's AVX-512 path, docs/benchmarks.md "Batch models", tenth pass); the keys are made and undone in place, so
    ``values`` holds the same floats after. The keys order −0.0 below 0.0: at a tie of the two the zero reported may
    differ from ``np.percentile``'s (as a sort's may: they are equal)."""
    wanted = np.unique(ranks % values.shape[-1])
    if values.dtype != np.float64 or not values.flags.c_contiguous:
        values.partition(wanted, axis=-1)
        return values[..., ranks]
    keys = values.view(np.int64)
    keys ^= (keys >> 63) & _BELOW_SIGN  # (NaN never reaches here: its key would order it among the numbers)
    try:
        keys.partition(wanted, axis=-1)
    finally:  # (the floats back, whatever happened: the caller's column never holds keys)
        keys ^= (keys >> 63) & _BELOW_SIGN
    return values[..., ranks]


def _select(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    """The ``ranks``-th smallest (from 0) of a long 1-D ``values`` without sorting it.

    Why: a whole sort is more work than ten order statistics need, and NumPy's sort, vectorised with AVX-512, is
    slow on AMD Zen 4 (its memory-destination compress stores are microcoded there: 62 ns a value, against 10 with
    NumPy's AVX2 sort; numpy/x86-simd-sort#6). 10M values: 0.02–0.03 s, where sorting two halves on two threads
    took 0.15–0.31 s on Zen 4 (docs/benchmarks.md, "Batch models", tenth pass).

    How: a strided sample of ~:data:`SAMPLE` values, sorted, brackets each rank between two sample values, five
    standard deviations of a sample rank either side; one pass over each half of ``values`` (two threads: NumPy's
    comparisons let go of the GIL), every bracket on each :data:`BLOCK`, counts the values up to a bracket's low
    end and below its high end and gathers those strictly between, and the rank is selected among the gathered
    few. Values tied at an end are counted (again, only when a rank falls among them), never gathered: half of a
    Black–Scholes column is exactly 0. A bracket that misses (a sample unlike the column: periodic data) falls back
    to partitioning the whole column in place, so the answer is exact whatever the data.
    """
    n = values.size
    sample = np.sort(values[:: max(1, n // SAMPLE)])
    m = sample.size
    brackets: list[_Bracket] = []  # merged where they overlap
    for r in sorted(set(ranks)):
        i, j = sample_bracket(r * m / n, m)
        low = None if i is None else sample[i]
        high = None if j is None else sample[j]
        if brackets and (low is None or brackets[-1].high is None or low <= brackets[-1].high):
            brackets[-1] = _Bracket(brackets[-1].low, high, [*brackets[-1].ranks, r])
        else:
            brackets.append(_Bracket(low, high, [r]))
    if any(b.low is None and b.high is None for b in brackets):
        return _partitioned(values, ranks)
    masks = iter(np.empty((2, 2, min(BLOCK, n)), dtype=bool))  # (each thread's two masks, made here: see BLOCK)
    halves = on_halves(partial(_bracketed, brackets=brackets, masks=masks), values, "ancho-select")
    picked: dict[int, Any] = {}
    for k, (low, high, within) in enumerate(brackets):
        first, second = halves[0][k], halves[1][k]
        to_low, to_high = first.to_low + second.to_low, first.to_high + second.to_high
        below, to_top = 0, n  # the ends' own ties, counted only when a rank falls among them (or past them)
        if low is not None and low == high:  # (all tied: below the value is below ``high``, up to it is up to ``low``)
            below, to_top = to_high, to_low
        elif any(r < to_low for r in within) or any(r >= to_high for r in within):
            ends = on_halves(partial(_ends, low=low, high=high), values, "ancho-select")
            below, to_top = ends[0][0] + ends[1][0], ends[0][1] + ends[1][1]
        if not all(below <= r < to_top for r in within):
            return _partitioned(values, ranks)
        inside = np.concatenate([*first.inside, *second.inside])
        inner = [r - to_low for r in within if to_low <= r < to_high]
        if inner:
            inside.partition(inner)
        for r in within:
            picked[r] = low if r < to_low else inside[r - to_low] if r < to_high else high
    return np.array([picked[r] for r in ranks], dtype=values.dtype)


def sample_bracket(at: float, m: int) -> tuple[int | None, int | None]:
    """Positions in a sorted sample of ``m`` values five standard deviations of a sample rank either side of
    position ``at`` (where a rank of the whole falls in the sample), None past an end: the values between them
    bracket that rank but for a sample far unlike the whole (shared with :mod:`ancho.streamed`)."""
    spread = 5 * math.sqrt(at * (m - at) / m) + 2
    low = int(at - spread) if at - spread >= 0 else None
    high = int(math.ceil(at + spread)) if at + spread < m - 1 else None
    return low, high


def _partitioned(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    """The ranks by partitioning the whole column in place: exact whatever the data, at a full select's cost."""
    values.partition(sorted(set(ranks)))
    return values[ranks]


class _Bracket(NamedTuple):
    """Two sample values (None: no bound) between which the ``ranks`` should lie."""

    low: Any
    high: Any
    ranks: list[int]


@dataclass
class _Bracketed:
    """Of some values and a bracket: how many are up to its ``low`` and below its ``high`` (an end that is None
    bounds nothing), and the values strictly between them."""

    to_low: int = 0
    to_high: int = 0
    inside: list[np.ndarray] = field(default_factory=list)


#: values a pass over a column takes at a time, every bracket at once: a block stays in the core's cache while
#: each bracket compares it (10M values: 24 against 36 ms with a pass a bracket over 1M at a time, and 1M-value
#: blocks were 20% slower than 256k ones; docs/benchmarks.md, "Batch models", tenth pass). Its two masks a thread
#: are a block's, reused for every block and made by the calling thread: a helper thread's own allocations come from
#: its own malloc arena, which can hand out new pages again after each trim
BLOCK = 1 << 18


def _bracketed(a: np.ndarray, brackets: list[_Bracket], masks: Iterator[np.ndarray]) -> list[_Bracketed]:
    out = [_Bracketed() for _ in brackets]
    up_to_low, below_high = next(masks)
    for start in range(0, a.size, BLOCK):
        block = a[start : start + BLOCK]
        size = block.size
        for (low, high, _), got in zip(brackets, out):
            mask = None
            if low is not None:
                mask = np.less_equal(block, low, out=up_to_low[:size])
                got.to_low += int(np.count_nonzero(mask))
                np.logical_not(mask, out=mask)
            if high is not None:
                below = np.less(block, high, out=below_high[:size])
                got.to_high += int(np.count_nonzero(below))
                mask = below if mask is None else np.logical_and(mask, below, out=mask)
            else:
                got.to_high += size
            got.inside.append(block[mask])
    return out


def _ends(a: np.ndarray, low: Any, high: Any) -> tuple[int, int]:
    """How many of ``a`` are below ``low`` and up to ``high`` (an end that is None bounds nothing)."""
    below, to_top = 0, a.size
    for start in range(0, a.size, BLOCK):
        block = a[start : start + BLOCK]
        if low is not None:
            below += int(np.count_nonzero(block < low))
        if high is not None:
            to_top -= int(np.count_nonzero(block > high))
    return below, to_top
