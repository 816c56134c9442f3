"""A study's pending points, and the plan that hands out their ranges as chunks (run by :mod:`.packed`).

Why apart: the plan is what the executor pulls from (:class:`~ancho.executors.base.ChunkSource`), with its own
rules — chunk sizes from the model's measured speed, a tiny point whole in one chunk, the queue per worker deepened
for a flush — while :mod:`.packed` is what the driver does with the results.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..chunk import ChunkResult, StoredChunk
from ..engine import GROWTH, INITIAL_CHUNK, MAX_CHUNK, TARGET_SECONDS
from ..executors.base import Chunk, ChunkSource, Task
from ..model import checked_block
from ..stores.base import RunRecord


@dataclass
class Point:
    """One pending point: its study entry ``p``, run record, task and what came back so far."""

    p: dict[str, Any]
    run: RunRecord
    task: Task
    todo: deque[tuple[int, int]]
    schema: dict[str, str] = field(default_factory=dict)
    inflight: int = 0
    done: int = 0
    failures: int = 0
    retries: int = 0
    results: list[ChunkResult] | None = None
    custom: dict[str, Any] | None = None
    error: str | None = None
    created: bool = True  # its run record is in the store
    deferred: bool = False  # ... or is written once, final, by the flush that ends the point (a tiny point)
    ended: bool = False

    @property
    def total(self) -> int:
        return self.run.total

    @property
    def complete(self) -> bool:
        return not self.todo and self.inflight == 0


class StudyPlan(ChunkSource):
    """Hands out the points' ranges in point order as chunks of about ``TARGET_SECONDS`` each."""

    #: chunks queued per local worker: tiny points' chunks take ~1 ms each, less than the driver's work per point
    inflight_per_worker = 8
    #: ... and at most, deepened for a flush (:meth:`deepen`): ~1.5 KB a tiny chunk's reply waits in the pipe
    DEEPEST = 512
    #: ... sent four to a message (a message each way per chunk was ~18% of a worker's time)
    bundle = 4

    def __init__(
        self,
        points: list[Point],
        workers: int,
        block: int | None,
        summaries: tuple[str, ...],
        create: Callable[[list[Point]], None],
    ):
        self.points = points
        self.cursor = 0
        self.retry: deque[Chunk] = deque()
        self.workers = max(1, workers)
        self.block = 1 if block is None else checked_block(block, "being run")
        self.per_sequence: float | None = None
        self.remaining = sum(b - a for pt in points for a, b in pt.todo)
        self.summaries = summaries
        self.create = create  # writes points' run records (one transaction) when the first of them is handed out
        self.handed = 0  # chunks handed out so far
        self.lulled = False  # the executor said its next result will be a while (:meth:`lull`): a flush's moment
        self.chunk = (0.0, 0.0)  # a chunk's sequences and compute seconds lately (moving averages)

    def measure(self, result: ChunkResult | StoredChunk) -> None:
        if result.size and result.seconds > 0:
            t = result.seconds / result.size
            self.per_sequence = t if self.per_sequence is None else 0.8 * self.per_sequence + 0.2 * t
            size, seconds = self.chunk
            self.chunk = (0.8 * size + 0.2 * result.size, 0.8 * seconds + 0.2 * result.seconds) if size else (
                result.size, result.seconds)  # fmt: skip

    def expect(self, per_sequence: float) -> None:
        if self.per_sequence is None:  # (a first guess: what comes back measures the points themselves)
            self.per_sequence = per_sequence

    def lull(self) -> None:
        self.lulled = True

    def deepen(self, seconds: float) -> int:
        """Queue enough chunks per worker to compute through ``seconds`` of the driver's own work (a flush, while it
        hands out nothing), but no more than a worker's share of what is left (the tail stays balanced); return
        the count of chunks handed out so far (:meth:`ready` compares with it)."""
        size, per_chunk = self.chunk
        if per_chunk > 0:
            share = self.remaining / size / self.workers
            deeper = type(self).inflight_per_worker + math.ceil(seconds / per_chunk)
            self.inflight_per_worker = int(max(type(self).inflight_per_worker, min(deeper, self.DEEPEST, share)))
        return self.handed

    def ready(self, handed: int, waited: int) -> bool:
        """Whether the deeper queue went out since ``deepen`` returned ``handed`` (or nothing is left to hand out, or
        the executor took ``waited`` results without asking: one that keeps no queue per worker)."""
        left = self.cursor < len(self.points) or self.retry
        return self.handed > handed or not left or waited > 4 * self.bundle * self.workers

    def shallow(self) -> None:
        self.inflight_per_worker = type(self).inflight_per_worker

    def size(self) -> int:
        if self.per_sequence is None:
            return max(INITIAL_CHUNK, self.block)
        ideal = TARGET_SECONDS / max(self.per_sequence, 1e-9)
        share = math.ceil(self.remaining / (2 * self.workers))
        return int(max(1, min(ideal, MAX_CHUNK, share)))

    def whole(self) -> int:
        """The most sequences left of a point that go as one chunk, whatever the tail's balance asks: a split tiny
        point's summary functions run apart afterwards (on Spark a local worker started for each, ~0.5 s a point:
        the first points, cut small while the model's speed is unknown, and the last, cut for the balance). Up to
        about ``TARGET_SECONDS`` of work; before the speed is known, what a run's second chunk would be when the
        model has summary functions (else nothing: a slow model's first points are cut, to spread them)."""
        if self.per_sequence is None:
            return INITIAL_CHUNK * GROWTH if self.summaries else 0
        return int(min(TARGET_SECONDS / max(self.per_sequence, 1e-9), MAX_CHUNK))

    def next(self) -> Chunk | None:
        self.handed += 1  # (one more than handed out when nothing is: ready() only asks whether it moved)
        if self.retry:
            chunk = self.retry.popleft()
            self._of(chunk).inflight += 1
            self.remaining -= chunk.size
            return chunk
        while self.cursor < len(self.points):
            pt = self.points[self.cursor]
            if pt.error is not None or not pt.todo:
                self.cursor += 1
                continue
            if not pt.created and not pt.deferred:  # this point's record, and the next points', in one transaction
                self.create(
                    [
                        q
                        for q in self.points[self.cursor : self.cursor + 64]
                        if not q.created and not q.deferred and q.error is None
                    ]
                )
            start, stop = pt.todo.popleft()
            size = self.size()
            if stop - start <= self.whole():
                size = stop - start
            end = -(-(start + size) // self.block) * self.block
            n = min(end, stop) - start
            if start + n < stop:
                pt.todo.appendleft((start + n, stop))
            # the point's only chunk: its summary functions run where it runs (unless its summary reads the store)
            whole = n == pt.total and (pt.results is not None or pt.task.sink is not None)
            pt.inflight += 1
            self.remaining -= n
            summaries = self.summaries if whole else ()
            return Chunk(start, start + n, task=pt.task, summaries=summaries, keep=pt.results is not None)
        return None

    def _of(self, chunk: Chunk) -> Point:
        return self.by_task[id(chunk.task)]

    def index(self, points: list[Point] | None = None) -> None:
        """Which point each task is (a point's task is replaced when it gets a sink): all, or ``points`` again."""
        if points is None:
            self.by_task = {id(pt.task): pt for pt in self.points}
        else:
            self.by_task.update((id(pt.task), pt) for pt in points)
