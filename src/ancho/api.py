"""The Python API: ``ancho.run(...) -> ancho.Results``, ``ancho.study(...) -> ancho.Study``, ``ancho.compare``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Generic, TypeVar

from .engine import RunHandle, RunSpec, create_record, execute
from .executors import Executor, make_executor
from .inputs import run_settings
from .loading import loaded_from_class
from .stores import Store, open_store
from .stores.base import RunRecord, StudyRecord

R = TypeVar("R", RunRecord, StudyRecord)


class _Stored(Generic[R]):
    """What a run's :class:`Results` and a :class:`Study` share: the store they read from and their record."""

    def __init__(self, store: Store, record: R):
        self.store = store
        self.record: R = record

    @property
    def status(self) -> str:
        return self.record.status


class Results(_Stored[RunRecord]):
    """A run's results: its id, summary, and every sequence's outputs (read lazily from the store)."""

    @property
    def run_id(self) -> str:
        return self.record.id

    @property
    def summary(self) -> dict[str, Any]:
        """The summary object (same as ``ancho run --json`` and the REST ``…/summary``)."""
        return self.record.summary or {}

    @property
    def frame(self):
        """A pandas DataFrame: a ``sequence`` column, then one column per output, in sequence order."""
        if not hasattr(self, "_frame"):
            self._frame = self.store.read_frame(self.run_id)
        return self._frame

    def column(self, name: str):
        """One output as a NumPy array, without loading the others."""
        return self.store.read_column(self.run_id, name)

    def trajectory(self, name: str):
        """A trajectory output as a 2-D NumPy array: one row per sequence (in sequence order), one column per step."""
        from .errors import InputError

        kind = self.record.schema.get(name)
        if kind is None or not kind.endswith("]"):
            series = [n for n, k in self.record.schema.items() if k.endswith("]")]
            what = "is a single number per sequence (use .column)" if kind else "is not an output of this run"
            raise InputError(f"'{name}' {what}; trajectories: {', '.join(series) or '(none)'}")
        return self.store.read_column(self.run_id, name)

    @property
    def failures(self) -> list:
        """Sequences that raised: sequence number, error and traceback."""
        return self.store.failures(self.run_id)

    def __repr__(self) -> str:
        return f"<ancho.Results run={self.run_id} status={self.status} sequences={self.record.done}>"


_SHARED: dict[str, Store] = {}
_SHARED_LOCK = threading.Lock()


def _shared_store(store: str | os.PathLike[str] | Store | None) -> Store:
    """The store of a run; a Cassandra URL opens one session per process, shared by every run that names it.

    ``Results`` read their frame from the store later, so ``run`` cannot close
    what it opened; without sharing, each call would leave a session behind.
    """
    if isinstance(store, str) and store.startswith("cassandra://"):
        with _SHARED_LOCK:
            if store not in _SHARED or _SHARED[store].closed:  # closed by its user (``results.store.close()``)
                _SHARED[store] = open_store(store)
            return _SHARED[store]
    return open_store(store)


