"""The Spark executor's driver side: :class:`SparkExecutor`, the loop that turns the engine's chunks into Spark jobs.

The engine still owns chunks, seeds and retries. It asks this backend for a fixed chunk size
(:meth:`SparkExecutor.chunk_size`: about ``TASKS_PER_CORE`` chunks per core, since Spark schedules a fixed set of
tasks rather than pulling work as it goes). Each Spark task is a single-partition Spark job submitted from a thread
pool and runs one chunk, or several when the model's sequences are cheap
(:func:`~ancho.executors.spark.cost.tasks_chunks`), so results reach the engine (store, progress) chunk by chunk as
tasks finish.

What runs in the tasks is :mod:`~ancho.executors.spark.tasks`; what they
send back is :mod:`~ancho.executors.spark.codec`; the session they run in is
:mod:`~ancho.executors.spark.session`. Because a chunk's outputs depend only
on (seed, sequence), a task that Spark retries after losing an executor
returns the same bytes, and a job yields one result per partition: nothing
is lost or duplicated.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ...chunk import ChunkResult, StoredChunk
from ...claims import misfit
from ...errors import AnchoError, RunCancelled, RunFailed
from ...loading import ModelRef
from ...stores.results_sources import CassandraResults, ChunkFiles, ResultsSource
from ..base import Chunk, ChunkLost, ChunkSource, Executor, Task, tag_result
from ..wire import ForgedReply
from . import cost, sinks
from .codec import paired
from .isolation import Isolation
from .options import SparkOptions
from .session import SESSION, WAIT_EXECUTORS, on_this_machine
from .tasks import Job, Order, model_class, run_partition

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import DataFrame, SparkSession

    from ...expressions import Target
    from ...stores.base import Store
    from ...stores.chunk_writer import ChunkFolder

#: runs of at least this many sequences are summarised by Spark (summary="auto") on a cluster of other machines: below,
#: the driver is quicker (1M sequences: ~1 s against 12-30 s; 30M: ~1 s against 24 s on the 2-core test cluster), and
#: on this machine at any size (the same cores and files; docs/spark.md)
SPARK_SUMMARY_MIN = 20_000_000
_LOG = logging.getLogger("ancho.spark")


_T = TypeVar("_T")


class SparkExecutor(Executor):
    """Runs chunks as Spark tasks on the cluster at ``master``; set up by a :class:`SparkOptions`.

    ``SparkExecutor(master, SparkOptions(...))``; the former keywords still work
    (``SparkExecutor(master, workers, conf=…, wrap=…)``, see :meth:`SparkOptions.of`).

    ``workers`` (default: the cluster's default parallelism) is the number of
    cores the chunk plan assumes. ``conf`` adds Spark properties for the
    session. ``summary``: where the run's summary is computed — ``"spark"``
    (Spark SQL, and user summary functions in a pandas UDF), ``"driver"``
    (as for a local run), or ``"auto"`` (Spark from ``SPARK_SUMMARY_MIN``
    sequences on, on a cluster of other machines). Spark needs to read the stored results:
    ``shared_storage`` says whether the executors see the driver's store
    folder at the same path (default: only when the master runs on this
    machine); when they cannot, the driver summarises and the log says so.

    A model with its own ``requirements.txt`` environment (``python``/``env``
    from :meth:`ancho.executors.prepare.Prepared.executor_options`) runs, in
    each task, in a local worker of that environment, which each executor
    builds once (see :mod:`ancho.executors.spark.isolation`) under
    ``environments`` (default: the driver's folder when storage is shared,
    else ``$ANCHO_HOME/envs`` on the executor). ``sandbox`` (a
    :class:`~ancho.isolation.SandboxPolicy`, or a ``Sandbox`` built for
    the run): every task's worker runs in bubblewrap on its executor.
    ``results`` is the local executor's option too: summary functions that
    must run in a local worker (a sandbox, an environment) read the results
    through it.

    ``writes`` (default ``$ANCHO_SPARK_WRITES``, else ``"auto"``): who writes
    the results — ``"tasks"`` (each Spark task writes its chunks, to a
    Cassandra store with the owner's role, to an embedded store's folder as
    its chunk files, and returns only their range, kinds, failure count and
    tallies), ``"driver"`` (tasks return the columns, the engine writes them),
    or ``"auto"``: tasks, once a probe task has reached Cassandra, or seen the
    embedded store's folder, from an executor (once per session), else the
    driver, with a warning saying why (:mod:`.sinks`).
    """

    mixed_tasks = True  # a study's points' chunks share Spark tasks (studies.packed)
    mixed_sinks = True  # and with a Cassandra store the tasks write each point's chunks themselves

    def __init__(self, master: str, options: SparkOptions | int | None = None, **keywords: Any):
        if not isinstance(options, SparkOptions):  # the former signature: (master, workers, **keywords)
            options = SparkOptions.of(options, **keywords)
        elif keywords:
            raise TypeError(f"SparkExecutor takes SparkOptions or keywords, not both (got {', '.join(keywords)})")
        self.options = options
        self.master = master
        self.conf = dict(options.conf)
        self.extra_env = dict(options.env)
        self.shared_storage = (
            on_this_machine(master) if options.shared_storage is None else bool(options.shared_storage)
        )
        policy = options.policy
        self.isolation = Isolation(sandbox=policy)
        wrap = options.wrap
        # how the driver runs user code itself
        self._local_options: dict[str, Any] = {"wrap": wrap} if wrap is not None else {}
        if options.results is not None:  # a results source the sandboxed summary worker can read
            self._local_options["results"] = options.results
        python = options.python
        if python is not None and os.path.abspath(python) != os.path.abspath(sys.executable):  # (venv: links to base)
            # a model environment: executors build the same one, or use the driver's folder when they share its storage
            self._local_options.update(python=python, env=dict(options.env))
            self.extra_env.pop("PYTHONPATH", None)  # the driver's path to Ancho: executors have their own
            driver_envs = str(Path(python).parents[2]) if self.shared_storage else None
            self.isolation = Isolation(environment=True, envs=options.environments or driver_envs, sandbox=policy)
        self._workers = options.workers
        self._cancelled = threading.Event()
        self._group: str | None = None
        self.last_group: str | None = (
            None  # the job group of the latest run (Spark's UI and status tracker list its jobs)
        )
        self.summary_mode = options.summary
        self.last_summary: str | None = None  # how the latest run was summarised: "spark" or "driver: why"
        self.writes = options.writes_mode()
        self.last_writes: str | None = None  # who wrote the latest run's results: "tasks" or "driver: why"
        self.last_received = 0  # bytes the driver received from the latest run's tasks

    # -- session --------------------------------------------------------------
    @property
    def session(self) -> SparkSession:
        return SESSION.get(self.master, self.conf)

    @property
    def context(self) -> SparkContext:
        return self.session.sparkContext

    def start(self) -> SparkExecutor:
        """Start (or join) the Spark session now and wait for a first executor."""
        sc = self.context
        deadline = time.monotonic() + WAIT_EXECUTORS
        # the driver counts as one entry; executors register a moment after the session starts
        while sc._jsc.sc().getExecutorMemoryStatus().size() < 2 and time.monotonic() < deadline:
            if self.master.startswith("local"):
                break
            time.sleep(0.1)
        else:
            if not self.master.startswith("local") and sc._jsc.sc().getExecutorMemoryStatus().size() < 2:
                # a busy cluster gives cores later, so this is not an error; but a stopped one never does
                _LOG.warning(
                    "no Spark executor has registered with %s after %.0f s: tasks wait until the cluster gives "
                    "this application cores (is the cluster up? scripts/services status spark)",
                    self.master,
                    WAIT_EXECUTORS,
                )
        SESSION.warm_up(sc)
        return self

    @property
    def workers(self) -> int:  # type: ignore[override]
        if self._workers is None:
            self._workers = max(1, self.start().context.defaultParallelism)
        return self._workers

    def chunk_size(self, total: int, workers: int) -> int | None:
        """About ``TASKS_PER_CORE`` chunks per core for a batch (the engine caps them at MAX_CHUNK)."""
        return cost.chunk_size(total, workers)

    def _ship(self, task: Task) -> tuple[Task, str | None]:
        """The task and the name of its model folder's archive in the session (None: nothing to ship)."""
        return task, SESSION.ship(self.context, task.ref)

    # -- where results are written ----------------------------------------------
    def results_sink(self, store: Store, run_id: str) -> CassandraResults | ChunkFolder | None:
        """Where Spark tasks are to write this run's chunks themselves (see ``writes`` and :mod:`.sinks`), or None."""
        self.last_writes, sink = "driver: asked for (writes='driver')", None
        if self.writes != "driver":
            sink, self.last_writes = sinks.tasks_sink(
                store, run_id, self.writes == "tasks", self.shared_storage, self._probe, self._probe_folder
            )
        _LOG.info("Spark run %s: results written by the %s", run_id, self.last_writes)
        return sink

    def _probe(self, source: CassandraResults) -> str | None:
        """None if a Spark task reaches the source's Cassandra with its role, else why not (once per session and keyspace)."""
        return sinks.probe_cassandra(self.context, source, _reason)

    def _probe_folder(self, home: Path) -> str | None:
        """None if Spark tasks see the embedded store's folder ``home`` at the driver's path, else why not (once per
        session and folder)."""
        return sinks.probe_folder(self.context, home, _reason)

    # -- work -----------------------------------------------------------------
    def map_chunks(self, task: Task, source: ChunkSource) -> Iterator[ChunkResult | StoredChunk | ChunkLost]:
        """Chunks pulled from ``source`` as Spark jobs of one task each; a chunk carrying its own task (a study's
        point) runs with it, each distinct task sent once per job (:class:`~.tasks.Job`)."""
        self._cancelled.clear()
        self.last_received = 0
        sc = self.start().context
        group = f"ancho-{task.run_id or 'run'}-{uuid.uuid4().hex[:8]}"
        self._group = self.last_group = group
        one = sc.parallelize([0], 1)  # every job runs one task; the chunks' ranges travel in its function
        done: queue.Queue[tuple[int, list[bytes] | BaseException]] = queue.Queue()
        pending: deque[Chunk] = deque()  # handed out by the engine, not yet in a Spark task
        inflight: dict[int, list[Chunk]] = {}
        futures: list[Future[None]] = []
        pool = ThreadPoolExecutor(max_workers=max(4, 2 * self.workers + 2), thread_name_prefix="ancho-spark")
        next_id = 0
        cost_key, model_key = cost.cost_key(task), cost.model_key(task)
        if (guess := cost.COSTS.per_sequence(model_key)) is not None:  # (a study's points: its last run's cost)
            source.expect(guess)
        archives: dict[ModelRef, str | None] = {}
        mixed = False  # the source hands out chunks with their own tasks (a study's plan)
        seconds, sequences = 0.0, 0  # what this call's chunks cost so far

        def wanted() -> bool:
            """Pull more chunks now? A study's plan sizes its chunks from what came back (a first one is 8 sequences):
            until one came back, one chunk per core, then all it has; all at once if a run measured the model."""
            return not mixed or sequences > 0 or guess is not None or len(pending) + len(inflight) < self.workers

        def job(key: int, chunks: list[Chunk]) -> None:
            try:
                if self._cancelled.is_set():
                    raise RunCancelled("the run was cancelled")
                sc.setJobGroup(
                    group,
                    f"ancho run {task.run_id}: sequences {chunks[0].start}..{chunks[-1].stop - 1}",
                    interruptOnCancel=True,
                )
                fn = functools.partial(run_partition, self._job(group, task, chunks, archives))
                done.put((key, sc.runJob(one, fn, [0])))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the driver loop
                done.put((key, exc))

        try:
            while True:
                if self._cancelled.is_set():
                    raise RunCancelled("the run was cancelled")
                while wanted() and (chunk := source.next()) is not None:
                    pending.append(chunk)
                    mixed = mixed or chunk.task is not None
                # until a first chunk has measured the model's cost, one chunk per task and one task per core
                per_sequence = cost.COSTS.per_sequence(cost_key)
                if per_sequence is None and mixed and (sequences or guess is not None):
                    # a study's tiny chunks are each shorter than a cost sample: their sum measures a chunk's cost
                    per_sequence = seconds / sequences if sequences else guess
                n = cost.tasks_chunks(per_sequence, pending[0].size, len(pending), self.workers) if pending else 0
                most = cost.task_sequences(cost.COSTS.bytes_per_sequence(cost_key))
                while pending and (per_sequence is not None or len(inflight) < self.workers):
                    # (n is decided for all that is pending, so the tasks of one round are equal)
                    inflight[next_id] = chunks = cost.take(pending, n, most)
                    futures.append(pool.submit(job, next_id, chunks))
                    next_id += 1
                if not inflight:
                    return
                try:
                    key, value = done.get(timeout=0.25)
                except queue.Empty:
                    continue
                chunks = inflight.pop(key)
                if self._cancelled.is_set():
                    raise RunCancelled("the run was cancelled")
                if isinstance(value, AnchoError):
                    raise value
                if isinstance(value, BaseException):
                    # the job failed after Spark's own task retries (spark.task.maxFailures): the engine decides
                    for chunk in chunks:
                        yield ChunkLost(chunk, _reason(value))
                    continue
                for chunk, (result, custom), size, last in paired(chunks, value):  # (record by record, as they came)
                    self.last_received += size
                    if last and inflight and done.empty():
                        source.lull()  # (the next result comes when another task ends)
                    if (problem := misfit(result, chunk.start, chunk.stop, custom, chunk.summaries)) is not None:
                        raise ForgedReply(f"a Spark task's record does not answer its chunk: {problem}; refused")
                    cost.COSTS.learn_bytes(cost_key, result)
                    if chunk.task is None:
                        for learnt in (cost_key, model_key):
                            cost.COSTS.learn(learnt, result)
                    else:  # a study's chunk: which point it is, and its summary values
                        tag_result(result, chunk, custom)
                        seconds, sequences = seconds + result.seconds, sequences + result.size
                    yield result
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if inflight:
                # a pool thread may be submitting its job just as the group is cancelled: cancel until all are back
                self._cancel_group(group)
                threading.Thread(target=self._reap, args=(group, futures), daemon=True).start()
            self._group = None

    def _job(self, group: str, task: Task, chunks: list[Chunk], archives: dict[ModelRef, str | None]) -> Job:
        """The Spark task for ``chunks``: each distinct task among them once, with this executor's environment."""
        tasks: list[Task] = []
        index: dict[int, int] = {}  # id(task) -> its place in tasks
        orders = []
        for chunk in chunks:
            t = chunk.task or task
            i = index.get(id(t))
            if i is None:
                i = index[id(t)] = len(tasks)
                tasks.append(dataclasses.replace(t, env={**self.extra_env, **t.env}))
            orders.append(Order(i, chunk.start, chunk.stop, chunk.summaries, chunk.keep))
        refs = {t.ref for t in tasks}
        if len(refs) > 1:
            raise RunFailed("one Spark call runs one model: its chunks' tasks name different models")
        ref = next(iter(refs))
        if ref not in archives:
            archives[ref] = SESSION.ship(self.context, ref)
        return Job(group, tuple(tasks), archives[ref], self.isolation, tuple(orders))

    # -- summaries --------------------------------------------------------------
    def _summary_frame(
        self, source: ResultsSource, record: dict[str, Any], kinds: dict[str, str]
    ) -> tuple[DataFrame | None, str]:
        """The results as a Spark DataFrame when this run is to be summarised by Spark, else None (and why)."""
        if self.summary_mode == "driver" or not kinds:
            return None, "driver: asked for" if kinds else "driver: no outputs"
        if self.summary_mode == "auto" and int(record.get("done") or 0) < SPARK_SUMMARY_MIN:
            return None, f"driver: fewer than {SPARK_SUMMARY_MIN:,} sequences"
        if self.summary_mode == "auto" and on_this_machine(self.master):
            return None, "driver: the executors run on this machine (no more cores than the driver's, the same files)"
        if not isinstance(source, (ChunkFiles, CassandraResults)):
            why = f"driver: Spark cannot read a {getattr(source, 'kind', type(source).__name__)} results source"
        elif isinstance(source, ChunkFiles) and not self.shared_storage:
            why = f"driver: the executors do not share the store's folder {source.folder} (shared_storage=False)"
        else:
            from .summary import results_frame

            frame = results_frame(self.session, source, kinds)
            if frame is not None:
                return frame, "spark"
            why = "driver: no stored results"
        _LOG.warning("the summary of this Spark run is computed in the driver (%s)", why.partition(": ")[2])
        return None, why

    def _in_group(self, run_id: str, what: str, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` (Spark jobs) under a job group of its own, so cancel() stops it."""
        group = f"ancho-{run_id or 'run'}-{what}-{uuid.uuid4().hex[:8]}"
        self._group = group
        try:
            self.context.setJobGroup(group, f"ancho run {run_id}: {what}", interruptOnCancel=True)
            return fn()
        except Exception:
            if self._cancelled.is_set():
                raise RunCancelled("the run was cancelled") from None
            raise
        finally:
            self._group = None

    def summarize(
        self,
        task: Task,
        source: ResultsSource,
        record: dict[str, Any],
        kinds: dict[str, str],
        targets: list[Target],
        custom: dict[str, Any],
        goal: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        frame, self.last_summary = self._summary_frame(source, record, kinds)
        if frame is None:
            return None
        from .summary import summarize

        return self._in_group(task.run_id, "summary", lambda: summarize(frame, record, kinds, targets, custom, goal))

    def summaries(self, task: Task, source: ResultsSource, names: tuple[str, ...]) -> dict[str, Any]:
        """The model's ``@ancho.summary`` functions in a Spark task (pandas UDF), when Spark summarises this run."""
        if self.isolation.nested:  # the model's code needs its environment or a sandbox: a local worker, as locally
            return self._local_summaries(task, source, names)
        stored = source.sequences if isinstance(source, ChunkFiles) else 0
        frame, _ = self._summary_frame(source, {"done": stored}, dict(source.schema))
        if frame is None:
            return super().summaries(task, source, names)
        from .summary import custom_summaries

        task, archive = self._ship(task)
        resolve = functools.partial(model_class, task, archive)
        return self._in_group(
            task.run_id,
            "summary functions",
            lambda: custom_summaries(frame, dict(source.schema), names, resolve, task.params),
        )

    def _local_summaries(self, task: Task, source: ResultsSource, names: tuple[str, ...]) -> dict[str, Any]:
        from ...isolation import Sandbox
        from ..local import LocalExecutor

        options = dict(self._local_options)
        sandbox = None
        if self.isolation.sandbox is not None and "wrap" not in options:
            folder = source.folder if isinstance(source, ChunkFiles) else None
            paths = [p for p in (folder, getattr(task.ref, "root", None)) if p]
            policy = self.isolation.sandbox
            sandbox = Sandbox(dataclasses.replace(policy, read_only=(*policy.read_only, *paths)))
            options["wrap"] = sandbox.wrap
        try:
            with LocalExecutor(1, **options) as worker:
                return worker.summaries(task, source, names)
        finally:
            if sandbox is not None:
                sandbox.close()

    def _reap(self, group: str, futures: list[Future[None]], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            time.sleep(0.5)
            self._cancel_group(group)

    def _cancel_group(self, group: str) -> None:
        try:
            self.context.cancelJobGroup(group)
        except Exception:  # pragma: no cover - the session is gone
            pass

    def cancel(self) -> None:
        self._cancelled.set()
        group = self._group
        if group is not None:
            self._cancel_group(group)

    def close(self) -> None:
        """Cancel what runs; the session stays up for the next run in this process (see ``stop_session``)."""
        if self._group is not None:
            self._cancel_group(self._group)


def _reason(exc: BaseException) -> str:
    """One line from a Py4J/Spark error: the task failure, not the Java stack trace."""
    text = str(getattr(exc, "java_exception", None) or exc)
    for line in text.splitlines():
        line = line.strip()
        if "Job aborted" in line or "Exception" in line or "Error" in line:
            return f"Spark job failed: {line[:500]}"
    return f"Spark job failed: {type(exc).__name__}"
