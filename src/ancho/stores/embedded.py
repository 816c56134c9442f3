"""The embedded store: SQLite for run records, one Parquet file per chunk for outputs.

Why this format (benchmarks/bench_store_formats.py, docs/benchmarks.md):
writing a 200,000-row chunk costs ~0.14 µs per sequence as Parquet+zstd,
~0.02 µs as Arrow IPC and ~1.4 µs as SQLite rows. Parquet is within the
per-sequence budget, 20% smaller than Arrow+LZ4, reads one column without
touching the others, and is what users export anyway, so results are
stored in the format they leave in. Run records are small, updated often
and read by several server threads at once: SQLite in WAL mode.

Atomicity: a chunk is written to a temporary file, fsynced, then renamed to
``chunks/<start>-<stop>.parquet``; the rename is the commit. Its failures go
into SQLite first (keyed by run and sequence, so a rewrite replaces them).
A crash leaves either the whole chunk or none of it, and writing the same
chunk again replaces the file: idempotent.

Small chunks of many runs (a study's tiny points: ``write_chunks``) are kept
as rows of ``packed_chunks`` instead — the chunk's table as an Arrow IPC
stream, written in one transaction per batch: a folder and a file per point cost more than
the point's sequences (docs/benchmarks.md, "Studies"). The first read of such
a run moves its rows into its chunk folder as ordinary Parquet files (idempotent:
files first, then the rows go), so every reader, a worker or a sandbox sees
one layout.

Privacy: the home's folders are made 0700 and its files 0600 (``ancho.files``),
whatever the umask: results are their owner's only.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import jsontext
from ..chunk import ChunkResult, Failure, kind_dtype, trajectory_steps
from ..errors import InputError, NotFound
from ..files import private_dir
from ..home import default_home
from ..sqlite import Database, newest_first
from .base import RunRecord, Store, StudyRecord, arrow_schema
from .chunk_layout import chunk_files, chunk_name, file_sequences
from .chunk_writer import ChunkFolder, commit_file, fsync_path, pack_chunk, table_file, unpack_chunk, write_chunk_file
from .results_sources import ChunkFiles
from .run_rows import RunRows, record_of
from .summary_columns import GroupedColumns, fill_columns

if TYPE_CHECKING:
    import pyarrow as pa

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_FIELDS = ("params", "targets", "schema", "spec", "summary")

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    error TEXT NOT NULL,
    traceback TEXT NOT NULL,
    PRIMARY KEY (run_id, sequence)
);
CREATE TABLE IF NOT EXISTS packed_chunks (
    run_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, start)
);
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_owner_created ON studies(owner, created);
"""


