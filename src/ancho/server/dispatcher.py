"""The dispatcher: executes queued runs, a configurable number at a time.

Runs live in the store, not in memory: a run is queued by writing its
record, and the dispatcher polls (and is woken by) the store. So nothing is
lost when the server stops: on start, runs that were ``running`` when the
server died go back to the queue and resume from their stored chunks, and
queued runs stay queued.

Fairness: the next run is taken from the user with the fewest runs
executing, oldest first, so one user's long queue does not starve another's
single run.

Each run executes on its own thread with its own worker processes, created
on that thread: Linux delivers the workers' parent-death signal when the
thread that started them ends, and the server's death ends every thread.

Runs whose executor is the server's Spark master share the process's one
Spark session (each run its own job group, so cancelling one leaves the
others). The session starts with the first such run and stops after
``spark_idle_seconds`` without one: an idle server should not hold a
cluster's cores (a standalone application keeps every core it was given).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import RunHandle, RunSpec, execute
from ..errors import AnchoError, Conflict, NotFound, RunCancelled, RunFailed
from ..executors import Executor, make_executor
from ..executors.local import LocalExecutor
from ..loading import FileRef, LoadedModel
from ..stores import export_results
from ..stores.base import RunRecord, Store, StudyRecord, Submission
from ..stores.results_sources import ChunkFiles, ResultsSource
from .settings import offered_executors, quoted_choices

log = logging.getLogger("ancho.server")


def submitted_here(record: RunRecord | StudyRecord, server: str | None) -> bool:
    """Whether a run was submitted to this server (``server``: its id, see server_id).

    ``ancho run`` and ``ancho serve`` share the default home: a CLI run is
    driven by its own process, so the dispatcher must neither resume it nor
    start it, whatever its status says. Servers with different homes may
    share a store (one Cassandra cluster): each takes only its own runs, whose
    models lie in its own home. A run recorded before servers had ids is
    taken by whichever server it is queued in. A study's point run is its study's to run, never taken alone.
    """
    submission = record.spec.submission
    if submission is None or record.spec.study is not None:
        return False
    owner = submission.server
    return owner is None or server is None or owner == server


def submitted_elsewhere(record: RunRecord | StudyRecord, server: str | None) -> bool:
    """Whether a run was submitted to another server sharing this one's store (only that server may act on it)."""
    return submitted_here(record, None) and not submitted_here(record, server)


def loaded_from_record(record: RunRecord | StudyRecord, submission: Submission) -> LoadedModel:
    """The model of a queued run or study, as the server recorded it when it was submitted."""
    ref = FileRef(submission.root, submission.file, submission.class_name)
    source_hash = record.source_hash if isinstance(record, RunRecord) else record.spec.source_hash or ""
    return LoadedModel(ref, source_hash, record.source, record.spec.info)


