"""The Spark executor: chunks run as Spark tasks on a cluster (standalone, Kubernetes, YARN, ``local[N]``).

The engine still owns chunks, seeds and retries. It asks this backend for a
fixed chunk size (:meth:`SparkExecutor.chunk_size`: about
``TASKS_PER_CORE`` chunks per core, since Spark schedules a fixed set of
tasks rather than pulling work as it goes). Each Spark task is a
single-partition Spark job submitted from a thread pool and runs one chunk,
or several when the model's sequences are cheap (:func:`tasks_chunks`: a
task's fixed cost is then larger than its work), so results reach the
engine (store, progress) chunk by chunk as tasks finish.

A task resolves the model reference (a :class:`FileRef` folder is also
shipped as a zip through ``sc.addArchive``, so workers elsewhere need only
Python and Ancho), runs :class:`ChunkRunner` and returns the outputs as one
Arrow IPC record batch; the run's bookkeeping (range, failures, or an error)
travels as JSON in the batch's schema metadata. Because a chunk's outputs
depend only on (seed, sequence), a task that Spark retries after losing an
executor returns the same bytes, and a job yields one result per partition:
nothing is lost or duplicated.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import logging
import math
import os
import queue
import sys
import tempfile
import threading
import uuid
import zipfile
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..chunk import ChunkResult, Failure, StoredChunk
from ..errors import AnchoError, InputError, ModelError, OutputError, ParameterError, RunCancelled, RunFailed
from ..loading import _SKIP_DIRS, FileRef, hash_source
from .base import Chunk, ChunkLost, ChunkSource, Executor, Task
from .spark_isolation import Isolation, WorkerLost

#: chunks per core in a batch: enough for the last wave to spread (and a lost task to cost little)
TASKS_PER_CORE = 4
#: seconds of work a Spark task is filled with when sequences are cheap (see tasks_chunks)
TASK_SECONDS = 2.0
#: chunks quicker than this do not inform that estimate (a 20-sequence chunk of a trivial model measures its overhead)
MIN_SAMPLE_SECONDS = 0.05
#: runs of at least this many sequences are summarised by Spark (summary="auto"): below, the driver's one-column-at-a-time
#: summary of the embedded store is quicker (1M sequences: ~1 s in the driver, 12-30 s in Spark on the 2-core test
#: cluster, docs/spark.md)
SPARK_SUMMARY_MIN = 20_000_000
#: seconds to wait, when a session starts, for a first executor to register (to read the cluster's cores)
WAIT_EXECUTORS = 30.0
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_ERRORS: dict[str, type[AnchoError]] = {
    "ModelError": ModelError,
    "OutputError": OutputError,
    "ParameterError": ParameterError,
}
_META = b"ancho"
_LOG = logging.getLogger("ancho.spark")
_SUMMARY_MODES = ("auto", "spark", "driver")
_WRITE_MODES = ("auto", "tasks", "driver")
#: seconds the probe task tries to reach Cassandra before the driver writes instead (writes="auto")
PROBE_PATIENCE = 10.0
_PROBED: dict[tuple, str | None] = {}  # (application, hosts, port, keyspace, role) -> None (reached) or why not

_LOOPBACK = ("spark://127.", "spark://localhost", "local")  # masters whose executors run on this machine
_session_lock = threading.Lock()
_session = None  # the process's one SparkSession (Spark allows one SparkContext per process)


def spark_session(master: str, conf: dict[str, str] | None = None):
    """The process's SparkSession for ``master``, created on first use and reused by every run."""
    global _session
    with _session_lock:
        if _session is not None:
            sc = _session.sparkContext
            if sc._jsc is not None and sc.master == master:
                return _session
            if sc._jsc is not None:
                raise InputError(
                    f"this process already runs on the Spark master {sc.master}; one process uses one master, so start another process for {master}"
                )
        if master.startswith(_LOOPBACK):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a cluster on this machine: stay on loopback
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master(master).appName("ancho")
        settings = {
            "spark.python.worker.reuse": "true",
            "spark.task.maxFailures": "8",
            "spark.pyspark.python": sys.executable,
            "spark.ui.showConsoleProgress": "false",
            "spark.scheduler.mode": "FIFO",
            # executors fork their Python workers from this module: NumPy, PyArrow and the task code imported once
            "spark.python.daemon.module": "ancho.executors.spark",
        }
        for var in _THREAD_VARS:  # one BLAS thread per task, as the local executor does
            settings[f"spark.executorEnv.{var}"] = os.environ.get(var, "1")
        settings.update(conf or {})
        for k, v in settings.items():
            builder = builder.config(k, v)
        _session = builder.getOrCreate()
        _session.sparkContext.setLogLevel("ERROR")
        return _session


