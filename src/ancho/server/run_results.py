"""A run's stored results as the REST API and the web site read them: through the service, owner checked first.

Why a layer of its own: routes turn requests into calls and answers, the service decides who may read what,
and only the service reads the store (route → service → store). Every method that takes a ``user`` reads the
run's record with that owner first, so another user's run is a NotFound (404) before a byte is streamed; a
:class:`Trajectory` exists only once that check passed, and the methods that take one need no other.
Held by :class:`~ancho.server.service.Service` as ``svc.results``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..chunk import trajectory_steps
from ..errors import InputError, NotFound

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..plotdata import Fan
    from ..stores.base import RunRecord, Store
    from ..stores.results_sources import ChunkFiles

#: the most values one JSON page holds, rows × values per row (the sequence number counts one, a trajectory each of
#: its steps): ~10–20 MB of JSON however wide a run's rows are. Counting rows alone, a page of 200 sequences of a
#: 100,000-step trajectory was 80 MB, took 40 s and took the server from 0.6 to 1.9 GB.
MAX_PAGE_VALUES = 1_000_000


class PageTooWide(InputError):
    """A JSON page would hold more than :data:`MAX_PAGE_VALUES`: a 422 naming the query parameter ``param``."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(message)


def page_rows(values_per_row: int) -> int:
    """How many rows of ``values_per_row`` values a page holds (0: not even one)."""
    return MAX_PAGE_VALUES // values_per_row


def row_values(schema: dict[str, str]) -> int:
    """Values in one row of a run's results: the sequence number, one per scalar output, the steps of a trajectory."""
    return 1 + sum(trajectory_steps(kind) or 1 for kind in schema.values())


@dataclass(frozen=True)
class Trajectory:
    """One trajectory output (kind ``float[STEPS]``) of a run its reader may read."""

    run_id: str
    name: str
    steps: int


