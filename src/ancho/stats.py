"""Statistics of a run's outputs, in the summary JSON shape of DESIGN.md §2 (``ancho.summary`` is the decorator, so this module is ``stats``).

Computed one column at a time from the store, so memory holds one column,
never the whole result set. NumPy only: SciPy and pandas cost more than a
second to import on a small machine (measured), which is most of the budget
of a 100-sequence ``ancho run``; SciPy is imported only for Student-t
quantiles below 30 degrees of freedom.

Definitions (the docs repeat them):

* ``mean``, ``std`` (sample, ddof=1), ``sem = std/sqrt(count)``;
  ``ci95 = mean ± t(0.975, count-1) * sem`` for numbers, the Wilson score
  interval for bool outputs (their mean is a proportion);
* percentiles use linear interpolation (NumPy's default);
* NaN values are left out of every statistic and of ``count``;
* numbers JSON cannot hold (inf, NaN) are written as ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import numpy as np

from .expressions import Goal, Target, reduced_columns
from .moments import BLOCK, moments
from .percentiles import PERCENTILES, percentiles

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def t975(df: float) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom.

    From 30 degrees of freedom on, the Cornish-Fisher expansion (Abramowitz &
    Stegun 26.7.5) is within 4e-8 of the exact value (checked against SciPy
    in the tests) and costs no import; below that, SciPy computes it.
    """
    if df >= 30:
        z = Z95
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
        return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.975))


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion: sensible at 0, 1 and small n, unlike the normal one."""
    if n <= 0:
        return None
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 and n hits an end is exactly 0 or 1 (centre and half are equal there, but not in floating point: 0 hits
    # gave a low end of 3.5e-18, and n hits a high end of 0.9999999999999999, excluding the estimate itself)
    low = 0.0 if hits <= 0 else max(0.0, centre - half)
    high = 1.0 if hits >= n else min(1.0, centre + half)
    return (low, high)


def mean_ci(mean: float, std: float, n: int) -> tuple[float, float] | None:
    if n < 2 or not math.isfinite(std):
        return None
    half = t975(n - 1) * std / math.sqrt(n)
    return (mean - half, mean + half)


def _clean_array(x: np.ndarray) -> Any:
    """:func:`clean` of an array, NumPy doing the work: a trajectory's summary is ten arrays a step (a 100,000-step
    one: 1M values, ~1.2 s of the driver value by value, ~40 ms so)."""
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if finite.all():
            return x.tolist()
        out = x.astype(object)
        out[~finite] = None
        return out.tolist()
    if x.dtype.kind in "iub":
        return x.tolist()
    return clean(x.tolist())


def clean(x: Any) -> Any:
    """Make a value JSON-safe: NumPy scalars to Python, non-finite floats to None."""
    t = type(x)  # the common exact types first: a study's 2,000 summaries made ~160,000 calls (a sixth of the driver)
    if t is float:
        return x if math.isfinite(x) else None
    if t is str or t is int or t is bool or x is None:
        return x
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean_array(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, str):  # (NumPy's str_, a str enum)
        return str(x)
    return x


def describe(column: np.ndarray, kind: str) -> dict:
    """count, mean, std, sem, ci95, min, p5…p95, max of one output column.

    ``column`` may be modified (percentiles are taken in place to avoid a copy).
    """
    with np.errstate(invalid="ignore", over="ignore"):  # inf outputs give inf/NaN statistics, reported as null
        return _describe(column, kind)


def _describe(column: np.ndarray, kind: str) -> dict:
    if kind != "bool" and column.ndim == 1 and column.size > BLOCK:
        return _describe_long(column, kind)
    hi = None
    if kind == "bool":
        values = column.view(np.uint8) if column.dtype == np.bool_ else column.astype(np.uint8)
    elif column.dtype.kind == "f" and column.size:
        # the max propagates NaN, so the pass it needs anyway tells whether there is one: no NaN mask of the whole
        # column (10 MB for 10M values) unless there is
        hi = column.max()
        values = column[~np.isnan(column)] if np.isnan(hi) else column
        hi = None if values is not column else hi
    else:
        values = column
    n = int(values.size)
    if n == 0:
        return describe_moments(kind, 0, None, None)
    lo, hi = values.min(), values.max() if hi is None else hi
    if kind == "bool":
        hits = int(np.count_nonzero(values))
        return describe_moments(kind, n, lo, hi, hits=hits, percentiles=percentiles(values))
    mean = float(np.mean(values, dtype=np.float64))
    std = float(np.std(values, ddof=1, dtype=np.float64)) if n > 1 else None
    return describe_moments(kind, n, lo, hi, mean=mean, std=std, percentiles=percentiles(values))


def _describe_long(column: np.ndarray, kind: str) -> dict:
    """:func:`_describe` of a column longer than a block: its moments in fixed blocks on two threads
    (:mod:`ancho.moments`), its percentiles from its non-NaN values."""
    m = moments(column)
    if m is None:
        return describe_moments(kind, 0, None, None)
    values = column if m.n == column.size else column[~np.isnan(column)]
    return describe_moments(kind, m.n, m.lo, m.hi, mean=m.mean, std=m.std, percentiles=percentiles(values))


#: columns longer than this are described one at a time (their NumPy calls no longer cost more than their values)
MANY_LONGEST = 4096


def describe_many(columns: list[np.ndarray], kind: str) -> list[dict]:
    """:func:`describe` of each column, the same dicts bit for bit, with one NumPy call a statistic for all the
    columns of one length (stacked as the rows of a matrix) instead of one a column.

    Why: a study's 2,000 points of 50 sequences spent ~0.3 s of the driver's CPU describing their outputs one at a
    time, nearly all of it NumPy's per-call overhead on 50 values (docs/benchmarks.md, "Studies"). A row's sums are
    the 1-D sums (NumPy reduces a contiguous row as it reduces a column), its sort and percentiles elementwise the
    same: tests/test_describe_many.py compares every statistic with :func:`describe`'s, bit for bit. A column with
    NaN, longer than ``MANY_LONGEST`` or not 1-D is described alone. The columns are not modified.
    """
    out: list[dict | None] = [None] * len(columns)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, column in enumerate(columns):
        if column.ndim == 1 and 1 < column.size <= MANY_LONGEST:
            groups.setdefault((column.size, column.dtype.str), []).append(i)
        else:
            out[i] = describe(column.copy(), kind)
    with np.errstate(invalid="ignore", over="ignore"):
        for rows in groups.values():
            matrix = np.stack([columns[i] for i in rows])  # (a copy: sorted in place below)
            if matrix.dtype.kind == "f":
                nan = np.isnan(matrix).any(axis=1)
                if nan.any():  # NaN is left out of a column's statistics: those columns have their own lengths
                    for i, r in zip(rows, nan.tolist()):
                        if r:
                            out[i] = describe(columns[i].copy(), kind)
                    keep = ~nan
                    matrix, rows = matrix[keep], [i for i, r in zip(rows, keep.tolist()) if r]
                    if not rows:
                        continue
            for i, described in zip(rows, _describe_rows(matrix, kind)):
                out[i] = described
    return cast(list[dict], out)


def _describe_rows(matrix: np.ndarray, kind: str) -> list[dict]:
    """:func:`_describe` of each row of ``matrix`` (at least 2 columns, no NaN), sorting the rows in place."""
    n = matrix.shape[1]
    if kind == "bool":
        values = matrix.view(np.uint8) if matrix.dtype == np.bool_ else matrix.astype(np.uint8)
    else:
        values = matrix
    lo, hi = values.min(axis=1).tolist(), values.max(axis=1).tolist()
    if kind == "bool":
        hits = np.count_nonzero(values, axis=1).tolist()
        tiles = percentiles(values).tolist()
        return [describe_moments(kind, n, a, b, hits=h, percentiles=p) for a, b, h, p in zip(lo, hi, hits, tiles)]
    means = np.asarray(np.mean(values, axis=1, dtype=np.float64)).tolist()
    stds = np.asarray(np.std(values, axis=1, ddof=1, dtype=np.float64)).tolist()
    tiles = percentiles(values).tolist()
    return [
        describe_moments(kind, n, a, b, mean=m, std=s, percentiles=p)
        for a, b, m, s, p in zip(lo, hi, means, stds, tiles)
    ]


def describe_moments(
    kind: str,
    n: int,
    lo,
    hi,
    *,
    hits: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    percentiles=None,
) -> dict:
    """One output's statistics from its aggregates: the single place the summary's definitions live.

    :func:`describe` computes the aggregates from a column in memory, the
    Spark executor with one Spark SQL job; both end here, so a summary is the
    same object whichever computed it.
    """
    out: dict = {"count": int(n)}
    if n == 0:
        out.update(mean=None, std=None, sem=None, ci95=None, min=None, **{f"p{q}": None for q in PERCENTILES}, max=None)
        return out
    if kind == "bool":
        hits = int(hits or 0)
        mean = hits / n
        std = math.sqrt(n / (n - 1) * mean * (1 - mean)) if n > 1 else None
        ci = wilson(hits, n)
    else:
        # rounding in the sum can put the mean of a constant column a hair outside [min, max]
        mean = min(max(float(cast(float, mean)), float(lo)), float(hi))  # numeric kinds always pass a mean
        std = float(std) if n > 1 and std is not None else None
        ci = mean_ci(mean, std, n) if std is not None else None
    # JSON-safe as built (a non-finite float is null, as :func:`clean` makes it): cleaning the finished dict was
    # ~20 calls an output, the most of a study's 2,000 tiny points' summaries
    out["mean"] = _finite(mean)
    out["std"] = _finite(std)
    out["sem"] = _finite(std / math.sqrt(n)) if std is not None else None
    out["ci95"] = [_finite(ci[0]), _finite(ci[1])] if ci else None
    as_int = kind in ("int", "bool")
    out["min"] = int(lo) if as_int else _finite(float(lo))
    for q, v in zip(PERCENTILES, percentiles if percentiles is not None else [None] * len(PERCENTILES)):
        out[f"p{q}"] = None if v is None else _finite(float(v))
    out["max"] = int(hi) if as_int else _finite(float(hi))
    return out


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _too_long(rows: int) -> bool:
    from .streamed import too_long

    return too_long(rows)


def target_summary(target: Target, column: np.ndarray) -> dict:
    return target_row(target, *target.hits(column))


def target_row(target: Target, hits: int, n: int) -> dict:
    """A target's row of the summary from its hits among ``n`` values."""
    ci = wilson(hits, n)
    return {"expr": target.expr, "probability": hits / n if n else None, "ci95": list(ci) if ci else None}