_warmed: set[str] = set()
_TEMP_DIRS: list[str] = []  # zipped model folders added to the session
_COSTS: dict[str, float] = {}  # model and parameters -> measured seconds per sequence (sizes Spark tasks)
_SAMPLES: dict[str, tuple[float, float]] = {}  # the (seconds, sequences) behind it, older ones decayed
_SHIPPED: dict[tuple[str, str], str] = {}  # (application, source hash) -> archive name


def _warm_up(sc) -> None:
    """Once per session: start the executors' Python workers and import what a task needs.

    This moves a fixed cost (a few seconds: Python start-up, NumPy, PyArrow)
    from the first run into the session start-up, which ``ancho.run`` overlaps
    with loading the model.
    """
    if sc.applicationId in _warmed:
        return
    _warmed.add(sc.applicationId)
    n = max(1, sc.defaultParallelism)
    sc.parallelize(range(n), n).foreachPartition(_import_task_modules)


def _import_task_modules(_rows) -> None:
    _drain(_rows)  # (so this worker stays for the first tasks)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from .. import chunk  # noqa: F401


def stop_session() -> None:
    """Stop the process's SparkSession (at exit, or to switch masters)."""
    global _session
    with _session_lock:
        if _session is not None:
            try:
                _session.stop()
            finally:
                _session = None
                import shutil

                while _TEMP_DIRS:
                    shutil.rmtree(_TEMP_DIRS.pop(), ignore_errors=True)


atexit.register(stop_session)


