"""Writing one chunk file of a chunk folder: the one place that does, for the embedded store and for local workers.

Why workers write: a batch model computes ~10 million sequences a second on
two workers, and one driver thread writing every chunk as Parquet (~120 ns a
row) plus receiving the columns over a pipe was most of a run's time
(docs/benchmarks.md, "Batch models"). A local worker that shares the
driver's machine and interpreter writes its chunk into the run's folder
itself, and sends the driver only a :class:`~ancho.chunk.StoredChunk`; the
driver then only counts it. Both write through :func:`begin_chunk_file` (the
store's :func:`write_chunk_file` commits at once), so a file is the same
whoever wrote it.

Atomicity, as the store promises: a temporary file named after the writing
process (``.<chunk name>.<pid>.<thread>.<token>.tmp``), fsynced, then renamed to the
chunk's name; the rename is the commit. A worker killed mid-write leaves
only its temporary file, which :meth:`ChunkFolder.clear_partial` (the
executor, when it sees the worker die) or the store's
``completed_ranges`` (a dead pid) removes; its chunk is then run again and
counted once, when its new file is committed.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..columns import to_arrow
from ..errors import StoreError
from ..files import private_dir
from .chunk_layout import chunk_name
from .codecs import ZSTD_LEVEL, column_codecs

if TYPE_CHECKING:
    import pyarrow as pa

    from ..chunk import ChunkResult


@dataclass(frozen=True)
class ChunkFolder:
    """Where a local worker writes a run's chunks itself (the embedded store's chunk folder): a :attr:`Task.sink`."""

    folder: str
    #: fsync each file before its rename (the store's own setting)
    fsync: bool = True
    #: the store's home, for the error a full disk gives
    where: str = ""

    def begin(self, result: ChunkResult) -> Callable[[], None]:
        """Write ``result``'s temporary file; what it returns commits it (fsync as the store says, rename), once,
        from any thread: a worker commits a chunk while it computes the next (see ``executors/outbox.py``). Its
        failures are the driver's to record: a chunk with failures is not written here."""
        finish = begin_chunk_file(Path(self.folder), result, self.where or self.folder)
        return lambda: finish(self.fsync)

    def clear_partial(self, pid: int) -> None:
        """Remove what process ``pid`` (a worker that died) left half-written in the folder."""
        for tmp in Path(self.folder).glob(f".*.{pid}.*.tmp"):
            tmp.unlink(missing_ok=True)


def temp_path(final: Path) -> Path:
    """Where this process and thread write ``final`` before the rename: ``.<name>.<pid>.<thread>.<token>.tmp``,
    the pid first so a dead writer's file is known. The token, random once a process, tells apart two writers with
    the same ids: processes of two containers (or machines) writing one folder on a shared file system."""
    return final.parent / f".{final.name}.{os.getpid()}.{threading.get_ident()}.{_process_token()}.tmp"


_TOKEN: tuple[int, str] = (0, "")


def _process_token() -> str:
    """This process's random token (a forked child makes its own: it has a pid of its own)."""
    global _TOKEN
    pid = os.getpid()
    if _TOKEN[0] != pid:
        _TOKEN = (pid, secrets.token_hex(6))
    return _TOKEN[1]


def chunk_table(result: ChunkResult) -> pa.Table:
    """The chunk's Arrow table: ``sequence``, then one column per output."""
    import pyarrow as pa

    return pa.table({name: to_arrow(col) for name, col in {"sequence": result.sequences, **result.columns}.items()})


def file_table(result: ChunkResult) -> pa.Table:
    """The Arrow table of a chunk file: :func:`chunk_table`, without ``sequence`` when the chunk has a row for
    every sequence of its range (its file's name says them; see ``chunk_layout``). Why: delta-encoding ascending
    ids cost ~6 of the ~38 ns a row of a batch model's 1M-row chunk file, for ~0 bytes (docs/benchmarks.md, "Batch
    models", seventh pass)."""
    table = chunk_table(result)
    if len(result.sequences) != result.stop - result.start:
        return table  # failed sequences have no row: the ids say which sequences the rows are
    return table.drop_columns(["sequence"])


