"""What every executor does: run chunks of sequences of one model, return columns.

An executor knows nothing of seeds beyond passing them on, nothing of
chunk sizes, retries, stores or summaries: the engine owns those. This keeps
each backend a short class (as joblib's backends are) and keeps results
identical whichever backend ran them.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..chunk import ChunkResult, StoredChunk
from ..loading import ModelRef

if TYPE_CHECKING:
    from typing import Self

    from ..expressions import Target
    from ..stores.base import Store
    from ..stores.results_sources import ResultsSource


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run any chunk of one run."""

    ref: ModelRef
    params: dict[str, Any]
    seed: int
    run_id: str = ""
    #: environment variables for worker processes (threads per worker, etc.)
    env: dict[str, str] = field(default_factory=dict)
    #: a results source the tasks write chunks to themselves (:meth:`Executor.results_sink`: a typed
    #: :class:`~ancho.stores.results_sources.CassandraResults`), or None
    sink: Any = None
    #: with a sink: the targets whose hits a stored chunk's tallies count (None: the run needs no tallies)
    tally: tuple[Target, ...] | None = None
    #: with a sink: a stored chunk sends its first scalar output's values too, which the driver gathers for the
    #: summary (not when the column is too long to hold: :mod:`ancho.streamed`)
    gather: bool = True
    #: sequences one call of the model runs (a batch model's block; 1 for ``sequence``): a sandbox's time limit is
    #: per call, and so is how long a driver waits for a sandboxed worker's reply
    block: int = 1


@dataclass(frozen=True)
class Chunk:
    """Sequences ``start..stop-1`` to run.

    ``task``: the run they belong to when it is not the one :meth:`Executor.map_chunks` was given (a study
    interleaves its points' chunks; only an executor whose :attr:`Executor.mixed_tasks` is True honours it).
    ``summaries``: the model's summary functions to run over this chunk's results, in the worker that has
    them (a chunk that is its run's whole range); its result then carries ``custom``.
    ``keep``: where the task's sink is a chunk folder its worker writes, send the chunk's columns back too
    (:attr:`~ancho.chunk.StoredChunk.kept`): a study's tiny point is summarised from them.
    """

    start: int
    stop: int
    attempt: int = 0
    task: Task | None = field(default=None, compare=False, repr=False)
    summaries: tuple[str, ...] = field(default=(), compare=False, repr=False)
    keep: bool = field(default=False, compare=False, repr=False)

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class ChunkLost:
    """A chunk that did not come back (its worker died, was killed, or timed out): the engine decides on a retry."""

    chunk: Chunk
    reason: str


def tag_result(result: ChunkResult | StoredChunk, chunk: Chunk, custom: dict[str, Any] | None) -> None:
    """Say which chunk a result is of, and the summary functions' values computed with it, for a chunk that
    carried its own :attr:`Chunk.task` (a study's): what :func:`chunk_of` and :func:`custom_of` read back."""
    vars(result).update(chunk=chunk, custom=custom)


def chunk_of(item: ChunkResult | StoredChunk | ChunkLost) -> Chunk:
    """The chunk a result (tagged by :func:`tag_result`) or a lost chunk is of."""
    if isinstance(item, ChunkLost):
        return item.chunk
    chunk = vars(item).get("chunk")
    if not isinstance(chunk, Chunk):
        raise TypeError(f"a {type(item).__name__} of sequences {item.start}..{item.stop - 1} names no chunk")
    return chunk


def custom_of(result: ChunkResult | StoredChunk) -> dict[str, Any] | None:
    """The summary functions' values computed with a result's chunk (None: none asked)."""
    custom: dict[str, Any] | None = vars(result).get("custom")
    return custom


