"""The Python API: ``ancho.run(...) -> ancho.Results``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from .engine import RunHandle, RunSpec, create_record, execute
from .executors import Executor, make_executor
from .loading import loaded_from_class
from .stores import Store, open_store
from .stores.base import RunRecord


class Results:
    """A run's results: its id, summary, and every sequence's outputs (read lazily from the store)."""

    def __init__(self, store: Store, record: RunRecord):
        self.store = store
        self.record = record

    @property
    def run_id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

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

    @property
    def failures(self) -> list:
        """Sequences that raised: sequence number, error and traceback."""
        return self.store.failures(self.run_id)

    def __repr__(self) -> str:
        return f"<ancho.Results run={self.run_id} status={self.status} sequences={self.record.done}>"


_SHARED: dict[str, Store] = {}
_SHARED_LOCK = threading.Lock()


def _shared_store(store: "str | Store | None") -> Store:
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
    store: str | Store | None = None,
    targets: Iterable[str] = (),
    until: str | None = None,
    max_sequences: int | None = None,
    max_failures: int = 0,
    progress: Callable[[int, int], None] | None = None,
    announce: Callable[[str], None] | None = None,
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
    and failed runs; the run record stays in the store either way.
    """
    from .model import Model
    from .sources.prepare import Prepared, prepare, source_folder

    origin = None
    if isinstance(model, str) and ("://" in model or model.startswith("git+")):
        from .sources.fetch import resolve_source_arg
        from .stores.embedded import default_home

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
    ex = None if own_env else make_executor(executor, workers)
    try:
        if ex is not None and hasattr(ex, "start"):
            ex.start()  # type: ignore[attr-defined]
        if isinstance(model, str):
            from .sources.environments import Environments
            from .stores.embedded import default_home

            envs = Environments(default_home() / "envs", announce=announce) if own_env else None
            prepared = prepare(model, params, envs, origin=origin)
        else:
            loaded = loaded_from_class(model)
            if isinstance(model, Model):
                params = {**model.params, **(params or {})}
            prepared = Prepared(loaded, loaded.cls.resolve_params(params))  # type: ignore[union-attr]
        if ex is None:
            ex = make_executor(executor, workers, **prepared.executor_options())
        spec = RunSpec.build(prepared.model, prepared.params, sequences, seed, targets, until, max_sequences, max_failures,
                             resolved=True)
        st = _shared_store(store)
        name = executor if isinstance(executor, str) else type(executor).__name__
        # the model's description (docstring, parameters) is kept, as a server keeps it, for reports
        record = create_record(prepared.model, spec, name, ex.workers, extra={"info": prepared.model.info})
        st.create_run(record)
        final = execute(prepared.model, spec, st, ex, record, progress, RunHandle())
    finally:
        if ex is not None and owns_executor:
            ex.close()
    return Results(st, final)
