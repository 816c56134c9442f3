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
also once a tenth of the sequences is left to come back, and again at each
quarter of what was left (the last batch, after the last result, runs while no
worker does), and whenever the executor says its next result will be a while
(:meth:`~ancho.executors.base.ChunkSource.lull`: a Spark task's results come
back together when it ends, and the driver would otherwise wait for the next
task's with them unwritten). Before a batch the plan deepens
each local worker's queue to cover the batch's expected time (:mod:`.pacing`),
so the workers compute through it. Anything this pass cannot finish
(an error of the whole executor call, a summary that needs the store) is left
to the caller's point-by-point pass, which resumes the stored chunks.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from ..chunk import ChunkResult, StoredChunk, failure_message
from ..engine import MAX_RETRIES
from ..errors import AnchoError, NotFound, RunCancelled, StoreError
from ..executors.base import ChunkLost, Executor, chunk_of, custom_of
from ..expressions import check_outputs
from ..kinds import merge_schema
from ..stores.base import Store
from ..stores.chunk_writer import ChunkFolder
from .finals import describe_points, final_changes
from .pacing import FlushCost, Pacer
from .plan import Point, StudyPlan

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

    # once a tenth of the sequences is left to come back, the points ended so far are written, and again once a
    # quarter of what was left then is: the last flush, after the last result, runs on one core while the workers
    # are idle (~0.1 ms a point) and holds only what ended since the one before
    unfinished = plan.remaining
    near_end: int | None = unfinished // 10
    cost = FlushCost()
    due: tuple[int, int] | None = None  # a flush fell due: (plan.handed then, results taken since); it runs once the
    # workers have the deeper queue that lets them compute through it (pacing.py)
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
            unfinished -= item.size
            if pt.error is None:
                _take(pt, item, specs[pt.p["point"]], write, fail)
            if not pt.ended and (pt.complete or pt.error is not None and pt.inflight == 0):
                pt.ended = True
                ended.append(pt)
            lull, plan.lulled = plan.lulled, False  # (the executor waits for its next result: the points ended so far
            # are written now, while they would be waiting, instead of after the last result with the others)
            if due is None and (
                (lull or near_end is not None and unfinished <= near_end) and ended or pace.due(time.monotonic())
            ):
                due = (plan.deepen(cost.seconds(len(ended) + len(packed))), 0)
            if due is not None and plan.ready(*due):
                began, count = time.monotonic(), len(ended)
                flush()
                cost.measured(time.monotonic() - began, count)
                plan.shallow()
                due = None
                if near_end is not None and unfinished <= near_end:  # (a quarter of a few chunks: none)
                    near_end = unfinished // 4 if unfinished >= 16 * max(1.0, plan.chunk[0]) else None
            elif due is not None:
                due = (due[0], due[1] + 1)
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
        merge_schema(pt.schema, result, pt.run.model)
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
            fail(pt, failure_message(result, pt.failures, spec.max_failures, pt.done))


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
