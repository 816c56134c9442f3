"""The wire format between a Spark task and the driver: one Arrow IPC stream per chunk, or per error.

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

A retried task sends the same bytes for the same chunk, so nothing here
needs to tell attempts apart.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from ...chunk import ChunkResult, Failure, StoredChunk
from ...columns import to_arrow, to_numpy
from ..messages import WorkerFailed
from ..wire import ReplyUnpickler

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


def encode(result: ChunkResult, custom: dict[str, Any] | None = None) -> bytes:
    """A ChunkResult as one Arrow IPC record batch: ``sequence`` plus the outputs; the rest as JSON metadata."""
    import pyarrow as pa

    meta: ChunkMeta = {
        "start": result.start,
        "stop": result.stop,
        "seconds": result.seconds,
        "failures": [f.to_dict() for f in result.failures],
    }
    if custom is not None:
        meta["custom"] = custom
    names = ["sequence", *result.columns]
    arrays = [to_arrow(result.sequences), *(to_arrow(c) for c in result.columns.values())]  # trajectories as lists
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return _ipc(batch.schema.with_metadata({_META: json.dumps(meta)}), batch)


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
    import pyarrow as pa

    reader = pa.ipc.open_stream(data)
    metadata = reader.schema.metadata
    meta = json.loads(metadata[_META])
    if "error" in meta:
        raise _failed(metadata.get(_FAILED), meta)
    failures = [Failure(f["sequence"], f["error"], f.get("traceback", "")) for f in meta["failures"]]
    custom: dict[str, Any] | None = meta.get("custom")
    if meta.get("stored"):
        from ...stats import Tally

        tallies = {name: Tally.from_list(t) for name, t in meta["tallies"].items()}
        stored = StoredChunk(
            meta["start"], meta["stop"], meta["rows"], meta["kinds"], meta["failed"], failures, meta["seconds"], tallies
        )
        return stored, custom
    table = reader.read_all()
    columns: dict[str, np.ndarray[Any, Any]] = {}
    sequences = np.empty(0, dtype=np.int64)
    for name in table.column_names:
        col = to_numpy(table.column(name))
        if name == "sequence":
            sequences = np.ascontiguousarray(col, dtype=np.int64)
        else:
            columns[name] = np.ascontiguousarray(col)
    return ChunkResult(meta["start"], meta["stop"], sequences, columns, failures, meta["seconds"]), custom


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
