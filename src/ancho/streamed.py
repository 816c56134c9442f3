"""The summary of an output column too long to hold in memory, from its stored blocks: the same numbers, bit for bit.

Why: a run's summary held one output column in memory (8 bytes a sequence). A batch model runs a billion sequences
in about half a minute, and that column would be 8 GB in the driver, or in a server, where anyone's run would then
take the memory of everyone's. Above :data:`BUDGET` a column is read in blocks instead (``Store.iter_column``),
a pass at a time, holding a block and a few bounded samples:

1. one pass gives the moments, over the same fixed blocks of positions :func:`ancho.moments.moments` uses, so the
   same numbers, and a strided sample of the values;
2. each further pass counts, for a bracket around each wanted rank, the values below, at and above its ends, and
   gathers those strictly inside: all of them when there are few (:data:`GATHER`), else a strided sample to narrow
   the bracket on the next pass. A rank found at an end or among gathered values is exact; a bracket the sample
   misplaced only costs a pass. A billion values take three passes (docs/summary.md).

The percentiles are interpolated as :func:`ancho.percentiles.percentiles` does, from the same order statistics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .expressions import Target
from .moments import Accumulated
from .percentiles import interpolated, sample_bracket
from .stats import describe_moments, target_row

#: the most bytes of one output column the summary holds in memory, unless ``ANCHO_COLUMN_MEMORY`` says; a longer
#: column is read in blocks (1 GiB: a 100M-sequence run's summary stays in memory, as quick as before)
BUDGET = 1 << 30
#: a bracket's values are gathered when they are at most this many (8 MB of float64), else sampled; a pass holds at
#: most twice this a bracket, whatever the data (its sample thins when a bracket holds more than foreseen)
GATHER = 1 << 20
#: about how many values a pass samples of a region too large to gather
SAMPLE = 1 << 16
#: more passes than any column needs (each narrows a bracket ~50-fold or ends it): a guard, never reached in tests
MAX_PASSES = 16

Blocks = Callable[[], Iterable[np.ndarray]]


def too_long(rows: int, itemsize: int = 8) -> bool:
    """Whether a column of ``rows`` values is described from its blocks rather than in memory."""
    return rows * itemsize > budget()


def budget() -> int:
    """``ANCHO_COLUMN_MEMORY`` (bytes, a whole number; ``K``, ``M`` or ``G`` for binary multiples) or :data:`BUDGET`."""
    text = os.environ.get("ANCHO_COLUMN_MEMORY", "").strip()
    if not text:
        return BUDGET
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1].upper(), 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit():
        raise InputError(
            f"ANCHO_COLUMN_MEMORY must be a whole number of bytes, such as 1073741824 or 1G, got {text!r}: "
            "set it so, or unset it for the default (1G)"
        )
    return int(number) * scale


def describe_blocks(blocks: Blocks, kind: str) -> dict:
    """:func:`ancho.stats.describe` of the column ``blocks()`` yields (each call a new pass over it, in order)."""
    described, _ = summarise_blocks(blocks, kind)
    assert described is not None
    return described


def summarise_blocks(
    blocks: Blocks, kind: str, targets: Sequence[Target] = (), describe: bool = True
) -> tuple[dict | None, list[dict]]:
    """The column's description (as :func:`describe_blocks`; None unless ``describe``) and each target's row (as
    :func:`ancho.stats.target_summary`): the targets' hits are counted in the description's first pass, not a pass
    each."""
    hits = [[0, 0] for _ in targets]
    with np.errstate(invalid="ignore", over="ignore"):
        first = _FirstPass(kind == "bool") if describe else None
        for block in blocks():
            for target, tally in zip(targets, hits):
                got, of = target.hits(block)
                tally[0] += got
                tally[1] += of
            if first is not None:
                first.add(block)
        rows = [target_row(t, got, of) for t, (got, of) in zip(targets, hits)]
        return (None if first is None else _described(blocks, kind, first)), rows


def _described(blocks: Blocks, kind: str, first: _FirstPass) -> dict:
    """The description from the first pass, and the further passes the percentiles need."""
    if kind == "bool":
        n, hits = first.rows, first.hits
        if n == 0:
            return describe_moments(kind, 0, None, None)
        ranks = lambda wanted: np.array([r % n >= n - hits for r in wanted.tolist()], dtype=np.uint8)  # noqa: E731
        lo, hi = np.uint8(hits == n), np.uint8(hits > 0)
        return describe_moments(kind, n, lo, hi, hits=hits, percentiles=interpolated(n, ranks))
    m = first.moments.result()
    if m is None:
        return describe_moments(kind, 0, None, None)
    dtype = first.dtype
    picked = lambda wanted: _order_statistics(blocks, m.n, [r % m.n for r in wanted.tolist()], first, dtype)  # noqa: E731
    return describe_moments(kind, m.n, m.lo, m.hi, mean=m.mean, std=m.std, percentiles=interpolated(m.n, picked))


def ahead(blocks: Blocks) -> Blocks:
    """``blocks`` with each pass reading its next block on a helper thread while the caller works on this one.

    Why: reading a stored chunk (Parquet decoding) and comparing its values both let go of the GIL, and a pass was
    the two in turn (docs/benchmarks.md, "Runs too long to hold a column"). Two blocks in memory at most; the
    thread ends with its pass."""

    def passes() -> Iterator[np.ndarray]:
        from concurrent.futures import ThreadPoolExecutor

        it = iter(blocks())
        with ThreadPoolExecutor(1, thread_name_prefix="ancho-read-ahead") as pool:
            coming = pool.submit(next, it, None)
            while (block := coming.result()) is not None:
                coming = pool.submit(next, it, None)
                yield block

    return passes


class _FirstPass:
    """The moments over fixed blocks of positions, a strided sample of the values, and for bools the trues."""

    def __init__(self, bools: bool) -> None:
        self.bools = bools  # (a bool output: only its trues are counted)
        self.rows = 0
        self.hits = 0
        self.moments = Accumulated()
        self.sample: list[np.ndarray] = []  # the values at every ``step``-th position
        self.step = 1
        self.dtype: np.dtype[Any] = np.dtype(np.float64)

    def add(self, block: np.ndarray) -> None:
        self.dtype = block.dtype
        if self.bools:
            self.rows += block.size
            self.hits += int(np.count_nonzero(block))
            return
        # (a copy: a strided view would keep the whole block, and every block of the pass, alive)
        self.sample.append(block[(-self.rows) % self.step :: self.step].copy())
        self.rows += block.size
        while sum(s.size for s in self.sample) > 2 * SAMPLE:  # every other one: positions stay multiples of the step
            self.sample, self.step = [np.concatenate(self.sample)[::2]], 2 * self.step
        self.moments.add(block)

    def sorted_sample(self) -> np.ndarray:
        values = np.concatenate(self.sample) if self.sample else np.empty(0, dtype=self.dtype)
        if values.dtype.kind == "f":
            values = values[~np.isnan(values)]
        return np.sort(values)


@dataclass
class _Region:
    """Where one rank's value lies: strictly between ``lo`` and ``hi`` (None: unbounded), with ``below`` values up to
    ``lo`` and ``inside`` strictly between; ``sample`` of the inside values (sorted), ``whole`` when it is all."""

    lo: Any
    hi: Any
    below: int
    inside: int
    sample: np.ndarray | None = None
    whole: bool = False


@dataclass
class _Pass:
    """One bracket's counts over a pass, and its inside values kept at every ``stride``-th position."""

    lo: Any
    hi: Any
    lt_lo: int = 0
    le_lo: int = 0
    lt_hi: int = 0
    le_hi: int = 0
    seen: int = 0
    stride: int = 1
    kept: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    def add(self, block: np.ndarray) -> None:
        inside = np.ones(block.size, dtype=bool)
        if self.lo is not None:
            self.lt_lo += int(np.count_nonzero(block < self.lo))
            at_or_below = block <= self.lo
            self.le_lo += int(np.count_nonzero(at_or_below))
            np.logical_not(at_or_below, out=inside)
        if self.hi is not None:
            below = block < self.hi
            self.lt_hi += int(np.count_nonzero(below))
            self.le_hi += int(np.count_nonzero(block <= self.hi))
            np.logical_and(inside, below, out=inside)
        else:
            self.lt_hi += block.size
            self.le_hi += block.size
        values = block[inside]
        kept = values if self.stride == 1 else values[(-self.seen) % self.stride :: self.stride].copy()
        self.seen += values.size
        self.kept.append(kept)
        self.count += kept.size
        if self.count > 2 * GATHER:  # more than the sample foresaw: keep every other one, at twice the stride
            thinned = np.concatenate(self.kept)[::2]
            self.kept, self.count, self.stride = [thinned], thinned.size, 2 * self.stride