class RunResults:
    def __init__(self, store: Store):
        self.store = store

    def _record(self, user: str, run_id: str) -> RunRecord:
        return self.store.get_run(run_id, owner=user)

    # -- every output but trajectories ------------------------------------------------------------------------
    def csv(self, user: str, run_id: str) -> Iterator[bytes]:
        """The run as CSV (a header line, then one line per sequence), checked now and read as it is streamed."""
        from ..exports import csv_chunks

        self._record(user, run_id)
        return csv_chunks(self.store, run_id)

    def write_parquet(self, user: str, run_id: str, sink: IO[bytes]) -> None:
        """The whole run as Parquet into ``sink``."""
        self._record(user, run_id)
        self._parquet(run_id, None, sink)

    def page(self, user: str, run_id: str, offset: int, limit: int) -> dict[str, Any]:
        """Rows ``offset``… of the run as :class:`~ancho.server.schemas.ResultsPage` describes them.

        A ``limit`` of more rows than :data:`MAX_PAGE_VALUES` allows for this run's rows is cut to what fits (the
        answer's ``limit`` says so, and ``next`` leads on), so a client that follows ``next`` reads every row
        whatever it asked; a run whose single row is wider than a page is a PageTooWide (use Parquet).
        """
        from ..stats import clean

        record = self._record(user, run_id)
        width = row_values(record.schema)
        fits = page_rows(width)
        if fits == 0:
            raise PageTooWide(
                "format",
                f"a row of run {run_id} holds {width:,} values, more than the {MAX_PAGE_VALUES:,} a JSON page may "
                f"hold: download the run with format=parquet (or format=csv for its scalar outputs), and each "
                f"trajectory with GET /api/v1/runs/{run_id}/trajectories/NAME?format=parquet",
            )
        limit = min(limit, fits)
        rows, seen = self.store.results_page(record.id, offset, limit)
        nxt = offset + len(rows)
        return {
            "run": record.id,
            "total": seen,
            "offset": offset,
            "limit": limit,
            "next": nxt if nxt < seen else None,
            "results": clean(rows),
        }

    # -- trajectories -------------------------------------------------------------------------------------------
    def trajectory(self, user: str, run_id: str, name: str) -> Trajectory:
        """The run's trajectory output ``name``; NotFound for another user's run or a name it has no trajectory of.

        The names come from the record read for the owner check, not from a second read: a run of 100,000-step
        trajectories has a record of ~15 MB (its per-step summary), ~0.1 s a read."""
        record = self._record(user, run_id)
        steps = {n: trajectory_steps(kind) for n, kind in record.schema.items()}
        names = [n for n, s in steps.items() if s is not None]
        if name not in names:
            has = ", ".join(names) if names else "none"
            raise NotFound(f"run {run_id} has no trajectory output '{name}' (its trajectory outputs: {has})")
        return Trajectory(run_id, name, int(steps[name] or 0))

    def trajectory_csv(self, t: Trajectory) -> Iterator[bytes]:
        """A long CSV ``sequence,step,value``, one line per sequence and step."""
        from ..exports import csv_chunks

        return csv_chunks(self.store, t.run_id, trajectory=t.name)

    def write_trajectory_parquet(self, t: Trajectory, sink: IO[bytes]) -> None:
        """``sequence`` and the trajectory (a fixed-size list column) as Parquet into ``sink``."""
        self._parquet(t.run_id, ["sequence", t.name], sink)

    def trajectory_page(self, t: Trajectory, offset: int, limit: int) -> dict[str, Any]:
        """Sequences ``offset``… with their series (NaN and ±inf as null), reading only the rows of the page.

        These pages have no ``next``: a client may take a short page for the end, so a ``limit`` of more rows than
        :data:`MAX_PAGE_VALUES` allows is refused (PageTooWide, naming ``limit`` and the largest that fits), never cut.
        """
        from ..stores.results_sources import ChunkFiles

        fits = page_rows(t.steps + 1)
        if limit > fits:
            room = (
                f"ask limit={fits} or less (and page on with offset)"
                if fits
                else "not even one row fits, so get it with format=parquet or format=csv"
            )
            raise PageTooWide(
                "limit",
                f"limit {limit} is more rows than a JSON page of trajectory '{t.name}' may hold: each row is "
                f"{t.steps:,} steps and a page holds at most {MAX_PAGE_VALUES:,} values; {room}"
                + (", or get the whole trajectory with format=parquet or format=csv" if fits else ""),
            )
        source = self.store.results(t.run_id)
        if isinstance(source, ChunkFiles):
            parts = _files_page(source, t, offset, limit)
        else:  # a store whose chunks this layer cannot pick (Cassandra): its batches from the first, as they come
            parts = _scanned_page(self.store.iter_batches(t.run_id, ["sequence", t.name]), t, offset, limit)
        sequences, values = _page_lists(parts)
        return {
            "run": t.run_id,
            "name": t.name,
            "steps": t.steps,
            "offset": offset,
            "sequences": sequences,
            "values": values,
        }

    # -- the site's plots -----------------------------------------------------------------------------------------
    def plots(self, run_id: str, user: str | None = None) -> tuple[dict[str, Any], list[Fan]]:
        """The numbers behind a run's plots: per output a histogram and running mean, per trajectory a fan.

        ``user``: checked as everywhere here; None only for a caller that read the run as its user already
        (the site's plot cache, behind the run page's own check).
        """
        from ..plotdata import run_fans, run_plots

        if user is not None:
            self._record(user, run_id)
        return run_plots(self.store, run_id), run_fans(self.store, run_id)

    def _parquet(self, run_id: str, columns: list[str] | None, sink: IO[bytes]) -> None:
        import pyarrow.parquet as pq

        with pq.ParquetWriter(sink, self.store.arrow_schema(run_id, columns), compression="zstd") as writer:
            for batch in self.store.iter_batches(run_id, columns):
                writer.write_batch(batch)


# -- a trajectory page's rows: how they are read follows the results source's type (results_sources.py) ------
#: a page's rows as NumPy parts (sequences, values rows × steps), in sequence order
Part = tuple["np.ndarray", "np.ndarray"]

#: bytes a chunk file is read ahead of the page's rows at a time: with no buffer, Arrow reads a column's whole chunk
#: before decoding its first row (34 against 7 ms for the first 9 rows of a 300-row chunk of 100,000 steps)
READ_BUFFER = 1 << 20
#: batches at most a chunk file's rows up to the page's last are decoded in: rows before the page cannot be skipped
#: undecoded (Arrow reads no row ranges), but need not be built in batches of the page's few rows either
SKIP_BATCHES = 16


