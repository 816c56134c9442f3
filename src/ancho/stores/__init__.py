"""Result stores: where runs and every sequence's outputs persist."""

from __future__ import annotations

from ..errors import InputError
from .base import FINAL, STATUSES, RunRecord, Store

__all__ = ["Store", "RunRecord", "STATUSES", "FINAL", "open_store", "read_results_source"]


def read_results_source(source: dict):
    """One run's results as an Arrow table, from what ``Store.results_source`` described (used in workers)."""
    kind = source.get("kind")
    if kind == "parquet-dir":
        from .embedded import read_chunk_dir

        return read_chunk_dir(source["path"], source["schema"])
    if kind == "cassandra":
        from .cassandra_results import read_source

        return read_source(source)
    raise InputError(f"unknown results source {kind!r}")


def open_store(url: "str | Store | None" = None) -> Store:
    """A store from ``--store``: None (the embedded store under ANCHO_HOME), a folder, or ``cassandra://…``."""
    if isinstance(url, Store):
        return url
    if url is None or url == "" or url == "embedded":
        from .embedded import EmbeddedStore

        return EmbeddedStore()
    if not isinstance(url, str):
        raise InputError(f"store must be a URL or folder, got {url!r}")
    if url.startswith("cassandra://"):
        try:
            from .cassandra import CassandraStore  # type: ignore[import-not-found]
        except ImportError:
            raise InputError(
                f"store '{url}': the Cassandra store is not available in this installation; install ancho[cassandra]"
            ) from None
        return CassandraStore.from_url(url)
    from .embedded import EmbeddedStore

    path = url[len("embedded://") :] if url.startswith("embedded://") else url[len("file://") :] if url.startswith("file://") else url
    if "://" in path:
        raise InputError(f"unknown store '{url}': use a folder path or cassandra://user:pass@host:port")
    return EmbeddedStore(path)