def pack_chunk(result: ChunkResult) -> bytes:
    """The chunk's table as an Arrow IPC stream (what a packed chunk row holds: ``EmbeddedStore.write_chunks``).

    Not the Parquet file's bytes: a 50-row chunk encodes as IPC in ~12 µs against ~100 µs as Parquet (measured),
    and a packed chunk is made a Parquet file only when it is first read (:func:`table_file`). The stream is the
    schema's message (made once a schema: a study's points share theirs), the batch's and the end marker: the
    bytes Arrow's stream writer writes, without a writer a chunk (27 → 21 µs a 50-row chunk, measured)."""
    import pyarrow as pa

    if not len(result.sequences):
        return _written(chunk_table(result))
    arrays = [to_arrow(col) for col in (result.sequences, *result.columns.values())]
    key = (tuple(result.columns), tuple(a.type for a in arrays))
    known = _SCHEMAS.get(key)
    if known is None:
        if len(_SCHEMAS) >= 64:
            _SCHEMAS.clear()
        schema = pa.schema([pa.field(n, a.type) for n, a in zip(("sequence", *result.columns), arrays)])
        known = _SCHEMAS[key] = (schema, schema.serialize().to_pybytes())
    schema, head = known
    body: bytes = pa.RecordBatch.from_arrays(arrays, schema=schema).serialize().to_pybytes()
    return head + body + _END


#: a schema and its IPC message by output names and Arrow types; the stream's end marker (continuation, length 0)
_SCHEMAS: dict[tuple[tuple[str, ...], tuple[Any, ...]], tuple[Any, bytes]] = {}
_END = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _written(table: pa.Table) -> bytes:
    """``table`` through Arrow's stream writer."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def unpack_chunk(data: bytes) -> pa.Table:
    """The table :func:`pack_chunk` packed."""
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all()


def write_chunk_file(folder: Path, result: ChunkResult, fsync: bool, where: str | os.PathLike[str]) -> None:
    """Write sequences and columns of ``result`` as ``folder/<start>-<stop>.parquet``: temporary file, fsync, rename.

    An OSError (a full disk, a quota, a read-only home) becomes a one-line :class:`StoreError`.
    """
    begin_chunk_file(folder, result, where)(fsync)


def begin_chunk_file(folder: Path, result: ChunkResult, where: str | os.PathLike[str]) -> Callable[[bool], None]:
    """:func:`write_chunk_file` up to the fsync (see :func:`begin_file`)."""
    return begin_file(folder, chunk_name(result.start, result.stop), table_file(file_table(result)),
                      f"sequences {result.start}..{result.stop - 1}", where)  # fmt: skip


def table_file(table: pa.Table) -> Callable[[Path], None]:
    """What writes ``table`` as a chunk file's Parquet (for :func:`commit_file`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(tmp: Path) -> None:
        # Arrow's own file, not a Python one: no Python call and bytes copy per write (~3-5 ns a row of a 1M-row
        # chunk's ~45; docs/benchmarks.md, "Batch models", third pass)
        with pa.OSFile(str(tmp), "wb") as fh:
            pq.write_table(table, fh, **parquet_options(table.schema, table.num_rows, column_codecs(table)))

    return write


def commit_file(
    folder: Path,
    name: str,
    write: Callable[[Path], None],
    fsync: bool,
    what: str,
    where: str | os.PathLike[str],
) -> None:
    """Commit ``folder/name`` as a chunk file is committed: ``write(tmp)`` fills a private temporary file, fsync
    (``fsync``), rename. An OSError becomes a one-line :class:`StoreError` about the results of ``what``."""
    begin_file(folder, name, write, what, where)(fsync)