class ChunkSource:
    """Where an executor pulls its next chunk from; the engine implements it.

    ``next()`` returns a chunk, or None when there is nothing to do right now.
    The executor asks again after each result it hands back, because handling
    a result may add work (a retry, the next batch of a precision goal).
    """

    #: chunks an executor with a queue per worker (local) keeps queued for each; read again every round, so a
    #: source about to make the driver busy for a while (a study's batch of record writes) can deepen it first
    inflight_per_worker: int = 0

    def next(self) -> Chunk | None:  # pragma: no cover - interface
        raise NotImplementedError

    def expect(self, per_sequence: float) -> None:
        """The executor's remembered seconds a sequence of this model (from an earlier call in this process), given
        before it pulls a chunk: a source that sizes its chunks by measurement may start from it instead of first
        handing out small chunks to measure (on Spark each is a job of its own, ~0.1 s). The default ignores it."""

    def lull(self) -> None:
        """The result about to be handed back is the last one ready, and the next will be a while (a Spark task's
        results come back when it ends, and another task is still running): a source with work of its own to do
        (a study's batch of record writes) can do it now, while it would otherwise wait. The default ignores it."""


class Executor(ABC):
    """Base class of execution backends."""

    #: how many chunks run at the same time
    workers: int = 1
    #: whether :meth:`map_chunks` runs each chunk with its own :attr:`Chunk.task` and :attr:`Chunk.summaries`
    #: (a study then keeps many points' chunks in flight at once; otherwise it runs point after point)
    mixed_tasks: bool = False
    #: whether those chunks' tasks may carry a :attr:`Task.sink` (:meth:`results_sink` per point) that the backend's
    #: tasks write to themselves, yielding :class:`~ancho.chunk.StoredChunk` results for them
    mixed_sinks: bool = False

    def chunk_size(self, total: int, workers: int) -> int | None:
        """A hint to the engine's chunk planning: None (the default) lets it size chunks adaptively.

        A backend that schedules a fixed set of tasks up front (Spark) returns
        the size to cut a batch of ``total`` sequences into instead.
        """
        return None

    @abstractmethod
    def map_chunks(self, task: Task, source: ChunkSource) -> Iterator[ChunkResult | StoredChunk | ChunkLost]:
        """Run chunks pulled from ``source`` and yield each result as it completes.

        Ends when ``source`` has nothing left and nothing is in flight. May
        raise :class:`ancho.errors.AnchoError` for errors that concern the
        whole run (for example the model cannot be loaded by workers).
        """

    def results_sink(self, store: Store, run_id: str) -> Any:
        """Where this backend's tasks write the run's chunks themselves, or None (the default): the engine writes them.

        When it returns a results source (the store's, for ``run_id``), the
        engine passes it in :attr:`Task.sink`, and :meth:`map_chunks` yields
        :class:`~ancho.chunk.StoredChunk` results, each sent only after its
        chunk is marked done in the store.
        """
        return None

    def summaries(self, task: Task, source: ResultsSource, names: tuple[str, ...]) -> dict[str, Any]:
        """Run the model's summary functions over the results at ``source`` (the store's :meth:`~ancho.stores.base.Store.results`).

        User code: backends that isolate user code override this to run it
        where the sequences run. The default runs it in this process.
        """
        from ..custom import compute_summaries

        return compute_summaries(task.ref.resolve(), task.params, source, names)

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
        """The run's summary object computed by this backend, or None (the default): the engine computes it.

        A cluster backend computes it where the results are (Spark SQL over
        the stored chunks) instead of reading every column into the driver;
        it must give the object :func:`ancho.stats.build_summary` gives.
        """
        return None

    def cancel(self) -> None:
        """Stop work in flight as soon as possible (called from another thread)."""

    def close(self) -> None:
        """Release processes and connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ProgressCallback = Callable[[int, int], None]


class RunHandle:
    """Lets another thread stop a run that :func:`execute` is driving.

    ``cancel()`` ends it as ``cancelled``; ``interrupt()`` (a server shutting
    down) puts it back to ``queued`` with its completed chunks kept, so the
    next start resumes it.
    """

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.interrupted = False
        self.executor: Executor | None = None

    def cancel(self) -> None:
        self._cancelled.set()
        if self.executor is not None:
            self.executor.cancel()

    def interrupt(self) -> None:
        self.interrupted = True
        self.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
