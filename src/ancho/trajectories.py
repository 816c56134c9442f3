"""The per-step summary of a trajectory output, in bounded memory.

A trajectory column is sequences × steps; a run of 1,000,000 sequences × 1,000
steps is 8 GB, which must never be in the driver at once. So:

* **mean and its 95% interval**: one streaming pass over the stored chunks,
  merging each chunk's per-step count, mean and sum of squared deviations
  (Chan et al.'s parallel update, vectorised over steps): exact, memory
  ``O(steps)`` plus one chunk;
* **percentiles** (p5…p95, linear interpolation as for scalar outputs):
  exact, computed **step block by step block** (:class:`StepBlocks`): a run
  that fits :data:`PERCENTILE_BUDGET` bytes is gathered into one buffer; a
  larger one is split by step block into temporary files (each block's
  values contiguous, the whole trajectory on disk for a moment), then each
  file is read back and summarised: 1,000,000 × 1,000 is 125 blocks of 8
  steps, which would otherwise be 125 passes over 8 GB of stored values.
  The gathering rides on the mean's pass when the number of rows is known
  (a run's: its sequences less its failures), so the column is read once;
  else it takes one more pass. Exact either way; no sketch error to explain.

NaN steps are left out of that step's statistics (its ``count`` is the
number of sequences, as the summary's ``count`` is of those that succeeded).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

import numpy as np

from .expressions import Target
from .percentiles import percentiles
from .stats import PERCENTILES, t975
from .threads import on_halves

#: bytes of trajectory values held at once for the percentiles (per step block)
PERCENTILE_BUDGET = 64 << 20
#: bytes of one block of rows the mean and its interval are merged over (see _reblock)
MERGE_BLOCK_BYTES = 8 << 20


def _reblock(blocks: Iterable[np.ndarray], block_bytes: int = MERGE_BLOCK_BYTES) -> Iterable[np.ndarray]:
    """The same rows in blocks of a size fixed by the number of steps, whatever the stored chunks were.

    Floating-point sums depend on their order, and chunk boundaries depend on
    the executor and its workers; merging over blocks of a fixed number of
    rows makes the summary bit-for-bit the same on every executor (as the
    scalar outputs' summary is).
    """
    pending: list[np.ndarray] = []
    held = 0
    size = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2 or not len(block):
            continue
        if not size:
            size = max(1, block_bytes // (8 * max(1, block.shape[1])))
        pending.append(block)
        held += len(block)
        while held >= size:
            whole = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield whole[:size]
            rest = whole[size:]
            pending, held = ([rest] if len(rest) else []), len(rest)
    if held:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def trajectory_summary(
    blocks: Callable[[], Iterable[np.ndarray]],
    targets: list[Target],
    budget: int = PERCENTILE_BUDGET,
    expected_rows: int | None = None,
) -> tuple[dict, dict[str, tuple[int, int]]]:
    """The ``trajectories`` entry of one output and its targets' ``(hits, count)``.

    ``blocks()`` yields the column's chunks (2-D arrays, sequences × steps) in order, afresh on every call.
    ``expected_rows``: how many rows the column has (the run's sequences less its failures), when known: the mean's
    pass then also gathers the values for the percentiles, and the column is read once (100,000 sequences × 800
    steps: ~1 s less, docs/benchmarks.md "Trajectories"); a column of another length is read again.
    """
    with contextlib.ExitStack() as cleanup:
        return _summary(blocks, targets, budget, expected_rows, cleanup)


def _summary(
    blocks: Callable[[], Iterable[np.ndarray]],
    targets: list[Target],
    budget: int,
    expected_rows: int | None,
    cleanup: contextlib.ExitStack,
) -> tuple[dict, dict[str, tuple[int, int]]]:
    n = None
    mean = m2 = None
    rows = 0
    hits = {t.expr: [0, 0] for t in targets}
    gathered: StepBlocks | None = None
    for block in _reblock(blocks()):
        if gathered is None and expected_rows:
            gathered = cleanup.enter_context(StepBlocks(expected_rows, block.shape[1], budget))
        if gathered is not None:
            gathered.add(block)
        rows += len(block)
        for t in targets:
            h, c = t.hits(block)
            hits[t.expr][0] += h
            hits[t.expr][1] += c
        valid = ~np.isnan(block)
        nb = valid.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            filled = np.where(valid, block, 0.0)
            bmean = np.where(nb > 0, filled.sum(axis=0) / np.maximum(nb, 1), 0.0)
            dev = np.where(valid, block - bmean, 0.0)
            bm2 = np.einsum("ij,ij->j", dev, dev)
        if n is None:
            n, mean, m2 = nb.astype(np.int64), bmean, bm2
            continue
        total = n + nb
        delta = bmean - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, nb / np.maximum(total, 1), 0.0)
            m2 = m2 + bm2 + delta * delta * n * share
        mean = mean + delta * share
        n = total
    out_hits = {expr: (h, c) for expr, (h, c) in hits.items()}
    if n is None:
        return {
            "steps": 0,
            "count": 0,
            "mean": [],
            "ci95_low": [],
            "ci95_high": [],
            **{f"p{q}": [] for q in PERCENTILES},
        }, out_hits
    assert mean is not None and m2 is not None  # set with n, by the first block
    steps = len(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(m2 / (n - 1))
        counts, where = np.unique(n, return_inverse=True)  # t975 once per distinct count (usually one)
        half = np.array([t975(k - 1) if k >= 2 else np.nan for k in counts])[where] * std / np.sqrt(n)
    mean = np.where(n > 0, mean, np.nan)
    summary = {
        "steps": steps,
        "count": rows,
        "mean": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        **_gathered_percentiles(gathered, blocks, rows, steps, budget),
    }
    return summary, out_hits


def _gathered_percentiles(
    gathered: StepBlocks | None, blocks: Callable[[], Iterable[np.ndarray]], rows: int, steps: int, budget: int
) -> dict:
    """The percentiles the mean's pass gathered, or (another number of rows than expected) from a pass of their own,
    what was gathered let go of first (the budget holds for one gathering at a time)."""
    if gathered is not None and gathered.whole(rows):
        return gathered.percentiles()
    if gathered is not None:
        gathered.close()
    return _percentiles(blocks, rows, steps, budget)


def _percentiles(blocks: Callable[[], Iterable[np.ndarray]], rows: int, steps: int, budget: int) -> dict:
    """p5…p95 per step, exact, from a pass of their own over the column (see :class:`StepBlocks`)."""
    with StepBlocks(rows, steps, budget) as gathered:
        for block in blocks():
            block = np.asarray(block)
            if block.ndim == 2 and len(block):
                gathered.add(block)
        return gathered.percentiles()


class StepBlocks:
    """A trajectory's rows gathered for its percentiles, step block by step block of at most ``budget`` bytes.

    The values fit the budget: one array. Else each block's columns ``lo..lo+width`` go to a temporary file of their
    own as the rows come, and each file is read back whole: one pass over the column (not one a step block), the
    whole trajectory on disk for a moment. Made for ``rows`` rows; :meth:`whole` says whether it got them all.
    Taking a step block's percentiles copies it (each step's values made contiguous): the peak is twice the budget."""

    def __init__(self, rows: int, steps: int, budget: int):
        self.rows, self.steps, self.seen = rows, steps, 0
        self.width = max(1, min(steps, budget // max(1, 8 * rows)))
        self.buf = np.empty((rows, steps)) if self.width == steps else None
        self.folder: str | None = None
        if self.buf is None:
            import tempfile

            self.folder = tempfile.mkdtemp(prefix="ancho-steps-")
        self.los = range(0, steps, self.width)

    def __enter__(self) -> StepBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of what was gathered: the buffer, the spill files."""
        self.buf = None
        if self.folder is not None:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def add(self, block: np.ndarray) -> None:
        """Gather ``block`` (sequences × steps); one past the rows or of other steps is counted, not kept."""
        n, at = len(block), self.seen
        self.seen += n
        if at + n > self.rows or block.shape[1] != self.steps:
            self.seen = self.rows + 1  # (never whole)
            return
        if self.buf is not None:
            self.buf[at : at + n] = block
            return
        for lo in self.los:
            with open(f"{self.folder}/{lo}", "ab") as fh:
                np.ascontiguousarray(block[:, lo : lo + self.width], dtype=np.float64).tofile(fh)

    def whole(self, rows: int) -> bool:
        """Whether the column's ``rows`` rows were gathered, and no other."""
        return self.seen == self.rows == rows

    def percentiles(self) -> dict:
        """p5…p95 of each step of the rows gathered."""
        out = np.empty((len(PERCENTILES), self.steps))
        if self.buf is not None:
            _step_percentiles(self.buf[: self.seen], out, 0, self.steps)
        else:
            for lo in self.los:
                hi = min(self.steps, lo + self.width)
                path = f"{self.folder}/{lo}"
                values = np.fromfile(path, dtype=np.float64) if os.path.exists(path) else np.empty(0)
                _step_percentiles(values.reshape(-1, hi - lo), out, lo, hi)
        return {f"p{q}": out[i] for i, q in enumerate(PERCENTILES)}


def _step_percentiles(view: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    with np.errstate(invalid="ignore"):
        if np.isnan(view).any():
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN step gives NaN, reported as null
                out[:, lo:hi] = np.nanpercentile(view, PERCENTILES, axis=0)
        else:
            out[:, lo:hi] = _percentiles_of_steps(view)


#: step blocks of at least this many values have their steps' percentiles taken on two threads
TWO_THREADS_FROM = 1 << 20


def _percentiles_of_steps(view: np.ndarray) -> np.ndarray:
    """``np.percentile(view, PERCENTILES, axis=0)``, bit for bit: each step's values made contiguous and partitioned
    once at all the ranks (:func:`ancho.percentiles.percentiles`), half the steps on a helper thread (NumPy lets go of
    the GIL to partition). Why: at the end of a run the workers are idle, and a partition along the first axis of
    the rows as stored went through every step's values strided (docs/benchmarks.md, "Trajectories")."""
    if view.size < TWO_THREADS_FROM or view.shape[1] < 2:
        return percentiles(np.ascontiguousarray(view.T)).T
    first, second = on_halves(lambda part: percentiles(np.ascontiguousarray(part.T)), view, "ancho-steps", axis=1)
    return np.concatenate([first, second]).T
