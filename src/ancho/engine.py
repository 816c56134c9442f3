"""The engine: plans chunks, drives an executor, stores results, retries, stops.

It is the only part that knows about chunks, seeds, retries, targets and precision goals. Executors run the
chunks it hands out; stores persist what it gives them; the CLI, the Python API and the server call
:func:`execute`.

Chunk sizing (the heuristic, as in joblib's auto-batching): the first chunks are small (``INITIAL_CHUNK``
sequences) so that the time per sequence is measured within milliseconds; after that a chunk is sized to take
about ``TARGET_SECONDS`` (so per-chunk costs, a pickled batch and one Parquet file, stay far below 1% of the
work and progress still updates several times a second), never more than ``MAX_CHUNK`` sequences (bounded worker
memory), never growing more than ``GROWTH``-fold at once (one lucky fast chunk cannot produce a huge one), and
no more than a ``1/(2·workers)`` share of what is left, so the last chunks spread over all workers instead of
one worker finishing alone. benchmarks/bench_overhead.py and bench_parallel.py measure the result. An executor
that schedules a fixed set of tasks (Spark) overrides this through its ``chunk_size`` hint: equal chunks of the
size it asks for (at most ``MAX_CHUNK``). A batch model's chunks are whole blocks, up to ``MAX_BATCH_CHUNK``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import __version__
from .chunk import ChunkResult, StoredChunk, failure_message, trajectory_steps
from .columns import release_memory
from .errors import AnchoError, InputError, RunCancelled, RunFailed
from .executors.base import Chunk, ChunkLost, ChunkSource, Executor, Task
from .executors.base import RunHandle as RunHandle  # (where it has always been imported from)
from .expressions import Goal, Target, check_outputs
from .inputs import MAX_SEQUENCES, RunSettings, run_settings
from .kinds import block_advice, merge_kinds, merge_schema
from .loading import LoadedModel
from .model import checked_block
from .stats import Running, build_summary, chunk_tallies, clean
from .stores.base import RunRecord, Store
from .stores.landed import LandedColumn
from .stores.record_spec import RecordSpec
from .writes import ChunkWrites

if TYPE_CHECKING:
    import numpy as np

_LOG = logging.getLogger(__name__)

INITIAL_CHUNK = 8
TARGET_SECONDS = 0.2
MAX_CHUNK = 262_144
#: a batch model's chunks may be larger (~30 ns a sequence: per-chunk costs weigh more; docs/benchmarks.md "Batch
#: models"), still whole blocks
MAX_BATCH_CHUNK = 1_048_576
GROWTH = 16
#: a chunk's results stay below this many bytes (wide or trajectory outputs: 1,000 steps are 8 KB a sequence), so a
#: worker, the pipe and a summary reading a chunk back hold a bounded amount whatever the time per sequence
MAX_CHUNK_BYTES = 16 << 20
MAX_RETRIES = 3  # attempts after the first, per chunk, when a worker dies
PROGRESS_EVERY = 0.2  # seconds between run-record progress writes


@dataclass
class RunSpec:
    """What to run, validated: the engine's input from every front end."""

    params: dict[str, Any]
    sequences: int
    seed: int
    targets: list[Target] = field(default_factory=list)
    until: Goal | None = None
    max_sequences: int | None = None
    max_failures: int = 0

    @classmethod
    def build(
        cls,
        model: LoadedModel,
        params: dict[str, Any] | None = None,
        sequences: int | None = None,
        seed: int | None = None,
        targets: Any = (),  # expression strings or Targets, as run_settings takes them
        until: str | None = None,
        max_sequences: int | None = None,
        max_failures: int | None = 0,
        resolved: bool = False,
        cap: int = MAX_SEQUENCES,
        capped_by: str | None = None,
    ) -> RunSpec:
        """Validate every input (:func:`run_settings`'s rules) and name the first bad one.

        ``resolved=True``: ``params`` were already validated by the model (in
        a worker, for a server that does not import user code).
        """
        if resolved:
            resolved_params = dict(params or {})
        elif model.cls is None:
            raise InputError(f"model {model.name} is not loaded here; validate its parameters in a worker")
        else:
            resolved_params = model.cls.recorded_params(params)
        return cls.of(
            resolved_params,
            run_settings(sequences, seed, targets, until, max_sequences, max_failures, cap=cap, capped_by=capped_by),
        )

    @classmethod
    def of(cls, params: dict[str, Any], settings: RunSettings) -> RunSpec:
        """The spec of validated ``params`` and checked ``settings``."""
        st = settings
        return cls(params, st.sequences, st.seed, st.targets, st.until, st.max_sequences, st.max_failures)


def new_run_id() -> str:
    """12 random hex digits (48 bits: what ``uuid4().hex[:12]`` gave, for a quarter of its cost)."""
    return os.urandom(6).hex()


