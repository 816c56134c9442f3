"""Where one run's results are, as typed values: what a summary worker or a Spark job reads, and nothing else.

Why types: stores used to describe a run's results as dicts told apart by a
``kind`` string, and every reader (the summary worker, the Spark executor,
its summary) branched on that string and knew each store's layout. Here each
place results can be is one frozen dataclass carrying what a reader needs —
:class:`ChunkFiles` the list of a run's Parquet chunk files, so no reader
lists the embedded store's folder itself; :class:`CassandraResults` the
owner's endpoint, keyspace and run. Both pickle (they travel to worker
processes and Spark tasks) and turn to and from a JSON dict
(``to_dict``/``from_dict``; ``Store.results_source``) for callers that keep
or send JSON. Stores return them from ``Store.results``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from .chunk_layout import chunk_files

if TYPE_CHECKING:
    import pyarrow as pa

    from .cassandra_conn import Endpoint  # (imported where used: a local run never needs it, start-up)


@dataclass(frozen=True)
class ChunkFiles:
    """A run's results as Parquet chunk files in one folder (the embedded store's, or an export's)."""

    kind: ClassVar[str] = "parquet-dir"  # (the dict form's tag, for the readers of dicts)

    #: the chunk folder (a sandbox binds it read-only)
    folder: str
    #: output name -> bool | int | float
    schema: Mapping[str, str] = field(hash=False)
    #: the committed chunks, as (start, stop, path), ascending, listed when this value was made
    files: tuple[tuple[int, int, str], ...] = ()

    @classmethod
    def of_folder(cls, folder: str | os.PathLike[str], schema: Mapping[str, str]) -> ChunkFiles:
        """The chunks in ``folder`` now (none when the folder does not exist)."""
        listed = chunk_files(folder) if Path(folder).is_dir() else []
        return cls(str(folder), dict(schema), tuple((start, stop, str(path)) for start, stop, path in listed))

    @property
    def paths(self) -> list[str]:
        return [path for _, _, path in self.files]

    @property
    def sequences(self) -> int:
        """Sequences the chunks cover (from their names: no file is read)."""
        return sum(stop - start for start, stop, _ in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.folder, "schema": dict(self.schema)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkFiles:
        """From :meth:`to_dict`'s form (the embedded store's ``results_source``): the folder's chunks listed now."""
        return cls.of_folder(data["path"], data.get("schema") or {})

    def read_table(self) -> pa.Table:
        """All the results as one Arrow table cast to the run's schema (what a summary worker reads)."""
        import pyarrow as pa

        from .base import arrow_schema
        from .embedded import iter_chunk_batches

        if not Path(self.folder).is_dir():  # (as listing the folder did: a run whose results are gone is an error)
            raise FileNotFoundError(f"the results folder {self.folder} does not exist")
        schema = arrow_schema(dict(self.schema))
        return pa.Table.from_batches(list(iter_chunk_batches([Path(p) for p in self.paths], schema)), schema=schema)


@dataclass(frozen=True)
class CassandraResults:
    """A run's results in Cassandra, read or written with the run owner's role (never the store's admin login)."""

    kind: ClassVar[str] = "cassandra"

    #: the nodes and the owner's role (secret-bearing: never log it)
    endpoint: Endpoint
    #: the owner's keyspace
    keyspace: str
    run_id: str
    schema: Mapping[str, str] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint": self.endpoint.to_dict(),
            "keyspace": self.keyspace,
            "run_id": self.run_id,
            "schema": dict(self.schema),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CassandraResults:
        from .cassandra_conn import Endpoint

        return cls(
            Endpoint.from_dict(data["endpoint"]), data["keyspace"], data["run_id"], dict(data.get("schema") or {})
        )

    def read_table(self) -> pa.Table:
        from .cassandra_results import read_source

        return read_source(self)


ResultsSource = ChunkFiles | CassandraResults


def results_source(source: ResultsSource | Mapping[str, Any]) -> ResultsSource:
    """The typed value of a results source, given one or its dict form (what ``Store.results_source`` returns).

    A ``parquet-dir`` dict carries only its folder: its chunk files are listed now.
    """
    if isinstance(source, (ChunkFiles, CassandraResults)):
        return source
    if not isinstance(source, Mapping):
        raise InputError(
            f"a results source is a ChunkFiles, a CassandraResults or its dict, got {type(source).__name__}"
        )
    kind = source.get("kind")
    for cls in (ChunkFiles, CassandraResults):
        if kind == cls.kind:
            return cls.from_dict(source)
    raise InputError(f"unknown results source {kind!r}")
