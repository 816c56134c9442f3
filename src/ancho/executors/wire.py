"""A worker's replies on its connection, with their large arrays sent beside the pickle instead of inside it.

Why: ``Connection.send``/``recv`` pickle a chunk's arrays into the message
(protocol 4: the array copied to bytes, then into the pickle) and the driver
reads the message in pieces into a ``BytesIO``, each ``os.read`` asking for
all that is left (a fresh 8 MB allocation per piece for a 1M-row column),
then copies it out again while unpickling. For a batch model's 10M sequences
that was ~0.1–0.3 s of the driver's CPU, two thirds of it page faults in the
kernel (docs/benchmarks.md, "Batch models", third pass). Here the message is
pickled with protocol 5 and every array of at least :data:`OUT_OF_BAND` bytes
goes out of band: its bytes are written to the socket as they are, and the
driver reads them straight into the memory of the array it rebuilds (one
copy, by the kernel).

The frame: one ``Connection.send_bytes`` holding ``!I`` (the number of
out-of-band buffers), ``!Q`` per buffer (its size in bytes) and the pickle;
then each buffer's raw bytes, in order, with no framing of their own. Only
replies (worker to driver) travel this way; requests stay ``Connection.send``.

A reply is written by a process that runs the model's code: a sandboxed model
can reach its worker's connection and write anything to it. So the driver
unpickles a reply with :class:`ReplyUnpickler`, which names only Ancho's
replies and what they hold (:data:`REPLY_GLOBALS`), never any other function
or class; a frame that is not such a reply raises :class:`ForgedReply` (with
a plain ``pickle.loads`` a model ran ``os.system`` in the driver, outside its
sandbox: ``tests/isolation/test_forged_replies.py``).
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
from typing import TYPE_CHECKING, Any

from ..chunk import SMALL_COLUMN
from ..errors import RunFailed

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

#: arrays smaller than this stay inside the pickle (a one-at-a-time model's 8-row chunk: no extra writes); a chunk's
#: columns under it are pickled as bytes (``ChunkResult.__reduce__``), the others sent beside the pickle here
OUT_OF_BAND = SMALL_COLUMN


#: bytes of replies a worker's socket holds before its sends wait: a study's driver writing a batch of records for
#: ~0.1 s takes no reply meanwhile, while each worker computes the deeper queue it was given (~1 KB a tiny point's
#: chunk, up to 512 chunks: studies/pacing.py); the kernel caps it at twice ``net.core.wmem_max`` (~416 KB by default)
REPLY_BUFFER = 1 << 20


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair for a worker: the driver's end, and the worker's, whose sends may buffer ``REPLY_BUFFER``."""
    parent, child = socket.socketpair()
    child.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, REPLY_BUFFER)
    return parent, child


def send(conn: Connection, msg: Any) -> None:
    """Send ``msg`` on ``conn``, its large contiguous buffers (NumPy arrays) out of band."""
    raws: list[memoryview] = []

    def outside(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND:
            return True  # (a true value: pickled in band)
        raws.append(raw)
        return False

    body = io.BytesIO()
    pickler = pickle.Pickler(body, protocol=5, buffer_callback=outside)
    pickler.dump(msg)
    head = struct.pack(f"!I{len(raws)}Q", len(raws), *(raw.nbytes for raw in raws))
    conn.send_bytes(head + body.getbuffer())
    fd = conn.fileno()
    for raw in raws:
        _write_all(fd, raw)


#: the globals a reply's pickle may name (module, name): Ancho's replies, chunks, failures, tallies and errors.
#: No NumPy constructor: a chunk's columns cross as (dtype string, shape, bytes), checked as they are rebuilt
#: (``chunk._column_of``: numbers and bools only); NumPy's own ``dtype`` took its flags from the pickle and made an
#: object array of raw pointers, which crashed the driver.
REPLY_GLOBALS = frozenset(
    [("ancho.executors.messages", n) for n in ("ChunkDone", "ChunksDone", "SummariesDone", "Inspected", "WorkerFailed")]
    + [("ancho.chunk", n) for n in ("_chunk_result", "StoredChunk", "Failure")]
    + [("ancho.stats", "Tally")]
)


class ForgedReply(RunFailed):
    """What came on a worker's connection is not a reply of Ancho's worker (a model wrote to the connection)."""


class ReplyUnpickler(pickle.Unpickler):
    """Unpickles a reply naming only :data:`REPLY_GLOBALS` and Ancho's own error classes (:mod:`ancho.errors`)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in REPLY_GLOBALS or module == "ancho.errors" and _error_class(name):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which no reply of Ancho's holds")


def _error_class(name: str) -> bool:
    from .. import errors

    value = getattr(errors, name, None)
    return value is errors._rebuild or isinstance(value, type) and issubclass(value, (errors.AnchoError, errors.Field))


def receive(conn: Connection, limit: int | None = None) -> Any:
    """The next message :func:`send` sent on ``conn``; EOFError or OSError (as ``Connection.recv``) when the worker is
    gone; :class:`ForgedReply` when what came is not a reply (the connection then says nothing more worth reading).

    ``limit``: the most bytes the message may hold, its frame and out-of-band buffers together, checked before any
    of it is allocated. A sandboxed worker's is its address space (a reply it built could not be larger): without
    it, a forged frame made the driver allocate and fill whatever it asked, as long as the allocation succeeded."""
    import numpy as np

    frame = _frame(conn, limit)
    try:
        (count,) = struct.unpack_from("!I", frame)
        sizes = struct.unpack_from(f"!{count}Q", frame, 4)
        if limit is not None and len(frame) + sum(sizes) > limit:
            raise ValueError(f"it holds {len(frame) + sum(sizes):,} bytes, over the worker's {limit:,}")
        fd = conn.fileno()
        buffers = []
        for size in sizes:
            buffer = np.empty(size, dtype=np.uint8)  # the rebuilt array's memory: read into it directly
            _read_all(fd, buffer.data)
            buffers.append(buffer)
        return ReplyUnpickler(io.BytesIO(memoryview(frame)[4 + 8 * count :]), buffers=buffers).load()
    except (EOFError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a forged frame makes fail: the same refusal
        raise _forged(exc) from None


def _frame(conn: Connection, limit: int | None) -> bytes:
    """The frame's bytes, refused unread past ``limit`` (``Connection.recv_bytes`` reads only the length then)."""
    try:
        return conn.recv_bytes(limit)
    except OSError as exc:
        if limit is None or str(exc) != "bad message length":  # (CPython's words for a message past maxlength)
            raise
        raise _forged(ValueError(f"its frame is longer than the worker's {limit:,} bytes")) from None


def _forged(exc: Exception) -> ForgedReply:
    return ForgedReply(
        f"a worker running the model's code sent something that is not a reply ({type(exc).__name__}: {exc}); "
        "refused, and the worker stopped: model code must not write to its worker's connection"
    )


def _write_all(fd: int, raw: memoryview) -> None:
    view = raw.cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.readv(fd, [view])
        if n == 0:
            raise EOFError("the worker closed its connection in the middle of a message")
        view = view[n:]
