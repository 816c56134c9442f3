"""A run's stored results as the REST API and the web site read them: through the service, owner checked first.

Why a layer of its own: routes turn requests into calls and answers, the service decides who may read what,
and only the service reads the store (route → service → store). Every method that takes a ``user`` reads the
run's record with that owner first, so another user's run is a NotFound (404) before a byte is streamed; a
:class:`Trajectory` exists only once that check passed, and the methods that take one need no other.
Held by :class:`~ancho.server.service.Service` as ``svc.results``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..chunk import trajectory_steps
from ..errors import InputError, NotFound

if TYPE_CHECKING:
    from ..plotdata import Fan
    from ..stores.base import RunRecord, Store

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
        """The run's trajectory output ``name``; NotFound for another user's run or a name it has no trajectory of."""
        from ..exports import trajectory_names

        record = self._record(user, run_id)
        names = trajectory_names(self.store, run_id)
        if name not in names:
            has = ", ".join(names) if names else "none"
            raise NotFound(f"run {run_id} has no trajectory output '{name}' (its trajectory outputs: {has})")
        return Trajectory(run_id, name, int(record.schema[name].rstrip("]").split("[")[1]))

    def trajectory_csv(self, t: Trajectory) -> Iterator[bytes]:
        """A long CSV ``sequence,step,value``, one line per sequence and step."""
        from ..exports import csv_chunks

        return csv_chunks(self.store, t.run_id, trajectory=t.name)

    def write_trajectory_parquet(self, t: Trajectory, sink: IO[bytes]) -> None:
        """``sequence`` and the trajectory (a fixed-size list column) as Parquet into ``sink``."""
        self._parquet(t.run_id, ["sequence", t.name], sink)

    def trajectory_page(self, t: Trajectory, offset: int, limit: int) -> dict[str, Any]:
        """Sequences ``offset``… with their series (NaN and ±inf as null), one chunk in memory at a time.

        These pages have no ``next``: a client may take a short page for the end, so a ``limit`` of more rows than
        :data:`MAX_PAGE_VALUES` allows is refused (PageTooWide, naming ``limit`` and the largest that fits), never cut.
        """
        import numpy as np

        from ..columns import to_numpy

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
        sequences: list[int] = []
        values: list[list[float | None]] = []
        seen = 0
        for batch in self.store.iter_batches(t.run_id, ["sequence", t.name]):
            n = batch.num_rows
            if seen + n <= offset:
                seen += n
                continue
            take = batch.slice(max(0, offset - seen), limit - len(sequences))
            seqs = to_numpy(take.column(0))
            rows = to_numpy(take.column(1)).reshape(len(seqs), t.steps)
            sequences.extend(int(s) for s in seqs)
            page = rows.tolist()
            for i, j in zip(*np.nonzero(~np.isfinite(rows))):  # NaN and ±inf → null, as clean() does (JSON)
                page[i][j] = None
            values.extend(page)
            seen += n
            if len(sequences) >= limit:
                break
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
