"""A worker's replies, sent in order by a thread of their own once the chunk files they name are committed.

Why: a local worker that writes its chunk files (``stores/chunk_writer.py``)
fsyncs each before its rename, and the fsync waits on the disk, not the CPU:
on a batch model's 10M sequences ~75 ms of the two workers' time, ~7 ms a
1M-row chunk and up to 20 on a busy disk, during which the worker computed
nothing (docs/benchmarks.md, "Batch models", sixth pass). Here the worker
writes the temporary file, hands the commit (fsync, rename) and the reply to
this thread, and takes its next request at once.

What a reply promises is unchanged: it is sent only after every chunk file it
names is committed, and replies leave in the order of their requests. A commit
that fails (the disk filled between the write and the fsync) sends the chunk's
columns instead, as a failed write did before: the driver stores them and
meets the error for that run alone. At most ``DEPTH`` replies wait here, so a
worker holds at most that many uncommitted chunks beyond the one it computes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .messages import ChunkDone, ChunksDone
from .wire import send

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

#: replies that may wait for their commits while the worker computes the next chunk
DEPTH = 2


@dataclass(frozen=True)
class Committing:
    """A chunk's reply whose file is written but not yet committed: ``commit`` it, then send ``done``; if the
    commit fails, send ``fallback`` (the chunk's columns) instead."""

    done: ChunkDone
    commit: Callable[[], None]
    fallback: ChunkDone

    def settle(self) -> ChunkDone:
        try:
            self.commit()
        except Exception:  # noqa: BLE001 - a full disk is a StoreError; whatever else, the driver stores the columns
            return self.fallback  # (an error escaping here would leave the reply unsent and the run waiting for it)
        return self.done


class Outbox:
    """Sends a worker's replies on ``conn``: directly while nothing is committing, else after what is ahead of
    them, by one thread (started with the first :class:`Committing` reply)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.queue: queue.Queue[Any] = queue.Queue(DEPTH)
        self.thread: threading.Thread | None = None
        self.failed: BaseException | None = None

    def put(self, reply: object) -> None:
        """Send ``reply`` in its turn: a message, a :class:`Committing`, or a list (a :class:`RunChunks`' replies, in
        order, sent as one :class:`ChunksDone`)."""
        if self.failed is not None:
            raise self.failed  # (the driver stopped listening: the worker's loop ends as a send there would)
        if self.thread is None:
            if not _committing(reply):
                send(self.conn, _settled(reply))
                return
            self.thread = threading.Thread(target=self._run, name="ancho-outbox", daemon=True)
            self.thread.start()
        self.queue.put(reply)

    def close(self) -> None:
        """Send what is waiting, then stop the thread."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def _run(self) -> None:
        while (reply := self.queue.get()) is not None:
            if self.failed is None:
                try:
                    send(self.conn, _settled(reply))
                except BaseException as exc:  # (a broken pipe: the driver is gone) the next put raises it; what
                    self.failed = exc  # is queued meanwhile is taken and dropped, so no put waits for a free place


def _committing(reply: object) -> bool:
    if isinstance(reply, list):
        return any(isinstance(r, Committing) for r in reply)
    return isinstance(reply, Committing)


def _settled(reply: object) -> object:
    """``reply`` with every chunk committed (or its columns in its place); a list as one :class:`ChunksDone`."""
    if isinstance(reply, Committing):
        return reply.settle()
    if isinstance(reply, list):
        return ChunksDone(tuple(r.settle() if isinstance(r, Committing) else r for r in reply))
    return reply