class SparkExecutor(Executor):
    """Runs chunks as Spark tasks on the cluster at ``master``.

    ``workers`` (default: the cluster's default parallelism) is the number of
    cores the chunk plan assumes. ``conf`` adds Spark properties for the
    session. ``summary``: where the run's summary is computed — ``"spark"``
    (Spark SQL, and user summary functions in a pandas UDF), ``"driver"``
    (as for a local run), or ``"auto"`` (Spark from ``SPARK_SUMMARY_MIN``
    sequences on). Spark needs to read the stored results:
    ``shared_storage`` says whether the executors see the driver's store
    folder at the same path (default: only when the master runs on this
    machine); when they cannot, the driver summarises and the log says so.

    A model with its own ``requirements.txt`` environment (``python``/``env``
    from :meth:`ancho.sources.prepare.Prepared.executor_options`) runs, in
    each task, in a local worker of that environment, which each executor
    builds once (see :mod:`ancho.executors.spark_isolation`) under
    ``environments`` (default: the driver's folder when storage is shared,
    else ``$ANCHO_HOME/envs`` on the executor). ``sandbox`` (a
    :class:`~ancho.sources.sandbox.SandboxPolicy`, or True for the default
    one; or ``wrap``, a ``Sandbox``'s, as the local executor takes it): every
    task's worker runs in bubblewrap on its executor. ``results`` is the local
    executor's option too: summary functions that must run in a local worker
    (a sandbox, an environment) read the results through it.

    ``writes`` (default ``$ANCHO_SPARK_WRITES``, else ``"auto"``): who writes
    the results to a Cassandra store — ``"tasks"`` (each Spark task writes
    its chunks with the owner's role and returns only their range, kinds,
    failure count and tallies), ``"driver"`` (tasks return the columns, the
    engine writes them), or ``"auto"``: tasks, once a probe task has reached
    Cassandra from an executor (once per session), else the driver, with a
    warning saying why. Other stores are always written by the driver.
    """

    def __init__(self, master: str, workers: int | None = None, conf: dict[str, str] | None = None,
                 python: str | None = None, env: dict[str, str] | None = None, wrap=None,
                 summary: str = "auto", shared_storage: bool | None = None, environments: str | None = None,
                 sandbox=None, results=None, writes: str | None = None):
        if summary not in _SUMMARY_MODES:
            raise InputError(f"summary must be one of {', '.join(_SUMMARY_MODES)}, got {summary!r}")
        writes = writes or os.environ.get("ANCHO_SPARK_WRITES") or "auto"
        if writes not in _WRITE_MODES:
            raise InputError(f"writes (or ANCHO_SPARK_WRITES) must be one of {', '.join(_WRITE_MODES)}, got {writes!r}")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ParameterError(f"workers must be a whole number ≥ 1, got {workers!r}")
        self.master = master
        self.conf = dict(conf or {})
        self.extra_env = dict(env or {})
        self.shared_storage = master.startswith(_LOOPBACK) if shared_storage is None else bool(shared_storage)
        sandbox = _sandbox_policy(sandbox, wrap)
        self.isolation = Isolation(sandbox=sandbox)
        self._local_options: dict = {"wrap": wrap} if wrap is not None else {}  # how the driver runs user code itself
        if results is not None:  # as the local executor's option: a results source the sandboxed summary worker can read
            self._local_options["results"] = results
        if python is not None and os.path.abspath(python) != os.path.abspath(sys.executable):  # (a venv's python links to the base one)
            # a model environment (built on the driver by ancho.sources.environments as ROOT/KEY/bin/python):
            # executors build the same one, or use the driver's folder when they share its storage
            self._local_options.update(python=python, env=dict(env or {}))
            self.extra_env.pop("PYTHONPATH", None)  # the driver's path to Ancho: executors have their own
            driver_envs = str(Path(python).parents[2]) if self.shared_storage else None
            self.isolation = Isolation(environment=True, envs=environments or driver_envs, sandbox=sandbox)
        self._workers = workers
        self._cancelled = threading.Event()
        self._group: str | None = None
        self.last_group: str | None = None  # the job group of the latest run (Spark's UI and status tracker list its jobs)
        self.summary_mode = summary
        self.last_summary: str | None = None  # how the latest run was summarised: "spark" or "driver: why"
        self.writes = writes
        self.last_writes: str | None = None  # who wrote the latest run's results: "tasks" or "driver: why"
        self.last_received = 0  # bytes the driver received from the latest run's tasks

    # -- session --------------------------------------------------------------
    @property
    def session(self):
        return spark_session(self.master, self.conf)

    @property
    def context(self):
        return self.session.sparkContext

    def start(self) -> "SparkExecutor":
        """Start (or join) the Spark session now and wait for a first executor."""
        sc = self.context
        import time

        deadline = time.monotonic() + WAIT_EXECUTORS
        # the driver counts as one entry; executors register a moment after the session starts
        while sc._jsc.sc().getExecutorMemoryStatus().size() < 2 and time.monotonic() < deadline:
            if self.master.startswith("local"):
                break
            time.sleep(0.1)
        else:
            if not self.master.startswith("local") and sc._jsc.sc().getExecutorMemoryStatus().size() < 2:
                # a busy cluster gives cores later, so this is not an error; but a stopped one never does
                _LOG.warning("no Spark executor has registered with %s after %.0f s: tasks wait until the cluster gives "
                             "this application cores (is the cluster up? scripts/services status spark)",
                             self.master, WAIT_EXECUTORS)
        _warm_up(sc)
        return self

    @property
    def workers(self) -> int:  # type: ignore[override]
        if self._workers is None:
            self._workers = max(1, self.start().context.defaultParallelism)
        return self._workers

    def chunk_size(self, total: int, workers: int) -> int | None:
        """About ``TASKS_PER_CORE`` chunks per core for a batch (the engine caps them at MAX_CHUNK)."""
        return max(1, math.ceil(total / (TASKS_PER_CORE * max(1, workers))))

    # -- shipping the model ---------------------------------------------------
    def _ship(self, task: Task) -> tuple[Task, str | None]:
        """Zip a FileRef's folder and add it to the session as an archive; returns the archive's name."""
        ref = task.ref
        if not isinstance(ref, FileRef):
            return task, None
        root = Path(ref.root)
        digest = hash_source(root)[:16]
        sc = self.context
        key = (sc.applicationId, digest)  # per session, not per executor object: Spark refuses a name added twice
        with _session_lock:
            name = _SHIPPED.get(key)
            if name is None:
                name = _SHIPPED[key] = self._zip_and_add(sc, root, digest)
        return task, name

    @staticmethod
    def _zip_and_add(sc, root: Path, digest: str) -> str:
        """The model folder as a zip added to the session (tasks find it unpacked with ``SparkFiles.get``)."""
        name = f"ancho-src-{digest}.zip"
        folder = tempfile.mkdtemp(prefix="ancho-spark-")
        _TEMP_DIRS.append(folder)  # Spark reads it when an executor first needs it: removed with the session
        path = Path(folder) / name
        # strict_timestamps=False: uploaded sources unpack with fixed (1970) times, which zip cannot hold (stored as 1980)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for fn in sorted(filenames):
                    if fn.endswith((".pyc", ".pyo")):
                        continue
                    fp = Path(dirpath) / fn
                    zf.write(fp, str(fp.relative_to(root)))
        sc.addArchive(str(path))
        return name

    # -- where results are written ----------------------------------------------
    def results_sink(self, store, run_id: str) -> dict | None:
        """The store's results source when Spark tasks are to write this run's chunks themselves (see ``writes``)."""
        self.last_writes, sink = "driver: asked for (writes='driver')", None
        if self.writes != "driver":
            source = store.results_source(run_id)
            if source.get("kind") != "cassandra":
                self.last_writes = f"driver: tasks write to a Cassandra store only, not to a {source.get('kind')} one"
            else:
                why = self._probe(source) if self.writes == "auto" else None
                if why is None:
                    self.last_writes, sink = "tasks", source
                else:
                    self.last_writes = f"driver: {why}"
                    _LOG.warning("the driver writes the results of this Spark run (%s); set writes='driver' "
                                 "(ANCHO_SPARK_WRITES=driver) to skip the check", why)
        _LOG.info("Spark run %s: results written by the %s", run_id, self.last_writes)
        return sink

    def _probe(self, source: dict) -> str | None:
        """None if a Spark task reaches the source's Cassandra with its role, else why not (once per session and keyspace)."""
        ep = source["endpoint"]
        key = (self.context.applicationId, tuple(ep["hosts"]), ep["port"], source["keyspace"], ep["username"])
        if key not in _PROBED:
            try:
                _PROBED[key] = self.context.parallelize([0], 1).mapPartitions(
                    functools.partial(_probe_task, source)).collect()[0]
            except Exception as exc:  # the job itself failed: say so, and let the driver write
                return f"the probe task failed: {_reason(exc)}"
        return _PROBED[key]

    # -- work -----------------------------------------------------------------
    def map_chunks(self, task: Task, source: ChunkSource) -> Iterator[ChunkResult | StoredChunk | ChunkLost]:
        self._cancelled.clear()
        self.last_received = 0
        sc = self.start().context
        task = dataclasses.replace(task, env={**self.extra_env, **task.env})
        task, archive = self._ship(task)
        group = f"ancho-{task.run_id or 'run'}-{uuid.uuid4().hex[:8]}"
        self._group = self.last_group = group
        one = sc.parallelize([0], 1)  # every job runs one task; the chunks' ranges travel in its function
        done: queue.Queue = queue.Queue()
        pending: deque[Chunk] = deque()  # handed out by the engine, not yet in a Spark task
        inflight: dict[int, list[Chunk]] = {}
        futures = []
        pool = ThreadPoolExecutor(max_workers=max(4, 2 * self.workers + 2), thread_name_prefix="ancho-spark")
        next_id = 0
        cost_key = _cost_key(task)

        def job(key: int, chunks: list[Chunk]) -> None:
            try:
                if self._cancelled.is_set():
                    raise RunCancelled("the run was cancelled")
                sc.setJobGroup(group, f"ancho run {task.run_id}: sequences {chunks[0].start}..{chunks[-1].stop - 1}",
                               interruptOnCancel=True)
                ranges = [(c.start, c.stop) for c in chunks]
                fn = functools.partial(_run_partition, group, task, archive, self.isolation, ranges)
                done.put((key, "ok", sc.runJob(one, fn, [0])))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the driver loop
                done.put((key, "error", exc))

        try:
            while True:
                if self._cancelled.is_set():
                    raise RunCancelled("the run was cancelled")
                while (chunk := source.next()) is not None:
                    pending.append(chunk)
                # until a first chunk has measured the model's cost, one chunk per task and one task per core
                per_sequence = _COSTS.get(cost_key)
                n = tasks_chunks(per_sequence, pending[0].size, len(pending), self.workers) if pending else 0
                while pending and (per_sequence is not None or len(inflight) < self.workers):
                    # (n is decided for all that is pending, so the tasks of one round are equal)
                    inflight[next_id] = chunks = [pending.popleft() for _ in range(min(n, len(pending)))]
                    futures.append(pool.submit(job, next_id, chunks))
                    next_id += 1
                if not inflight:
                    return
                try:
                    key, kind, value = done.get(timeout=0.25)
                except queue.Empty:
                    continue
                chunks = inflight.pop(key)
                if self._cancelled.is_set():
                    raise RunCancelled("the run was cancelled")
                if kind == "ok":
                    for data in value:
                        self.last_received += len(data)
                        result = decode(data)
                        _learn(cost_key, result)
                        yield result
                elif isinstance(value, AnchoError):
                    raise value
                else:
                    # the job failed after Spark's own task retries (spark.task.maxFailures): the engine decides
                    for chunk in chunks:
                        yield ChunkLost(chunk, _reason(value))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if inflight:
                # a pool thread may be submitting its job just as the group is cancelled: cancel until all are back
                self._cancel_group(group)
                threading.Thread(target=self._reap, args=(group, futures), daemon=True).start()
            self._group = None

    # -- summaries --------------------------------------------------------------
    def _summary_frame(self, source: dict, record: dict, kinds: dict[str, str]):
        """The results as a Spark DataFrame when this run is to be summarised by Spark, else None (and why)."""
        if self.summary_mode == "driver" or not kinds:
            return None, "driver: asked for" if kinds else "driver: no outputs"
        if self.summary_mode == "auto" and int(record.get("done") or 0) < SPARK_SUMMARY_MIN:
            return None, f"driver: fewer than {SPARK_SUMMARY_MIN:,} sequences"
        if source.get("kind") not in ("parquet-dir", "cassandra"):
            why = f"driver: Spark cannot read a {source.get('kind')} results source"
        elif source.get("kind") == "parquet-dir" and not self.shared_storage:
            why = f"driver: the executors do not share the store's folder {source.get('path')} (shared_storage=False)"
        else:
            from .spark_summary import results_frame

            frame = results_frame(self.session, source, kinds)
            if frame is not None:
                return frame, "spark"
            why = "driver: no stored results"
        _LOG.warning("the summary of this Spark run is computed in the driver (%s)", why.partition(": ")[2])
        return None, why

    def _in_group(self, run_id: str, what: str, fn):
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

    def summarize(self, task: Task, source: dict, record: dict, kinds: dict[str, str], targets: list,
                  custom: dict, goal: dict | None) -> dict | None:
        frame, self.last_summary = self._summary_frame(source, record, kinds)
        if frame is None:
            return None
        from .spark_summary import summarize

        return self._in_group(task.run_id, "summary", lambda: summarize(frame, record, kinds, targets, custom, goal))

    def summaries(self, task: Task, source: dict, names: tuple[str, ...]) -> dict:
        """The model's ``@ancho.summary`` functions in a Spark task (pandas UDF), when Spark summarises this run."""
        if self.isolation.nested:  # the model's code needs its environment or a sandbox: a local worker, as locally
            return self._local_summaries(task, source, names)
        frame, _ = self._summary_frame(source, {"done": _stored_sequences(source)}, source.get("schema") or {})
        if frame is None:
            return super().summaries(task, source, names)
        from .spark_summary import custom_summaries

        task, archive = self._ship(task)
        resolve = functools.partial(_model_class, task, archive)
        return self._in_group(task.run_id, "summary functions",
                              lambda: custom_summaries(frame, source["schema"], names, resolve, task.params))

    def _local_summaries(self, task: Task, source: dict, names: tuple[str, ...]) -> dict:
        import dataclasses

        from ..sources.sandbox import Sandbox
        from .local import LocalExecutor

        options = dict(self._local_options)
        sandbox = None
        if self.isolation.sandbox is not None and "wrap" not in options:
            paths = [p for p in (source.get("path"), getattr(task.ref, "root", None)) if p]
            policy = self.isolation.sandbox
            sandbox = Sandbox(dataclasses.replace(policy, read_only=(*policy.read_only, *paths)))
            options["wrap"] = sandbox.wrap
        try:
            with LocalExecutor(1, **options) as worker:
                return worker.summaries(task, source, names)
        finally:
            if sandbox is not None:
                sandbox.close()

    def _reap(self, group: str, futures: list, timeout: float = 120.0) -> None:
        import time

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
        """Cancel what runs; the session stays up for the next run in this process (see :func:`stop_session`)."""
        if self._group is not None:
            self._cancel_group(self._group)


