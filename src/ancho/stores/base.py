"""What every store does: keep run records and every sequence's outputs.

Stores only persist and read; they never compute. Chunk writes are atomic
and idempotent (writing the same chunk twice keeps one copy), which is what
lets the engine retry chunks and resume runs after a crash without
duplicating or losing sequences. One contract suite (tests/stores) runs
against every implementation.
"""

from __future__ import annotations

import functools
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import jsontext
from ..chunk import ChunkResult, Failure, kind_dtype, trajectory_steps
from ..errors import NotFound, StoreError
from .record_spec import RecordSpec as RecordSpec  # (the typed spec and submission are re-exported here)
from .record_spec import SpecField
from .record_spec import Submission as Submission
from .summary_columns import SummaryColumns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .results_sources import ResultsSource

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class RunRecord:
    """Everything known about a run except its per-sequence outputs."""

    id: str
    model: str = ""
    entry: str = ""
    source: str = ""
    source_hash: str = ""
    owner: str = "local"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    sequences: int | None = None  # requested; with a precision goal, the first batch
    until: str | None = None
    max_sequences: int | None = None
    max_failures: int = 0
    targets: list[str] = field(default_factory=list)
    executor: str = "local"
    workers: int | None = None
    status: str = "queued"
    done: int = 0  # sequences executed (succeeded + failed)
    total: int = 0  # sequences planned so far
    failures: int = 0
    retries: int = 0
    error: str | None = None
    schema: dict[str, str] = field(default_factory=dict)  # output name -> bool | int | float
    spec: SpecField = SpecField()  # what a front end keeps beyond these fields, typed (given as one or its JSON form)
    summary: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    ancho_version: str = ""
    numpy_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text, without its deep copy: ``asdict`` recursing into the spec's model description
        took ~1 ms a record, more than creating a study's tiny point's run record cost otherwise."""
        return _record_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = _RECORD_FIELDS  # (every status read builds one: the field names are looked up once)
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def submission(self) -> Submission | None:
        """What a server recorded of this run's submission (None: not a server's run)."""
        return self.spec.submission

    @property
    def model_info(self) -> dict[str, Any]:
        """The model's description recorded with the run (docstring, parameters, outputs), or {}."""
        return self.spec.info

    @property
    def block(self) -> int | None:
        """A batch model's block as it ran (its results depend on it: docs/reproducibility.md), else None."""
        block = self.spec.info.get("block")
        return block if isinstance(block, int) and not isinstance(block, bool) else None


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A record class's field names in order, looked up once (``fields()`` was ~2 µs of a study's tiny point's ~30 µs
    record JSON, and every status read builds a record)."""
    return tuple(f.name for f in fields(cls))


_RECORD_FIELDS = frozenset(_field_names(RunRecord))


def _record_json(record: RunRecord | StudyRecord) -> str:
    """A record's ``to_dict()`` as JSON text, its fields read as they are (the encoder copies nothing)."""
    cls: type = type(record)
    data = {name: getattr(record, name) for name in _field_names(cls)}
    data["spec"] = record.spec.to_dict()
    return jsontext.dumps(data)


