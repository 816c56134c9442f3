"""One owner's results in Cassandra: the tables of an owner keyspace, and writing and reading chunks there.

Data model (per owner keyspace; see docs/cassandra.md for the figures behind it)::

    chunks   ((run_id), chunk_start)            chunk_stop, rows, failed, dense, done, kinds map<name, kind>, planned_stop
    blocks   ((run_id, chunk_start, name), block)   data blob   -- ≤ BLOCK values of one column
    failures ((run_id, bucket), sequence)       error, traceback   -- bucket = sequence // FAILURE_BUCKET

A column of a chunk is cut into blocks of ``BLOCK`` values stored as raw
little-endian int64/float64 (bools packed 8 per byte), so a cell is at most
128 KiB and a ``blocks`` partition (one column of one chunk, ≤ 262,144
values) at most 2 MiB, whatever the number of sequences or outputs. A
``failures`` partition holds the failures of at most ``FAILURE_BUCKET``
sequences, however many failures a run allows. One CQL row per *sequence*
would cost a request, a mutation and a storage row per sequence: measured
~1000× slower to write (docs/cassandra.md).

A trajectory output (kind ``float[STEPS]``) of a chunk is rows × steps
values: flattened row by row (the order of an Arrow fixed-size list, so what
is read back is bit for bit what the embedded store keeps) and cut into the
same blocks, numbered across the chunk; block ``b`` lives in the partition
named ``NAME#<b // PART_BLOCKS>`` (``#`` is in no output name: they are
identifiers), so every partition holds at most ``PART_BLOCKS`` blocks (2 MiB)
however long the chunk or the series.

Atomicity and idempotence: a chunk's failures and blocks are written
first, and its ``chunks`` row is marked ``done`` last, only when every
block is acknowledged; readers and ``completed_ranges`` see done chunks
only. A crash or node restart mid-chunk leaves blocks that nothing reads
(the engine recomputes the chunk). Every write is keyed by its full primary
key, so writing a chunk again overwrites the same cells: it never
duplicates. Readers take ``rows`` from the done row and ignore blocks past
it (left by an earlier, unfinished attempt).

Nothing here needs the store's admin login: the same code runs in a
summary worker or a Spark task with only the owner's role
(:func:`read_source`, :func:`open_writer`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..chunk import ChunkResult, Failure, column_kind, trajectory_steps
from ..columns import to_arrow
from ..errors import AnchoError, StoreError
from .cassandra_blocks import BLOCK as BLOCK  # (re-exported: benchmarks and tests read the layout here)
from .cassandra_blocks import PART_BLOCKS as PART_BLOCKS
from .cassandra_blocks import block_count, decode, encode, part_name, part_names
from .cassandra_conn import Endpoint, connect, retrying, run_concurrent
from .cassandra_pipeline import Pipeline, Request

if TYPE_CHECKING:
    import pyarrow as pa
    from cassandra.cluster import ResponseFuture, Session  # untyped library: Any to mypy

    from .results_sources import CassandraResults

T = TypeVar("T")

#: chunks whose blocks are fetched ahead while the current one is decoded
READ_AHEAD = 4
#: ... but no more than this many bytes of them (a chunk of trajectories can be hundreds of MB)
READ_AHEAD_BYTES = 64 << 20
#: partitions of one column requested at once (a trajectory chunk has many: all at once, a 1 GiB-heap node
#: answered 20,000 × 1,000 values at 6 µs a value; bench_trajectories.py)
READ_WINDOW = 8
#: requests in flight per write: 16 × 128 KiB = 2 MiB, within a socket's send buffer (at 32 × 256 KiB the
#: driver failed writes with ConnectionBusy when the node fell behind; docs/cassandra.md)
WRITE_CONCURRENCY = 16
#: sequences per ``failures`` partition: a run allowed millions of failures still has bounded partitions
FAILURE_BUCKET = 1024

TABLES = (
    """CREATE TABLE IF NOT EXISTS {ks}.chunks (
        run_id text, chunk_start bigint, chunk_stop bigint, rows bigint, failed bigint, dense boolean, done boolean,
        kinds map<text, text>, planned_stop bigint,
        PRIMARY KEY ((run_id), chunk_start))""",
    """CREATE TABLE IF NOT EXISTS {ks}.blocks (
        run_id text, chunk_start bigint, name text, block int, data blob,
        PRIMARY KEY ((run_id, chunk_start, name), block))""",
    """CREATE TABLE IF NOT EXISTS {ks}.failures (
        run_id text, bucket bigint, sequence bigint, error text, traceback text,
        PRIMARY KEY ((run_id, bucket), sequence))""",
)


class ChunkMarker:
    __slots__ = ("start", "stop", "rows", "failed", "dense", "kinds")

    def __init__(self, start: int, stop: int, rows: int, failed: int, dense: bool, kinds: dict[str, str]):
        self.start, self.stop, self.rows, self.failed, self.dense, self.kinds = start, stop, rows, failed, dense, kinds

    def buckets(self) -> range:
        """The ``failures`` partitions this chunk's sequences fall in."""
        return range(self.start // FAILURE_BUCKET, (max(self.stop, self.start + 1) - 1) // FAILURE_BUCKET + 1)

    def kind(self, name: str) -> str:
        return "int" if name == "sequence" else self.kinds[name]

    def bytes_of(self, names: list[str]) -> int:
        """About how many bytes the blocks of ``names`` take (what reading ahead counts)."""
        return sum(8 * self.rows * (trajectory_steps(self.kind(n)) or 1) for n in names)


class RunResults:
    """Reads and writes results in one owner keyspace through an open session."""

    def __init__(self, session: Session, keyspace: str, endpoint: Endpoint):
        self.session = session
        self.ks = keyspace
        self.endpoint = endpoint
        self.pipeline = Pipeline(session, endpoint, WRITE_CONCURRENCY)
        p = session.prepare
        self._pre_mark = p(
            f"UPDATE {keyspace}.chunks SET planned_stop = ?, kinds = kinds + ? WHERE run_id = ? AND chunk_start = ?"
        )
        self._mark = p(
            f"UPDATE {keyspace}.chunks SET chunk_stop = ?, rows = ?, failed = ?, dense = ?, done = true, kinds = ? "
            "WHERE run_id = ? AND chunk_start = ?"
        )
        self._block = p(
            f"INSERT INTO {keyspace}.blocks (run_id, chunk_start, name, block, data) VALUES (?, ?, ?, ?, ?)"
        )
        self._failure = p(
            f"INSERT INTO {keyspace}.failures (run_id, bucket, sequence, error, traceback) VALUES (?, ?, ?, ?, ?)"
        )
        self._markers = p(
            f"SELECT chunk_start, chunk_stop, planned_stop, rows, failed, dense, done, kinds FROM {keyspace}.chunks WHERE run_id = ?"
        )
        self._blocks = p(
            f"SELECT block, data FROM {keyspace}.blocks WHERE run_id = ? AND chunk_start = ? AND name = ? AND block < ?"
        )
        self._failures = p(
            f"SELECT sequence, error, traceback FROM {keyspace}.failures WHERE run_id = ? AND bucket = ? AND sequence >= ? AND sequence < ?"
        )
        self._probe = p(
            f"SELECT block FROM {keyspace}.blocks WHERE run_id = ? AND chunk_start = ? AND name = ? LIMIT 1"
        )
        self._drop_blocks = p(f"DELETE FROM {keyspace}.blocks WHERE run_id = ? AND chunk_start = ? AND name = ?")
        self._drop_chunks = p(f"DELETE FROM {keyspace}.chunks WHERE run_id = ?")
        self._drop_failures = p(f"DELETE FROM {keyspace}.failures WHERE run_id = ? AND bucket = ?")
        for stmt in (
            self._pre_mark,
            self._mark,
            self._block,
            self._failure,
            self._drop_blocks,
            self._drop_chunks,
            self._drop_failures,
        ):
            stmt.is_idempotent = True

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        return retrying(what, self.endpoint, call)

    # -- writing ---------------------------------------------------------------
    def block_rows(self, run_id: str, result: ChunkResult) -> tuple[list[tuple[Any, ...]], dict[str, str], bool]:
        """The ``blocks`` rows of a chunk (what the write sends), its column kinds, and whether its sequences are dense."""
        kinds = {name: column_kind(col) for name, col in result.columns.items()}
        dense = len(result.sequences) == result.size
        columns = dict(result.columns) if dense else {"sequence": result.sequences, **result.columns}
        rows: list[tuple[Any, ...]] = []
        for name, values in columns.items():
            kind = "int" if name == "sequence" else kinds[name]
            for i, data in enumerate(encode(values, kind)):
                rows.append((run_id, result.start, part_name(name, kind, i), i, data))
        return rows, kinds, dense

    def chunk_writes(self, run_id: str, result: ChunkResult) -> tuple[list[Request], Request]:
        """The ``(statement, params)`` a chunk is written with: its data, and the done marker that must follow it."""
        rows, kinds, dense = self.block_rows(run_id, result)
        names = kinds if dense else {"sequence": "int", **kinds}
        # always sent: a chunk row names every column (so every partition) the chunk may write, even if it never finishes
        work: list[Request] = [(self._pre_mark, (result.stop, names, run_id, result.start))]
        work += [
            (self._failure, (run_id, f.sequence // FAILURE_BUCKET, f.sequence, f.error, f.traceback))
            for f in result.failures
        ]
        work += [(self._block, row) for row in rows]
        marker = (
            self._mark,
            (result.stop, len(result.sequences), len(result.failures), dense, kinds, run_id, result.start),
        )
        return work, marker

    def write_chunk(self, run_id: str, result: ChunkResult) -> None:
        """Send a chunk's failures and blocks; its ``done`` marker follows once they are all acknowledged.

        Returns when the requests are sent (:mod:`.cassandra_pipeline`);
        every read here flushes first. The chunk row's planned stop and
        column names (how deleting a run finds the partitions of an
        unfinished chunk) go with the data.
        """
        work, marker = self.chunk_writes(run_id, result)
        self.pipeline.submit(work, marker, f"writing sequences {result.start}..{result.stop - 1} of run '{run_id}'")

    def flush(self) -> None:
        """Wait for every chunk handed to :meth:`write_chunk`; raise the first write that failed."""
        self.pipeline.flush()

    # -- reading ---------------------------------------------------------------
    def markers(self, run_id: str, done_only: bool = True) -> list[ChunkMarker]:
        self.flush()
        rows = self._retry(
            f"reading the chunks of run '{run_id}'", lambda: list(self.session.execute(self._markers, (run_id,)))
        )
        return [
            ChunkMarker(
                r.chunk_start,
                r.chunk_stop if r.done else (r.planned_stop or r.chunk_start),
                r.rows or 0,
                r.failed or 0,
                bool(r.dense),
                dict(r.kinds or {}),
            )
            for r in rows
            if r.done or not done_only
        ]

    def completed_ranges(self, run_id: str) -> list[tuple[int, int]]:
        return [(m.start, m.stop) for m in self.markers(run_id)]

    def _fetch(self, run_id: str, marker: ChunkMarker, names: list[str]) -> dict[str, list[ResponseFuture]]:
        """Futures for the blocks of ``names`` in one chunk, one per partition (sent now, read later)."""
        out = {}
        for name in names:
            kind = marker.kind(name)
            n = block_count(kind, marker.rows)
            out[name] = [
                self.session.execute_async(self._blocks, (run_id, marker.start, part, n))
                for part in part_names(name, kind, marker.rows)[:READ_WINDOW]
            ]
        return out

    def _column(self, run_id: str, marker: ChunkMarker, name: str, futures: list[ResponseFuture]) -> np.ndarray:
        kind = marker.kind(name)
        n = block_count(kind, marker.rows)
        rows = []
        parts = part_names(name, kind, marker.rows)
        window = deque(futures)
        for i, part in enumerate(parts):

            def again(part: str = part) -> list[Any]:
                return list(self.session.execute(self._blocks, (run_id, marker.start, part, n)))

            future = window.popleft()
            if i + len(window) + 1 < len(parts):  # keep READ_WINDOW partitions in flight, no more
                later = parts[i + len(window) + 1]
                window.append(self.session.execute_async(self._blocks, (run_id, marker.start, later, n)))
            try:
                rows += list(future.result())
            except Exception:  # a transient failure of the prefetched request: ask again, with retries
                rows += self._retry(f"reading run '{run_id}'", again)
        blocks = [r.data for r in sorted(rows, key=lambda r: r.block)]
        try:
            if len(blocks) != n:
                raise ValueError(f"{len(blocks)} of {n} blocks")
            return decode(blocks, kind, marker.rows)
        except ValueError as exc:
            raise AnchoError(
                f"run '{run_id}': output '{name}' of sequences {marker.start}..{marker.stop - 1} has {exc} "
                "in Cassandra (the replicas disagree, or data was deleted); repair the keyspace or run again"
            ) from None

    def iter_batches(
        self, run_id: str, schema: pa.Schema, starts: Iterable[int] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Arrow batches of the done chunks in sequence order (only those beginning at ``starts``, if given), with
        ``schema``'s columns and types; the chunks after the current one are fetched ahead, within READ_AHEAD_BYTES."""
        import pyarrow as pa

        only = None if starts is None else set(starts)
        markers = [m for m in self.markers(run_id) if m.rows and (only is None or m.start in only)]
        wanted = [f.name for f in schema]
        pending: deque[tuple[ChunkMarker, dict[str, list[ResponseFuture]], int]] = deque()

        def names_of(m: ChunkMarker) -> list[str]:
            return [n for n in wanted if (n == "sequence" and not m.dense) or n in m.kinds]

        it = iter(markers)
        ahead = 0  # bytes being fetched
        nxt = next(it, None)
        while pending or nxt is not None:
            while nxt is not None and (
                not pending or (len(pending) < READ_AHEAD and ahead + nxt.bytes_of(names_of(nxt)) <= READ_AHEAD_BYTES)
            ):
                size = nxt.bytes_of(names_of(nxt))
                pending.append((nxt, self._fetch(run_id, nxt, names_of(nxt)), size))
                ahead += size
                nxt = next(it, None)
            marker, futures, size = pending.popleft()
            arrays = []
            for f in schema:
                if f.name == "sequence" and marker.dense:
                    arr = to_arrow(np.arange(marker.start, marker.stop, dtype=np.int64))
                elif f.name in futures:
                    arr = to_arrow(self._column(run_id, marker, f.name, futures[f.name]))
                else:  # defensive: a chunk written before the schema grew
                    arr = pa.nulls(marker.rows, f.type)
                if arr.type != f.type:  # int chunks of a column that became float
                    arr = self._cast(run_id, marker, f, arr)
                arrays.append(arr)
            ahead -= size
            del futures
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    @staticmethod
    def _cast(run_id: str, marker: ChunkMarker, f: pa.Field, arr: pa.Array) -> pa.Array:
        import pyarrow as pa

        try:
            return arr.cast(f.type)
        except pa.ArrowException:  # a trajectory whose length changed (the run failed)
            raise StoreError(
                f"run '{run_id}': output '{f.name}' of sequences {marker.start}..{marker.stop - 1} is stored as "
                f"{marker.kinds.get(f.name)}, not as the run's {f.type}; those sequences cannot be read with the others"
            ) from None

    def page(self, run_id: str, schema: pa.Schema, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Rows ``offset..offset+limit-1`` and the row count, reading only the chunks the page falls in
        (the done markers carry each chunk's row count)."""
        from .base import page_rows

        markers = [m for m in self.markers(run_id) if m.rows]
        wanted: list[int] = []
        skip, seen = 0, 0
        for m in markers:
            if seen + m.rows > offset and seen < offset + limit:
                if not wanted:
                    skip = offset - seen
                wanted.append(m.start)
            seen += m.rows
        if not wanted:
            return [], seen
        rows, _ = page_rows(self.iter_batches(run_id, schema, wanted), skip, limit)
        return rows, seen

    def read_table(self, run_id: str, kinds: dict[str, str], columns: list[str] | None = None) -> pa.Table:
        import pyarrow as pa

        from .base import arrow_schema

        schema = arrow_schema(kinds, columns)
        return pa.Table.from_batches(list(self.iter_batches(run_id, schema)), schema=schema)

    def failures(self, run_id: str, limit: int | None = None) -> list[Failure]:
        """In sequence order: the buckets of the done chunks that had failures, fetched a window at a time."""
        parts = [(run_id, b, m.start, m.stop) for m in self.markers(run_id) if m.failed for b in m.buckets()]
        out: list[Failure] = []
        window = 32
        for i in range(0, len(parts), window):
            futures = [(args, self.session.execute_async(self._failures, args)) for args in parts[i : i + window]]
            for args, future in futures:

                def again(a: tuple[str, int, int, int] = args) -> list[Any]:
                    return list(self.session.execute(self._failures, a))

                try:
                    rows = list(future.result())
                except Exception:  # a transient failure: ask again, with retries
                    rows = self._retry(f"reading the failures of run '{run_id}'", again)
                out.extend(Failure(r.sequence, r.error, r.traceback or "") for r in rows)
                if limit is not None and len(out) >= limit:
                    return out[: int(limit)]
        return out

    # -- deleting --------------------------------------------------------------
    def _beyond(self, run_id: str, m: ChunkMarker, name: str, kind: str) -> list[str]:
        """A trajectory's partitions past those of the chunk's last attempt: left by an earlier, longer attempt that
        died (its planned stop was overwritten). Its blocks were sent in order, at most a partition in flight, so
        the partitions it wrote run on from these: probed until two in a row are empty."""
        if not trajectory_steps(kind):
            return []
        found: list[str] = []
        part, empty = len(part_names(name, kind, max(m.rows, m.stop - m.start))), 0
        while empty < 2:
            args = (run_id, m.start, f"{name}#{part}")

            def probe(a: tuple[str, int, str] = args) -> Any:
                return self.session.execute(self._probe, a).one()

            row = self._retry(f"deleting run '{run_id}'", probe)
            empty = 0 if row is not None else empty + 1
            found += [args[2]] if row is not None else []
            part += 1
        return found

    def delete(self, run_id: str) -> None:
        """Every block partition the chunk rows name (also of unfinished chunks), then the chunk rows and failures."""
        markers = self.markers(run_id, done_only=False)
        parts = [
            (run_id, m.start, part)
            for m in markers
            for name, kind in {"sequence": "int", **m.kinds}.items()
            for part in part_names(name, kind, max(m.rows, m.stop - m.start)) + self._beyond(run_id, m, name, kind)
        ]
        buckets = sorted({(run_id, b) for m in markers for b in m.buckets()})
        what = f"deleting run '{run_id}'"
        self._retry(what, lambda: run_concurrent(self.session, self._drop_blocks, parts, WRITE_CONCURRENCY))
        self._retry(what, lambda: run_concurrent(self.session, self._drop_failures, buckets, WRITE_CONCURRENCY))
        self._retry(what, lambda: self.session.execute(self._drop_chunks, (run_id,)))


# -- from another process -------------------------------------------------------
def _source(source: CassandraResults | Mapping[str, Any]) -> CassandraResults:
    """The typed source, given it or its dict form (``CassandraStore.results_source``)."""
    from .results_sources import CassandraResults, results_source

    typed = results_source(source)
    if not isinstance(typed, CassandraResults):
        raise AnchoError(f"a {typed.kind} results source is not in Cassandra")
    return typed


class RemoteResults:
    """A session of its own (the owner's role) plus :class:`RunResults`; a context manager."""

    def __init__(self, source: CassandraResults | Mapping[str, Any]):
        self.source = typed = _source(source)
        self.endpoint = typed.endpoint
        self.session = connect(self.endpoint)
        self.results = RunResults(self.session, typed.keyspace, self.endpoint)

    def write(self, result: ChunkResult) -> None:
        self.results.write_chunk(self.source.run_id, result)

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        return self.results.read_table(self.source.run_id, dict(self.source.schema), columns)

    def close(self) -> None:
        """Flushes the writes first (raising the first that failed), then disconnects."""
        try:
            self.results.flush()
        finally:
            self.session.cluster.shutdown()

    def __enter__(self) -> RemoteResults:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_source(source: CassandraResults) -> pa.Table:
    """One run's results as an Arrow table, from a Cassandra results source (the owner's role only)."""
    with RemoteResults(source) as remote:
        return remote.read_table()


def chunk_starts(source: CassandraResults | Mapping[str, Any]) -> list[int]:
    """Where each done chunk of the run begins: what a Spark job splits into tasks for :func:`read_chunks`."""
    with RemoteResults(source) as remote:
        return [m.start for m in remote.results.markers(remote.source.run_id) if m.rows]


def read_chunks(source: CassandraResults | Mapping[str, Any], starts: Iterable[int]) -> Iterator[pa.RecordBatch]:
    """In a Spark task (``mapInArrow``): the Arrow batches of the chunks beginning at ``starts``, read directly."""
    from .base import arrow_schema

    with RemoteResults(source) as remote:
        yield from remote.results.iter_batches(
            remote.source.run_id, arrow_schema(dict(remote.source.schema)), list(starts)
        )


def open_writer(source: CassandraResults | Mapping[str, Any]) -> RemoteResults:
    """A writer for one run's chunks in any process (a Spark task): ``w.write(chunk_result)``; ``w.close()``.

    ``source``: a :class:`~ancho.stores.results_sources.CassandraResults` or its dict form."""
    return RemoteResults(source)