def run(
    model: Any,
    params: dict[str, Any] | None = None,
    sequences: int | None = 1000,
    seed: int | None = None,
    workers: int | None = None,
    executor: str | Executor = "local",
    store: str | os.PathLike[str] | Store | None = None,
    targets: Iterable[str] = (),
    until: str | None = None,
    max_sequences: int | None = None,
    max_failures: int = 0,
    progress: Callable[[int, int], None] | None = None,
    announce: Callable[[str], None] | None = None,
    sandbox: bool = False,
) -> Results:
    """Run ``sequences`` sequences of ``model`` and return its :class:`Results`.

    ``model`` is a Model subclass or instance (an instance's parameter values
    are the starting point that ``params`` overrides) or a ``PATH[:Class]``
    string (a model folder with a ``requirements.txt`` runs in its own
    environment). With ``until`` (a precision goal such as
    ``'mean(x)+-0.01'``), ``sequences`` is the first batch and
    ``max_sequences`` the cap. ``progress(done, total)`` is called as chunks
    complete; ``announce(message)`` for slow preparations (building an
    environment). Raises :class:`ancho.AnchoError` subclasses for bad input
    and failed runs; the run record stays in the store either way. Bad input
    is a :class:`ancho.errors.FieldError`: its ``field`` (and ``index`` of a
    target, ``name`` of a parameter) says which argument is wrong.

    ``sandbox=True`` (``ancho run --sandbox``) is for running someone else's
    model: it is never imported here, only in bubblewrap-sandboxed workers
    (reading it, validating ``params``, its sequences and summary functions),
    without network and without sight of ``ANCHO_HOME`` (docs/sandbox.md).
    ``model`` must then be a path or URL string, on the local executor.
    """
    from .executors.prepare import Prepared, prepare, source_folder
    from .model import Model

    if sandbox:
        _check_sandboxable(model, executor)
    # the run's counts and expressions are checked before anything is fetched, built or started
    checked = run_settings(sequences, seed, targets, until, max_sequences, max_failures)
    origin = None
    if isinstance(model, str) and ("://" in model or model.startswith("git+")):
        from .home import default_home
        from .sources.fetch import resolve_source_arg

        remote = resolve_source_arg(model, default_home() / "sources")  # a URL or git source: fetched and unpacked
        if remote is not None:
            model, fetched = remote
            origin = fetched.record
    own_env = isinstance(model, str) and (source_folder(model) / "requirements.txt").is_file()
    owns_executor = not isinstance(executor, Executor)
    if own_env and not owns_executor:
        from .errors import InputError

        # its workers were started without the model's environment: the model would import the wrong packages
        raise InputError(
            f"model '{model}' has its own requirements.txt, so Ancho must start the workers in its environment: "
            f"pass executor as a name ('local' or a Spark master URL) instead of a {type(executor).__name__} object"
        )
    # Workers start first, so their start-up overlaps loading the model here
    # (a model with its own requirements.txt needs its environment first).
    ex = None if own_env or sandbox else make_executor(executor, workers)
    boxes = ExitStack()  # sandboxed workers' sandboxes and folders, closed after their executor
    try:
        if ex is not None and hasattr(ex, "start"):
            ex.start()  # type: ignore[attr-defined]
        if isinstance(model, str):
            envs = None
            if own_env:  # (isolation is imported only then: start-up)
                from .home import default_home
                from .isolation import Environments, InstallPolicy

                # --sandbox: the model's requirements install as a server's would (isolation/environments.py)
                install = InstallPolicy(sandboxed=True, hidden=_hidden(store)) if sandbox else None
                envs = Environments(default_home() / "envs", announce=announce, install=install)
            if sandbox:
                prepared, readable = _prepare_sandboxed(model, params, envs, origin, store)
            else:
                prepared = prepare(model, params, envs, origin=origin)
        else:
            loaded = loaded_from_class(model)
            if isinstance(model, Model):
                params = {**model.params, **(params or {})}
            prepared = Prepared(loaded, loaded.cls.recorded_params(params))  # type: ignore[union-attr]
        if ex is None and not sandbox:
            ex = make_executor(executor, workers, **prepared.executor_options())
        spec = RunSpec.of(prepared.params, checked)
        st = _shared_store(store)
        name = executor if isinstance(executor, str) else type(executor).__name__
        # the model's description (docstring, parameters) is kept, as a server keeps it, for reports
        count = ex.workers if ex is not None else _worker_count(workers)
        record = create_record(prepared.model, spec, name, count, extra={"info": prepared.model.info})
        st.create_run(record)
        if sandbox:
            ex = _sandboxed_executor(prepared, readable, st, record.id, count, _hidden(store), boxes)
        assert ex is not None  # made above once the model was prepared, or sandboxed once its record existed
        final = execute(prepared.model, spec, st, ex, record, progress, RunHandle())
    finally:
        if ex is not None and owns_executor:
            ex.close()
        boxes.close()
    return Results(st, final)


# -- sandbox=True: the model's code runs only in sandboxed workers ---------------------------


