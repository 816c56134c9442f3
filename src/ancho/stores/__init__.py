"""Result stores: where runs and every sequence's outputs persist."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .base import FINAL, STATUSES, RunRecord, Store

if TYPE_CHECKING:
    from collections.abc import Mapping
    from os import PathLike

    import pyarrow as pa

    from .results_sources import ChunkFiles, ResultsSource

__all__ = ["Store", "RunRecord", "STATUSES", "FINAL", "open_store", "read_results_source", "export_results"]


def read_results_source(source: ResultsSource | Mapping[str, Any]) -> pa.Table:
    """One run's results as an Arrow table, from what ``Store.results`` described (used in workers).

    ``source``: a :mod:`~ancho.stores.results_sources` value or its dict form.
    """
    from .results_sources import results_source

    return results_source(source).read_table()


def export_results(store: Store, run_id: str, folder: str | PathLike[str]) -> ChunkFiles:
    """Copy one run's results into ``folder`` as chunk files: the :class:`ChunkFiles` workers read them from.

    For workers that cannot reach the store: a server's sandboxed workers have
    no network, so a summary function could not read a Cassandra store; the
    (trusted) driver copies the run here, batch by batch (memory stays at one
    chunk), and the workers read the copy, which is this run and nothing else.
    """
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from .chunk_layout import chunk_name
    from .chunk_writer import parquet_options
    from .results_sources import ChunkFiles

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for batch in store.iter_batches(run_id):
        if batch.num_rows == 0:
            continue
        seqs = batch.column(0)
        start, stop = seqs[0].as_py(), seqs[batch.num_rows - 1].as_py() + 1
        table = pa.Table.from_batches([batch])
        pq.write_table(table, folder / chunk_name(start, stop), **parquet_options(table.schema))
    return ChunkFiles.of_folder(folder, store.run_schema(run_id))


def open_store(url: str | os.PathLike[str] | Store | None = None) -> Store:
    """A store from ``--store``: None (the embedded store under ANCHO_HOME), a folder (a path), or ``cassandra://…``."""
    if isinstance(url, Store):
        return url
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if url is None or url == "" or url == "embedded":
        from .embedded import EmbeddedStore

        return EmbeddedStore()
    if not isinstance(url, str):
        raise InputError(f"store must be a URL or folder, got {url!r}")
    if url.startswith("cassandra://"):
        try:
            from .cassandra import CassandraStore
        except ImportError:
            raise InputError(
                f"store '{url}': the Cassandra store is not available in this installation; install ancho[cassandra]"
            ) from None
        return CassandraStore.from_url(url)
    from .embedded import EmbeddedStore

    path = (
        url[len("embedded://") :]
        if url.startswith("embedded://")
        else url[len("file://") :]
        if url.startswith("file://")
        else url
    )
    if "://" in path:
        raise InputError(f"unknown store '{url}': use a folder path or cassandra://user:pass@host:port")
    return EmbeddedStore(path)
