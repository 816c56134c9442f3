"""Writing a run's results out as CSV or Parquet, one batch at a time.

Shared by ``ancho export`` and the REST API, so both stream: memory holds
one stored chunk, never the whole run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InputError
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


def write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(sink)`` on a new file at ``path`` that appears whole or not at all (a failure leaves nothing)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"output '{path}' is a folder; give a file name")
    if not path.parent.is_dir():
        raise InputError(f"output '{path}': folder '{path.parent}' does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as sink:
            write(sink)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