@dataclass
class StudyRecord:
    """A study: one model over a design's points, each point an ordinary run (``points[k]["run"]``) with ``seed``.

    ``design`` is the design's description (``Design.describe()``, the summary's object) and ``design_spec`` its
    REST body (``Design.to_dict()``): with ``source``/``entry`` and the rest, enough to resume the study later.
    ``points`` holds ``{"point", "params", "run", "status"}`` per point, in design order; ``run`` is None until
    the point's run is created.
    """

    id: str
    owner: str = "local"
    model: str = ""
    entry: str = ""
    source: str = ""
    design: dict[str, Any] = field(default_factory=dict)
    design_spec: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    sequences: int | None = None
    targets: list[str] = field(default_factory=list)
    until: str | None = None
    max_sequences: int | None = None
    max_failures: int = 0
    executor: str = "local"
    workers: int | None = None
    status: str = "queued"
    points: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0  # sequences executed over every point
    total: int = 0  # sequences planned over every point
    error: str | None = None
    spec: SpecField = SpecField()  # as RunRecord.spec
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    # the summary's sensitivity, kept once computed for the study that ended at ``sensitivity_finished`` (a
    # resumed study ends again, later, so a value kept before is never read back for it)
    sensitivity: dict[str, Any] | None = None
    sensitivity_finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text, without its deep copy (a 2,000-point study's took ~0.2 s)."""
        return _record_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyRecord:
        return cls(**{k: v for k, v in data.items() if k in _STUDY_FIELDS})

    @property
    def final(self) -> bool:
        return self.status in FINAL


_STUDY_FIELDS = frozenset(_field_names(StudyRecord))


def record_version(record: RunRecord) -> int:
    """A run version (Store.run_version) from the record itself: for stores that keep no cheaper one."""
    return hash(json.dumps(record.to_dict(), sort_keys=True, default=str))


class NotAtHand(Exception):
    """Raised by a store's ``wait=False`` read that would wait on a network: read again with ``wait=True``, off the event loop."""


class Store(ABC):
    """Base class of result stores."""

    #: how the store is named on the command line (``--store``)
    url: str = ""

    # -- run records ---------------------------------------------------------
    @abstractmethod
    def create_run(self, record: RunRecord) -> None: ...

    @abstractmethod
    def get_run(self, run_id: str, owner: str | None = None) -> RunRecord:
        """The record, or :class:`ancho.errors.NotFound` (also when ``owner`` is given and differs)."""

    def run_version(self, run_id: str, owner: str | None = None, *, wait: bool = True) -> int | None:
        """A number that differs whenever the run's record differs; None when there is no such run (or not ``owner``'s).

        What a server polled for a run's status compares to tell whether what
        it rendered last is still right: far cheaper than reading the record.
        ``wait=False``: raise :class:`NotAtHand` rather than wait on a network
        (stores whose reads are local never raise it).
        """
        try:
            return self.versioned_run(run_id, owner, wait=wait)[0]
        except NotFound:
            return None

    def versioned_run(self, run_id: str, owner: str | None = None, *, wait: bool = True) -> tuple[int, RunRecord]:
        """The record and its :meth:`run_version`, read together (NotFound as :meth:`get_run`; ``wait`` as run_version)."""
        record = self.get_run(run_id, owner)
        return record_version(record), record

    @abstractmethod
    def update_run(self, run_id: str, **changes: Any) -> None: ...

    def create_runs(self, records: list[RunRecord]) -> None:
        """Create many runs (a study's points): a store that can writes them in one transaction, far cheaper per run."""
        for record in records:
            self.create_run(record)

    def update_runs(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """:meth:`update_run` for each ``(run_id, changes)``; a store that can does them in one transaction."""
        for run_id, change in changes:
            self.update_run(run_id, **change)

    def replace_runs(self, records: list[RunRecord]) -> None:
        """Write these whole records over the stored ones (a study's finished points: their records are in memory,
        so a store that can writes them without reading each back). A run that does not exist raises NotFound."""
        self.update_runs([(record.id, record.to_dict()) for record in records])

    @abstractmethod
    def list_runs(
        self, owner: str | None = None, status: str | None = None, limit: int | None = None, *, summaries: bool = True
    ) -> list[RunRecord]:
        """Newest first. ``summaries=False``: the records' ``summary`` is None whatever their status — for listings,
        which show none: a summary of long trajectories is megabytes of per-step numbers to decode a record."""

    @abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    # -- study records (a study's points are ordinary runs; these keep the study itself) --------------------
    def create_study(self, record: StudyRecord) -> None:
        raise StoreError(f"the store {self.url or type(self).__name__} keeps no studies")

    def get_study(self, study_id: str, owner: str | None = None) -> StudyRecord:
        """The record, or :class:`ancho.errors.NotFound` (also when ``owner`` is given and differs)."""
        raise NotFound(f"no study '{study_id}'")

    def update_study(self, study_id: str, **changes: Any) -> None:
        raise NotFound(f"no study '{study_id}'")

    def list_studies(self, owner: str | None = None, limit: int | None = None) -> list[StudyRecord]:
        """Newest first."""
        return []

    # -- results -------------------------------------------------------------
    @abstractmethod
    def write_chunk(self, run_id: str, result: ChunkResult) -> None:
        """Store a chunk's outputs and failures atomically; writing the same chunk again replaces it."""

    def write_chunks(self, chunks: Sequence[tuple[str, ChunkResult]]) -> None:
        """Store many runs' chunks, each as :meth:`write_chunk` would (a study's tiny points, at a batch's end).

        A store may keep small ones together (the embedded store: rows of one transaction instead of a folder and
        a file each); readers see no difference. By default: one :meth:`write_chunk` each."""
        for run_id, result in chunks:
            self.write_chunk(run_id, result)

    @abstractmethod
    def completed_ranges(self, run_id: str) -> list[tuple[int, int]]:
        """The ``(start, stop)`` of every stored chunk, ascending."""

    @abstractmethod
    def stored_kinds(self, run_id: str) -> list[tuple[int, int, dict[str, str]]]:
        """Each stored chunk's ``(start, stop, kinds)``, ascending, read from the chunks themselves.

        A pass killed after its chunks were stored but before the run's record
        named their outputs (a study's packed points; a cluster task that
        writes the store) left chunks with no schema: a resume rebuilds the
        schema from these instead of redoing the stored work.
        """

    @abstractmethod
    def iter_batches(self, run_id: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Results in sequence order, one Arrow batch at a time, cast to the run's schema."""

    @abstractmethod
    def failures(self, run_id: str, limit: int | None = None) -> list[Failure]: ...

    @abstractmethod
    def results(self, run_id: str) -> ResultsSource:
        """Where this run's results are and nothing else, typed (:mod:`ancho.stores.results_sources`).

        What a worker needs to read them (for user summary code; ``ancho.stores.read_results_source``
        opens it) and what readers branch on, by type.
        """

    def results_source(self, run_id: str) -> dict[str, Any]:
        """:meth:`results` as its JSON-able dict (with a ``kind``), for callers that keep or send JSON."""
        return self.results(run_id).to_dict()

    def iter_column(self, run_id: str, name: str) -> Iterator[np.ndarray]:
        """One output's stored chunks as NumPy arrays, in sequence order (a trajectory's are 2-D): one chunk in memory."""
        from ..columns import to_numpy

        for batch in self.iter_batches(run_id, [name]):
            yield to_numpy(batch.column(0))

    def read_column(self, run_id: str, name: str) -> np.ndarray:
        """One output (or ``sequence``) as a NumPy array, in sequence order; one column in memory."""
        from ..columns import to_numpy

        parts = [to_numpy(b.column(0)) for b in self.iter_batches(run_id, [name])]
        if not parts:
            kind = self.run_schema(run_id).get(name, "float")
            steps = trajectory_steps(kind)
            shape = (0,) if steps is None or name == "sequence" else (0, steps)
            return np.empty(shape, dtype=np.int64 if name == "sequence" else kind_dtype(kind))
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])

    def summary_columns(self, run_id: str, cancelled: Callable[[], bool] | None = None) -> SummaryColumns:
        """The run's columns as its summary reads them, once its chunks are all stored (:class:`SummaryColumns`)."""
        return SummaryColumns(self, run_id, cancelled)

    def results_page(self, run_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Rows ``offset`` to ``offset + limit - 1`` in sequence order (one dict each), and how many rows there are.

        This default reads every batch to count them; a store that knows its
        chunks' row counts overrides it to read only the chunks of the page.
        """
        return page_rows(self.iter_batches(run_id), offset, limit)

    def read_table(self, run_id: str, columns: list[str] | None = None) -> pa.Table:
        """All results as one Arrow table (``sequence`` first)."""
        import pyarrow as pa

        batches = list(self.iter_batches(run_id, columns))
        return pa.Table.from_batches(batches, schema=self.arrow_schema(run_id, columns))

    def read_frame(self, run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
        """All results as a pandas DataFrame with a ``sequence`` column and one column per output."""
        frame: pd.DataFrame = self.read_table(run_id, columns).to_pandas()  # (pyarrow is untyped)
        return frame

    def arrow_schema(self, run_id: str, columns: list[str] | None = None) -> pa.Schema:
        return arrow_schema(self.run_schema(run_id), columns)

    def run_schema(self, run_id: str) -> dict[str, str]:
        """The run's outputs and their kinds (``RunRecord.schema``); a store overrides it to read no summary (one of
        long trajectories is megabytes, and every reader of results asks for the schema first)."""
        return self.get_run(run_id).schema

    def close(self) -> None:
        """Release connections."""

    @property
    def closed(self) -> bool:
        """True once a store that holds connections was closed: it cannot be used again, open another."""
        return False


def page_rows(batches: Iterable[pa.RecordBatch], offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Rows ``offset`` to ``offset + limit - 1`` of ``batches`` (one dict each), and how many rows they hold."""
    rows: list[dict[str, Any]] = []
    seen = 0
    for batch in batches:
        n = batch.num_rows
        if seen + n > offset and len(rows) < limit:
            rows.extend(batch.slice(max(0, offset - seen), limit - len(rows)).to_pylist())
        seen += n
    return rows, seen


def arrow_schema(kinds: Mapping[str, str], columns: list[str] | None = None) -> pa.Schema:
    """The Arrow schema of a run's results: ``sequence`` then each output, by kind."""
    import pyarrow as pa

    from ..columns import arrow_type

    fields_ = [pa.field("sequence", pa.int64())] + [pa.field(n, arrow_type(k)) for n, k in kinds.items()]
    if columns is not None:
        fields_ = [f for f in fields_ if f.name in columns]
    return pa.schema(fields_)
