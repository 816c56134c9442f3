"""Writing a run's results out as CSV or Parquet, one batch at a time.

Shared by ``ancho export`` and the REST API, so both stream: memory holds
one stored chunk, never the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from .stores.base import Store


def csv_chunks(store: Store, run_id: str) -> Iterator[bytes]:
    """CSV bytes: a header line, then one line per sequence (bools as true/false)."""
    import io

    import pyarrow.csv as pacsv

    # output names are identifiers, so the header needs no quoting
    yield (",".join(store.arrow_schema(run_id).names) + "\n").encode()
    for batch in store.iter_batches(run_id):
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        yield buf.getvalue()


def write_csv(store: Store, run_id: str, sink: BinaryIO) -> None:
    for part in csv_chunks(store, run_id):
        sink.write(part)


def write_parquet(store: Store, run_id: str, sink: BinaryIO) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(sink, store.arrow_schema(run_id), compression="zstd") as writer:
        for batch in store.iter_batches(run_id):
            writer.write_batch(batch)
