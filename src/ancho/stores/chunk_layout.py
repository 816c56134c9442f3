"""Which files hold a run's chunks in a chunk folder: the one place that knows the embedded layout.

A chunk folder (the embedded store's ``runs/<id>/chunks``, or a copy made
by :func:`ancho.stores.export_results`) holds one Parquet file per committed
chunk, named ``<start>-<stop>.parquet`` with 12-digit bounds; anything else
in it (a writer's ``.*.tmp`` file) is not a chunk. Readers — a summary
worker, Spark's summary — get the list from here (or from a
:class:`~ancho.stores.results_sources.ChunkFiles` built here) instead of
parsing names themselves, so the layout can change in one place.

A file holding every sequence of its range has no ``sequence`` column (the
name says them: ``start..stop-1``, one row each, in order); one with failed
sequences has it, listing the sequences that have rows. Readers add it back
(``iter_chunk_batches``; Spark's summary from the file name and row index).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import StoreError

_CHUNK_NAME = re.compile(r"^(\d{12})-(\d{12})\.parquet$")


def chunk_name(start: int, stop: int) -> str:
    """The file name of the chunk holding sequences ``start..stop-1``."""
    return f"{start:012d}-{stop:012d}.parquet"


def chunk_range(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The sequences ``(start, stop)`` a chunk file's name says it holds (None: not a chunk file's name)."""
    m = _CHUNK_NAME.match(Path(path).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def file_sequences(path: str | os.PathLike[str], rows: int) -> np.ndarray:
    """The sequences of a chunk file written without its ``sequence`` column: its name's range, one row each."""
    bounds = chunk_range(path)
    if bounds is None or bounds[1] - bounds[0] != rows:
        raise StoreError(f"chunk file {path} has {rows} rows and no sequence column, which its name does not explain")
    return np.arange(bounds[0], bounds[1], dtype=np.int64)


def chunk_files(folder: str | os.PathLike[str]) -> list[tuple[int, int, Path]]:
    """The committed chunk files of a chunk folder, as (start, stop, path), ascending (FileNotFoundError: no folder)."""
    folder = Path(folder)
    found = []
    for name in os.listdir(folder):
        bounds = chunk_range(name)
        if bounds is not None:
            found.append((*bounds, folder / name))
    found.sort()
    return found
