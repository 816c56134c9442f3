"""Count, extremes, mean and standard deviation of a long output column: fixed blocks, two threads.

Why: describing a batch model's 10M values is the driver's work after the last chunk lands, while the workers are
idle; the extremes, sum and squared deviations were ~15 ms of it on one thread (docs/benchmarks.md, "Batch models",
eleventh pass). Here the column is cut into fixed blocks of :data:`BLOCK` values, each block described on its own
(count, extremes, its pairwise sum, its squared deviations from its own mean) and the blocks combined in order
(the squares within blocks plus those between their means and the whole's, as Chan, Golub and LeVeque combine
partial results): the same numbers whichever thread took a block, so half the blocks go to a helper thread. The blocks are positions in the column, never chunks, so the result does not depend on how a run
was split; it equals the exact moments to rounding (tests/test_moments.py, against ``math.fsum``).

NaN values are left out, block by block; the caller learns how many were kept.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .threads import on_two_threads

#: values a block holds (2 MB of float64): small enough that a block's six passes (extremes, sum, deviations,
#: squares, their sum) read it from the core's caches after the first, so two threads are not held up by one memory
#: bus; 10M payoffs in 6.3 ms against 12.1 with blocks of 2**20 and 14.5 for the whole column's passes on one thread
#: (2**17: 7.0, 2**16: 8.5, 2**15: 12.3; docs/benchmarks.md, "Batch models", eleventh pass)
BLOCK = 1 << 18


class Moments(NamedTuple):
    """What the summary needs of a column besides its order: its non-NaN values' count, extremes, mean and sample
    standard deviation (None under two values)."""

    n: int
    lo: Any
    hi: Any
    mean: float
    std: float | None


class _Part(NamedTuple):
    n: int
    lo: Any
    hi: Any
    total: float
    squares: float


def moments(column: np.ndarray) -> Moments | None:
    """The moments of the non-NaN values of a 1-D numeric ``column`` (longer than one block); None if there are none.

    Infinite values give infinite or NaN moments, as NumPy's would (the summary reports them as null)."""
    starts = list(range(0, column.size, BLOCK))
    half = (len(starts) + 1) // 2
    buffers = [np.empty(BLOCK, dtype=np.float64) for _ in range(2)]  # (made here: see ancho.threads)

    def parts(which: list[int], buffer: np.ndarray) -> list[_Part | None]:
        with np.errstate(invalid="ignore", over="ignore"):  # (NumPy's error state is per thread)
            return [_part(column[s : s + BLOCK], buffer) for s in which]

    first, second = on_two_threads(
        lambda: parts(starts[:half], buffers[0]), lambda: parts(starts[half:], buffers[1]), "ancho-moments"
    )
    return combine([p for p in [*first, *second] if p is not None])


class Accumulated:
    """The moments of a column given in pieces, in order (a store's chunks, of any sizes): the same fixed blocks of
    positions as :func:`moments`, so the same numbers, with one block of values held at a time."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.carry: list[np.ndarray] = []  # values of the block of positions still being filled
        self.carried = 0
        self.buffer = np.empty(BLOCK, dtype=np.float64)

    def add(self, values: np.ndarray) -> None:
        at = 0
        while at < values.size:
            take = min(BLOCK - self.carried, values.size - at)
            self.carry.append(values[at : at + take])
            self.carried += take
            at += take
            if self.carried == BLOCK:
                self._close()

    def result(self) -> Moments | None:
        if self.carried:
            self._close()
        return combine(self.parts)

    def _close(self) -> None:
        block = self.carry[0] if len(self.carry) == 1 else np.concatenate(self.carry)
        part = _part(block, self.buffer)
        if part is not None:
            self.parts.append(part)
        self.carry, self.carried = [], 0


def _part(block: np.ndarray, buffer: np.ndarray) -> _Part | None:
    """One block's count, extremes, pairwise sum and squared deviations from its own mean (NaN left out)."""
    if block.dtype.kind == "f":
        hi = block.max()  # (NaN propagates: the pass it needs anyway says whether to drop some)
        if np.isnan(hi):
            block = block[~np.isnan(block)]
            if not block.size:
                return None
            hi = block.max()
    else:
        hi = block.max()
    n = int(block.size)
    total = float(np.sum(block, dtype=np.float64))
    deviations = np.subtract(block, total / n, out=buffer[:n], dtype=np.float64)
    squares = float(np.square(deviations, out=deviations).sum())
    return _Part(n, block.min(), hi, total, squares)


def combine(parts: list[_Part]) -> Moments | None:
    """The blocks' moments together, in order: the mean of their sums, and the squared deviations of each block
    about the whole's mean (its own plus count × the squared distance between the two means)."""
    if not parts:
        return None
    count = sum(p.n for p in parts)
    total = 0.0
    for p in parts:
        total += p.total
    mean = total / count
    squares = 0.0
    for p in parts:
        shift = p.total / p.n - mean
        squares += p.squares + p.n * shift * shift
    std = math.sqrt(squares / (count - 1)) if count > 1 else None
    return Moments(count, min(p.lo for p in parts), max(p.hi for p in parts), mean, std)
