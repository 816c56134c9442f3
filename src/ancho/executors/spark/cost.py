"""The cost model that sizes Spark tasks: how many chunks one task runs, learnt from the chunks already run.

Why: a Spark task costs a fixed 0.3-1 s (scheduling, a job of its own)
whatever it runs, so a cheap model's chunks go several to a task, and an
expensive model's one to a task for balance. How cheap is measured per model
and parameters, in this process, from the chunks that came back.

What is kept: :data:`COSTS`, the seconds per sequence of the most recently
run ``(model, parameters)`` pairs — at most :data:`COST_ENTRIES` of them (a
server runs many models and parameter sets over its life; a pair not run for
a while is re-measured from its first chunk, which is what an unknown one
costs anyway).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict, deque
from typing import Any

from ...chunk import ChunkResult, StoredChunk
from ...recent import kept
from ..base import Task

#: chunks per core in a batch: enough for the last wave to spread (and a lost task to cost little)
TASKS_PER_CORE = 4
#: seconds of work a Spark task is filled with when sequences are cheap (see tasks_chunks)
TASK_SECONDS = 2.0
#: sequences one Spark task runs at most (2 s of a batch model's work would be ~100M sequences) ...
MAX_TASK_SEQUENCES = 4_194_304
#: ... and bytes of results it sends back at most: a task's records come back whole, held in the executor's and the
#: driver's JVM (Spark's own ``spark.driver.maxResultSize`` is 1 GiB); 4M sequences of 32 float outputs were 1 GiB
MAX_TASK_BYTES = 256 << 20
#: chunks quicker than this do not inform that estimate (a 20-sequence chunk of a trivial model measures its overhead)
MIN_SAMPLE_SECONDS = 0.05
#: ... unless they ran this many sequences: a batch model's chunk of 1,048,576 takes ~20 ms, nearly all of it its
#: sequences' own work; left out, its cost stayed unknown and every chunk went in a Spark task of its own
MIN_SAMPLE_SEQUENCES = 65_536
#: (model, parameters) pairs whose cost is remembered, most recently run first
COST_ENTRIES = 256


def chunk_size(total: int, workers: int) -> int:
    """About ``TASKS_PER_CORE`` chunks per core for a batch of ``total`` sequences."""
    return max(1, math.ceil(total / (TASKS_PER_CORE * max(1, workers))))


def tasks_chunks(per_sequence: float | None, chunk_size: int, pending: int, workers: int) -> int:
    """How many of the ``pending`` chunks the next Spark task runs.

    One while the model's cost is unknown. Then as many as fill about
    ``TASK_SECONDS`` of work (each Spark task costs a fixed 0.3-1 s of
    scheduling and a job of its own, so cheap sequences go in fewer, bigger
    tasks), but never so many that fewer tasks than cores are left to run
    what remains (expensive sequences keep one chunk per task, for balance).
    :func:`take` then bounds what they hold.
    """
    if per_sequence is None or pending <= 0:
        return min(1, pending)
    fill = int(TASK_SECONDS // max(per_sequence * chunk_size, 1e-9))
    return max(1, min(fill, math.ceil(pending / max(1, workers)), pending))


def task_sequences(bytes_per_sequence: float | None) -> int:
    """The most sequences one task runs: ``MAX_TASK_SEQUENCES``, fewer when their results would pass
    ``MAX_TASK_BYTES`` (``bytes_per_sequence``: what a chunk's records carried back; 0 or None: nothing, or not known)."""
    if not bytes_per_sequence:
        return MAX_TASK_SEQUENCES
    return max(1, min(MAX_TASK_SEQUENCES, int(MAX_TASK_BYTES // bytes_per_sequence)))


def take(pending: deque[Any], n: int, most: int) -> list[Any]:
    """The next task's chunks from ``pending``: the first, then more, up to ``n`` in all, while their sequences
    add up to at most ``most`` (a study's chunks differ in size: counting chunks alone would not bound a task)."""
    chunks = [pending.popleft()]
    size = chunks[0].size
    while pending and len(chunks) < n and size + pending[0].size <= most:
        size += pending[0].size
        chunks.append(pending.popleft())
    return chunks


def result_bytes(result: ChunkResult | StoredChunk) -> int:
    """Bytes of a chunk's results as its records carry them back: ids and columns (none for a chunk its task
    stored itself)."""
    if isinstance(result, StoredChunk):
        return 0
    return int(result.sequences.nbytes) + sum(int(c.nbytes) for c in result.columns.values())


def cost_key(task: Task) -> str:
    """The model (a pickled one's whole payload) and its parameters, as a short key."""
    return hashlib.sha1(f"{task.ref!r}|{sorted(task.params.items())!r}".encode()).hexdigest()


def model_key(task: Task) -> str:
    """The model alone, as a short key: its cost at the parameters last run, a study's first guess at its points'
    (a study's points each have parameters of their own, which no run has measured)."""
    return hashlib.sha1(f"{task.ref!r}".encode()).hexdigest()


class CostModel:
    """Measured seconds per sequence by cost key, for the ``size`` most recently used keys (an LRU).

    Runs execute concurrently (a server's dispatcher threads), so every access takes the lock.
    """

    def __init__(self, size: int = COST_ENTRIES):
        self.size = size
        self._lock = threading.Lock()
        self._samples: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (seconds, sequences), decayed
        self._bytes: OrderedDict[str, float] = OrderedDict()  # key -> bytes of results per sequence, the last chunk's

    def __len__(self) -> int:
        return len(self._samples)

    def bytes_per_sequence(self, key: str) -> float | None:
        """The key's bytes of results per sequence, as its last chunk carried them back, or None while none came."""
        with self._lock:
            return self._bytes.get(key)

    def per_sequence(self, key: str) -> float | None:
        """The key's seconds per sequence, or None while no chunk has measured it."""
        with self._lock:
            sample = self._samples.get(key)
            if sample is None:
                return None
            self._samples.move_to_end(key)
            return sample[0] / sample[1]

    def learn_bytes(self, key: str, result: ChunkResult | StoredChunk) -> None:
        """Keep the bytes of results per sequence ``result`` carried back (any chunk, a study's too: what bounds
        a task's results is their size, not their time)."""
        if result.size:
            with self._lock:
                self._bytes.pop(key, None)  # (this chunk's weight replaces the last one's)
                kept(self._bytes, key, lambda: result_bytes(result) / result.size, self.size)

    def learn(self, key: str, result: ChunkResult | StoredChunk) -> None:
        """Fold a chunk's measured time into the key's seconds per sequence: weighted by sequences (a chunk of 20
        sequences says little against one of 100,000), older chunks' weight halving at each new one. Chunks shorter
        than ``MIN_SAMPLE_SECONDS`` of fewer than ``MIN_SAMPLE_SEQUENCES`` sequences are left out: their time is mostly
        the chunk's own fixed cost, not the sequences'."""
        if not (result.size and (result.seconds >= MIN_SAMPLE_SECONDS or result.size >= MIN_SAMPLE_SEQUENCES)):
            return
        with self._lock:
            seconds, sequences = self._samples.pop(key, (0.0, 0.0))
            sample = (0.5 * seconds + result.seconds, 0.5 * sequences + result.size)
            kept(self._samples, key, lambda: sample, self.size)


#: the process's measured costs (sizes every SparkExecutor's tasks: a model's cost does not depend on the executor)
COSTS = CostModel()