def _sandbox_policy(sandbox, wrap):
    """The sandbox policy tasks apply on the executors: given as ``sandbox=`` (a SandboxPolicy, or True for the
    default one), or taken from a ``wrap=`` that is a :class:`~ancho.sources.sandbox.Sandbox`'s (the local
    executor's option): the policy travels, the executor builds its own sandbox from it with its own paths."""
    from ..sources.sandbox import Sandbox, SandboxPolicy

    if sandbox is True:
        return SandboxPolicy()
    if isinstance(sandbox, SandboxPolicy):
        return sandbox
    if sandbox not in (None, False):
        raise InputError(f"sandbox must be a SandboxPolicy, True or None, got {sandbox!r}")
    if wrap is None:
        return None
    owner = getattr(wrap, "__self__", None)
    if isinstance(owner, Sandbox):
        return owner.policy
    raise InputError("wrap: Spark tasks rebuild the sandbox on each executor, so give it as sandbox=SandboxPolicy(...) "
                     "(or a Sandbox's wrap), not another command wrapper")


def tasks_chunks(per_sequence: float | None, chunk_size: int, pending: int, workers: int) -> int:
    """How many of the ``pending`` chunks the next Spark task runs.

    One while the model's cost is unknown. Then as many as fill about
    ``TASK_SECONDS`` of work (each Spark task costs a fixed 0.3-1 s of
    scheduling and a job of its own, so cheap sequences go in fewer, bigger
    tasks), but never so many that fewer tasks than cores are left to run
    what remains (expensive sequences keep one chunk per task, for balance).
    """
    if per_sequence is None or pending <= 0:
        return min(1, pending)
    fill = int(TASK_SECONDS // max(per_sequence * chunk_size, 1e-9))
    return max(1, min(fill, math.ceil(pending / max(1, workers)), pending))


def _cost_key(task: Task) -> str:
    """The model (a pickled one's whole payload) and its parameters, as a short key."""
    import hashlib

    return hashlib.sha1(f"{task.ref!r}|{sorted(task.params.items())!r}".encode()).hexdigest()


def _learn(key: str, result: ChunkResult) -> None:
    """Fold a chunk's measured time into the model's seconds per sequence: weighted by sequences (a chunk of 20
    sequences says little against one of 100,000), older chunks' weight halving at each new one. Chunks shorter than
    ``MIN_SAMPLE_SECONDS`` are left out: their time is mostly the chunk's own fixed cost, not the sequences'."""
    if result.size and result.seconds >= MIN_SAMPLE_SECONDS:
        seconds, sequences = _SAMPLES.get(key, (0.0, 0.0))
        seconds, sequences = 0.5 * seconds + result.seconds, 0.5 * sequences + result.size
        _SAMPLES[key] = (seconds, sequences)
        _COSTS[key] = seconds / sequences


def _stored_sequences(source: dict) -> int:
    """How many sequences an embedded store's chunk folder holds (from the chunk file names: no file is read)."""
    if source.get("kind") != "parquet-dir" or not os.path.isdir(source["path"]):
        return 0
    from ..stores.embedded import chunk_files

    return sum(stop - start for start, stop, _ in chunk_files(Path(source["path"])))


def _reason(exc: BaseException) -> str:
    """One line from a Py4J/Spark error: the task failure, not the Java stack trace."""
    text = str(getattr(exc, "java_exception", None) or exc)
    for line in text.splitlines():
        line = line.strip()
        if "Job aborted" in line or "Exception" in line or "Error" in line:
            return f"Spark job failed: {line[:500]}"
    return f"Spark job failed: {type(exc).__name__}"


# -- in the Spark task --------------------------------------------------------

class _Kept:
    """The few most recently used things a reused Python worker keeps across tasks: prepared models, Cassandra sessions.

    A server runs ``concurrency`` runs at a time (default 2), and their tasks alternate on the same Python workers.
    Keeping only the last run's made every alternation rebuild it: a sandboxed model's local worker (~0.5 s) or a
    Cassandra session (~0.3 s) per task. The least recently used goes, closed, when a new one would exceed ``size``.
    """

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key, item) -> None:
        while len(self.items) >= self.size:
            self._close(self.items.popitem(last=False)[1])
        self.items[key] = item

    def drop(self, key) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self._close(item)

    @staticmethod
    def _close(item) -> None:
        close = getattr(item, "close", None)  # a ChunkRunner holds nothing to close
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - its errors were an earlier task's
                pass


