"""The wire format between a Spark task and the driver: one Arrow IPC stream per chunk (or several small ones), or
per error.

Why Arrow: a chunk's columns cross as they are (no pickling of NumPy
arrays), and the small rest — range, failures, timings — rides as JSON in
the stream's schema metadata under ``ancho``. Three records:

* a chunk's results (:func:`encode`): ``sequence`` plus each output as
  columns, :class:`ChunkMeta` as metadata;
* a chunk its task stored itself (:func:`encode_stored`): no columns, only
  :class:`StoredMeta` (range, rows, kinds, failure count, tallies);
* an error (:func:`encode_failed`): the local worker pipe's own typed reply,
  :class:`~ancho.executors.messages.WorkerFailed` (Ancho's error object
  itself, so a :class:`~ancho.errors.FieldError` keeps its field and name,
  plus the task's traceback), raised again on the driver by :func:`decode`
  through :meth:`WorkerFailed.exception`, the decoding every executor
  shares; :class:`ErrorRecord` is its readable summary in the metadata.

A chunk of a study's point may carry the values of the model's summary
functions computed in the task (``custom`` in the metadata, JSON).

Small chunks of one layout go several to a record (:func:`encode_chunks`):
their columns end to end in one batch, each chunk's metadata and row count
in a list. Why: a study's task runs ~1,000 points of 50 sequences, and an
Arrow stream a chunk cost ~25 µs to write in the task and as much to read in
the driver, where it was a sixth of the driver's work after a task ended
(docs/benchmarks.md, "On Spark: where a study's time goes").

A retried task sends the same bytes for the same chunk, so nothing here
needs to tell attempts apart.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from ...chunk import ChunkResult, Failure, StoredChunk
from ...columns import to_arrow, to_numpy
from ..base import Chunk
from ..messages import WorkerFailed
from ..wire import ForgedReply, ReplyUnpickler

if TYPE_CHECKING:
    import pyarrow as pa

    from ...expressions import Target

_META = b"ancho"
#: the pickled :class:`WorkerFailed` of an error record (Ancho's own error classes only: see messages._portable)
_FAILED = b"ancho.failed"


class ErrorRecord(TypedDict):
    """A task's error: the AnchoError class name (or where it happened: ``setup``, ``worker``) and one line."""

    error: str
    message: str


class ChunkMeta(TypedDict):
    start: int
    stop: int
    seconds: float
    failures: list[dict[str, Any]]
    #: the model's summary functions' values over this chunk (a study's one-chunk point), or absent
    custom: NotRequired[dict[str, Any] | None]
    #: its rows in a record of several chunks (:class:`ChunksMeta`), which follow each other in the columns
    rows: NotRequired[int]


class ChunksMeta(TypedDict):
    """A record of several chunks (:func:`encode_chunks`)."""

    chunks: list[ChunkMeta]


#: chunks of at most this many rows go together in a record (a bigger one is sent alone: no copy of its columns)
SMALL_ROWS = 4096
#: ... up to this many rows a record
RECORD_ROWS = 65536


class StoredMeta(TypedDict):
    stored: bool
    start: int
    stop: int
    rows: int
    kinds: dict[str, str]
    failed: int
    failures: list[dict[str, Any]]
    seconds: float
    tallies: dict[str, list[Any]]
    custom: NotRequired[dict[str, Any] | None]


def _meta(result: ChunkResult, custom: dict[str, Any] | None) -> ChunkMeta:
    meta: ChunkMeta = {
        "start": result.start,
        "stop": result.stop,
        "seconds": result.seconds,
        "failures": [f.to_dict() for f in result.failures],
    }
    if custom is not None:
        meta["custom"] = custom
    return meta


def encode(result: ChunkResult, custom: dict[str, Any] | None = None) -> bytes:
    """A ChunkResult as one Arrow IPC record batch: ``sequence`` plus the outputs; the rest as JSON metadata."""
    return _batch(_meta(result, custom), result.sequences, result.columns)


def _batch(meta: ChunkMeta | ChunksMeta, sequences: np.ndarray, columns: dict[str, np.ndarray]) -> bytes:
    import pyarrow as pa

    names = ["sequence", *columns]
    arrays = [to_arrow(sequences), *(to_arrow(c) for c in columns.values())]  # trajectories as lists
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return _ipc(batch.schema.with_metadata({_META: json.dumps(meta)}), batch)