@dataclass
class Tally:
    """One chunk's share of a :class:`Running`: count, mean and sum of squared deviations of its non-NaN values, and
    target hits. A Spark task that stores its chunk itself sends these instead of the column (a few numbers)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, column: np.ndarray, targets: list[Target]) -> Tally:
        if column.ndim == 2:
            # a trajectory: only its targets' hits (over max/min/last); ``n`` counts sequences, the denominator of a
            # p() goal; a mean() goal tracks the reduced column under its own key (see chunk_tallies)
            return cls(len(column), 0.0, 0.0, {t.expr: t.hits(column)[0] for t in targets})
        values = column
        if values.dtype.kind == "f":
            values = values[~np.isnan(values)]
        nb = int(values.size)
        mean = m2 = 0.0
        if nb:
            mean = float(np.mean(values, dtype=np.float64))
            m2 = float(np.sum((values - mean) ** 2)) if nb > 1 else 0.0
        return cls(nb, mean, m2, {t.expr: t.hits(column)[0] for t in targets})

    def to_list(self) -> list:
        return [self.n, self.mean, self.m2, self.hits]

    @classmethod
    def from_list(cls, data: list) -> Tally:
        n, mean, m2, hits = data
        return cls(int(n), float(mean), float(m2), {k: int(v) for k, v in hits.items()})


def chunk_tallies(columns: dict[str, np.ndarray], targets: list[Target]) -> dict[str, Tally]:
    """A :class:`Tally` per output column of a chunk, with the hits of the ``targets`` on that output."""
    # (a target of the wrong shape, a trajectory unreduced, is left out here: the driver refuses it at the first
    # chunk, naming the option it came from, --target or --until, where a worker's error could not say which)
    tallies = {
        name: Tally.of(col, [t for t in targets if t.output == name and (col.ndim == 2) == (t.reduce is not None)])
        for name, col in columns.items()
    }
    # max(NAME), min(NAME), last(NAME) of each trajectory, the keys of mean(last(NAME)) goals (three cheap reductions)
    tallies.update((key, Tally.of(col, [])) for key, col in reduced_columns(columns).items())
    return tallies


@dataclass
class Running:
    """Streaming count, mean and variance of one output (Chan et al.'s parallel merge), plus target hits.

    The engine keeps one per output so that precision goals and live
    progress need no re-read of the store. It merges one :class:`Tally` per
    chunk, whether computed here from the column (:meth:`add`) or by the task
    that stored the chunk: the same arithmetic, so the same goal decisions.
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)
    valid: int = 0

    def add(self, column: np.ndarray, targets: list[Target]) -> None:
        self.merge(Tally.of(column, targets))

    def merge(self, tally: Tally) -> None:
        nb = tally.n
        if nb:
            delta = tally.mean - self.mean
            total = self.n + nb
            self.mean += delta * nb / total
            self.m2 += tally.m2 + delta * delta * self.n * nb / total
            self.n = total
        for expr, h in tally.hits.items():
            self.hits[expr] = self.hits.get(expr, 0) + h
        self.valid += nb

    def half_width(self, goal: Goal) -> float | None:
        """The current 95% CI half-width of the goal's statistic (absolute), or None if unknown yet."""
        if goal.statistic == "mean":
            if self.n < 2:
                return None
            return t975(self.n - 1) * math.sqrt(self.m2 / (self.n - 1)) / math.sqrt(self.n)
        ci = wilson(self.hits.get(goal.target.expr, 0), self.valid)  # type: ignore[union-attr]
        return None if ci is None else (ci[1] - ci[0]) / 2

    def estimate(self, goal: Goal) -> float | None:
        if goal.statistic == "mean":
            return self.mean if self.n else None
        return self.hits.get(goal.target.expr, 0) / self.valid if self.valid else None  # type: ignore[union-attr]

    def goal_width(self, goal: Goal) -> float | None:
        """The absolute half-width the goal asks for (a relative goal scales with the estimate)."""
        if not goal.relative:
            return goal.width
        est = self.estimate(goal)
        return None if est is None else goal.width * abs(est)