KEEP = 2  # a server's default concurrency
_RUNNERS = _Kept(KEEP)  # run's job group -> its prepared model (a ChunkRunner, or a NestedRunner with its local worker)


def _shipped_ref(task: Task, archive: str | None):
    """The model reference in a Spark task: the shipped copy of its folder when there is one."""
    ref = task.ref
    if archive is not None:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(archive)
        if os.path.isdir(shipped):
            ref = FileRef(shipped, ref.file, ref.class_name)
    return ref


def _model_class(task: Task, archive: str | None):
    return _shipped_ref(task, archive).resolve()


def _runner(group: str, task: Task, archive: str | None, isolation: Isolation):
    """The prepared model for this run, kept in the (reused) Python worker across its tasks."""
    os.environ.update(task.env)  # each task: the worker may have run another run's task since
    runner = _RUNNERS.get(group)
    if runner is None:
        ref = _shipped_ref(task, archive)
        if isolation.nested:
            from .spark_isolation import NestedRunner

            runner = NestedRunner(Task(ref, task.params, task.seed, task.run_id, task.env), getattr(ref, "root", None),
                                  isolation)
        else:
            from ..chunk import ChunkRunner

            runner = ChunkRunner(ref.resolve(), task.params, task.seed)
        _RUNNERS.put(group, runner)
    return runner


