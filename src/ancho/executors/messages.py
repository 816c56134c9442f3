"""What the driver and a local worker process say to each other, and how a worker's error comes back.

Why types: the pipe between :mod:`~ancho.executors.local` and
:mod:`~ancho.executors.worker` carried tuples told apart by an op-code string
(``("chunk", start, stop)``, ``("error", kind, text)``), and errors crossed
as class names, so a parameter error lost the field it was about. Each
message is now one frozen dataclass: requests :class:`SetTask`,
:class:`RunChunk` (or many of both in one :class:`RunChunks`), :class:`Summaries`, :class:`Inspect`,
:class:`Shutdown`; replies :class:`ChunkDone` (:class:`ChunksDone`), :class:`SummariesDone`, :class:`Inspected`,
:class:`WorkerFailed`. They are pickled as the tuples were (one message per
chunk, never per sequence; a chunk's columns stay NumPy arrays inside its
:class:`~ancho.chunk.ChunkResult`).

Errors: a worker sends an :class:`~ancho.errors.AnchoError` of Ancho's own
classes as the object itself, so it is raised on the driver whole (a
:class:`~ancho.errors.FieldError` keeps its field and parameter name). Any
other error travels as a name and one line, and :data:`WORKER_ERRORS` says
what the driver raises for it; the Spark codec decodes its error records
through the same :meth:`WorkerFailed.exception`, so an error means the same
whichever backend ran the chunk. A class defined in user code is never sent
as itself: unpickling it would import the user's module in the driver.

This module imports only :mod:`ancho.errors`: a worker starts fast.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import AnchoError, Field, FieldError, ModelError, OutputError, ParameterError, RunFailed

if TYPE_CHECKING:
    from ..chunk import ChunkResult, StoredChunk
    from ..stores.results_sources import ResultsSource
    from .base import Task

#: the errors a worker (a local worker process, a Spark task) reports by class name and the driver raises again as
#: themselves; any other name (``setup``, ``worker``, a Python exception's) is raised as :class:`~ancho.errors.RunFailed`.
WORKER_ERRORS: MappingProxyType[str, type[AnchoError]] = MappingProxyType(
    {
        "ModelError": ModelError,
        "OutputError": OutputError,
        "ParameterError": ParameterError,
    }
)


_T = TypeVar("_T")


def _pickled_by_fields(cls: type[_T]) -> type[_T]:
    """Pickle a slotted dataclass as its class and its field values, in order. Why: dataclasses' own pickling of
    slotted classes calls ``fields()`` at every pickle and unpickle (~2 µs each); a study's tiny point took four of
    them each way (messages 56 → 36 µs to pickle and unpickle four points' requests, measured)."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    get = operator.attrgetter(*names) if names else None

    def __reduce__(self: Any) -> tuple[Any, tuple[Any, ...]]:
        if get is None:
            return cls, ()
        return cls, (get(self),) if len(names) == 1 else get(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


# -- requests (driver -> worker) ------------------------------------------------------------------------------


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class SetTask:
    """The run the following :class:`RunChunk` requests belong to (the worker loads its model now)."""

    task: Task


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class RunChunk:
    """Run sequences ``start..stop-1`` of the current task, then its summary functions ``summaries`` over them;
    ``keep``: a chunk the worker writes to its task's chunk folder comes back with its columns too."""

    start: int
    stop: int
    summaries: tuple[str, ...] = ()
    keep: bool = False


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class RunChunks:
    """Several :class:`SetTask` and :class:`RunChunk` requests in one message, answered by one :class:`ChunksDone`.

    Why: a study's tiny points are a chunk each, and a message each way per chunk (pickling, the pipe's system
    calls, a wake-up) was ~18% of a worker's time on 2,000 points of 50 sequences (docs/benchmarks.md, "Studies")."""

    requests: tuple[SetTask | RunChunk, ...]


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Summaries:
    """Run the model's ``@ancho.summary`` functions ``names`` over the results at ``source``."""

    task: Task
    source: ResultsSource
    names: tuple[str, ...]


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Inspect:
    """Describe a model (a model reference, or a ``PATH[:file][:Class]`` string) and validate ``params``."""

    target: Any
    params: dict[str, Any] | None = None


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Shutdown:
    """Exit."""


# -- replies (worker -> driver) -------------------------------------------------------------------------------


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class ChunkDone:
    #: a StoredChunk when the worker wrote the chunk's file itself (a task with a chunk folder as its sink)
    result: ChunkResult | StoredChunk
    #: the values of the summary functions :class:`RunChunk` asked for (None: none asked)
    custom: dict[str, Any] | None = None


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class ChunksDone:
    """The replies to a :class:`RunChunks`' chunks, in order (a :class:`WorkerFailed` for one that failed)."""

    replies: tuple[ChunkDone | WorkerFailed, ...]


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class SummariesDone:
    values: dict[str, Any]


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Inspected:
    info: dict[str, Any]


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """A request failed: ``error`` when it is one of Ancho's errors, else ``kind`` (a class name, or where) and ``text``.

    ``traceback``: where it was raised, when the worker says (a Spark task does: its logs are on another machine).
    """

    error: AnchoError | None
    kind: str
    text: str
    traceback: str = ""

    @classmethod
    def of(cls, exc: AnchoError, traceback: str = "") -> WorkerFailed:
        """The reply for an AnchoError raised in a worker."""
        return cls(_portable(exc), _table_name(exc), str(exc), traceback)

    def exception(self) -> AnchoError:
        """The error to raise on the driver."""
        if self.error is not None:
            return self.error
        return WORKER_ERRORS.get(self.kind, RunFailed)(self.text)


def _table_name(exc: AnchoError) -> str:
    """The :data:`WORKER_ERRORS` name of ``exc``'s nearest class there (a user subclass of ParameterError: that)."""
    for klass in type(exc).__mro__:
        if WORKER_ERRORS.get(klass.__name__) is klass:
            return klass.__name__
    return type(exc).__name__


def _portable(exc: AnchoError) -> AnchoError | None:
    """``exc`` as it may cross to the driver: only Ancho's own classes, holding only strings and numbers; else None."""
    cls = type(exc)
    if cls.__module__ != AnchoError.__module__:
        return None
    if isinstance(exc, FieldError):  # pickled by FieldError.__reduce__: its field, template, index and name
        plain = (
            isinstance(exc.field, Field)
            and isinstance(exc.template, str)
            and (exc.index is None or type(exc.index) is int)
            and (exc.name is None or type(exc.name) is str)
        )
        return exc if plain else None
    try:
        return cls(str(exc))  # a fresh copy: none of what user code may have attached to the original
    except Exception:  # noqa: BLE001 - a class whose constructor wants more: its name and text will do
        return None