def _check_sandboxable(model: Any, executor: str | Executor) -> None:
    """What ``sandbox=True`` needs, checked before anything is fetched or built."""
    from .errors import InputError
    from .isolation import SandboxUnavailable, sandbox_problem

    if not isinstance(model, str):
        raise InputError(
            "sandbox=True needs the model as a path or URL string: a class given to ancho.run has "
            "already been imported, unsandboxed, in this process"
        )
    if executor != "local":
        raise InputError(
            f"--sandbox runs models on the local executor only, not on '{executor}'; "
            "leave out --executor (or submit the run to an Ancho server, which sandboxes Spark runs)"
        )
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailable(f"--sandbox cannot run here: {problem}")


def _worker_count(workers: int | None) -> int:
    from .executors.local import LocalExecutor

    return LocalExecutor(workers).workers  # validated as an executor would (no process is started)


def _hidden(store: str | os.PathLike[str] | Store | None) -> tuple[str, ...]:
    """What sandboxed workers must not see: ANCHO_HOME and the development services (the default), and an
    embedded store's folder given with ``--store``."""
    from .isolation import default_hidden
    from .stores.embedded import EmbeddedStore

    folder = store.home if isinstance(store, EmbeddedStore) else store
    if isinstance(folder, (str, Path)) and "://" not in str(folder):
        return (*default_hidden(), str(Path(folder).expanduser().resolve()))
    return default_hidden()


def _prepare_sandboxed(target: str, params, envs, origin: str | None, store):
    """The model read and its parameters validated in a sandboxed worker (``prepare``'s worker path, as a server
    does): returns the prepared model and the host paths its workers need to read (its source, its environment)."""
    from .executors.prepare import prepare, source_folder
    from .isolation import Sandbox, SandboxPolicy
    from .loading import split_spec

    path, file, class_name = split_spec(target)
    where = Path(path).expanduser().resolve()
    # the worker's working folder is its scratch folder: it gets the path whole
    spec = ":".join([str(where), *(part for part in (file, class_name) if part)])
    # a model file alone: only that file is shown, not the folder it happens to lie in (a home folder, say)
    readable = [str(where)]
    env = envs.for_source(source_folder(target)) if envs is not None else None
    if env is not None:
        readable.append(str(env.path))
    with Sandbox(SandboxPolicy(read_only=tuple(readable), hidden=_hidden(store))) as box:
        prepared = prepare(spec, params, envs, in_process=False, wrap=box.wrap, origin=origin or target)
    return prepared, tuple(readable)


def _sandboxed_executor(
    prepared,
    readable: tuple[str, ...],
    store: Store,
    run_id: str,
    workers: int,
    hidden: tuple[str, ...],
    boxes: ExitStack,
) -> Executor:
    """Local workers in a sandbox that shows them the model, its environment and this run's results, nothing else.

    Summary functions read the run's results: an embedded store's folder of
    this run, bound read-only; any other store is copied for them into a
    temporary folder first (the sandbox has no network), as a server does.
    """
    import shutil
    import tempfile

    from .executors.local import LocalExecutor
    from .isolation import Sandbox, SandboxPolicy
    from .stores import export_results
    from .stores.results_sources import ChunkFiles

    results = store.results(run_id)
    options: dict = {}
    if isinstance(results, ChunkFiles):
        shown = str(results.folder)
    else:
        shown = tempfile.mkdtemp(prefix="ancho-results-")
        boxes.callback(shutil.rmtree, shown, True)
        options["results"] = lambda source: export_results(store, run_id, shown)
    box = Sandbox(SandboxPolicy(read_only=(*readable, shown), hidden=hidden))
    boxes.callback(box.close)
    return LocalExecutor(workers, python=prepared.python, wrap=box.wrap, **options)


# -- studies and comparisons ----------------------------------------------------------------------------------


class Study(_Stored[StudyRecord]):
    """A study: its id, summary, one :class:`Results` per point and the points table (read from the store)."""

    @property
    def study_id(self) -> str:
        return self.record.id

    @property
    def summary(self) -> dict[str, Any]:
        """The study summary object (same as ``ancho study --json``)."""
        from .studies.service import study_summary

        return study_summary(self.store, self.study_id)

    @property
    def runs(self) -> list[Results]:
        """One :class:`Results` per point, in point order (points whose run was never created are left out)."""
        from .studies.service import point_runs

        return [Results(self.store, r) for r in point_runs(self.store, self.record) if r is not None]

    @property
    def frame(self):
        """One row per point: ``point``, the design's parameters, then each output's and target's statistics."""
        from .studies.service import points_frame

        return points_frame(self.store, self.study_id)

    def compare(self, baseline: int = 0) -> dict[str, Any]:
        """Every point against point ``baseline`` on common random numbers (Holm-adjusted p-values noted)."""
        from .studies.service import compare_points

        return compare_points(self.store, self.study_id, baseline)

    def __repr__(self) -> str:
        return f"<ancho.Study study={self.study_id} status={self.status} points={len(self.record.points)}>"