_WRITERS = _Kept(KEEP)  # (hosts, port, role, keyspace) -> its open RemoteResults, kept across tasks and runs


def _results_writer(sink: dict):
    """The :class:`~ancho.stores.cassandra_results.RunResults` writing to the sink's keyspace with its role: a session
    kept in the (reused) Python worker for later tasks and runs of the same owner (opening one costs ~0.3 s)."""
    ep = sink["endpoint"]
    key = (tuple(ep["hosts"]), ep["port"], ep["username"], sink["keyspace"])
    remote = _WRITERS.get(key)
    if remote is None:
        from ..stores.cassandra_results import open_writer

        try:
            remote = open_writer(sink)
        except AnchoError as exc:
            import socket

            raise type(exc)(f"a Spark task on {socket.gethostname()} could not open the results in Cassandra: {exc} "
                            "(or let the driver write them: ANCHO_SPARK_WRITES=driver)") from None
        _WRITERS.put(key, remote)
    return remote.results


def _drain(rows) -> None:
    """Read a task's input to its end: PySpark reuses a Python worker only if its task did (pyspark/worker.py checks
    for the end of the stream and otherwise exits), so a task that ignores its input pays a fresh worker, and loses
    what the worker keeps (the runner, the Cassandra session), every time."""
    for _ in rows:
        pass


