"""The per-step summary of a trajectory output, in bounded memory.

A trajectory column is sequences × steps; a run of 1,000,000 sequences × 1,000
steps is 8 GB, which must never be in the driver at once. So:

* **mean and its 95% interval**: one streaming pass over the stored chunks,
  merging each chunk's per-step count, mean and sum of squared deviations
  (Chan et al.'s parallel update, vectorised over steps): exact, memory
  ``O(steps)`` plus one chunk;
* **percentiles** (p5…p95, linear interpolation as for scalar outputs):
  exact, computed **step block by step block**: each further pass over the
  chunks copies the columns ``lo..hi`` of every sequence into one buffer of at
  most :data:`PERCENTILE_BUDGET` bytes and takes the percentiles of those
  steps. A run that fits the budget takes one pass. A larger one is read
  **once** more and split by step block into temporary files (each block's
  values contiguous, the whole trajectory on disk for a moment), then each
  file is read back and summarised: 1,000,000 × 1,000 is 125 blocks of 8
  steps, which would otherwise be 125 passes over 8 GB of stored values.
  Exact either way; no sketch error to explain.

NaN steps are left out of that step's statistics (its ``count`` is the
number of sequences, as the summary's ``count`` is of those that succeeded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .expressions import Target
from .percentiles import percentiles
from .stats import PERCENTILES, t975
from .threads import on_two_threads

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
    blocks: Callable[[], Iterable[np.ndarray]], targets: list[Target], budget: int = PERCENTILE_BUDGET
) -> tuple[dict, dict[str, tuple[int, int]]]:
    """The ``trajectories`` entry of one output and its targets' ``(hits, count)``.

    ``blocks()`` yields the column's chunks (2-D arrays, sequences × steps) in order, afresh on every call.
    """
    n = None
    mean = m2 = None
    rows = 0
    hits = {t.expr: [0, 0] for t in targets}
    for block in _reblock(blocks()):
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
        **_percentiles(blocks, rows, steps, budget),
    }
    return summary, out_hits


def _percentiles(blocks: Callable[[], Iterable[np.ndarray]], rows: int, steps: int, budget: int) -> dict:
    """p5…p95 per step, exact, over step blocks of at most ``budget`` bytes (one pass, or a pass and a spill)."""
    width = max(1, min(steps, budget // max(1, 8 * rows)))
    result = np.empty((len(PERCENTILES), steps))
    if width == steps:  # one block: the values fit the budget
        buf = np.empty((rows, steps))
        pos = 0
        for block in _rows_of(blocks()):
            buf[pos : pos + len(block)] = block
            pos += len(block)
        _step_percentiles(buf[:pos], result, 0, steps)
    else:
        _spilled_percentiles(blocks, steps, width, result)
    return {f"p{q}": result[i] for i, q in enumerate(PERCENTILES)}


def _rows_of(blocks: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    for block in blocks:
        block = np.asarray(block)
        if block.ndim == 2 and len(block):
            yield block


def _spilled_percentiles(blocks: Callable[[], Iterable[np.ndarray]], steps: int, width: int, out: np.ndarray) -> None:
    """One pass writing each step block's columns to its own file, then each file read back whole (≤ budget)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ancho-steps-") as folder:
        los = range(0, steps, width)
        files = [f"{folder}/{lo}" for lo in los]
        for block in _rows_of(blocks()):
            for lo, name in zip(los, files):
                with open(name, "ab") as fh:
                    np.ascontiguousarray(block[:, lo : lo + width], dtype=np.float64).tofile(fh)
        for lo, name in zip(los, files):
            hi = min(steps, lo + width)
            _step_percentiles(np.fromfile(name, dtype=np.float64).reshape(-1, hi - lo), out, lo, hi)


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
    steps = view.shape[1]
    half = steps // 2
    if view.size < TWO_THREADS_FROM or not half:
        return percentiles(np.ascontiguousarray(view.T)).T
    first, second = on_two_threads(
        lambda: percentiles(np.ascontiguousarray(view[:, :half].T)),
        lambda: percentiles(np.ascontiguousarray(view[:, half:].T)),
        "ancho-steps",
    )
    return np.concatenate([first, second]).T
