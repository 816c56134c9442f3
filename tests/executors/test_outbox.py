"""The worker's outbox: replies leave in order, each after its chunk's commit; a failed commit sends the columns;
a driver gone never leaves the worker waiting."""

from __future__ import annotations

import threading
import time
from multiprocessing import Pipe

import numpy as np
import pytest

from ancho.chunk import ChunkResult
from ancho.errors import StoreError
from ancho.executors.messages import ChunkDone, ChunksDone, Inspected
from ancho.executors.outbox import Committing, Outbox
from ancho.executors.wire import receive


def chunk(start: int) -> ChunkResult:
    return ChunkResult(start, start + 2, np.arange(start, start + 2), {"x": np.array([0.5, 1.5])})


def committing(start: int, log: list[str], fails: bool = False, wait: float = 0.0) -> Committing:
    def commit() -> None:
        time.sleep(wait)
        log.append(f"commit {start}")
        if fails:
            raise StoreError("no space left")

    done = ChunkDone(chunk(start), {"stored": True})
    return Committing(done, commit, ChunkDone(chunk(start), {"stored": False}))


def test_replies_leave_in_order_each_after_its_commit():
    here, there = Pipe()
    log: list[str] = []
    out = Outbox(there)
    out.put(Inspected({"first": 1}))  # nothing committing: sent at once, no thread
    assert out.thread is None
    out.put(committing(0, log, wait=0.2))  # a slow commit ...
    out.put(Inspected({"after": 2}))  # ... holds back what comes after it
    out.put([committing(2, log), ChunkDone(chunk(4)), committing(6, log, fails=True)])
    replies = [receive(here) for _ in range(4)]
    assert replies[0] == Inspected({"first": 1})
    assert replies[1].custom == {"stored": True} and log[0] == "commit 0"
    assert replies[2] == Inspected({"after": 2})
    bundle = replies[3]
    assert isinstance(bundle, ChunksDone) and [r.result.start for r in bundle.replies] == [2, 4, 6]
    assert [r.custom for r in bundle.replies] == [{"stored": True}, None, {"stored": False}]  # the failed: columns
    assert log == ["commit 0", "commit 2", "commit 6"]
    out.close()
    assert out.thread is None


def test_a_commit_failing_in_any_way_sends_the_columns_so_no_reply_is_left_unsent():
    """A commit that raised something other than the store's error (a file gone from under it) left its reply
    unsent: the worker waited for its next request and the driver for that reply, for ever."""
    here, there = Pipe()
    out = Outbox(there)

    def gone() -> None:
        raise FileNotFoundError("the temporary file is gone")

    out.put(Committing(ChunkDone(chunk(0), {"stored": True}), gone, ChunkDone(chunk(0), {"stored": False})))
    assert here.poll(30) and receive(here).custom == {"stored": False}
    out.close()


def test_the_worker_computes_while_a_commit_waits():
    """``put`` returns while the commit is still waiting on the disk (here: a sleep)."""
    here, there = Pipe()
    out = Outbox(there)
    started = threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.3)

    out.put(Committing(ChunkDone(chunk(0)), slow, ChunkDone(chunk(0))))
    assert started.wait(5)
    assert not here.poll(0)  # not sent before its commit ended ...
    out.close()  # ... and close sends it
    assert here.poll(0) and receive(here).result.start == 0


def test_a_driver_gone_ends_the_worker_loop_instead_of_blocking_it():
    here, there = Pipe()
    out = Outbox(there)
    here.close()
    with pytest.raises((BrokenPipeError, ConnectionResetError, OSError)):
        for start in range(0, 40, 2):  # more than the queue holds: a put never waits for a thread that stopped
            out.put(committing(start, []))
            time.sleep(0.01)
    out.close()