def _probe_task(source: dict, _rows):
    """In a Spark task: None if this executor reaches the source's Cassandra with its role and reads its keyspace, else why."""
    _drain(_rows)
    from ..stores.cassandra_conn import Endpoint, connect

    endpoint = Endpoint.from_dict(source["endpoint"])
    try:
        session = connect(dataclasses.replace(endpoint, retry_seconds=min(endpoint.retry_seconds, PROBE_PATIENCE)))
        try:
            session.execute(f"SELECT chunk_start FROM {source['keyspace']}.chunks WHERE run_id = %s LIMIT 1", (source["run_id"],))
        finally:
            session.cluster.shutdown()
    except Exception as exc:  # noqa: BLE001 - any failure means: the driver writes
        import socket

        yield f"a Spark task on {socket.gethostname()} cannot use Cassandra: {str(exc) or type(exc).__name__}"[:500]
        return
    yield None


def _run_partition(group: str, task: Task, archive: str | None, isolation: Isolation, ranges: list[tuple[int, int]],
                   _rows):
    """The Spark task: each chunk ``start..stop-1`` of ``ranges`` as Arrow bytes, or an error record (never a raised
    exception, so a bug in the model reaches the user as one line instead of a Java stack trace after Spark's
    retries). Only a lost local worker (:class:`WorkerLost`) fails the task, so that Spark retries it.

    With a ``task.sink`` the task writes each chunk to the run's Cassandra store itself, here in the task's own
    Python process (a sandboxed model's worker has no network and never sees the store), waits until every chunk
    is marked done, and returns only :func:`encode_stored` records: no columns. A retried task writes the same
    bytes under the same keys, so nothing is duplicated."""
    _drain(_rows)
    try:
        runner = _runner(group, task, archive, isolation)
    except AnchoError as exc:
        yield encode_error(type(exc).__name__, str(exc))
        return
    except Exception as exc:
        yield encode_error("setup", f"model setup failed in a worker: {type(exc).__name__}: {exc}")
        return
    stored, sends = [], []
    writing = task.sink is not None
    if writing:
        # a thread connects (a Spark task mostly runs in a fresh Python worker: ~0.2-0.7 s here, hidden behind the
        # first chunk's work) and then sends each chunk's requests while the next chunk runs
        sender = ThreadPoolExecutor(1, thread_name_prefix="ancho-send")
        opened = sender.submit(_results_writer, task.sink)
    try:
        for start, stop in ranges:
            try:
                result = runner.run(start, stop)
                if not writing:
                    out = encode(result)
                else:  # sent now, marked done once acknowledged
                    sends.append(sender.submit(lambda r: opened.result().write_chunk(task.sink["run_id"], r), result))
                    out = encode_stored(result, task.tally)
            except WorkerLost:
                _RUNNERS.drop(group)
                raise
            except AnchoError as exc:
                yield encode_error(type(exc).__name__, str(exc))
                return
            except Exception as exc:
                yield encode_error("worker", f"sequences {start}..{stop - 1} could not be run: {type(exc).__name__}: {exc}")
                return
            if not writing:
                yield out
            else:
                stored.append(out)
        if writing:
            try:
                for sent in (opened, *sends):
                    sent.result()
                opened.result().flush()  # every chunk of this task is marked done before the driver hears of it
            except Exception as exc:  # a write that failed for good fails the run, as in the driver
                message = str(exc) if isinstance(exc, AnchoError) else f"writing to Cassandra failed: {type(exc).__name__}: {exc}"
                yield encode_error(type(exc).__name__, message)
                return
            yield from stored
    finally:
        if writing:  # (also when a chunk failed or the task was interrupted: the thread ends with it)
            sender.shutdown(wait=False)


