"""The chunks a run's driver writes itself: a large one on a thread of its own while the next arrives.

Why: where workers cannot write their chunks (sandboxed, as every run on a server is, or in a model's own
environment) the driver writes every chunk, and for a batch model its Parquet writes were most of its time: a
sandboxed 50M-sequence run kept the driver busy 85% of its wall time, ~40% of that in ``write_table`` and
``fsync`` (docs/benchmarks.md, "Batch models"). The Parquet writer and the file system let go of the GIL, so a
chunk's write on another thread overlaps receiving the next chunks. At most :data:`PENDING` writes are in flight
(each holds its chunk's columns), and the thread of each ends with its write, so no thread outlives a run (a
driver with no thread alive forks its next workers, :mod:`ancho.executors.forked`).

Only an embedded store's own writes go to a thread, and only of large chunks without failures: its chunk files are
written and committed by a rename, touching nothing another thread reads, while failures are rows of its catalog,
and another store's writes (Cassandra's sessions, a subclass) keep the calling thread. A write's error is raised by
the next call (:meth:`ChunkWrites.put` or :meth:`ChunkWrites.wait`), so it still fails the run.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .chunk import ChunkResult
    from .stores.base import Store

#: writes in flight at once (two: the driver's two chunks of a 2-core machine's workers; measured in
#: docs/benchmarks.md, "Batch models")
PENDING = 2
#: chunks of at least this many rows are written on a thread (a batch model's: ~1 ms of Parquet or more, where a
#: thread's start is ~0.1 ms); smaller ones where they arrive, as before
THREADED_ROWS = 65_536


class ChunkWrites:
    """The driver's writes of one run's chunks to ``store``."""

    def __init__(self, store: Store, run_id: str):
        from .stores.embedded import EmbeddedStore

        self.store, self.run_id = store, run_id
        own = isinstance(store, EmbeddedStore) and type(store).write_chunk is EmbeddedStore.write_chunk
        self.threaded = own and "write_chunk" not in vars(store)
        self._pending: deque[tuple[threading.Thread, list[BaseException]]] = deque()

    def put(self, result: ChunkResult) -> None:
        """Write ``result`` (now, or on a thread); first raise the error of a write already finished."""
        while self._pending and (len(self._pending) >= PENDING or not self._pending[0][0].is_alive()):
            self._join()
        if not self.threaded or result.failures or result.size < THREADED_ROWS:
            self.store.write_chunk(self.run_id, result)
            return
        errors: list[BaseException] = []

        def write() -> None:
            try:
                self.store.write_chunk(self.run_id, result)
            except BaseException as e:  # (raised in the driver's thread, by the next call)
                errors.append(e)

        thread = threading.Thread(target=write, name="ancho-chunk-write", daemon=True)
        thread.start()
        self._pending.append((thread, errors))

    def wait(self, raise_errors: bool = True) -> None:
        """Every write finished; the first one's error raised (``raise_errors``) or dropped (the run failed already)."""
        while self._pending:
            try:
                self._join()
            except BaseException:
                if raise_errors:
                    self.wait(raise_errors=False)
                    raise

    def _join(self) -> None:
        thread, errors = self._pending.popleft()
        thread.join()
        if errors:
            raise errors[0]
