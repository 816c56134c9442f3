"""A worker's replies with their arrays out of band (ancho.executors.wire): exact, in order, and a cut pipe is EOF."""

from __future__ import annotations

import os
import socket
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest

from ancho.chunk import ChunkResult, Failure, StoredChunk
from ancho.executors.messages import ChunkDone, WorkerFailed
from ancho.executors.wire import OUT_OF_BAND, receive, send


def _pair() -> tuple[Connection, Connection]:
    a, b = socket.socketpair()
    return Connection(a.detach()), Connection(b.detach())


def _wire_bytes(messages: list) -> bytes:
    """The bytes :func:`send` writes for ``messages`` (read off a socket by a thread while they are sent)."""
    mine, theirs = _pair()
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(theirs.fileno(), 1 << 16):
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    for msg in messages:
        send(mine, msg)
    mine.close()
    reader.join()
    theirs.close()
    return b"".join(chunks)


def _from_child(messages: list, cut: int | None = None) -> list:
    """What the parent receives of ``messages`` sent by a forked child (a real process on a real socket).

    ``cut``: the child writes only that many bytes of the messages, then exits (a worker killed mid-send).
    """
    data = None if cut is None else _wire_bytes(messages)[:cut]
    parent, child = _pair()
    pid = os.fork()
    if pid == 0:  # the child: send, then leave without running the parent's cleanup
        try:
            parent.close()
            if data is None:
                for msg in messages:
                    send(child, msg)
            else:
                os.write(child.fileno(), data)
        finally:
            os._exit(0)
    child.close()
    got = []
    try:
        for _ in messages:
            got.append(receive(parent))
    finally:
        os.waitpid(pid, 0)
        parent.close()
    return got


def test_arrays_arrive_bit_identical_whatever_their_layout():
    rng = np.random.default_rng(7)
    big = rng.standard_normal(1 << 20)
    big[::97] = np.nan
    arrays = [
        big,
        np.asfortranarray(rng.standard_normal((400, 90))),  # F-contiguous, out of band
        big[::3],  # not contiguous: pickled in band
        rng.integers(-(2**62), 2**62, size=300_000),
        rng.random(200_000) < 0.3,
        np.arange(5.0),  # small: in band
        np.empty(0),
    ]
    columns = {f"c{i}": a for i, a in enumerate(arrays)}  # (a reply carries arrays only as a chunk's columns)
    (got,) = _from_child([ChunkDone(ChunkResult(0, 3, np.arange(3), columns))])
    for sent, back in zip(arrays, got.result.columns.values()):
        assert back.dtype == sent.dtype and back.shape == sent.shape
        assert back.tobytes() == sent.tobytes()  # bit-identical, NaNs included
        assert back.flags.writeable  # the summary sorts the gathered column in place


def test_messages_keep_their_order_and_types():
    seq = np.arange(10, 1_000_010, dtype=np.int64)
    result = ChunkResult(10, 1_000_010, seq, {"x": seq * 0.5}, [], 0.25)
    stored = StoredChunk(0, 10, 9, {"x": "float"}, 1, [Failure(3, "ValueError: no", "tb")], first=np.ones(9))
    messages = [ChunkDone(result), WorkerFailed(None, "worker", "boom"), ChunkDone(stored, {"s": 1.0})]
    got = _from_child(messages)
    assert [type(m) for m in got] == [ChunkDone, WorkerFailed, ChunkDone]
    assert np.array_equal(got[0].result.sequences, seq) and np.array_equal(got[0].result.columns["x"], seq * 0.5)
    assert got[0].result.seconds == 0.25
    assert got[1].text == "boom"
    assert got[2].result.failures[0].sequence == 3 and got[2].custom == {"s": 1.0}


@pytest.mark.parametrize("where", ["in the frame", "in an array"])
def test_a_worker_that_dies_mid_message_is_eof(where):
    big = np.ones(4 * OUT_OF_BAND)
    cut = 10 if where == "in the frame" else 200 + big.nbytes // 2
    with pytest.raises((EOFError, OSError)):  # what Connection.recv raises too, and the executor catches
        _from_child([ChunkDone(ChunkResult(0, big.size, np.arange(big.size), {"x": big}))], cut=cut)


def test_a_chunk_pickles_its_small_columns_as_bytes_and_comes_back_equal_and_writable():
    """Small columns travel as bytes, large ones as arrays (beside the pickle on the wire); every kind, shape, a
    failure and the timing come back as they were, and the driver may sort a column in place."""
    import pickle

    import numpy as np

    from ancho.chunk import SMALL_COLUMN, ChunkResult, Failure

    rng = np.random.default_rng(3)
    big = rng.standard_normal(SMALL_COLUMN // 8 + 1)
    result = ChunkResult(
        10,
        16,
        np.array([10, 11, 13, 14, 15]),
        {"b": rng.random(5) < 0.5, "i": rng.integers(-9, 9, 5), "u": np.arange(5, dtype=np.uint8),
         "f": np.array([0.5, np.nan, np.inf, -0.0, 1e-300]), "t": rng.standard_normal((5, 3)), "big": big},
        [Failure(12, "ValueError: no", "tb")],
        0.25,
    )  # fmt: skip
    back = pickle.loads(pickle.dumps(result, protocol=5))
    assert (back.start, back.stop, back.failures, back.seconds) == (10, 16, result.failures, 0.25)
    assert back.sequences.dtype == np.int64 and np.array_equal(back.sequences, result.sequences)
    for name, column in result.columns.items():
        mine = back.columns[name]
        assert mine.dtype == column.dtype and mine.shape == column.shape, name
        assert np.array_equal(mine, column, equal_nan=column.dtype.kind == "f"), name
        assert mine.flags.writeable, name
    back.columns["f"].sort()  # (describe sorts a column in place)
    kept: list = []
    assert len(pickle.dumps(result, protocol=5, buffer_callback=lambda b: kept.append(b) or False)) < big.nbytes
    assert len(kept) == 1  # only the large column goes out of band