def build_summary(
    record: dict,
    kinds: dict[str, str],
    read_column: Callable[[str], np.ndarray],
    targets: list[Target],
    custom: dict | None = None,
    goal: dict | None = None,
    read_blocks: Callable[[str], Iterable[np.ndarray]] | None = None,
    described: dict[str, dict] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict:
    """The summary object: one column in memory at a time.

    A trajectory (kind ``float[STEPS]``) is summarised step by step from ``read_blocks(name)`` (its chunks,
    streamed: :func:`ancho.trajectories.trajectory_summary`); without it, from ``read_column(name)`` in one block.
    So is a column too long to hold (:func:`ancho.streamed.too_long`), in passes over ``read_blocks(name)``.
    ``described``: outputs already described (by :func:`describe_many`, with other runs'), read only for targets.
    ``cancelled`` is asked before each output: a cancelled run's summary (1,000 outputs can take minutes) stops
    within one output's work, raising :class:`~ancho.errors.RunCancelled`.
    """
    outputs = {}
    trajectories = {}
    target_rows: dict[str, dict] = {}
    for name, kind in kinds.items():
        if cancelled is not None and cancelled():
            from .errors import RunCancelled

            raise RunCancelled("the run was cancelled")
        if kind.endswith("]"):
            from .trajectories import trajectory_summary

            mine = [t for t in targets if t.output == name]
            blocks = (lambda n=name: read_blocks(n)) if read_blocks else (lambda n=name: [read_column(n)])
            stored = int(record.get("done") or 0) - int(record.get("failures") or 0)  # (a failed sequence: no row)
            trajectories[name], hits = trajectory_summary(blocks, mine, expected_rows=stored)
            for t in mine:
                ci = wilson(*hits[t.expr])
                target_rows[t.expr] = {
                    "expr": t.expr,
                    "probability": hits[t.expr][0] / hits[t.expr][1] if hits[t.expr][1] else None,
                    "ci95": list(ci) if ci else None,
                }
            continue
        mine = [t for t in targets if t.output == name]
        known = described.get(name) if described else None
        if (known is None or mine) and read_blocks is not None and _too_long(int(record.get("done") or 0)):
            from .streamed import ahead, summarise_blocks

            passes = ahead(partial(read_blocks, name))  # (a pass over the column, a block at a time)
            streamed, rows = summarise_blocks(passes, kind, mine, describe=known is None)
            target_rows.update((t.expr, row) for t, row in zip(mine, rows))
            known = streamed if known is None else known  # (``described`` is the caller's: never replaced)
        elif known is None or mine:  # (described already and no target on it: the column is not read)
            column = read_column(name)
            for t in mine:
                target_rows[t.expr] = target_summary(t, column)
            if known is None:
                known = describe(column, kind)
            del column
        outputs[name] = known
    summary = {
        "run": clean(record["id"]),
        "status": clean(record["status"]),
        "sequences": int(record.get("done") or 0),
        "seed": clean(record["seed"]),
        "params": clean(record["params"]),
        "outputs": outputs,  # (clean already: describe_moments made each; cleaning them again was most of clean's
        # 80 calls a summary, a tenth of a study's driver for 2,000 tiny points)
        "targets": clean(
            [target_rows.get(t.expr) or {"expr": t.expr, "probability": None, "ci95": None} for t in targets]
        ),
        "custom": clean(custom or {}),
        "failures": int(record.get("failures") or 0),
    }
    if trajectories:
        summary["trajectories"] = clean(trajectories)
    if goal is not None:
        summary["until"] = clean(goal)
    return summary