class Plan(ChunkSource):
    """The sequences still to run, handed out as adaptively sized chunks.

    ``chunk_size`` is the executor's hint (:meth:`Executor.chunk_size`): when
    it returns a size for a batch, that batch is cut into chunks of that size
    instead (a backend that wants a fixed set of tasks, such as Spark).

    ``block``: a batch model's block size B. Its chunks then end on block
    edges (sizes rounded up to multiples of B, the first one block), so no
    block is computed by two chunks, and may grow to ``MAX_BATCH_CHUNK``.
    """

    def __init__(
        self,
        todo: list[tuple[int, int]],
        workers: int,
        chunk_size: Callable[[int, int], int | None] | None = None,
        block: int | None = None,
    ):
        self.todo: deque[tuple[int, int]] = deque(todo)
        self.retry: deque[Chunk] = deque()
        self.workers = max(1, workers)
        self.per_sequence: float | None = None  # seconds, smoothed
        self.row_bytes = 8  # of one sequence's outputs, from the first chunk's kinds
        self.block = 1 if block is None else checked_block(block, "being run")
        self.last_size = self.block if block else INITIAL_CHUNK
        self.batch = bool(block)
        self.inflight = 0
        self.chunk_size = chunk_size
        self.fixed = self._fixed()

    def _fixed(self) -> int | None:
        size = self.chunk_size(self.remaining, self.workers) if self.chunk_size and self.todo else None
        return None if size is None else max(1, min(int(size), self._max()))

    def _max(self) -> int:
        return max(MAX_BATCH_CHUNK, self.block) if self.batch else MAX_CHUNK

    def extend(self, start: int, stop: int) -> None:
        if stop > start:
            self.todo.append((start, stop))
            self.fixed = self._fixed()

    def requeue(self, chunk: Chunk) -> None:
        self.retry.append(Chunk(chunk.start, chunk.stop, chunk.attempt + 1))

    @property
    def remaining(self) -> int:
        return sum(b - a for a, b in self.todo) + sum(c.size for c in self.retry)

    def measure(self, result: ChunkResult | StoredChunk) -> None:
        self.inflight -= 1
        if result.size and result.seconds > 0:
            t = result.seconds / result.size
            self.per_sequence = t if self.per_sequence is None else 0.5 * self.per_sequence + 0.5 * t
        self.row_bytes = max(self.row_bytes, sum(8 * (trajectory_steps(k) or 1) for k in result.kinds().values()))

    def lost(self) -> None:
        self.inflight -= 1

    def size(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.per_sequence is None:
            return self.block if self.batch else INITIAL_CHUNK
        ideal = TARGET_SECONDS / max(self.per_sequence, 1e-9)
        share = math.ceil(self.remaining / (2 * self.workers))
        most = max(self.block, MAX_CHUNK_BYTES // self.row_bytes)
        return int(max(1, min(ideal, self._max(), most, self.last_size * GROWTH, share)))

    def next(self) -> Chunk | None:
        if self.retry:
            self.inflight += 1
            return self.retry.popleft()
        if not self.todo:
            return None
        size = self.size()
        start, stop = self.todo.popleft()
        end = -(-(start + size) // self.block) * self.block  # up to a block edge (a no-op without blocks)
        n = min(end, stop) - start
        if start + n < stop:
            self.todo.appendleft((start + n, stop))
        self.last_size = n
        self.inflight += 1
        return Chunk(start, start + n)

    @property
    def idle(self) -> bool:
        return not self.todo and not self.retry and self.inflight == 0


def gaps(done: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The ranges of ``0..total-1`` not covered by ``done`` (sorted ranges)."""
    out, pos = [], 0
    for a, b in sorted(done):
        if a > pos:
            out.append((pos, min(a, total)))
        pos = max(pos, b)
    if pos < total:
        out.append((pos, total))
    return [(a, b) for a, b in out if b > a]


def create_record(
    model: LoadedModel,
    spec: RunSpec,
    executor_name: str,
    workers: int | None,
    owner: str = "local",
    run_id: str | None = None,
    status: str = "queued",
    extra: RecordSpec | dict[str, Any] | None = None,
) -> RunRecord:
    """A new run's record; ``extra``: its spec (typed, or its JSON form: a study's points pass the typed one, which
    is not parsed again for each of 2,000 points)."""
    import numpy

    return RunRecord(
        id=run_id or new_run_id(),
        model=model.name,
        entry=model.ref.entry,
        source=model.source,
        source_hash=model.source_hash,
        owner=owner,
        params=clean(spec.params),
        seed=spec.seed,
        sequences=spec.sequences,
        until=spec.until.expr if spec.until else None,
        max_sequences=spec.max_sequences,
        max_failures=spec.max_failures,
        targets=[t.expr for t in spec.targets],
        executor=executor_name,
        workers=workers,
        status=status,
        total=spec.sequences,
        spec=extra if extra is not None else {},
        ancho_version=__version__,
        numpy_version=numpy.__version__,
    )


def execute(
    model: LoadedModel,
    spec: RunSpec,
    store: Store,
    executor: Executor,
    record: RunRecord,
    progress: Callable[[int, int], None] | None = None,
    handle: RunHandle | None = None,
) -> RunRecord:
    """Drive ``record``'s run to a final status and return the final record.

    The record must exist in ``store``. Chunks already stored (a resumed run)
    are kept and not recomputed. Raises the :class:`AnchoError` that failed
    the run (after recording it), or :class:`RunCancelled`.
    """
    handle = handle or RunHandle()
    handle.executor = executor
    run_id = record.id
    schema = dict(record.schema)
    total = record.total or spec.sequences
    try:
        done_ranges = store.completed_ranges(run_id)
    except AnchoError as exc:  # (the store cannot even list them: a full disk as it moves packed chunks to files)
        _record_failure(store, run_id, record.done, record.failures, str(exc))
        raise
    done = sum(b - a for a, b in done_ranges if b <= total)
    if done and not schema:  # stored by a pass killed before it recorded what they hold: read it from the chunks
        for start, stop, kinds in store.stored_kinds(run_id):
            merge_kinds(schema, kinds, start, stop, model.name)
        if schema:
            store.update_run(run_id, schema=schema)
    failures = record.failures
    retries = record.retries
    stats: dict[str, Running] = {}
    tracked = spec.targets + ([spec.until.target] if spec.until and spec.until.target else [])

    def track(name: str, column: np.ndarray) -> None:
        # chunk_tallies: a trajectory also gets its max/min/last(NAME) tallies, which mean(last(NAME)) goals track
        for key, tally in chunk_tallies({name: column}, tracked).items():
            stats.setdefault(key, Running()).merge(tally)

    if done and spec.until:
        for name in schema:
            for block in store.iter_column(run_id, name):  # (a block at a time: the column may be too long to hold)
                track(name, block)
    plan = Plan(
        gaps(done_ranges, total), executor.workers, getattr(executor, "chunk_size", None), model.info.get("block")
    )
    store.update_run(run_id, status="running", started=record.started or time.time(), error=None, total=total)
    # (summary functions get no sink: user code, no password)
    task = Task(model.ref, spec.params, spec.seed, run_id, block=model.info.get("block") or 1)
    # tasks that store their chunks themselves (Spark on Cassandra) send StoredChunks: a precision goal's tallies
    sink = executor.results_sink(store, run_id)
    here = type(executor).summarize is Executor.summarize  # (LandedColumn: the summary's column, gathered as it lands)
    landed = LandedColumn(total, enabled=here and not done_ranges and not spec.until)
    tallied = tuple(tracked) if spec.until else None
    chunk_task = task if sink is None else replace(task, sink=sink, tally=tallied, gather=landed.ok)
    last_write = 0.0
    writes = ChunkWrites(store, run_id)  # (large chunks on a thread of their own while the next arrives)
    if progress:
        progress(done, total)
    try:
        if spec.until and not plan.todo:
            total = _next_total(spec, stats, total)  # resumed after a batch completed
            plan.extend(record.total, total)
        for item in executor.map_chunks(chunk_task, plan):
            if handle.cancelled:
                raise RunCancelled("the run was cancelled")
            if isinstance(item, ChunkLost):
                plan.lost()
                retries += 1
                if item.chunk.attempt >= MAX_RETRIES:
                    raise RunFailed(
                        f"sequences {item.chunk.start}..{item.chunk.stop - 1} were lost {item.chunk.attempt + 1} times: {item.reason}"
                    )
                plan.requeue(item.chunk)
                continue
            result: ChunkResult | StoredChunk = item
            plan.measure(result)
            first_schema = not schema
            if merge_schema(schema, result, model.name):
                store.update_run(run_id, schema=schema)
                if first_schema:
                    check_outputs(schema, spec.targets, spec.until)
                    if advice := block_advice(schema, model.info.get("block"), model.name):
                        _LOG.warning(advice)
            if isinstance(result, ChunkResult):
                writes.put(result)
            # (a StoredChunk is in the store already: its task sent it once the chunk was marked done)
            landed.add(result)
            done += result.size
            if result.failed:
                failures += result.failed
                if failures > spec.max_failures:
                    raise RunFailed(failure_message(result, failures, spec.max_failures, done))
            if spec.until:
                tallies = result.tallies if isinstance(result, StoredChunk) else chunk_tallies(result.columns, tracked)
                for name, tally in tallies.items():
                    stats.setdefault(name, Running()).merge(tally)
            if spec.until and plan.idle:
                new_total = _next_total(spec, stats, total)
                plan.extend(total, new_total)
                total = new_total
            now = time.monotonic()
            if now - last_write >= PROGRESS_EVERY or plan.idle:
                store.update_run(run_id, done=done, total=total, failures=failures, retries=retries)
                last_write = now
            if progress:
                progress(done, total)
        writes.wait()  # (every chunk the driver wrote is in the store before the summary reads it)
        if done > failures and not schema:  # (stored_kinds found none either: chunks written by something else)
            raise RunFailed(f"{done:,} sequences are stored but their outputs were never recorded; run it again")
        # the summary phase is part of the run: if it fails or is cancelled, so is the run
        store.update_run(run_id, done=done, total=total, failures=failures, retries=retries, schema=schema)
        final = store.get_run(run_id)
        goal_info = _goal_info(spec, stats) if spec.until else None
        results = store.results(run_id)  # where the run's results are, typed: what a summary reads
        custom = executor.summaries(task, results, model.summaries) if model.summaries else {}
        if handle.cancelled:
            raise RunCancelled("the run was cancelled")
        final.status = "succeeded"
        # a cluster backend may summarise where the results are (None: here, one column at a time)
        summary = executor.summarize(task, results, final.to_dict(), schema, spec.targets, custom, goal_info)
        if summary is None:
            release_memory()  # what streaming the results left behind, before the summary reads whole columns
            columns = store.summary_columns(run_id, lambda: handle.cancelled)  # (outputs read in groups)
            summary = build_summary(
                final.to_dict(),
                schema,
                landed.reader(columns.read),
                spec.targets,
                custom,
                goal_info,
                read_blocks=columns.blocks,  # trajectories, columns too long to hold: streamed, chunk by chunk
                cancelled=columns.cancelled,  # (asked between outputs: a cancel stops the summary, RunCancelled)
            )
    except RunCancelled:
        if handle.interrupted:
            store.update_run(run_id, status="queued", done=done, failures=failures, retries=retries, error=None)
        else:
            store.update_run(
                run_id, status="cancelled", done=done, failures=failures, finished=time.time(), error="cancelled"
            )
        raise
    except KeyboardInterrupt:
        handle.cancel()
        store.update_run(
            run_id, status="cancelled", done=done, failures=failures, finished=time.time(), error="interrupted"
        )
        raise
    except AnchoError as exc:
        _record_failure(store, run_id, done, failures, str(exc))
        raise
    except Exception as exc:
        _record_failure(store, run_id, done, failures, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        writes.wait(raise_errors=False)  # (no write of this run goes on after it returns)
    store.update_run(run_id, status="succeeded", finished=time.time(), summary=summary)
    return store.get_run(run_id)


def _record_failure(store: Store, run_id: str, done: int, failures: int, error: str) -> None:
    """Mark the run failed; if the store cannot even take that (its disk is full), the run's own error still reaches the user."""
    with contextlib.suppress(Exception):  # else the record stays "running", its stored chunks intact: a rerun resumes
        store.update_run(run_id, status="failed", done=done, failures=failures, finished=time.time(), error=error)


def _next_total(spec: RunSpec, stats: dict[str, Running], total: int) -> int:
    """After a batch: the sequence count the precision goal needs next (== total when met or capped).

    The needed count is extrapolated from the current half-width h(n)
    (h shrinks as 1/sqrt(n)): n·(h/goal)², plus 10%, at least 25% more
    than now and at most ten times as many (an early variance estimate can
    be far off), capped by max_sequences.
    """
    goal = spec.until
    assert goal is not None and spec.max_sequences is not None
    running = stats.get(goal.output)
    h = running.half_width(goal) if running else None
    want = running.goal_width(goal) if running else None
    if h is not None and want is not None and h <= want:
        return total
    if total >= spec.max_sequences:
        return total
    if h is None or not want:
        needed = total * 10
    else:
        needed = math.ceil(total * min(h / want, 10.0) ** 2 * 1.1)  # (growth is capped at 10x below anyway)
    return int(min(spec.max_sequences, max(needed, math.ceil(total * 1.25)), total * 10))


def _goal_info(spec: RunSpec, stats: dict[str, Running]) -> dict[str, Any]:
    goal = spec.until
    assert goal is not None
    running = stats.get(goal.output, Running())
    h = running.half_width(goal)
    want = running.goal_width(goal)
    return {
        "expr": goal.expr,
        "half_width": h,
        "goal": want,
        "met": bool(h is not None and want is not None and h <= want),
        "max_sequences": spec.max_sequences,
    }