def begin_file(
    folder: Path, name: str, write: Callable[[Path], None], what: str, where: str | os.PathLike[str]
) -> Callable[[bool], None]:
    """:func:`commit_file` up to the fsync: the temporary file written. What it returns ends the commit (fsync if
    told, rename), once, from any thread of this process; until then no reader sees the chunk."""
    final = folder / name
    tmp = temp_path(final)
    with _one_line(tmp, what, where):
        if not folder.is_dir():  # the run's first chunk (creating a run makes no folder; a full disk fails it too)
            private_dir(folder)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # created private, then written
        write(tmp)

    def finish(fsync: bool) -> None:
        with _one_line(tmp, what, where):
            if fsync:
                fsync_path(tmp)
            os.replace(tmp, final)

    return finish


@contextmanager
def _one_line(tmp: Path, what: str, where: str | os.PathLike[str]) -> Iterator[None]:
    """Any failure removes the temporary file; an OSError becomes the store's one-line error."""
    try:
        yield
    except OSError as exc:
        _discard(tmp)
        raise StoreError(
            f"could not store the results of {what} under {where}: "
            f"{exc.strerror or exc}; free some space there (or use another --store) and run again"
        ) from None
    except BaseException:
        _discard(tmp)
        raise


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's (or a folder's: its entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temporary file if there is one (its folder may be what failed: not a folder, gone, read-only)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


#: values a chunk file's column writer takes at a time (see :func:`parquet_options`)
WRITE_BATCH = 65_536

#: a chunk of fewer rows is written uncompressed: zstd's set-up per column cost ~0.5 ms a file, more than a study's
#: 50-sequence point's compute, to save ~8% of a 2 KB file (lossless either way; readers see no difference)
UNCOMPRESSED_ROWS = 1024


def parquet_options(schema: pa.Schema, rows: int | None = None, codecs: dict[str, str] | None = None) -> dict[str, Any]:
    """How a chunk file is written (by the store, its workers and ``export_results``): zstd at level −1 (none under
    ``UNCOMPRESSED_ROWS`` rows, when ``rows`` is given), or each leaf's codec from ``codecs`` (``codecs.py``
    chooses them from the values); dictionary encoding
    only for bool and int columns (floats rarely repeat, so a dictionary is built and thrown away: 4x slower writes);
    ``sequence`` delta-encoded (ascending ids pack to a few bits). On a 262,144-row batch chunk: 3.9 instead of 6.8
    bytes and about a quarter of the write time per row, lossless
    (benchmarks/bench_store_formats.py --batch-rows, docs/benchmarks.md "Batch models"). Level −1 rather than the
    default: ~20% less CPU to write and ~25% less to read back for ~3% more bytes (the third pass there)."""
    import pyarrow as pa

    dictionary = [
        f.name for f in schema if f.name != "sequence" and (pa.types.is_integer(f.type) or pa.types.is_boolean(f.type))
    ]
    options: dict[str, Any] = {
        "use_dictionary": dictionary,
        "column_encoding": {"sequence": "DELTA_BINARY_PACKED"},
        # values handed to the column writer at a time (Arrow's default 1,024): its per-batch level, statistics and
        # page-size bookkeeping cost ~1 ns a row of a 1M-row float chunk (8.2–8.5 against 9.2–10.6 ns a row
        # uncompressed, 19.0–19.4 against 19.7 with LZ4, in one process; docs/benchmarks.md, "Batch models",
        # eleventh pass); pages still close at Arrow's 1 MB, up to one batch later
        "write_batch_size": WRITE_BATCH,
    }
    if codecs is not None:
        options["compression"] = codecs
        options["compression_level"] = {path: ZSTD_LEVEL for path, codec in codecs.items() if codec == "zstd"}
    elif rows is not None and rows < UNCOMPRESSED_ROWS:
        options["compression"] = "none"
    else:
        options["compression"], options["compression_level"] = "zstd", ZSTD_LEVEL
    return options