def check_run_id(run_id: str) -> str:
    """Run ids become folder names: only letters, digits, '-' and '_' get that far."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise NotFound(f"no run '{run_id}' (run ids are letters, digits, '-' and '_')")
    return run_id


#: SQLite's JSON functions are built in (3.38 on): a study's record is updated in place
JSON_SET = sqlite3.sqlite_version_info >= (3, 38)


#: the most bytes of columns a summary reads in one pass over a run's chunk files (besides the one it describes):
#: enough for 1,000 outputs of 8,000 sequences at once, and no more than the driver's peak already allows
GROUP_BYTES = 64 << 20


class EmbeddedStore(Store):
    """Runs under ``home`` (default ``$ANCHO_HOME`` or ``~/.ancho``); no server needed."""

    def __init__(self, home: str | os.PathLike[str] | None = None, fsync: bool = True):
        self.home = Path(home).expanduser() if home else default_home()
        try:
            private_dir(self.home / "runs")
        except OSError as exc:
            raise InputError(
                f"cannot use '{self.home}' as the Ancho home: {exc.strerror or exc}; set ANCHO_HOME to a writable folder"
            ) from None
        self.url = str(self.home)
        self.fsync = fsync
        self.db = Database(self.home / "runs.db", _SCHEMA_SQL)
        self.rows = RunRows(self.db)

    def _chunks_dir(self, run_id: str) -> Path:
        return self.home / "runs" / check_run_id(run_id) / "chunks"

    def chunk_folder(self, run_id: str) -> Path:
        """Where the run's chunk files go, with no file-system call and no record read: its first writer makes it
        (a study's 2,000 points' sinks through :meth:`results` cost a fifth of the driver's time)."""
        return self._chunks_dir(run_id)

    def writers_folder(self, run_id: str) -> ChunkFolder | None:
        """The run's chunk folder for other processes to write its chunk files in themselves (local workers, Spark
        tasks on this machine), or None when this store's writes do more than the embedded store's (a subclass's or
        an instance's own ``write_chunk``): every chunk then goes through it."""
        if type(self).write_chunk is not EmbeddedStore.write_chunk or "write_chunk" in vars(self):
            return None
        return ChunkFolder(str(self.chunk_folder(run_id)), self.fsync, str(self.home))

    # -- run records -----------------------------------------------------------
    def create_run(self, record: RunRecord) -> None:
        self.create_runs([record])
        private_dir(self._chunks_dir(record.id))

    def create_runs(self, records: list[RunRecord]) -> None:
        """One transaction for them all; a run's folder is made by its first chunk (or :meth:`results`), not here:
        a study's tiny points paid more for a folder and a commit each than for their sequences."""
        for record in records:
            check_run_id(record.id)
        self.rows.create(records)

    def get_run(self, run_id: str, owner: str | None = None) -> RunRecord:
        return record_of(*self.rows.texts(check_run_id(run_id), owner))

    def run_schema(self, run_id: str) -> dict[str, str]:
        return record_of(self.rows.fields(check_run_id(run_id)), None).schema  # (its summary column unread)

    def run_version(self, run_id: str, owner: str | None = None, *, wait: bool = True) -> int | None:
        """The hash of the record's stored texts: hashing them costs far less than decoding them, and only a change
        of the record changes it (a status read at 1,000/s then decodes the record only after each change)."""
        try:
            return hash(self.rows.texts(check_run_id(run_id), owner))
        except NotFound:
            return None

    def versioned_run(self, run_id: str, owner: str | None = None, *, wait: bool = True) -> tuple[int, RunRecord]:
        texts = self.rows.texts(check_run_id(run_id), owner)
        return hash(texts), record_of(*texts)

    def update_run(self, run_id: str, **changes: Any) -> None:
        self.update_runs([(run_id, changes)])

    def update_runs(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """One transaction for them all: a run that does not exist raises NotFound and none is changed."""
        self.rows.update(changes)

    def replace_runs(self, records: list[RunRecord]) -> None:
        """One transaction, no record read back (a read and a JSON decode a point were a tenth of a tiny point's
        driver time); a run that does not exist raises NotFound and none is changed."""
        self.rows.replace(records)

    def list_runs(
        self, owner: str | None = None, status: str | None = None, limit: int | None = None, *, summaries: bool = True
    ) -> list[RunRecord]:
        return self.rows.list(owner, status, limit, summaries)

    def delete_run(self, run_id: str) -> None:
        check_run_id(run_id)
        with self.db.write() as db:
            self.rows.delete(db, run_id)
            db.execute("DELETE FROM failures WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM packed_chunks WHERE run_id = ?", (run_id,))
        shutil.rmtree(self.home / "runs" / run_id, ignore_errors=True)

    # -- study records ------------------------------------------------------------
    def create_study(self, record: StudyRecord) -> None:
        check_run_id(record.id)
        with self.db.write() as db:
            db.execute(
                "INSERT INTO studies (id, owner, created, data) VALUES (?, ?, ?, ?)",
                (record.id, record.owner, record.created, record.to_json()),
            )

    def get_study(self, study_id: str, owner: str | None = None) -> StudyRecord:
        if not isinstance(study_id, str) or not _RUN_ID.match(study_id):
            raise NotFound(f"no study '{study_id}'")
        row = self.db.conn().execute("SELECT owner, data FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None or (owner is not None and row[0] != owner):
            raise NotFound(f"no study '{study_id}'")
        return StudyRecord.from_dict(jsontext.loads(row[1]))

    def update_study(self, study_id: str, **changes: Any) -> None:
        """The changes are set in the stored JSON by SQLite (``json_set``), the record neither decoded nor encoded
        again: a 2,000-point study's 250 KB record, rewritten with its points' statuses every half second while it
        runs, took ~9 ms a write that way against ~4.5 (measured). A value SQLite's JSON cannot read (NaN, ±inf,
        which Python writes as NaN and Infinity) takes the read-change-write way, as does every update where SQLite
        is older than 3.38 (no JSON functions built in)."""
        with self.db.write() as db:
            if changes and JSON_SET:
                sets = ", ".join("?, json(?)" for _ in changes)
                args = [x for name, value in changes.items() for x in (f'$."{name}"', jsontext.dumps(value))]
                try:
                    sql = f"UPDATE studies SET data = json_set(data, {sets}) WHERE id = ?"
                    if db.execute(sql, (*args, study_id)).rowcount == 0:
                        raise NotFound(f"no study '{study_id}'")
                    return
                except sqlite3.OperationalError as exc:
                    if "JSON" not in str(exc):  # (malformed JSON)
                        raise
            row = db.execute("SELECT data FROM studies WHERE id = ?", (study_id,)).fetchone()
            if row is None:
                raise NotFound(f"no study '{study_id}'")
            data = jsontext.loads(row[0])
            data.update(changes)
            db.execute("UPDATE studies SET data = ? WHERE id = ?", (jsontext.dumps(data), study_id))

    def list_studies(self, owner: str | None = None, limit: int | None = None) -> list[StudyRecord]:
        sql, args = newest_first("SELECT data FROM studies", {"owner": owner}, limit)
        return [StudyRecord.from_dict(jsontext.loads(r[0])) for r in self.db.conn().execute(sql, args).fetchall()]

    # -- results ----------------------------------------------------------------
    def write_chunk(self, run_id: str, result: ChunkResult) -> None:
        folder = self._chunks_dir(run_id)
        if result.failures:
            with self.db.write() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO failures (run_id, sequence, error, traceback) VALUES (?, ?, ?, ?)",
                    [(run_id, f.sequence, f.error, f.traceback) for f in result.failures],
                )
        write_chunk_file(folder, result, self.fsync, self.home)  # (a local worker may write the file itself instead)

    def write_chunks(self, chunks: Sequence[tuple[str, ChunkResult]]) -> None:
        """Chunks of under ``PACKED_BYTES`` of columns become rows of ``packed_chunks``, with their failures, in one
        transaction (writing one again replaces it); larger ones are written as files, one by one."""
        rows, failures = [], []
        for run_id, result in chunks:
            if _column_bytes(result) >= PACKED_BYTES:
                self.write_chunk(run_id, result)
                continue
            rows.append((check_run_id(run_id), result.start, result.stop, pack_chunk(result)))
            failures += [(run_id, f.sequence, f.error, f.traceback) for f in result.failures]
        if not rows:
            return
        with self.db.write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO failures (run_id, sequence, error, traceback) VALUES (?, ?, ?, ?)", failures
            )
            db.executemany("INSERT OR REPLACE INTO packed_chunks (run_id, start, stop, data) VALUES (?, ?, ?, ?)", rows)

    def _unpack(self, run_id: str) -> None:
        """Move the run's packed chunks into its chunk folder as files (each committed as any chunk file), then drop
        their rows. Killed in between, the next read writes the same files again and drops the rows: idempotent."""
        packed = (
            self.db.conn()
            .execute("SELECT start, stop, data FROM packed_chunks WHERE run_id = ? ORDER BY start", (run_id,))
            .fetchall()
        )
        if not packed:
            return
        folder = self._chunks_dir(run_id)
        for start, stop, data in packed:
            write = table_file(unpack_chunk(data))
            commit_file(folder, chunk_name(start, stop), write, self.fsync, f"sequences {start}..{stop - 1}", self.home)
        if self.fsync:  # the renames durable before the rows go (else a power loss could keep neither)
            fsync_path(folder)
        with self.db.write() as db:
            db.executemany(
                "DELETE FROM packed_chunks WHERE run_id = ? AND start = ? AND stop = ?",
                [(run_id, start, stop) for start, stop, _ in packed],
            )

    def _chunk_files(self, run_id: str) -> list[tuple[int, int, Path]]:
        self._unpack(check_run_id(run_id))
        folder = self._chunks_dir(run_id)
        if not folder.is_dir():
            self.get_run(run_id)  # NotFound for a run that does not exist
            return []
        return chunk_files(folder)

    def completed_ranges(self, run_id: str) -> list[tuple[int, int]]:
        """Also clears temporary files left by a writer that died mid-chunk (the engine asks this before it (re)starts a run)."""
        ranges = [(a, b) for a, b, _ in self._chunk_files(run_id)]
        folder = self._chunks_dir(run_id)
        for tmp in folder.glob(".*.tmp"):
            pid = tmp.name.rsplit(".", 4)[-4] if tmp.name.count(".") >= 5 else ""  # (chunk_writer.temp_path)
            if not (pid.isdigit() and _alive(int(pid))):
                tmp.unlink(missing_ok=True)
        return ranges

    def stored_kinds(self, run_id: str) -> list[tuple[int, int, dict[str, str]]]:
        """Read from each chunk file's Parquet footer (no data pages)."""
        import pyarrow.parquet as pq

        from ..columns import arrow_kind

        out = []
        for start, stop, path in self._chunk_files(run_id):
            schema = pq.read_schema(path)
            out.append((start, stop, {f.name: arrow_kind(f.type) for f in schema if f.name != "sequence"}))
        return out

    def row_count(self, run_id: str) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for _, _, p in self._chunk_files(run_id))

    def iter_batches(self, run_id: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        schema = self.arrow_schema(run_id, columns)
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise InputError(
                    f"run '{run_id}' has no output '{unknown[0]}' (outputs: {', '.join(schema.names[1:])})"
                )
        return iter_chunk_batches([p for _, _, p in self._chunk_files(run_id)], schema)

    def results_page(self, run_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Reads only the chunk files the page falls in: the row counts come from each file's footer,
        so page N costs the same as page 1 (reading from the start made deep pages quadratic)."""
        import pyarrow.parquet as pq

        files = [p for _, _, p in self._chunk_files(run_id)]
        counts = [pq.ParquetFile(p).metadata.num_rows for p in files]
        wanted: list[Path] = []
        skip, seen = 0, 0
        for path, n in zip(files, counts):
            if seen + n > offset and seen < offset + limit:
                if not wanted:
                    skip = offset - seen
                wanted.append(path)
            seen += n
        rows: list[dict[str, Any]] = []
        for batch in iter_chunk_batches(wanted, self.arrow_schema(run_id)):
            if len(rows) >= limit:
                break
            take = batch.slice(skip, limit - len(rows))
            skip = max(0, skip - batch.num_rows)
            rows.extend(take.to_pylist())
        return rows, seen

    def results(self, run_id: str) -> ChunkFiles:
        """The run's chunk folder and the chunks committed in it now (a sandbox binds the folder read-only).

        The folder is made here if no chunk made it yet: readers and binds expect it to exist."""
        schema = self.run_schema(run_id)
        self._unpack(run_id)
        return ChunkFiles.of_folder(private_dir(self._chunks_dir(run_id)), schema)

    def read_column(self, run_id: str, name: str) -> np.ndarray:
        """Filled into one preallocated array, so peak memory is one column plus one chunk."""
        kind = "sequence" if name == "sequence" else self.run_schema(run_id).get(name)
        if kind is None:
            return super().read_column(run_id, name)  # raises the unknown-output error
        dtype = np.dtype(np.int64) if kind == "sequence" else kind_dtype(kind)
        steps = None if kind == "sequence" else trajectory_steps(kind)  # a trajectory: rows × steps
        out = np.empty((self.row_count(run_id),) + ((steps,) if steps else ()), dtype=dtype)
        return out[: fill_columns(self.iter_batches(run_id, [name]), {name: out}, run_id)]

    def summary_columns(self, run_id: str, cancelled: Callable[[], bool] | None = None) -> GroupedColumns:
        """Outputs read in groups, each chunk file opened once a group (its footer describes every output), from the
        record and the folder read once; a group holds at most :data:`GROUP_BYTES` (a column longer than that is
        read alone, as before: the driver's peak stays one column's) and ``ANCHO_COLUMN_MEMORY``."""
        from ..streamed import budget

        files, schema = self._chunk_files(run_id), self.run_schema(run_id)
        paths = [p for _, _, p in files]
        batches = lambda names: iter_chunk_batches(paths, arrow_schema(schema, names))  # noqa: E731
        rows = sum(b - a for a, b, _ in files)  # (at least the rows: a chunk with failures has fewer)
        return GroupedColumns(self, run_id, schema, batches, rows, min(budget(), GROUP_BYTES), cancelled)

    def failures(self, run_id: str, limit: int | None = None) -> list[Failure]:
        sql = "SELECT sequence, error, traceback FROM failures WHERE run_id = ? ORDER BY sequence"
        args: list[str | int] = [check_run_id(run_id)]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [Failure(*row) for row in self.db.conn().execute(sql, args).fetchall()]

    def close(self) -> None:
        self.db.close()


#: a chunk whose columns hold fewer bytes may be kept as a row of ``packed_chunks`` (``write_chunks``): a study's
#: tiny points (50 sequences of two outputs: ~1 KB) go there, a point of long trajectories still gets its files
PACKED_BYTES = 64 << 10


def _column_bytes(result: ChunkResult) -> int:
    return int(result.sequences.nbytes) + sum(int(col.nbytes) for col in result.columns.values())


def iter_chunk_batches(paths: list[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Arrow batches of the chunk files in order, cast to the run's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in paths:
        pf = pq.ParquetFile(path)
        if pf.metadata.num_rows == 0:
            continue
        present = set(pf.schema_arrow.names)
        table = pf.read(columns=[c for c in schema.names if c in present], use_pandas_metadata=False)
        read = set(table.column_names)  # (once: the property builds its list anew, a file's k outputs made k² work)
        for f in schema:
            if f.name in read:
                continue
            if f.name == "sequence":  # a file with a row for every sequence of its range (chunk_layout)
                table = table.append_column(f, pa.array(file_sequences(path, table.num_rows)))
            else:  # defensive: a chunk written before the schema grew
                table = table.append_column(f, pa.nulls(table.num_rows, f.type))
        table = table.select(schema.names)
        if table.schema != schema:
            table = table.cast(schema)  # int chunks of a column that later became float
        yield from table.to_batches()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