def layout(result: ChunkResult) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """What chunks must share to go in one record: their outputs' names, dtypes and row shapes, in order."""
    return tuple((name, c.dtype.str, c.shape[1:]) for name, c in result.columns.items())


def encode_chunks(items: list[tuple[ChunkResult, dict[str, Any] | None]]) -> bytes:
    """Several chunks of one :func:`layout` as one record: their columns end to end, each chunk's metadata with its
    row count (:class:`ChunksMeta`). One chunk is :func:`encode`'s record."""
    if len(items) == 1:
        return encode(*items[0])
    first = items[0][0]
    chunks = []
    for result, custom in items:
        meta = _meta(result, custom)
        meta["rows"] = len(result.sequences)
        chunks.append(meta)
    sequences = np.concatenate([r.sequences for r, _ in items])
    columns = {name: np.concatenate([r.columns[name] for r, _ in items]) for name in first.columns}
    return _batch({"chunks": chunks}, sequences, columns)


class Grouper:
    """Collects a task's chunk results into records: consecutive small chunks of one layout together (up to
    ``RECORD_ROWS`` rows), any other alone. ``add`` returns the records that are complete; ``end`` the last."""

    def __init__(self) -> None:
        self.items: list[tuple[ChunkResult, dict[str, Any] | None]] = []
        self.rows = 0
        self.shape: tuple[Any, ...] | None = None

    def add(self, result: ChunkResult, custom: dict[str, Any] | None) -> list[bytes]:
        rows = len(result.sequences)
        if rows > SMALL_ROWS:
            return [*self.end(), encode(result, custom)]
        out = []
        shape = layout(result)
        if self.items and (shape != self.shape or self.rows + rows > RECORD_ROWS):
            out = self.end()
        self.items.append((result, custom))
        self.rows += rows
        self.shape = shape
        return out

    def end(self) -> list[bytes]:
        if not self.items:
            return []
        record = encode_chunks(self.items)
        self.items, self.rows = [], 0
        return [record]