def study(
    model: Any,
    design: Any,
    params: dict[str, Any] | None = None,
    sequences: int | None = 1000,
    seed: int | None = None,
    workers: int | None = None,
    executor: str | Executor = "local",
    store: str | os.PathLike[str] | Store | None = None,
    targets: Iterable[str] = (),
    until: str | None = None,
    max_sequences: int | None = None,
    max_failures: int = 0,
    progress: Callable[[int, int], None] | None = None,
    resume: str | None = None,
    handle: Any = None,
) -> Study:
    """Run ``model`` at every point of ``design`` (an ``ancho.grid(...)``, ``ancho.lhs(...)``… or its REST dict).

    Every point is an ordinary run with the study's seed (common random
    numbers); ``params`` are the values every point shares. Bad input (an
    unknown parameter, an empty design, too many points…) raises before
    anything runs. A point that fails does not stop the others: the study
    ends ``failed`` and says which. ``resume=ID`` continues study ``ID`` (the
    other arguments but ``model``, ``workers``, ``executor`` and ``store``
    are then taken from its record): points already succeeded are skipped,
    stored chunks kept. ``progress(done, total)`` counts sequences over all points.
    """
    from .executors.prepare import Prepared, prepare
    from .model import Model
    from .studies.designs import Design
    from .studies.execute import run_points
    from .studies.service import new_study

    st = _shared_store(store)
    if resume is not None:
        record = st.get_study(resume)
        params, design = record.params, record.design_spec
        sequences, seed, targets = record.sequences, record.seed, record.targets
        until, max_sequences, max_failures = record.until, record.max_sequences, record.max_failures
        if isinstance(model, str | None) and not model:
            model = record.source
    checked = run_settings(sequences, seed, targets, until, max_sequences, max_failures)
    if isinstance(model, str):
        prepared = prepare(model, params, None)
    else:
        loaded = loaded_from_class(model)
        if isinstance(model, Model):
            params = {**model.params, **(params or {})}
        prepared = Prepared(loaded, loaded.cls.recorded_params(params))  # type: ignore[union-attr]
    cls = prepared.model.cls
    plan = Design.from_dict(design).seeded(checked.seed)
    pts = plan.points(cls)
    if resume is None:
        name = executor if isinstance(executor, str) else type(executor).__name__
        given = {k: prepared.params.get(k, v) for k, v in (params or {}).items()}  # converted by the model's types
        record = new_study(prepared.model, plan, pts, given, checked, name, workers)
        st.create_study(record)
    owns_executor = not isinstance(executor, Executor)
    ex = executor if isinstance(executor, Executor) else make_executor(executor, workers, **prepared.executor_options())
    try:
        name = executor if isinstance(executor, str) else type(executor).__name__
        final = run_points(prepared.model, record, checked, st, ex, name, progress, handle, prepared.params)
    finally:
        if owns_executor:
            ex.close()
    return Study(st, final)  # (the record as run_points wrote it: a 2,000-point one takes ~6 ms to read back)


def compare(
    a: Any, b: Any, targets: Iterable[str] = (), store: str | os.PathLike[str] | Store | None = None
) -> dict[str, Any]:
    """Compare run ``b`` with run ``a`` (:class:`Results` or run ids): differences b − a with 95% intervals,
    paired on common random numbers when both runs have the same seed (DESIGN.md §2 Comparisons)."""
    from .studies.service import compare_runs

    st = a.store if isinstance(a, Results) else _shared_store(store)
    ids = [x.run_id if isinstance(x, Results) else str(x) for x in (a, b)]
    return compare_runs(st, ids[0], ids[1], tuple(targets))
