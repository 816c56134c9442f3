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
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
from typing import TYPE_CHECKING, Any

from ..chunk import SMALL_COLUMN

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


def receive(conn: Connection) -> Any:
    """The next message :func:`send` sent on ``conn``; EOFError or OSError (as ``Connection.recv``) when the worker is gone."""
    import numpy as np

    frame = conn.recv_bytes()
    (count,) = struct.unpack_from("!I", frame)
    sizes = struct.unpack_from(f"!{count}Q", frame, 4)
    fd = conn.fileno()
    buffers = []
    for size in sizes:
        buffer = np.empty(size, dtype=np.uint8)  # the rebuilt array's memory: read into it directly
        _read_all(fd, buffer.data)
        buffers.append(buffer)
    return pickle.loads(memoryview(frame)[4 + 8 * count :], buffers=buffers)


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
