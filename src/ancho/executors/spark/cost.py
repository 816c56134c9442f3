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
from collections import OrderedDict

from ...chunk import ChunkResult, StoredChunk
from ..base import Task

#: chunks per core in a batch: enough for the last wave to spread (and a lost task to cost little)
TASKS_PER_CORE = 4
#: seconds of work a Spark task is filled with when sequences are cheap (see tasks_chunks)
TASK_SECONDS = 2.0
#: sequences one Spark task runs at most: a task's records come back whole, held in the executor's and the driver's
#: JVM (8 bytes a sequence and output, 32 MB an output here); 2 s of a batch model's work would be ~100M sequences
MAX_TASK_SEQUENCES = 4_194_304
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
    what remains (expensive sequences keep one chunk per task, for balance), nor more than
    ``MAX_TASK_SEQUENCES`` sequences (a batch model's cheap sequences would fill a task with gigabytes).
    """
    if per_sequence is None or pending <= 0:
        return min(1, pending)
    fill = int(TASK_SECONDS // max(per_sequence * chunk_size, 1e-9))
    fill = min(fill, MAX_TASK_SEQUENCES // max(1, chunk_size))
    return max(1, min(fill, math.ceil(pending / max(1, workers)), pending))


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

    def __len__(self) -> int:
        return len(self._samples)

    def per_sequence(self, key: str) -> float | None:
        """The key's seconds per sequence, or None while no chunk has measured it."""
        with self._lock:
            sample = self._samples.get(key)
            if sample is None:
                return None
            self._samples.move_to_end(key)
            return sample[0] / sample[1]

    def learn(self, key: str, result: ChunkResult | StoredChunk) -> None:
        """Fold a chunk's measured time into the key's seconds per sequence: weighted by sequences (a chunk of 20
        sequences says little against one of 100,000), older chunks' weight halving at each new one. Chunks shorter
        than ``MIN_SAMPLE_SECONDS`` of fewer than ``MIN_SAMPLE_SEQUENCES`` sequences are left out: their time is mostly
        the chunk's own fixed cost, not the sequences'."""
        if not (result.size and (result.seconds >= MIN_SAMPLE_SECONDS or result.size >= MIN_SAMPLE_SEQUENCES)):
            return
        with self._lock:
            seconds, sequences = self._samples.pop(key, (0.0, 0.0))
            self._samples[key] = (0.5 * seconds + result.seconds, 0.5 * sequences + result.size)
            while len(self._samples) > self.size:
                self._samples.popitem(last=False)


#: the process's measured costs (sizes every SparkExecutor's tasks: a model's cost does not depend on the executor)
COSTS = CostModel()
