"""A study's points run together: many points' chunks in flight at once, so a study costs its sequences.

Why: run one after another, each point pays a run's fixed costs (workers idle
while its first small chunks measure the model, its summary read back from the
store, a summary request per point): 100 points × 50 sequences cost 2.5× one
run of 5,000. Here every pending point's ranges are cut into chunks sized to
about ``TARGET_SECONDS`` of work (a tiny point is one chunk), each chunk carries
its point's :class:`~ancho.executors.base.Task` (the executor switches a
worker's task only when it changes), and the model's summary functions of a
one-chunk point run in the worker that has its results. On an executor whose
tasks write a store themselves for a study too (``mixed_sinks``: Spark with a
Cassandra store it reaches), each point's task carries its run's results sink
and its chunks come back stored (:class:`~ancho.chunk.StoredChunk`); its
summary is then read back from the store.

What a run promises still holds per point: its sequences are those of the same
run made alone (same task, seed and sequence numbers). A tiny point's chunks
(at most ``PACK_SEQUENCES``) are stored with the batch's others by one
:meth:`~ancho.stores.base.Store.write_chunks` before the batch's records (the
embedded store keeps them as rows of one transaction: a folder and a file a
point cost more than its sequences); a larger point's chunks as they come back,
by the local worker that ran them (its task's sink) or else the driver's
writer threads, through a store copy that skips the per-file fsync, made
durable by one ``syncfs`` before any record says the point is done. A point
that fails (its failures over ``max_failures``, an output error, a chunk lost
``MAX_RETRIES`` times) is recorded failed and the others go on. Records are
written once per point at its end, in batches; the study record at most every
``WRITE_EVERY`` seconds (both paced by :class:`Pacer`); the points ended so far
also once a tenth of the sequences is left to hand out (the last batch, after
the last result, runs while no worker does). Anything this pass cannot finish
(an error of the whole executor call, a summary that needs the store) is left
to the caller's point-by-point pass, which resumes the stored chunks.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..chunk import ChunkResult, StoredChunk
from ..engine import (
    GROWTH,
    INITIAL_CHUNK,
    MAX_CHUNK,
    MAX_RETRIES,
    TARGET_SECONDS,
    _failure_message,
    merge_schema,
)
from ..errors import AnchoError, NotFound, RunCancelled, StoreError
from ..executors.base import Chunk, ChunkLost, ChunkSource, Executor, Task, chunk_of, custom_of
from ..expressions import check_outputs
from ..stores.base import RunRecord, Store
from ..stores.chunk_writer import ChunkFolder
from .finals import describe_points, final_changes

if TYPE_CHECKING:
    from ..engine import RunHandle, RunSpec
    from ..loading import LoadedModel


#: chunk files of the embedded store written at once by the driver's threads: a file's folders, create and rename
#: wait on the file system (0.5-0.6 ms each on this busy disk, a third of a 2,000-point study's driver time)
#: without the GIL, so the driver takes the next results meanwhile; at most ``PENDING`` chunks wait to be written
WRITERS = 3
PENDING = 256
#: a point of at most this many sequences keeps its results in memory until summarised (else: read back)
KEEP_IN_MEMORY = 20_000
#: ... and of at most this many, its chunks are stored together with the batch's others (``Store.write_chunks``):
#: the embedded store keeps them as rows of one transaction, where a folder and a file a point cost ~1-3 ms of a
#: worker's CPU on this machine's disk against ~0.6 ms for 50 sequences (docs/benchmarks.md, "Studies")
PACK_SEQUENCES = 1024
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
        self.block = block or 1
        self.per_sequence: float | None = None
        self.remaining = sum(b - a for pt in points for a, b in pt.todo)
        self.summaries = summaries
        self.create = create  # writes points' run records (one transaction) when the first of them is handed out

    def measure(self, result: ChunkResult | StoredChunk) -> None:
        if result.size and result.seconds > 0:
            t = result.seconds / result.size
            self.per_sequence = t if self.per_sequence is None else 0.8 * self.per_sequence + 0.2 * t

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


def run_packed(
    points: list[Point],
    model: LoadedModel,
    specs: dict[int, RunSpec],
    store: Store,
    executor: Executor,
    handle: RunHandle,
    create: Callable[[list[Point]], None],
    on_progress: Callable[[int], None],
    on_finished: Callable[[Point], None],
) -> None:
    """Run ``points`` together; call ``on_finished`` for each point once its record is final (succeeded or failed).

    ``on_progress(n)``: n more sequences came back. Raises :class:`RunCancelled` when cancelled (the records of
    points finished so far are written first), and lets any other error of the executor call through with the
    unfinished points untouched (their stored chunks are kept for the caller's point-by-point pass).
    """
    fast = store
    if getattr(store, "fsync", False):  # one syncfs per batch instead of an fsync per chunk file
        fast = copy.copy(store)
        fast.fsync = False  # type: ignore[attr-defined]
    names = tuple(model.summaries or ())
    sinks = executor.mixed_sinks  # still to be asked: whether the executor's tasks write this store themselves
    folders = False  # whether they are chunk folders (then a point whose chunks the batch stores needs none)

    def create_sunk(batch: list[Point]) -> None:
        """Write the batch's run records (a tiny point's is written at its end: :meth:`Point.deferred`); then, where
        the executor's tasks write the store, each point's sink."""
        nonlocal sinks, folders
        now = time.time()
        for pt in batch:
            if packs(pt):  # its record once, final, with the batch it ends in: a record created, then read back and
                pt.deferred, pt.run.started, pt.p["status"] = True, now, "running"  # replaced, cost a tenth of it
        recorded = [pt for pt in batch if not pt.deferred]
        if recorded:
            create(recorded)
        for pt in batch if sinks else ():
            if folders and packs(pt):
                continue
            try:
                sink = executor.results_sink(store, pt.run.id)
            except NotFound:  # a tiny point's run, its record not written yet: only a store keeping batches defers
                sink = None  # records (the embedded store), and the executors whose tasks write one (local workers)
                # name its chunk folder without it; one that looks the run up (Spark's) writes Cassandra alone
            if sink is None:  # (the answer is the store's and the owner's, the same for every point: asked once)
                sinks = False
                break
            if isinstance(sink, ChunkFolder):
                folders = True
                if packs(pt):
                    continue  # its chunks come back as columns, for the store's batch of small chunks (encoding
                    # them in the workers cost each a pyarrow import, 0.5 s of CPU, for 0.1 ms a point: measured)
                # a local worker writes the point's files, its chunks come back whole
                sink = replace(sink, fsync=False) if fast is not store else sink  # (made durable by the syncfs)
            else:
                pt.results = None  # its columns stay where they were written: the summary reads them back
            pt.task = replace(pt.task, sink=sink)
        plan.index(batch)

    plan = StudyPlan(points, executor.workers, model.info.get("block"), names, create_sunk)
    plan.index()
    ended: list[Point] = []
    pace = Pacer(time.monotonic())  # (paced by the syncfs alone: the rest of a flush grows with the points it ends)

    later: list[Point] = []  # summary functions still to run over the stored results, once no chunk is in flight
    # the embedded store's files are written by threads (a store with an fsync setting is a folder of files)
    pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="ancho-chunks") if fast is not store else None
    writes: list[tuple[Point, Future[None]]] = []

    # a store that keeps a batch's small chunks together (the embedded store); any other writes each as it comes
    batches = type(store).write_chunks is not Store.write_chunks

    def packs(pt: Point) -> bool:
        """Whether the point's chunks go to the store in the batch's :meth:`Store.write_chunks` (a tiny point:
        a folder and a file each cost more than its sequences) rather than each as it comes."""
        return batches and pt.results is not None and pt.total <= PACK_SEQUENCES

    packed: list[tuple[Point, ChunkResult]] = []  # small chunks for the next flush's write_chunks

    def write(pt: Point, result: ChunkResult) -> None:
        if packs(pt):
            packed.append((pt, result))
            return
        if pool is None:
            fast.write_chunk(pt.run.id, result)
            return
        writes.append((pt, pool.submit(fast.write_chunk, pt.run.id, result)))
        if len(writes) >= PENDING:
            settle()

    def settle() -> None:
        """Wait for the chunk files being written; one that could not be (a full disk) fails its point."""
        for pt, written in writes:
            exc = written.exception()
            if isinstance(exc, AnchoError):
                fail(pt, str(exc))
            elif exc is not None:
                raise exc
        writes.clear()

    def store_packed() -> None:
        """Write the small chunks taken since the last flush: one transaction (a full disk fails their points)."""
        try:  # (through the copy without per-file fsyncs: a chunk too large for a row is a file the syncfs covers)
            fast.write_chunks([(pt.run.id, result) for pt, result in packed])
        except AnchoError as exc:
            for pt, _ in packed:
                fail(pt, str(exc))
        packed.clear()

    def flush() -> None:
        store_packed()  # (before the records that say their points are done)
        settle()  # every file of a point this flush ends is written before the syncfs that makes it durable
        began = time.monotonic()
        if fast is not store:
            _durable(store)
        pace.wrote(began, time.monotonic())
        finished = []
        for pt in ended:
            if names and pt.custom is None and pt.error is None:
                later.append(pt)
                if pt.deferred:  # its summary functions read the store, which names the run by its record
                    pt.deferred = False
                    create([pt])
            else:
                finished.append(pt)
        described = describe_points(finished)  # (their outputs together: one NumPy call a statistic, not a point)
        for pt in finished:  # their records, made final in memory and written whole (none is read back)
            for key, value in final_changes(pt, specs[pt.p["point"]], store, described.get(id(pt))).items():
                setattr(pt.run, key, value)
        fresh = [pt.run for pt in finished if pt.deferred]
        known = [pt.run for pt in finished if not pt.deferred]
        if fresh:
            store.create_runs(fresh)
        if known:
            store.replace_runs(known)
        for pt in finished:  # (one transaction for the batch: a record apiece cost more than a tiny point's sequences)
            on_finished(pt)
        ended.clear()

    def fail(pt: Point, error: str) -> None:
        if pt.error is None:
            pt.error = error
            pt.todo.clear()
            if pt.inflight == 0 and not pt.ended:
                pt.ended = True
                ended.append(pt)

    # once a tenth of the sequences is left to hand out, the points ended so far are written: the last flush, after
    # the last result, runs on one core while the workers are idle (~0.1 ms a point: ~100 ms for 1,000 points)
    near_end: int | None = plan.remaining // 10
    ended_well = False  # (the last flush made everything durable; else the finally below does)
    try:
        for item in executor.map_chunks(points[0].task, plan):
            if handle.cancelled:
                raise RunCancelled("the study was cancelled")
            pt = plan._of(chunk_of(item))  # (a result of a chunk with its own task says which: base.tag_result)
            pt.inflight -= 1
            if isinstance(item, ChunkLost):
                pt.retries += 1
                if item.chunk.attempt >= MAX_RETRIES:
                    what = f"sequences {item.chunk.start}..{item.chunk.stop - 1}"
                    fail(pt, f"{what} were lost {item.chunk.attempt + 1} times: {item.reason}")
                elif pt.error is None:
                    plan.retry.append(replace(item.chunk, attempt=item.chunk.attempt + 1))
                    plan.remaining += item.chunk.size
                continue
            plan.measure(item)
            on_progress(item.size)
            if pt.error is None:
                _take(pt, item, specs[pt.p["point"]], write, fail)
            if not pt.ended and (pt.complete or pt.error is not None and pt.inflight == 0):
                pt.ended = True
                ended.append(pt)
            if near_end is not None and plan.remaining <= near_end and ended:
                near_end = None
                flush()
            elif pace.due(time.monotonic()):
                flush()
        flush()
        ended_well = True
    except RunCancelled:
        flush()
        ended_well = True
        raise
    finally:
        if pool is not None:  # (an error of the executor call: the files begun are finished, for the next pass)
            pool.shutdown(wait=True)
        if packed:  # and the small chunks taken are stored, so the next pass resumes them instead of redoing them
            store_packed()  # (if the store fails, the points it fails are left to the next pass, which runs them again)
        if fast is not store and not ended_well:  # ... durable before the next pass records any of their points done
            _durable(store)
    for pt in later:
        if handle.cancelled:
            raise RunCancelled("the study was cancelled")
        store.update_run(pt.run.id, schema=pt.schema)  # what the results source reads the chunks as
        try:
            source = store.results(pt.run.id)
        except StoreError as exc:  # (its packed chunks could not become files: a full disk) this point fails
            pt.error = str(exc)
        else:
            pt.custom = executor.summaries(pt.task, source, names)
        store.update_run(pt.run.id, **final_changes(pt, specs[pt.p["point"]], store))
        on_finished(pt)


def _take(
    pt: Point,
    result: ChunkResult | StoredChunk,
    spec: RunSpec,
    write: Callable[[Point, ChunkResult], None],
    fail: Callable[[Point, str], None],
) -> None:
    """Store one chunk of ``pt`` (``write``: now, or by a writer thread that fails the point if it cannot) and fold
    it into the point's state (an error fails the point, not the study)."""
    try:
        first = not pt.schema
        merge_schema(pt.schema, result)
        if first:
            check_outputs(pt.schema, spec.targets, spec.until)
        if isinstance(result, ChunkResult):  # (a StoredChunk is in the store already: its task wrote it)
            write(pt, result)
    except AnchoError as exc:
        fail(pt, str(exc))
        return
    pt.done += result.size
    custom = custom_of(result)
    if custom is not None:
        pt.custom = custom
    if pt.results is not None:
        kept = result if isinstance(result, ChunkResult) else result.kept
        if kept is not None:
            pt.results.append(kept)
    if result.failed:
        pt.failures += result.failed
        if pt.failures > spec.max_failures:
            fail(pt, _failure_message(result, pt.failures, spec.max_failures))


def _durable(store: Store) -> None:
    """Make the chunk files written since the last call durable: one syncfs of the store's file system."""
    home = getattr(store, "home", None)
    if home is None:
        return
    try:
        import ctypes

        fd = os.open(home, os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()
