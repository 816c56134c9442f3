"""Chunk writes that keep the connection busy across chunks: a bounded window of asynchronous requests.

The engine hands the store one chunk at a time. Writing each chunk with
``execute_concurrent`` and waiting for it drains the request pipeline at
every chunk boundary and adds a round trip for the chunk's done marker, so
a run's ingest fell to ~0.6× what the driver reaches writing the same rows
in one stream (docs/cassandra.md). Here ``submit`` sends a chunk's requests
into one window shared by all chunks (at most ``limit`` in flight; the
caller waits for a free slot, so memory stays bounded) and returns once they
are *sent*; each chunk's done marker is sent from the callback of its last
acknowledged request. ``flush`` waits for everything sent and raises the
first error. Stores flush before any read, so a reader never misses a chunk
that was handed to the store before it.

Atomicity is unchanged: the marker still goes only after every block of its
chunk is acknowledged. A request that fails for a transient reason (node
down or restarting, timeouts, a full socket) is sent again, from a timer
thread, until ``retry_seconds`` after its chunk was submitted.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .cassandra_conn import Endpoint, log, transient_errors, unavailable

if TYPE_CHECKING:
    from cassandra.cluster import Session  # untyped library: Any to mypy

#: one request: a prepared statement and its parameters
Request = tuple[Any, tuple[Any, ...]]


class _Chunk:
    __slots__ = ("remaining", "marker", "what", "deadline")

    def __init__(self, remaining: int, marker: Request, what: str, deadline: float):
        self.remaining, self.marker, self.what, self.deadline = remaining, marker, what, deadline


class Pipeline:
    def __init__(self, session: Session, endpoint: Endpoint, limit: int):
        self.session = session
        self.endpoint = endpoint
        self.slots = threading.BoundedSemaphore(limit)
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)
        self.pending = 0  # chunks whose marker is not acknowledged yet
        self.error: BaseException | None = None
        self.transient = transient_errors()

    def submit(self, work: list[Request], marker: Request, what: str) -> None:
        """Send ``(statement, params)`` pairs, then ``marker`` once all are acknowledged; returns when all are sent."""
        self.raise_error()
        chunk = _Chunk(len(work), marker, what, time.monotonic() + self.endpoint.retry_seconds)
        with self.lock:
            self.pending += 1
        if not work:
            self._send(chunk, marker, final=True)
        for item in work:
            self.slots.acquire()
            self._send(chunk, item, final=False)

    def flush(self) -> None:
        """Wait until every submitted chunk is marked done (or failed); raise the first error."""
        with self.lock:
            while self.pending:
                self.settled.wait()
        self.raise_error()

    def raise_error(self) -> None:
        with self.lock:
            error, self.error = self.error, None
        if error is not None:
            raise error

    # -- callbacks (the driver's event loop thread: never block here) --------------
    def _send(self, chunk: _Chunk, item: Request, final: bool) -> None:
        """Send one request; a block holds a slot (taken by the caller), a marker does not."""
        try:
            future = self.session.execute_async(*item)
        except Exception as exc:  # pragma: no cover - the session is shut down
            self._failed(exc, chunk, item, final)
            return
        future.add_callbacks(
            self._done, self._failed, callback_args=(chunk, item, final), errback_args=(chunk, item, final)
        )

    def _done(self, _result: object, chunk: _Chunk, item: Request, final: bool) -> None:
        if final:
            self._settle()
            return
        self.slots.release()
        with self.lock:
            chunk.remaining -= 1
            last = chunk.remaining == 0
        if last:
            self._send(chunk, chunk.marker, final=True)

    def _failed(self, exc: BaseException, chunk: _Chunk, item: Request, final: bool) -> None:
        if isinstance(exc, self.transient) and time.monotonic() < chunk.deadline:
            log.warning("Cassandra unavailable while %s (%s); retrying", chunk.what, type(exc).__name__)
            timer = threading.Timer(1.0, self._send, args=(chunk, item, final))  # the slot stays taken meanwhile
            timer.daemon = True
            timer.start()
            return
        if not final:
            self.slots.release()
        error = unavailable(self.endpoint, chunk.what, exc) if isinstance(exc, self.transient) else exc
        with self.lock:
            if self.error is None:
                self.error = error
            # the chunk never gets its marker: it stays not done, and the engine recomputes it
            if final or chunk.remaining > 0:
                chunk.remaining = -1  # settled once, whichever of its requests failed first
                self.pending -= 1
                self.settled.notify_all()

    def _settle(self) -> None:
        with self.lock:
            self.pending -= 1
            self.settled.notify_all()