def _order_statistics(blocks: Blocks, n: int, wanted: list[int], first: _FirstPass, dtype: np.dtype) -> np.ndarray:
    """The ``wanted``-th smallest (from 0) of the ``n`` non-NaN values ``blocks()`` yields, a pass per round."""
    start = _Region(None, None, 0, n, first.sorted_sample())
    regions = {r: start for r in set(wanted)}
    found: dict[int, Any] = {}
    for _round in range(MAX_PASSES):
        for r, region in list(regions.items()):
            if region.whole:  # every value of the region is at hand
                assert region.sample is not None
                found[r] = region.sample[r - region.below]
                del regions[r]
        if not regions:
            return np.array([found[r] for r in wanted], dtype=dtype)
        brackets: dict[tuple[int, Any, Any], _Pass] = {}  # (ranks of one region with the same bracket share it)
        chosen: dict[int, _Pass] = {}
        for r, region in regions.items():
            lo, hi, expected = _narrowed(r, region)
            stride = max(1, math.ceil(expected / SAMPLE)) if expected > GATHER else 1
            chosen[r] = brackets.setdefault((id(region), lo, hi), _Pass(lo, hi, stride=stride))
        for block in blocks():
            if block.dtype.kind == "f":
                block = block[~np.isnan(block)]
            for bracket in brackets.values():
                bracket.add(block)
        made: dict[tuple[int, str], _Region] = {}  # (ranks that land in the same part of a bracket share a region)
        after = {r: _after(r, region, chosen[r], found, made) for r, region in regions.items()}
        regions = {r: region for r, region in after.items() if region is not None}
    raise RuntimeError(f"the percentiles of {n:,} values were not found in {MAX_PASSES} passes over them")