def encode_stored(result: ChunkResult, tally: tuple[Target, ...] | None, custom: dict[str, Any] | None = None) -> bytes:
    """What the driver gets of a chunk its task stored: a schema-only Arrow stream with JSON metadata, no columns.

    ``tally``: the targets of the run's precision goal (None: no goal, no tallies)."""
    import pyarrow as pa

    from ...stats import chunk_tallies

    tallies = {} if tally is None else {n: t.to_list() for n, t in chunk_tallies(result.columns, list(tally)).items()}
    meta: StoredMeta = {
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
    if custom is not None:
        meta["custom"] = custom
    return _ipc(pa.schema([], metadata={_META: json.dumps(meta)}), None)


def encode_error(kind: str, message: str) -> bytes:
    """An error that is not one of Ancho's (``kind``: where it happened, ``setup`` or ``worker``, or a class name)."""
    return encode_failed(WorkerFailed(None, kind, message))


def encode_failed(failed: WorkerFailed) -> bytes:
    """The local worker pipe's error reply as a record: readable metadata plus the pickled reply itself."""
    import pyarrow as pa

    record: ErrorRecord = {"error": failed.kind, "message": failed.text}
    metadata = {_META: json.dumps(record).encode(), _FAILED: pickle.dumps(failed, protocol=pickle.HIGHEST_PROTOCOL)}
    return _ipc(pa.schema([], metadata=metadata), None)


def _ipc(schema: pa.Schema, batch: pa.RecordBatch | None) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if batch is not None:
            writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    data: bytes = sink.getvalue().to_pybytes()
    return data


def decode(data: bytes) -> ChunkResult | StoredChunk:
    """The driver's side of :func:`encode` and :func:`encode_stored`; an error record raises its AnchoError."""
    return decode_custom(data)[0]


def decode_custom(data: bytes) -> tuple[ChunkResult | StoredChunk, dict[str, Any] | None]:
    """:func:`decode`, and the summary functions' values the task computed over the chunk (None: none asked)."""
    decoded = decode_chunks(data)
    if len(decoded) != 1:
        raise ForgedReply(f"a Spark task's record holds {len(decoded)} chunks where one was expected; refused")
    return decoded[0]


def decode_chunks(data: bytes) -> list[tuple[ChunkResult | StoredChunk, dict[str, Any] | None]]:
    """The chunks of one record (:func:`encode`, :func:`encode_chunks` or :func:`encode_stored`) in their order,
    each with the summary functions' values the task computed over it (None: none asked); an error record raises
    its AnchoError."""
    import pyarrow as pa

    reader = pa.ipc.open_stream(data)
    metadata = reader.schema.metadata
    meta = json.loads(metadata[_META])
    if "error" in meta:
        raise _failed(metadata.get(_FAILED), meta)
    if meta.get("stored"):
        from ...stats import Tally

        tallies = {name: Tally.from_list(t) for name, t in meta["tallies"].items()}
        stored = StoredChunk(
            meta["start"], meta["stop"], meta["rows"], meta["kinds"], meta["failed"], _failures(meta), meta["seconds"],
            tallies,
        )  # fmt: skip
        return [(stored, meta.get("custom"))]
    table = reader.read_all()
    columns: dict[str, np.ndarray[Any, Any]] = {}
    sequences = np.empty(0, dtype=np.int64)
    for name in table.column_names:
        col = to_numpy(table.column(name))
        if name == "sequence":
            sequences = np.ascontiguousarray(col, dtype=np.int64)
        else:
            columns[name] = np.ascontiguousarray(col)
    chunks: list[Any] = meta["chunks"] if "chunks" in meta else [{**meta, "rows": len(sequences)}]  # (one: all rows)
    rows = [m.get("rows") for m in chunks]
    if not all(type(n) is int and n >= 0 for n in rows) or sum(rows) != len(sequences):
        raise ForgedReply(f"a Spark task's record of {len(rows)} chunks does not add up to its {len(sequences)} rows")
    out: list[tuple[ChunkResult | StoredChunk, dict[str, Any] | None]] = []
    at = 0
    for m, n in zip(chunks, rows):
        part = {name: col[at : at + n] for name, col in columns.items()}  # (views of the record's columns)
        result = ChunkResult(m["start"], m["stop"], sequences[at : at + n], part, _failures(m), m["seconds"])
        out.append((result, m.get("custom")))
        at += n
    return out


def paired(
    chunks: list[Chunk], records: list[bytes]
) -> Iterator[tuple[Chunk, tuple[ChunkResult | StoredChunk, dict[str, Any] | None], int, bool]]:
    """Each chunk of a job with its decoded result, in the job's order: with the size of the record it came in (at
    the record's first chunk, else 0) and whether it is the job's last. Decoded record by record, so the chunks
    before an error record are taken before it raises, as a local worker's are; a task that sends more results than
    it was given chunks is refused."""
    at = 0
    for r, data in enumerate(records):
        decoded = decode_chunks(data)
        if at + len(decoded) > len(chunks):
            raise ForgedReply(f"a Spark task sent records for more than its {len(chunks)} chunks; refused")
        for j, item in enumerate(decoded):
            yield chunks[at], item, 0 if j else len(data), r == len(records) - 1 and j == len(decoded) - 1
            at += 1


def _failures(meta: ChunkMeta | StoredMeta) -> list[Failure]:
    return [Failure(f["sequence"], f["error"], f.get("traceback", "")) for f in meta["failures"]]


def _failed(pickled: bytes | None, meta: ErrorRecord) -> Exception:
    """The error an error record stands for, raised as the local executor raises its worker's (same reply type)."""
    failed = WorkerFailed(None, meta["error"], meta["message"])
    if pickled is not None:
        try:  # (a task's record: through the reply unpickler, as a local worker's, since model code made it)
            reply = ReplyUnpickler(io.BytesIO(pickled)).load()
        except Exception:  # noqa: BLE001 - not a reply of Ancho's: its plain text will do
            reply = None
        if isinstance(reply, WorkerFailed):
            failed = reply
    error = failed.exception()
    if failed.traceback:
        error.add_note(f"raised in a Spark task:\n{failed.traceback}")
    return error
