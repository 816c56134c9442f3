"""A run's columns as its summary reads them: one whole, a pass chunk by chunk, or (:class:`GroupedColumns`) a
group of scalar outputs filled by one pass over the stored chunks.

Why a module of its own: the summary reads what every store holds through these, so a cancel, the memory budget
and a chunk file changed under the run are handled once, for the embedded store and any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..chunk import kind_dtype, trajectory_steps
from ..errors import RunCancelled, StoreError
from ..threads import ahead

if TYPE_CHECKING:
    import pyarrow as pa

    from .base import Store


class SummaryColumns:
    """A run's columns for its summary: :meth:`read` one whole, :meth:`blocks` a pass over one, chunk by chunk.

    ``cancelled`` is asked before each read and between blocks, so a cancelled run's summary stops within a chunk's
    work (:class:`RunCancelled`) instead of describing every output first. This default reads each column on its own.
    """

    def __init__(self, store: Store, run_id: str, cancelled: Callable[[], bool] | None = None):
        self.store, self.run_id, self.cancelled = store, run_id, cancelled

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise RunCancelled("the run was cancelled")

    def read(self, name: str) -> np.ndarray:
        self.check()
        return self.store.read_column(self.run_id, name)

    def blocks(self, name: str) -> Iterator[np.ndarray]:
        for block in self.store.iter_column(self.run_id, name):
            self.check()
            yield block


class GroupedColumns(SummaryColumns):
    """Scalar columns read a group at a time: one pass over the run's stored chunks fills every column of the group.

    Why: a chunk file's footer describes every output, and reading k outputs one by one opened each file k times,
    so k² footer columns a file (1,000 outputs of 1,000 sequences: 144 s of summary). A read here fills the asked
    output and those after it in ``kinds`` order (the summary's order), as many as ``budget`` bytes hold, from one
    pass of ``batches(names)`` (the store's batches of those columns, cast to the run's schema, in sequence order):
    ⌈k × column bytes / budget⌉ passes in all, one when the outputs fit together. The values are put where reading
    each column alone puts them: the same arrays, bit for bit. ``rows``: at least the number of rows stored.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        kinds: Mapping[str, str],
        batches: Callable[[list[str]], Iterable[pa.RecordBatch]],
        rows: int,
        budget: int,
        cancelled: Callable[[], bool] | None = None,
    ):
        super().__init__(store, run_id, cancelled)
        self.scalars = [n for n, k in kinds.items() if trajectory_steps(k) is None]
        self.kinds, self.batches, self.rows, self.budget = dict(kinds), batches, rows, budget
        self.ready: dict[str, np.ndarray] = {}  # read with an earlier output, not asked for yet
        self.given: set[str] = set()
        self.passes = 0

    def read(self, name: str) -> np.ndarray:
        self.check()
        if name not in self.ready:
            if name in self.given or name not in self.scalars:  # (again, or not a scalar output: on its own)
                return super().read(name)
            self._fill(name)
        self.given.add(name)
        return self.ready.pop(name)

    def blocks(self, name: str) -> Iterator[np.ndarray]:
        """As :meth:`Store.iter_column`, from the chunks listed once (each pass re-read the record and the folder)."""
        from ..columns import to_numpy

        if name not in self.kinds:
            yield from super().blocks(name)  # (the unknown-output error)
            return
        for batch in ahead(self.batches([name]), "ancho-read"):  # (the next chunk read while this one is summarised)
            self.check()
            yield to_numpy(batch.column(0))

    def _fill(self, name: str) -> None:
        group: list[str] = []
        used = 0
        for other in self.scalars[self.scalars.index(name) :]:
            if other in self.given or other in self.ready:
                continue
            size = self.rows * kind_dtype(self.kinds[other]).itemsize
            if group and used + size > self.budget:
                break
            group.append(other)
            used += size
        out = {n: np.empty(self.rows, dtype=kind_dtype(self.kinds[n])) for n in group}
        self.passes += 1
        pos = fill_columns(self.batches(group), out, self.run_id, self.check)
        self.ready.update((n, values[:pos]) for n, values in out.items())


def fill_columns(
    batches: Iterable[pa.RecordBatch], out: dict[str, np.ndarray], run_id: str, check: Callable[[], None] | None = None
) -> int:
    """Fill the preallocated arrays ``out`` (by column name, each as long as a run's chunk files' names say it holds
    rows) from ``batches`` in order: a column's peak is itself plus one batch. Returns the rows filled; ``check``
    runs before each batch (a cancel). More rows than that is a StoreError, not a NumPy error deep in a summary."""
    from ..columns import release_memory, to_numpy

    rows = min((len(a) for a in out.values()), default=0)
    pos = 0
    for batch in batches:
        if check is not None:
            check()
        n = batch.num_rows
        if pos + n > rows:
            raise StoreError(
                f"run '{run_id}' holds more rows ({pos + n:,}) than its chunk files' names say ({rows:,}): a chunk "
                "file of the run was changed or added by something else; run it again as a new run"
            )
        for column, name in zip(batch.columns, batch.schema.names):
            out[name][pos : pos + n] = to_numpy(column)
        pos += n
    release_memory()
    return pos