def _narrowed(r: int, region: _Region) -> tuple[Any, Any, int]:
    """A bracket for rank ``r`` inside ``region``, from its sample, five standard deviations of a sample rank either
    side (:func:`ancho.percentiles.sample_bracket`), and about how many values it holds."""
    sample = region.sample
    if sample is None or sample.size < 2:
        return region.lo, region.hi, region.inside
    m = sample.size
    i, j = sample_bracket((r - region.below) * m / max(1, region.inside), m)
    lo = region.lo if i is None else sample[i]
    hi = region.hi if j is None else sample[j]
    share = ((m if j is None else j) - (i or 0)) / m
    return lo, hi, math.ceil(share * region.inside) + 1


def _after(
    r: int, region: _Region, b: _Pass, found: dict[int, Any], made: dict[tuple[int, str], _Region]
) -> _Region | None:
    """Rank ``r``'s region after a pass over bracket ``b`` (None: its value is found, and in ``found``)."""
    if b.lt_lo <= r < b.le_lo:
        found[r] = b.lo
        return None
    if b.lt_hi <= r < b.le_hi:
        found[r] = b.hi
        return None
    if r < b.lt_lo:  # below the bracket: between the region's low end and the bracket's
        part = "below"
        new = lambda: _Region(region.lo, b.lo, region.below, b.lt_lo - region.below)  # noqa: E731
    elif r >= b.le_hi:  # above it
        part = "above"
        new = lambda: _Region(b.hi, region.hi, b.le_hi, region.below + region.inside - b.le_hi)  # noqa: E731
    else:
        part = "inside"
        new = lambda: _Region(  # noqa: E731
            b.lo, b.hi, b.le_lo, b.lt_hi - b.le_lo, np.sort(np.concatenate(b.kept)), whole=b.stride == 1
        )
    key = (id(b), part)
    if key not in made:
        made[key] = new()
    return made[key]