@dataclass(frozen=True)
class SparkSettings:
    """The server's Spark master (None: local runs only), its session's properties, and how long it may idle."""

    master: str | None = None
    conf: dict[str, str] = field(default_factory=dict)
    idle_seconds: float = 300.0

    @classmethod
    def of(cls, settings) -> SparkSettings:
        return cls(settings.spark_master, dict(settings.spark_conf), settings.spark_idle_seconds)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        concurrency: int = 2,
        workers: int = 2,
        worker_setup=None,
        poll: float = 0.5,
        nice: int = 0,
        exports: Path | None = None,
        spark: SparkSettings | None = None,
        idle: bool = False,
        server: str | None = None,
    ):
        """``worker_setup(root, run_id=, read_only=)`` gives LocalExecutor options and a sandbox (see Service.worker_setup).

        ``server``: this server's id; the dispatcher takes only the runs submitted to it (submitted_here).

        ``exports``: where a run's results are copied for its summary functions when its workers cannot
        read the store themselves (a Cassandra store seen from a sandbox without network).
        ``spark``: the Spark master runs may use besides the local executor.
        """
        self.store = store
        self.spark = spark or SparkSettings()
        self.server = server
        self._spark_idle_since: float | None = None  # when the last Spark run ended (None: none ran, or one runs)
        self.exports = exports
        self.worker_setup = worker_setup
        self.nice = nice
        self.idle = idle
        self.concurrency = concurrency
        self.workers = workers
        self.poll = poll
        self._running: dict[str, tuple[threading.Thread, RunHandle, str]] = {}
        self._executors: dict[str, str] = {}  # running run -> its executor ('local' or the Spark master)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------
    def start(self) -> None:
        for rec in self.store.list_runs(status="running", summaries=False):
            if not submitted_here(rec, self.server):
                continue
            log.info("run %s was running when the server stopped: resuming it from its stored chunks", rec.id)
            self.store.update_run(rec.id, status="queued")
        for study in self.store.list_studies():
            if study.status == "running" and submitted_here(study, self.server):
                log.info("study %s was running when the server stopped: resuming it", study.id)
                self.store.update_study(study.id, status="queued")
        self._thread = threading.Thread(target=self._loop, name="ancho-dispatcher", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 30) -> None:
        """Stop taking runs; interrupt running ones (they go back to the queue and resume on the next start)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for _, handle, _ in running:
            handle.interrupt()
        deadline = time.monotonic() + timeout
        for thread, _, _ in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def notify(self) -> None:
        self._wake.set()

    # -- scheduling -----------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self._launch_next():
                    pass
            except Exception:  # the loop must survive a store hiccup
                log.exception("dispatcher error")
            self._release_idle_spark()
            self._wake.wait(self.poll)
            self._wake.clear()

    def _launch_next(self) -> bool:
        with self._lock:
            if len(self._running) >= self.concurrency:
                return False
            queued: list[RunRecord | StudyRecord] = [
                r for r in self.store.list_runs(status="queued", summaries=False) if submitted_here(r, self.server)
            ]
            queued += [s for s in self.store.list_studies() if s.status == "queued" and submitted_here(s, self.server)]
            if not queued:
                return False
            busy = Counter(owner for _, _, owner in self._running.values())
            queued.sort(key=lambda r: (busy[r.owner], r.created))
            record = queued[0]
            handle = RunHandle()
            thread = threading.Thread(
                target=self._execute, args=(record, handle), name=f"ancho-{_kind(record)}-{record.id}", daemon=True
            )
            self._running[record.id] = (thread, handle, record.owner)
            self._executors[record.id] = record.executor
            self._update(record, status="running")
        thread.start()
        return True

    def _update(self, record: RunRecord | StudyRecord, **changes: object) -> None:
        if isinstance(record, StudyRecord):
            self.store.update_study(record.id, **changes)
        else:
            self.store.update_run(record.id, **changes)

    def _execute(self, record: RunRecord | StudyRecord, handle: RunHandle) -> None:
        """Execute a queued run or study on this thread, in its sandbox; record how it ended, whatever happens."""
        kind = _kind(record)
        error: str | None = None
        try:
            submission = record.spec.submission
            if submission is None:  # (only a server's own runs are taken: see submitted_here)
                raise RunFailed(f"{kind} {record.id} has no server submission recorded; submit it again")
            model = loaded_from_record(record, submission)
            log.info("%s %s (%s, user %s) starting", kind, record.id, record.model, record.owner)
            with self._workers(record, model, submission) as executor:
                if isinstance(record, StudyRecord):
                    outcome = self._run_study(record, model, executor, handle)
                else:
                    outcome = self._run(record, model, submission, executor, handle)
            log.info("%s %s %s", kind, record.id, outcome)
        except RunCancelled:
            log.info("%s %s %s", kind, record.id, "interrupted; it will resume" if handle.interrupted else "cancelled")
        except AnchoError as exc:
            log.info("%s %s failed: %s", kind, record.id, exc)
            error = str(exc)
        except Exception as exc:
            log.exception("%s %s failed unexpectedly", kind, record.id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._settle(record, handle, error)
            with self._lock:
                self._running.pop(record.id, None)
                if self._executors.pop(record.id, "local") != "local":
                    self._spark_idle_since = time.monotonic()
            self._wake.set()

    def _run(
        self, record: RunRecord, model: LoadedModel, submission: Submission, executor: Executor, handle: RunHandle
    ) -> str:
        spec = RunSpec.build(
            model,
            submission.params,
            record.sequences,
            record.seed,
            record.targets,
            record.until,
            record.max_sequences,
            record.max_failures,
            resolved=True,
        )
        final = execute(model, spec, self.store, executor, record, None, handle)
        return f"succeeded: {final.done} sequences"

    def _run_study(self, study: StudyRecord, model: LoadedModel, executor: Executor, handle: RunHandle) -> str:
        """A study's points (studies/execute.py); the points already succeeded are skipped on a resume."""
        from ..inputs import run_settings
        from ..studies.execute import run_points

        settings = run_settings(
            study.sequences, study.seed, study.targets, study.until, study.max_sequences, study.max_failures
        )
        final = run_points(
            model, study, settings, self.store, executor, study.executor, None, handle, study.spec.base_params
        )
        return f"ended {final.status} ({len(study.points)} points)"

    @contextmanager
    def _workers(
        self, record: RunRecord | StudyRecord, model: LoadedModel, submission: Submission
    ) -> Iterator[Executor]:
        """The executor of a run or a study, in the model's sandbox and environment.

        The workers see the model's source, its environment and the results of the run they summarise (for summary
        functions), and write only to the run's (or study's) scratch folder. A run's results folder is bound as it
        is; a study's points are copied, one at a time, to an export folder bound before its first point exists
        (as a run's are from a store the workers cannot reach).
        """
        options, sandbox, export = {}, None, None
        if self.worker_setup is not None:
            read_only: tuple[str, ...] = ()
            results = self.store.results(record.id) if isinstance(record, RunRecord) else None
            if isinstance(results, ChunkFiles):
                read_only = (results.folder,)
            elif self.exports is not None and model.summaries:
                export = self.exports / record.id  # filled after the last chunk, read-only for the workers
                shutil.rmtree(export, ignore_errors=True)
                export.mkdir(parents=True)
                read_only = (str(export),)
            options, sandbox = self.worker_setup(Path(submission.root), run_id=record.id, read_only=read_only)
            if export is not None:
                options["results"] = lambda source, folder=export: self._export(source, folder)
        try:
            with self._executor(record, options) as executor:
                yield executor
        finally:
            if sandbox is not None:
                sandbox.close()  # and the run's scratch folder goes: nothing reads it after, and it has no quota
                shutil.rmtree(sandbox.scratch, ignore_errors=True)
            if export is not None:
                shutil.rmtree(export, ignore_errors=True)

    def _export(self, source: ResultsSource, folder: Path) -> ResultsSource:
        """A copy of the results ``source`` names in ``folder`` (emptied first), which the workers can read."""
        for old in folder.iterdir():
            old.unlink()
        if isinstance(source, ChunkFiles):
            for _, _, path in source.files:
                shutil.copy(path, folder)
            return ChunkFiles.of_folder(folder, source.schema)
        return export_results(self.store, source.run_id, folder)

    def _executor(self, record: RunRecord | StudyRecord, options: dict) -> Executor:
        """The run's executor: local worker processes, or the server's Spark master (the same sandbox and environment
        options: Spark tasks rebuild the sandbox from its policy on each executor)."""
        if record.executor == "local":
            return LocalExecutor(self.workers, nice=self.nice, idle=self.idle, **options)
        if record.executor != self.spark.master:  # queued under another configuration
            offered = quoted_choices(offered_executors(self.spark.master))
            raise AnchoError(
                f"executor '{record.executor}' is not offered by this server any more (it executes runs on "
                f"{offered}); submit the run again"
            )
        return make_executor(record.executor, None, conf=self.spark.conf, **options)

    def _release_idle_spark(self) -> None:
        """Stop the Spark session once no Spark run has run for ``idle_seconds`` (it restarts with the next one)."""
        if self.spark.master is None:
            return
        with self._lock:
            if any(self._executors.get(run, "local") != "local" for run in self._running):
                return
        if self._spark_idle_since is None:  # no Spark run has ended since the session last stopped
            return
        if time.monotonic() - self._spark_idle_since >= self.spark.idle_seconds:
            from ..executors.spark import stop_session

            log.info(
                "no Spark run for %.0f s: stopping the Spark session (its cores go back to the cluster)",
                self.spark.idle_seconds,
            )
            stop_session()
            self._spark_idle_since = None

    def _settle(self, record: RunRecord | StudyRecord, handle: RunHandle, error: str | None) -> None:
        """Give a run or study that stopped while still ``running`` in the store the status it ended with.

        The engine (and a study's run_points) records the outcome of the chunk loop, but not of what comes after
        it (user summary functions run in a worker too), nor of a failure before it: a run cancelled or broken
        there would otherwise stay ``running`` for ever.
        """
        study = isinstance(record, StudyRecord)
        try:
            now = self.store.get_study(record.id) if study else self.store.get_run(record.id)
            if now.status != "running":
                return
            if handle.interrupted:
                self._update(record, status="queued", error=None)
            elif handle.cancelled:
                self._update(record, status="cancelled", error="cancelled", finished=time.time())
            else:
                error = error or f"the {_kind(record)} stopped unexpectedly"
                self._update(record, status="failed", error=error, finished=time.time())
        except Exception:  # the store itself failing: the next start requeues it
            log.exception("%s %s: could not record how it ended", _kind(record), record.id)

    # -- requests -------------------------------------------------------------
    def cancel(self, run_id: str, owner: str) -> RunRecord:
        """Cancel a queued or running run of ``owner``; a finished run is left as it is."""
        with self._lock:
            record = self.store.get_run(run_id, owner=owner)
            if not record.final and submitted_elsewhere(record, self.server):
                # its own server could claim it or write its progress at any moment: a status written from
                # here would race those writes (the store has no compare-and-set), so it is cancelled there
                raise Conflict(
                    f"run {run_id} was submitted to another server sharing this store "
                    f"(server id {record.spec.submission.server if record.spec.submission else '?'}); "
                    "cancel it through that server"
                )
            if record.status == "queued":
                self.store.update_run(run_id, status="cancelled", finished=time.time(), error="cancelled")
            elif record.status == "running" and run_id in self._running:
                self._running[run_id][1].cancel()
        if record.status == "running":
            self._wait_until_final(run_id, 30)
        return self.store.get_run(run_id)

    def cancel_study(self, study_id: str, owner: str) -> StudyRecord:
        """Cancel a queued or running study of ``owner`` (its running point stops at once); a finished one is left."""
        with self._lock:
            study = self.store.get_study(study_id, owner=owner)
            if study.status in ("queued", "running") and submitted_elsewhere(study, self.server):
                raise Conflict(
                    f"study {study_id} was submitted to another server sharing this store; cancel it through that server"
                )
            if study.status == "queued":
                self.store.update_study(study_id, status="cancelled", finished=time.time(), error="cancelled")
            elif study.status == "running" and study_id in self._running:
                self._running[study_id][1].cancel()
        if study.status == "running":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.store.get_study(study_id).status == "running":
                time.sleep(0.05)
        return self.store.get_study(study_id)

    def _wait_until_final(self, run_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.store.get_run(run_id).final:
                    return
            except NotFound:
                return
            time.sleep(0.05)

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)


def _kind(record: RunRecord | StudyRecord) -> str:
    return "study" if isinstance(record, StudyRecord) else "run"
