"""How long the driver waits for a sandboxed worker's reply before it kills the worker.

Inside the sandbox a watchdog thread of the model's own process times each call of the model at
``sequence_timeout``; C code holding the GIL (a catastrophic regular expression) starves that thread for ever,
and it times the model's calls only, not the checks of what they returned (a dict whose iteration never ends).
So the driver, outside the sandbox, keeps its own deadline: every call of the model its chunks in flight take (a
sequence each, or each block of a batch model: a run of 4,096-sequence blocks would otherwise wait 4,096 times too
long) and each chunk's set-up at ``sequence_timeout``, plus twice ``timeout_grace`` (docs/sandbox.md).
"""

from __future__ import annotations

import time
from collections.abc import Collection

from .base import Chunk, Task


def block_of(chunk: Chunk, task: Task | None) -> int:
    """Sequences a call of the model runs for ``chunk`` (its own task's, else the worker's ``task``'s)."""
    owner = chunk.task if chunk.task is not None else task
    return owner.block if owner is not None else 1


def calls(chunk: Chunk, block: int) -> int:
    """How many calls of the model ``chunk`` takes: a sequence each, or each block of a batch model it reaches."""
    return (chunk.stop - 1) // block - chunk.start // block + 1 if chunk.stop > chunk.start else 0


def overdue(
    inflight: Collection[Chunk], task: Task | None, since: float, deadline: tuple[float, float], pid: int
) -> str | None:
    """Why worker ``pid``, silent since ``since`` (``time.monotonic``), is killed, or None while it has time left;
    ``deadline``: the sandbox's ``(sequence_timeout, timeout_grace)``."""
    timeout, grace = deadline
    blocks = [block_of(chunk, task) for chunk in inflight]
    n = sum(calls(chunk, block) for chunk, block in zip(inflight, blocks))
    limit = (n + len(inflight)) * timeout + 2 * grace
    if time.monotonic() - since <= limit:
        return None
    setup = "its set-up" if len(inflight) == 1 else "their set-up"
    unit = "block" if max(blocks, default=1) > 1 else "sequence"
    return (
        f"worker process {pid} gave no answer within {limit:g} s ({n:,} {unit}{'s' * (n != 1)} and {setup} at the "
        f"sandbox's sequence_timeout of {timeout:g} s each, plus twice its timeout_grace): killed by the driver"
    )
