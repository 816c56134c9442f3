"""The wire format between a Spark task and the driver: one Arrow IPC stream per chunk, or per error.

Why Arrow: a chunk's columns cross as they are (no pickling of NumPy
arrays), and the small rest — range, failures, timings — rides as JSON in
the stream's schema metadata under ``ancho``. Three records:

* a chunk's results (:func:`encode`): ``sequence`` plus each output as
  columns, :class:`ChunkMeta` as metadata;
* a chunk its task stored itself (:func:`encode_stored`): no columns, only
  :class:`StoredMeta` (range, rows, kinds, failure count, tallies);
* an error (:func:`encode_error`): :class:`ErrorRecord`, raised again on the
  driver by :func:`decode` as the same :class:`~ancho.errors.AnchoError`
  class, through the decoding every executor shares
  (:meth:`ancho.executors.messages.WorkerFailed.exception`).

A retried task sends the same bytes for the same chunk, so nothing here
needs to tell attempts apart.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import numpy as np

from ...chunk import ChunkResult, Failure, StoredChunk
from ...columns import to_arrow, to_numpy
from ..messages import WorkerFailed

_META = b"ancho"


class ErrorRecord(TypedDict):
    """A task's error: the AnchoError class name (or where it happened: ``setup``, ``worker``) and one line."""

    error: str
    message: str


class ChunkMeta(TypedDict):
    start: int
    stop: int
    seconds: float
    failures: list[dict[str, Any]]


class StoredMeta(TypedDict):
    stored: bool
    start: int
    stop: int
    rows: int
    kinds: dict[str, str]
    failed: int
    failures: list[dict[str, Any]]
    seconds: float
    tallies: dict[str, list]


def encode(result: ChunkResult) -> bytes:
    """A ChunkResult as one Arrow IPC record batch: ``sequence`` plus the outputs; the rest as JSON metadata."""
    import pyarrow as pa

    meta: ChunkMeta = {
        "start": result.start,
        "stop": result.stop,
        "seconds": result.seconds,
        "failures": [f.to_dict() for f in result.failures],
    }
    names = ["sequence", *result.columns]
    arrays = [to_arrow(result.sequences), *(to_arrow(c) for c in result.columns.values())]  # trajectories as lists
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return _ipc(batch.schema.with_metadata({_META: json.dumps(meta)}), batch)


def encode_stored(result: ChunkResult, tally) -> bytes:
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
    return _ipc(pa.schema([], metadata={_META: json.dumps(meta)}), None)


def encode_error(kind: str, message: str) -> bytes:
    """An error record (see :class:`ErrorRecord`)."""
    import pyarrow as pa

    record: ErrorRecord = {"error": kind, "message": message}
    return _ipc(pa.schema([], metadata={_META: json.dumps(record)}), None)


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
        raise WorkerFailed(None, meta["error"], meta["message"]).exception()
    failures = [Failure(f["sequence"], f["error"], f.get("traceback", "")) for f in meta["failures"]]
    if meta.get("stored"):
        from ...stats import Tally

        tallies = {name: Tally.from_list(t) for name, t in meta["tallies"].items()}
        return StoredChunk(
            meta["start"], meta["stop"], meta["rows"], meta["kinds"], meta["failed"], failures, meta["seconds"], tallies
        )
    table = reader.read_all()
    columns: dict[str, np.ndarray] = {}
    sequences = np.empty(0, dtype=np.int64)
    for name in table.column_names:
        col = to_numpy(table.column(name))
        if name == "sequence":
            sequences = np.ascontiguousarray(col, dtype=np.int64)
        else:
            columns[name] = np.ascontiguousarray(col)
    return ChunkResult(meta["start"], meta["stop"], sequences, columns, failures, meta["seconds"])
