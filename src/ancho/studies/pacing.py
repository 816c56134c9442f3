"""When a study's driver writes its batches, and how the workers are kept busy while it does.

Why a module: points run together (:mod:`.packed`) are recorded in batches — their small chunks, their run records,
the study's record — and a batch is the driver's own work, during which it hands out no chunk. Two rules keep that
cheap: :class:`Pacer` spaces the batches (their fixed costs stay a small share of the time), and :class:`FlushCost`
says how long the next one will take, so the plan can queue enough chunks for the workers to compute through it.
Measured on a 2,000 × 50 study (2 workers): the first batch, ~1,000 tiny points, took ~140 ms, and with the usual
eight chunks queued (~4 ms of work) the workers sat idle for the rest of it, ~0.2 s of the study's two cores
(docs/benchmarks.md, "Workers through a flush").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WRITE_EVERY = 0.5  # seconds between batches of record writes
WRITE_SHARE = 20  # ... and at least this many times the last batch's fixed cost (writes take ≤ 5% of the time)
WRITE_MOST = 5.0  # ... but never more than this many seconds apart (records stay fresh, ended points few in memory)


@dataclass
class Pacer:
    """When a batch of writes is due again: ``WRITE_EVERY`` seconds after the last began, and not before
    ``WRITE_SHARE`` times that write's duration, up to ``WRITE_MOST`` seconds. Why: a write whose cost grows with
    the study or the machine's load (a 2,000-point study's record took ~50 ms to rewrite, a syncfs on a busy disk
    ~20 ms) then stays ≤ 5% of the time, where every 0.5 s it was a sixth of it."""

    last: float = -math.inf
    spent: float = 0.0

    def due(self, now: float) -> bool:
        return now - self.last >= max(WRITE_EVERY, min(WRITE_MOST, WRITE_SHARE * self.spent))

    def wrote(self, began: float, ended: float) -> None:
        self.last, self.spent = began, ended - began


#: a flush's driver time a point before one was measured: ~140 ms for ~1,000 tiny points (their chunks stored, their
#: outputs described, their records written) on this 2-core machine
FIRST_GUESS = 0.15e-3
#: a flush of fewer points says little about the next (its fixed costs dominate)
FEWEST = 50


@dataclass
class FlushCost:
    """The driver's time a point of a batch, as the last batch of at least ``FEWEST`` points took it."""

    per_point: float = FIRST_GUESS

    def seconds(self, points: int) -> float:
        return self.per_point * points

    def measured(self, seconds: float, points: int) -> None:
        if points >= FEWEST:
            self.per_point = seconds / points
