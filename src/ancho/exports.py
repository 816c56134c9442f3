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


def trajectory_names(store: Store, run_id: str) -> list[str]:
    """The run's trajectory outputs (kind ``float[STEPS]``): plain CSV leaves them out, ``--trajectory`` writes one."""
    return [name for name, kind in store.get_run(run_id).schema.items() if kind.endswith("]")]


def csv_chunks(store: Store, run_id: str, trajectory: str | None = None) -> Iterator[bytes]:
    """CSV bytes: a header line, then one line per sequence (bools as true/false).

    Trajectory outputs are left out (a CSV cell holds one number; the caller says so: see
    :func:`trajectory_names`); with ``trajectory``, that output as a long CSV ``sequence,step,value``
    (steps from 0), one line per sequence and step.
    """
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    if trajectory is not None:
        yield from _long_csv(store, run_id, trajectory)
        return
    series = set(trajectory_names(store, run_id))
    names = [n for n in store.arrow_schema(run_id).names if n not in series]
    # output names are identifiers, so the header needs no quoting
    yield (",".join(names) + "\n").encode()
    for batch in store.iter_batches(run_id, names if series else None):
        buf = io.BytesIO()
        pacsv.write_csv(
            pa.Table.from_batches([batch]), buf, pacsv.WriteOptions(include_header=False, quoting_style="none")
        )
        yield buf.getvalue()


def _long_csv(store: Store, run_id: str, name: str) -> Iterator[bytes]:
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from .columns import to_arrow, to_numpy

    series = trajectory_names(store, run_id)
    if name not in series:
        raise InputError(
            f"run '{run_id}' has no trajectory output '{name}' (trajectories: {', '.join(series) or '(none)'})"
        )
    yield b"sequence,step,value\n"
    for batch in store.iter_batches(run_id, ["sequence", name]):
        sequences, values = to_numpy(batch.column(0)), to_numpy(batch.column(1))
        rows, steps = values.shape
        table = pa.table(
            {
                "sequence": to_arrow(np.repeat(sequences, steps)),
                "step": to_arrow(np.tile(np.arange(steps, dtype=np.int64), rows)),
                "value": to_arrow(values.reshape(-1)),
            }
        )
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        yield buf.getvalue()


def write_csv(store: Store, run_id: str, sink: BinaryIO, trajectory: str | None = None) -> None:
    for part in csv_chunks(store, run_id, trajectory):
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
