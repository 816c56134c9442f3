"""What the server does, independent of HTTP: the REST routes and the web site both call this.

Submitting a run never imports user code in the server process: the model
is found and its parameters validated in a worker process (the same kind
that will run it), and what that worker reports is recorded with the run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from ..engine import RunSpec, create_record
from ..errors import Conflict, Field, FieldError, InputError, ModelError, NotFound, RunCancelled, RunFailed
from ..executors import is_spark_master
from ..executors.prepare import worker_options
from ..inputs import RunSettings, run_settings
from ..isolation import (
    EnvironmentFailed,
    Environments,
    InstallPolicy,
    Sandbox,
    SandboxPolicy,
    ancho_pythonpath,
    hidden_paths,
    limits_env,
    sandbox_problem,
)
from ..loading import FileRef, LoadedModel
from ..sources.fetch import FetchError, FetchPolicy, fetch_source
from ..sources.upload import Uploads, entry_path
from ..stores import open_store
from ..stores.base import RunRecord, StudyRecord
from ..stores.record_spec import RecordSpec, Submission
from .dispatcher import Dispatcher, SparkSettings
from .inspectors import Inspectors
from .run_results import RunResults
from .schemas import ModelSource, RunRequest, StudyRequest, failure_views, run_view
from .settings import Settings, quoted_choices
from .status import RenderedRuns
from .study_checks import described_model, resolve_points
from .study_results import StudyResults
from .users import Users

log = logging.getLogger("ancho.server")

__all__ = ["FieldError", "Service"]  # FieldError: the core one (ancho.errors), which the routes and the web form catch


def _scrub(message: str, root: Path) -> str:
    """A model error without the server's folders in it (they are no business of the client's)."""
    for path in {str(root.resolve()), str(root)}:
        message = message.replace(f"with {path}:ClassName", "with model.entry 'FILE.py:ClassName'")
        message = message.replace(f"model folder '{path}'", "the upload").replace(f"'{path}'", "the upload")
        message = message.replace(path, "the upload")
    return message


def _run_view_json(record: RunRecord) -> bytes:
    return json.dumps(run_view(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class HomeLock:
    """One server per home: the dispatcher treats every ``running`` run submitted to this home as its own to resume.

    A second server on the same home would requeue and execute the first
    one's runs a second time, so it stops at start-up instead. flock is
    released by the kernel however the holder dies (kill -9 included), and
    worker processes do not inherit it (Python opens files non-inheritable).
    """

    def __init__(self, home: Path):
        import fcntl

        self.path = home / "server.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise InputError(
                f"another Ancho server (pid {holder}) is using the home '{home}'; stop it, or give this one another ANCHO_HOME"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def server_id(home: Path) -> str:
    """This home's server id, made at its first start: what the runs submitted to it record (see submitted_here).

    An id rather than the home's path, because servers on several machines
    may share one store, each with the same path for its home. Called with the
    home locked, so two servers never make it at once.
    """
    path = home / "server.id"
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if found:
        return found
    made = uuid.uuid4().hex
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(made + "\n")
    os.replace(partial, path)
    return made


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.lock = HomeLock(settings.home)
        self.id = server_id(settings.home)
        self.store = open_store(settings.store or str(settings.home))
        self.users = Users(settings.db_path, on_add=getattr(self.store, "add_owner", None))
        self.uploads = Uploads(settings.home, settings.db_path, settings.max_archive_bytes, settings.max_archive_files)
        self.fetch_policy = FetchPolicy.for_server(
            file_roots=tuple(settings.source_file_roots),
            loopback_http=settings.allow_loopback_http,
            max_bytes=settings.max_archive_bytes,
            max_files=settings.max_archive_files,
            timeout=settings.fetch_timeout,
            private_hosts=settings.source_private_hosts,
            git_protocol=settings.source_git_protocol,
            s3_buckets=tuple(settings.source_s3_buckets),
        )
        self.sandboxed = self._check_sandbox()
        self.environments = Environments(
            settings.home / "envs",
            install=InstallPolicy(
                index_url=settings.package_index,
                source_builds=settings.allow_source_builds,
                sandboxed=self.sandboxed,
                hidden=hidden_paths(settings.home),
            ),
        )
        self.dispatcher = Dispatcher(
            self.store,
            settings.concurrency,
            settings.workers,
            self.worker_setup,
            nice=settings.worker_nice,
            exports=settings.home / "exports",
            spark=SparkSettings.of(settings),
            idle=settings.worker_idle,
            server=self.id,
        )
        #: warm workers that read models for submissions (a parameter sweep submits one model many times)
        self.inspectors = Inspectors(self.worker_setup, keep_seconds=settings.inspect_keep_seconds)
        #: the rendered statuses that clients poll (rendered_run)
        self.statuses = RenderedRuns(self.store)
        #: runs' stored results (downloads, pages, trajectories, the site's plots), each read owner-checked
        self.results = RunResults(self.store)
        #: studies' stored results (summaries, points tables, comparisons, mean paths, reports), each read owner-checked
        self.study_results = StudyResults(self.store)
        #: set when the server is told to stop: long-lived responses (event streams) end early
        self.stopping = threading.Event()

    def start(self) -> None:
        self.dispatcher.start()

    def shutdown(self) -> None:
        self.stopping.set()
        self.inspectors.close()
        self.dispatcher.shutdown()
        self.lock.release()

    # -- runs ----------------------------------------------------------------
    async def run_status(self, user: str, run_id: str) -> bytes:
        """The JSON of ``GET /api/v1/runs/{id}``. The view is built from a validated record, so it is sent as it is
        rather than validated again against RunView (which documents it)."""
        return await self.rendered_run(user, run_id, _run_view_json)

    async def rendered_run(self, user: str, run_id: str, render: Callable[[RunRecord], bytes]) -> bytes:
        """``render`` of the user's run, for what clients poll (the status, the event stream); NotFound if not theirs.

        Called on the event loop. The bytes are kept by the server (server/status.py) while the store's version of
        the run is unchanged; a read that must wait on a network (Cassandra) goes to a thread, one per run at a time.
        """
        return await self.statuses.get(user, run_id, render)

    def run(self, user: str, run_id: str) -> RunRecord:
        """The user's run (NotFound for another user's)."""
        return self.store.get_run(run_id, owner=user)

    def runs(self, user: str, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """The user's runs, newest first, without their summaries (None: what lists show holds none of it, and a
        summary of long trajectories is megabytes to decode a run; ``run`` reads one whole)."""
        return self.store.list_runs(owner=user, status=status, limit=limit, summaries=False)

    def failures(self, user: str, run_id: str, limit: int | None = None) -> list[dict]:
        """The run's failed sequences as the API and the site show them (FailureView); NotFound for another user's run."""
        record = self.run(user, run_id)
        return failure_views(record, self.store.failures(run_id, limit=limit))

    def cancel(self, user: str, run_id: str) -> RunRecord:
        """Cancel the user's queued or running run (see Dispatcher.cancel); a finished run is returned unchanged.

        A study's point is run by its study, not on its own: it is cancelled with the study (409 here, naming it).
        """
        record = self.run(user, run_id)
        study = record.spec.study
        if study and not record.final:
            raise Conflict(
                f"run {run_id} is point {record.spec.point} of study {study}; cancel the study instead "
                f"(POST /api/v1/studies/{study}/cancel)"
            )
        return self.dispatcher.cancel(run_id, user)

    def compare(self, user: str, run_a: str, run_b: str, targets: list[str]) -> dict:
        """Run b against run a (DESIGN.md §2 Comparisons); NotFound when either is not the user's."""
        from ..studies.service import compare_runs

        return compare_runs(self.store, run_a, run_b, tuple(targets), owner=user)

    # -- studies ---------------------------------------------------------------
    def submit_study(self, user: str, request: StudyRequest) -> StudyRecord:
        """Queue a study: every point checked against the model (read once, in a worker) before anything is queued.

        The server never imports the model: the worker reports each parameter's type, and the points are converted
        and checked against that description (:func:`described_model`), exactly as the worker would convert them.
        """
        from ..studies.service import new_study

        checked = self.check_request(request)
        plan = request.design.plan().seeded(checked.seed)
        cap = self.settings.max_study_points
        if plan.size > cap:  # before a worker starts: the cap needs no model
            raise FieldError(
                Field.DESIGN, f"design {plan.kind} has {plan.size:,} points, over this server's cap of {cap:,} "
                "(setting max_study_points): make it smaller"
            )  # fmt: skip
        found = self.inspect(user, request.model, None)
        described = described_model(found["model"])
        points = plan.points(described, max_points=cap)
        given = {k: v for k, v in request.params.items() if k not in plan.parameters}
        base = resolve_points(described, given, points)
        model, submission = self._submitted(found, request, given)
        spec = RecordSpec(found["model"], submission, source_hash=found["source_hash"], base_params=base).to_dict()
        workers = self.settings.workers if request.executor == "local" else None
        record = new_study(model, plan, points, given, checked, request.executor, workers, owner=user, spec=spec)
        self.store.create_study(record)
        self.dispatcher.notify()
        return record

    def study(self, user: str, study_id: str) -> StudyRecord:
        """The user's study (NotFound for another user's)."""
        return self.store.get_study(study_id, owner=user)

    def studies(self, user: str, limit: int | None = None) -> list[StudyRecord]:
        """The user's studies, newest first."""
        return self.store.list_studies(owner=user, limit=limit)

    def cancel_study(self, user: str, study_id: str) -> StudyRecord:
        """Cancel the user's queued or running study (its running point stops at once); a finished one is unchanged."""
        return self.dispatcher.cancel_study(study_id, user)

    # -- models ---------------------------------------------------------------
    def source_root(self, user: str, source: ModelSource) -> tuple[Path, str]:
        """The unpacked source folder of a model source, and how the run records where it came from."""
        if source.upload:
            try:
                return self.uploads.tree(user, source.upload), f"upload:{source.upload}"
            except NotFound as exc:
                raise FieldError(("body", "model", "upload"), str(exc)) from None
        try:
            fetched = fetch_source(
                source.model_dump(exclude_none=True), self.settings.home / "sources", policy=self.fetch_policy
            )
        except FetchError as exc:
            raise FieldError(("body", "model", exc.field or ("url" if source.url else "git")), str(exc)) from None
        return fetched.root, fetched.record

    def inspect(self, user: str, source: ModelSource, params: dict | None) -> dict:
        """Find the model in its source (in a worker) and validate ``params``; raise FieldError naming the culprit."""
        root, origin = self.source_root(user, source)
        try:
            target = entry_path(root, source.entry)
        except InputError as exc:
            raise FieldError(("body", "model", "entry"), str(exc)) from None
        try:
            found = self._inspect_in_worker(user, root, target, params)
        except EnvironmentFailed as exc:  # building the model's requirements.txt environment
            raise FieldError(("body", "model"), f"model: {_scrub(str(exc), root)}") from None
        if "error" in found:
            raise FieldError(("body", "params"), str(found["error"]))
        found.update(root=str(root), origin=origin)
        return found

    def _inspect_in_worker(self, user: str, root: Path, target, params: dict | None) -> dict:
        timeout = self.settings.inspect_timeout
        with self.inspectors.worker(user, root) as worker:
            # User code runs at import: a model that hangs there must not hold a request thread
            # (and a worker) forever, so a timer kills the worker and the request gets a 422.
            timer = threading.Timer(timeout, worker.cancel)
            timer.daemon = True
            timer.start()
            try:
                return worker.inspect(target, params)
            except ModelError as exc:
                raise FieldError(("body", "model", "entry"), f"model: {_scrub(str(exc), root)}") from None
            except (
                RunFailed,
                RunCancelled,
            ) as exc:  # the worker died (sys.exit, os._exit, a crash) or the timer killed it
                if not timer.is_alive():
                    raise FieldError(
                        ("body", "model"),
                        f"model: loading the model's code took longer than {timeout:g} s; do less work at import time",
                    ) from None
                raise FieldError(
                    ("body", "model"), f"model: loading the model's code ended its process ({exc})"
                ) from None
            finally:
                timer.cancel()

    # -- where model code runs -------------------------------------------------
    def _check_sandbox(self) -> bool:
        """Model code runs in bubblewrap; without it the server starts only if the operator allowed that."""
        problem = sandbox_problem()
        if problem is None:
            return True
        if not self.settings.allow_unsandboxed:
            self.lock.release()
            raise InputError(
                f"model code must run sandboxed, but {problem}; "
                "or start with ANCHO_ALLOW_UNSANDBOXED=true to run it unsandboxed (trusted code only)"
            )
        log.warning("running model code WITHOUT a sandbox (allow_unsandboxed is set): %s", problem)
        return False

    def policy(self, read_only: tuple[str, ...], scratch: Path | None) -> SandboxPolicy:
        st = self.settings
        return SandboxPolicy(
            scratch=scratch,
            read_only=read_only,
            address_space=st.sandbox_memory_bytes,
            cpu_seconds=st.sandbox_cpu_seconds,
            open_files=st.sandbox_open_files,
            max_processes=st.sandbox_max_processes,
            sequence_timeout=st.sequence_timeout,
            summary_timeout=st.summary_timeout,
            hidden=hidden_paths(st.home),
            seccomp=st.sandbox_seccomp,
        )

    def worker_setup(self, root: Path, run_id: str | None = None, read_only: tuple[str, ...] = ()):
        """LocalExecutor options for workers of the model in ``root``: its environment, its sandbox.

        A run's workers write only to ``home/scratch/RUN`` (a private temporary
        folder otherwise, removed with the sandbox). Returns (options, sandbox
        or None); close the sandbox after the executor.
        """
        scratch = self.settings.home / "scratch" / run_id if run_id else None
        env = self.environments.for_source(root)
        python = env.python if env else None
        paths = (str(root), *((str(env.path),) if env else ()), *read_only)
        policy = self.policy(paths, scratch)
        if self.sandboxed:
            sandbox = Sandbox(policy)
            return {"python": python, "wrap": sandbox.wrap}, sandbox
        options = worker_options(python, ancho_pythonpath(self.environments.root) if env else None)
        options.setdefault("env", {}).update(limits_env(policy))
        return options, None

    def check_request(self, request: RunRequest) -> RunSettings:
        """The checks that need no model, made before a worker is started; returns the run's settings, checked.

        The run-request rules are the engine's (:func:`run_settings`), under this server's cap; their errors name
        their field (``loc``) and spell it as REST clients know it (``max_sequences``, not ``--max-sequences``).
        """
        offered = self.settings.executors
        if request.executor not in offered:
            what = "a Spark master this server does not use" if is_spark_master(request.executor) else "unknown"
            raise FieldError(
                Field.EXECUTOR,
                f"executor '{request.executor}' is {what}: this server executes runs on {quoted_choices(offered)}",
            )
        return run_settings(
            request.sequences,
            request.seed,
            request.targets,
            request.until,
            request.max_sequences,
            request.max_failures,
            cap=self.settings.max_sequences,
            capped_by="this server",
        )

    def _submitted(self, found: dict, request: RunRequest, params: dict) -> tuple[LoadedModel, Submission]:
        """The model a worker found (``inspect``), and what the dispatcher needs to execute it later, typed
        (``params`` as given: see Submission.params)."""
        file, _, class_name = found["entry"].partition(":")
        ref = FileRef(found["root"], file, class_name)
        model = LoadedModel(ref, found["source_hash"], found["origin"], found["model"])
        source = request.model.model_dump(exclude_none=True)
        return model, Submission(ref.root, ref.file, ref.class_name, params, self.id, source)

    def submit(self, user: str, request: RunRequest) -> RunRecord:
        checked = self.check_request(request)
        found = self.inspect(user, request.model, request.params)
        model, submission = self._submitted(found, request, request.params)
        spec = RunSpec.of(found["params"], checked)
        extra = RecordSpec(found["model"], submission).to_dict()
        workers = self.settings.workers if request.executor == "local" else None  # Spark: the cluster's cores
        record = create_record(model, spec, request.executor, workers, owner=user, extra=extra)
        self.store.create_run(record)
        self.dispatcher.notify()
        return record

    # -- reports ----------------------------------------------------------------
    def report_pdf(self, user: str, run_id: str) -> bytes:
        """The run's PDF report (NotFound for another user's run). CPU-bound: call it off the event loop."""
        from ..reports import rendering, write_pdf
        from ..reports.cache import reports, run_key

        record = self.store.get_run(run_id, owner=user)

        def render() -> bytes:
            import io

            with rendering():
                buf = io.BytesIO()
                write_pdf(self.store, run_id, buf, owner=user)
                return buf.getvalue()

        key = run_key(record, "pdf")
        return render() if key is None else reports.get(key, render)

    def report_notebook(self, user: str, run_id: str, api_url: str) -> bytes:
        """The run's notebook: small runs embedded, larger ones fetched from ``api_url`` with the reader's ANCHO_TOKEN."""
        from ..reports import rendering
        from ..reports.cache import reports, run_key
        from ..reports.notebook import build_notebook, data_mode, notebook_bytes

        record = self.store.get_run(run_id, owner=user)

        def render() -> bytes:
            with rendering():
                return notebook_bytes(
                    build_notebook(self.store, run_id, data_mode(record, "api"), owner=user, api_url=api_url)
                )

        key = run_key(record, "notebook", api_url)
        return render() if key is None else reports.get(key, render)