def encode(result: ChunkResult) -> bytes:
    """A ChunkResult as one Arrow IPC record batch: ``sequence`` plus the outputs; the rest as JSON metadata."""
    import pyarrow as pa

    meta = {
        "start": result.start,
        "stop": result.stop,
        "seconds": result.seconds,
        "failures": [f.to_dict() for f in result.failures],
    }
    names = ["sequence", *result.columns]
    arrays = [pa.array(result.sequences), *(pa.array(c) for c in result.columns.values())]
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return _ipc(batch.schema.with_metadata({_META: json.dumps(meta)}), batch)


def encode_stored(result: ChunkResult, tally) -> bytes:
    """What the driver gets of a chunk its task stored: a schema-only Arrow stream with JSON metadata, no columns.

    ``tally``: the targets of the run's precision goal (None: no goal, no tallies)."""
    import pyarrow as pa

    from ..stats import chunk_tallies

    tallies = {} if tally is None else {n: t.to_list() for n, t in chunk_tallies(result.columns, list(tally)).items()}
    meta = {
        "stored": True,
        "start": result.start,
        "stop": result.stop,
        "rows": len(result.sequences),
        "kinds": result.kinds(),
        "failed": len(result.failures),
        "failures": [f.to_dict() for f in result.failures[:1]],
        "seconds": result.seconds,
        "tallies": tallies,
    }
    return _ipc(pa.schema([], metadata={_META: json.dumps(meta)}), None)


def encode_error(kind: str, message: str) -> bytes:
    import pyarrow as pa

    return _ipc(pa.schema([], metadata={_META: json.dumps({"error": kind, "message": message})}), None)


def _ipc(schema, batch) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if batch is not None:
            writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> ChunkResult | StoredChunk:
    """The driver's side of :func:`encode` and :func:`encode_stored`; an error record raises its AnchoError."""
    import pyarrow as pa

    reader = pa.ipc.open_stream(data)
    meta = json.loads(reader.schema.metadata[_META])
    if "error" in meta:
        kind, message = meta["error"], meta["message"]
        raise _ERRORS.get(kind, RunFailed)(message)
    failures = [Failure(f["sequence"], f["error"], f.get("traceback", "")) for f in meta["failures"]]
    if meta.get("stored"):
        from ..stats import Tally

        tallies = {name: Tally.from_list(t) for name, t in meta["tallies"].items()}
        return StoredChunk(meta["start"], meta["stop"], meta["rows"], meta["kinds"], meta["failed"], failures,
                           meta["seconds"], tallies)
    table = reader.read_all()
    columns: dict[str, np.ndarray] = {}
    sequences = np.empty(0, dtype=np.int64)
    for name in table.column_names:
        col = table.column(name).to_numpy()
        if name == "sequence":
            sequences = np.ascontiguousarray(col, dtype=np.int64)
        else:
            columns[name] = np.ascontiguousarray(col)
    return ChunkResult(meta["start"], meta["stop"], sequences, columns, failures, meta["seconds"])


if __name__ == "__main__":
    # ``python -m ancho.executors.spark``: PySpark's worker daemon (``spark.python.daemon.module``) with
    # what every task needs imported before it forks workers. A task arriving just as the previous one
    # on the same executor ends gets a fresh worker (the previous one is not yet back in the idle pool);
    # forked from here it starts in milliseconds instead of importing NumPy, PyArrow and Ancho (~1-2 s).
    # (pandas too: pyarrow imports it on the first pa.array() when it is installed, ~1 s per fresh worker.)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    import ancho.chunk  # noqa: F401
    import ancho.executors.spark  # noqa: F401
    from pyspark.daemon import manager

    manager()
