"""The summary's first column, gathered while the run goes: the summary then does not read it back.

Why: with workers writing their own chunk files, the driver waits while a
batch model runs and then read every chunk back for the summary (10M
sequences: ~0.55 s of Parquet decoding on an idle machine, after the run;
docs/benchmarks.md, "Batch models"). Here each chunk's values of one output
are put in place as the chunk lands — copied from the columns the driver
was sent, or, when a local worker wrote the chunk's file, from that output's
values it sends with it (:attr:`~ancho.chunk.StoredChunk.first`: 8 bytes a
row through the pipe cost less than decoding the file again) — so nothing is
read back after the run.

Exactness: the values sit where reading the stored chunks in order would
put them (sequence ``i`` at index ``i``), with the output's stored dtype, so
the summary computed from this array is bit-identical to one computed from
the store. It is used only when that is certain: a fresh run of a fixed
length (no resumed chunks, no precision goal growing it), every chunk full
(no failed sequence) and of one kind throughout, with its values at hand;
otherwise :meth:`reader` falls back to the store for everything.

Memory: one column (8 bytes a sequence for a float output), the same the
summary holds when it reads that column at the end; the other outputs are
still read one at a time after the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..chunk import ChunkResult, StoredChunk, first_scalar, kind_dtype
from ..streamed import too_long


def ordinary_pages(n: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised array of ``n`` values in its own anonymous mapping, on ordinary 4 KB pages.

    Why not ``np.empty``: NumPy asks for transparent huge pages for arrays over 4 MB, and with the kernel's THP
    defrag set to "madvise" (the default) a fault on such memory may stop to compact memory first; filling the
    summary's 80 MB column (10M sequences) took 0.006 to 0.19 s of system time from run to run that way, against a
    steady 0.03–0.05 s of ordinary page faults here (docs/benchmarks.md, "Batch models", third pass), less again
    with the pages mapped at once (0.04 against 0.06 s for 80 MB; the column is filled whole anyway). A large
    mapping's pages are mapped by a thread of their own (:func:`_populate`): mapped at once in the caller, 80 MB held
    the driver ~35 ms right after the first chunk landed, while both workers waited for their next chunk (the sixth
    pass). Private, like any array (``mmap``'s default is a shared mapping). Released with the array.
    """
    import mmap

    size = max(1, n * dtype.itemsize)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if size < POPULATE_APART:
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    buf = mmap.mmap(-1, size, flags=flags)
    if size >= POPULATE_APART:
        threading.Thread(target=_populate, args=(buf,), name="ancho-pages", daemon=True).start()
    return np.frombuffer(buf, dtype=dtype, count=n)


#: a mapping of at least this many bytes has its pages mapped by a thread (under it: at once, in the caller, ~1 ms)
POPULATE_APART = 8 << 20
_MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault the range in, writable, as MAP_POPULATE does at mmap


def _populate(buf: Any) -> None:
    """Map every page of ``buf`` now, without the GIL (a ctypes call lets go of it): the column's fills then find
    their pages there. Where the kernel has no such advice, the fills fault the pages in as they come."""
    import ctypes

    try:
        view = ctypes.c_char.from_buffer(buf)
        try:
            ctypes.CDLL(None, use_errno=True).madvise(
                ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(len(buf)), _MADV_POPULATE_WRITE
            )
        finally:
            del view
    except (OSError, AttributeError, TypeError):
        pass


class LandedColumn:
    """One scalar output of a run of ``total`` sequences, filled chunk by chunk as they land."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = total
        # (a column too long to hold is summarised from the store in passes: ancho.streamed)
        self.ok = enabled and total > 0 and not too_long(total)
        self.name: str | None = None
        self.kind = ""
        self.values: np.ndarray | None = None
        self.filled = 0

    def add(self, result: ChunkResult | StoredChunk) -> None:
        """Put ``result``'s values of the chosen output in place (the first scalar output of the first chunk)."""
        if not self.ok:
            return
        kinds = result.kinds()
        if self.name is None:
            self.name = first_scalar(kinds)
            if self.name is None:
                self.ok = False
                return
            self.kind = kinds[self.name]
            self.values = ordinary_pages(self.total, kind_dtype(self.kind))
        rows = result.rows if isinstance(result, StoredChunk) else len(result.sequences)
        if kinds.get(self.name) != self.kind or rows != result.size or result.stop > self.total:
            self.drop()  # a failed sequence, a kind that changed: the store's read is the exact one
            return
        if isinstance(result, StoredChunk) and (result.first is None or first_scalar(kinds) != self.name):
            self.drop()  # stored by a task that sends no values (Spark on Cassandra), or another output's
            return
        assert self.values is not None
        if isinstance(result, StoredChunk):
            self.values[result.start : result.stop] = result.first
            result.first = None  # (its copy is here now)
        else:
            self.values[result.start : result.stop] = result.columns[self.name]
        self.filled += result.size

    def drop(self) -> None:
        self.ok, self.values = False, None

    def reader(self, read_column: Callable[[str], np.ndarray]) -> Callable[[str], np.ndarray]:
        """``read_column``, but for the gathered output (when every sequence landed) the gathered array, once."""

        def read(name: str) -> np.ndarray:
            if self.ok and name == self.name and self.filled == self.total and self.values is not None:
                values, self.values = self.values, None  # (the summary frees the column once described)
                self.ok = False
                return values
            return read_column(name)

        return read