def _files_page(source: ChunkFiles, t: Trajectory, offset: int, limit: int) -> list[Part]:
    """Rows ``offset…offset+limit-1`` of a run's chunk files: each file's row count from its footer, then only the
    files, row groups and rows up to the page's last that the page falls in, and of those only ``sequence`` and the
    trajectory. (Reading every chunk before the page made page N cost N pages: 0.05 s for the first 100 rows of a
    1,000,000 × 100-step run, 2.1 s for its last; reading whole chunks made 9 rows of 100,000 steps read their
    chunk's every row and output.)"""
    import pyarrow.parquet as pq

    parts: list[Part] = []
    seen = got = 0
    for _, _, path in source.files:
        meta = pq.read_metadata(path)
        if seen + meta.num_rows > offset:
            for part in _file_rows(path, meta, t, max(0, offset - seen), limit - got):
                parts.append(part)
                got += len(part[0])
            if got >= limit:
                break
        seen += meta.num_rows
    return parts


def _file_rows(path: str, meta: pq.FileMetaData, t: Trajectory, skip: int, want: int) -> list[Part]:
    """Rows ``skip…skip+want-1`` of one chunk file (fewer at its end), with its footer ``meta`` read already."""
    import numpy as np
    import pyarrow.parquet as pq

    from ..columns import to_numpy
    from ..stores.chunk_layout import file_sequences

    groups: list[int] = []  # the row groups the rows are in
    first = start = 0  # the first one's first row; the next one's
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if start + n > skip and start < skip + want:
            if not groups:
                first = start
            groups.append(g)
        start += n
    if not groups:
        return []
    pf = pq.ParquetFile(path, metadata=meta, pre_buffer=False, buffer_size=READ_BUFFER)
    stored = set(pf.schema_arrow.names)
    # a file holding every sequence of its range has no sequence column: its name says them (chunk_layout)
    named = None if "sequence" in stored else file_sequences(path, meta.num_rows)
    lead = skip - first  # rows of the chosen row groups before the page's first
    size = max(want, -(-(lead + want) // SKIP_BATCHES))
    columns = [c for c in ("sequence", t.name) if c in stored]
    parts: list[Part] = []
    pos = 0
    for batch in pf.iter_batches(batch_size=size, row_groups=groups, columns=columns, use_pandas_metadata=False):
        lo, hi = max(0, lead - pos), min(batch.num_rows, lead + want - pos)
        if hi > lo:
            rows = batch.slice(lo, hi - lo)
            seqs = to_numpy(rows.column("sequence")) if named is None else named[first + pos + lo : first + pos + hi]
            if t.name in stored:
                parts.append((seqs, _series(rows.column(t.name), t)))
            else:  # defensive, as the store's reads: a chunk written before the run had this output
                parts.append((seqs, np.full((hi - lo, t.steps), np.nan)))
        pos += batch.num_rows
        if pos >= lead + want:
            break
    return parts


def _scanned_page(batches: Iterable[pa.RecordBatch], t: Trajectory, offset: int, limit: int) -> list[Part]:
    """Rows ``offset…offset+limit-1`` of a run's batches (``sequence`` and the trajectory), read from the first."""
    from ..columns import to_numpy

    parts: list[Part] = []
    seen = got = 0
    for batch in batches:
        n = batch.num_rows
        if seen + n > offset:
            rows = batch.slice(max(0, offset - seen), limit - got)
            parts.append((to_numpy(rows.column(0)), _series(rows.column(1), t)))
            got += rows.num_rows
            if got >= limit:
                break
        seen += n
    return parts


def _series(column: pa.Array, t: Trajectory) -> np.ndarray:
    """A trajectory column's rows × steps floats (cast as the store's reads cast a chunk to the run's schema)."""
    import pyarrow as pa

    from ..columns import to_numpy

    expected = pa.list_(pa.float64(), t.steps)
    if column.type != expected:
        column = column.cast(expected)  # (a trajectory whose length changed fails here, as the store's cast does)
    return to_numpy(column).reshape(len(column), t.steps)


def _page_lists(parts: list[Part]) -> tuple[list[int], list[list[float | None]]]:
    """The page's sequences and series as JSON-ready lists: one ``tolist`` each, NaN and ±inf made null (as clean())."""
    import numpy as np

    if not parts:
        return [], []
    seqs = np.concatenate([s for s, _ in parts]) if len(parts) > 1 else parts[0][0]
    rows = np.concatenate([v for _, v in parts]) if len(parts) > 1 else parts[0][1]
    values: list[list[float | None]] = rows.tolist()
    for i, j in zip(*np.nonzero(~np.isfinite(rows))):
        values[i][j] = None
    return seqs.tolist(), values
