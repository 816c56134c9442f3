"""The numbers behind a run's plots, shared by the web site (drawn in the browser) and the PDF report (Matplotlib).

Both show the same three pictures people expect of Monte Carlo output: a
histogram per output, the running mean with its 95% band against the number
of sequences (convergence), and target probabilities (already in the
summary). Computing them here once keeps the two views identical and keeps
the arithmetic out of templates and drawing code. Each function holds one
output column in memory, like the summary does, and returns a few hundred
JSON-able numbers, however many sequences the run has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .chunk import trajectory_steps
from .stats import Z95, clean, t975
from .streamed import Blocks, ahead, too_long

#: the most points a convergence curve carries: enough for a smooth line on a page or a screen
CURVE_POINTS = 200
#: integer outputs with at most this many distinct values get one bar per value
MAX_INTEGER_BARS = 60


#: values the plots take from a column at a time: their temporaries (a running count, two running sums) stay a few
#: MB whatever the run's length, instead of four times the column
PLOT_BLOCK = 1 << 20


def histogram(column: np.ndarray, kind: str, bins: int = 40) -> dict:
    """Bar edges and counts of one output; NaN and infinities are counted apart, not binned.

    Bools get two bars (false, true); integers with a narrow range one bar per
    value, centred on it, so a count of rounds never straddles two bars.
    """
    return column_plots(_in_blocks(np.asarray(column)), kind, bins=bins)["histogram"]


def convergence(column: np.ndarray, kind: str, points: int = CURVE_POINTS) -> dict:
    """The running mean of one output in sequence order, with its 95% interval, at up to ``points`` sizes.

    ``n`` counts the sequences read so far (NaN outputs included, as on the
    progress bar), the mean and band use the finite values among them: the
    same definitions as the summary (Student t for numbers, Wilson for bools),
    so the last point equals the summary's ``mean`` and ``ci95``. Sizes are
    spaced evenly on a log scale, where the band narrows, and always end at
    the whole run.
    """
    return column_plots(_in_blocks(np.asarray(column)), kind, points=points)["convergence"]


def _in_blocks(column: np.ndarray) -> Blocks:
    return lambda: (column[i : i + PLOT_BLOCK] for i in range(0, column.size, PLOT_BLOCK))


def column_plots(blocks: Blocks, kind: str, bins: int = 40, points: int = CURVE_POINTS) -> dict:
    """:func:`histogram` and :func:`convergence` of the column ``blocks()`` yields in order (each call a new pass):
    two passes, a block in memory, so a run too long to hold in memory still gets its plots. The numbers do not
    depend on how the column is cut: the running sums carry from block to block in the same order of additions."""
    scan = _Scan(kind)
    for block in blocks():
        scan.add(block)
    bars, edges = scan.bars(kind, bins)
    counts = np.zeros(0 if edges is None else len(edges) - 1, dtype=np.int64)
    curve = _Curve(scan, points)
    for block in blocks():
        if edges is not None:
            counts += np.histogram(block[np.isfinite(block)] if scan.nonfinite else block, bins=edges)[0]
        curve.add(block)
    if edges is not None:
        bars.update(edges=clean(edges), counts=counts.tolist(), nonfinite=scan.nonfinite)
    return {"histogram": bars, "convergence": curve.result()}


class _Scan:
    """The first pass: how many values, how many not finite, the finite extremes and first value, the trues."""

    def __init__(self, kind: str) -> None:
        self.total = self.nonfinite = self.trues = 0
        self.lo: Any = None
        self.hi: Any = None
        self.first: float | None = None
        self.is_bool = kind == "bool"

    def add(self, values: np.ndarray) -> None:
        if values.dtype == np.bool_:
            self.is_bool = True
        if self.is_bool:
            self.trues += int(np.count_nonzero(values))
        self.total += int(values.size)
        finite = np.isfinite(values) if values.dtype.kind == "f" else None
        if finite is not None and not finite.all():
            self.nonfinite += int(values.size - np.count_nonzero(finite))
            values = values[finite]
        if values.size:
            lo, hi = values.min(), values.max()
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
            if self.first is None:
                self.first = float(values[0])

    def bars(self, kind: str, bins: int) -> tuple[dict[str, Any], np.ndarray | None]:
        """The histogram, whole (and None), or its start and the edges whose counts the second pass makes."""
        if self.is_bool:
            trues = [self.total - self.trues, self.trues]
            return {"kind": "bool", "edges": [-0.5, 0.5, 1.5], "counts": trues, "nonfinite": 0}, None
        if self.lo is None:
            return {"kind": kind, "edges": [], "counts": [], "nonfinite": self.nonfinite}, None
        lo, hi = self.lo, self.hi
        if kind == "int":
            return {"kind": kind}, integer_edges(int(lo), int(hi), bins)
        if lo == hi:
            edges = np.array([float(lo) - 0.5, float(lo) + 0.5])
        else:
            edges = np.histogram_bin_edges(np.empty(0, np.asarray(lo).dtype), bins=bins, range=(float(lo), float(hi)))
        return {"kind": kind}, edges


def integer_edges(lo: int, hi: int, bins: int) -> np.ndarray:
    """Edges for integers ``lo``..``hi`` on half-integers, every bar holding the same number of integers.

    Bars of a fractional width would hold 3 or 4 integers by turns and draw a false comb over a smooth
    distribution; so a narrow range gets a bar per value and a wide one ``ceil(values / bins)`` values a bar
    (the last bar may reach past ``hi``).
    """
    values = hi - lo + 1
    width = 1 if values <= MAX_INTEGER_BARS else -(-values // bins)
    count = -(-values // width)
    return lo - 0.5 + width * np.arange(count + 1, dtype=np.float64)


class _Curve:
    """The second pass of :func:`convergence`: a running count and running sums about a shift, kept at the sizes."""

    def __init__(self, scan: _Scan, points: int):
        total = scan.total
        self.is_bool = scan.is_bool
        # cumulative sums around a shift: the variance of large, tightly spread values keeps its digits
        self.shift = scan.first if scan.first is not None else 0.0
        if total <= points:
            self.at = np.arange(total)
        else:
            self.at = np.unique(np.geomspace(1, total, num=points).round().astype(np.int64)) - 1
            self.at[-1] = total - 1
        self.n_ok = np.zeros(self.at.size, dtype=np.int64)
        self.a = np.zeros(self.at.size)
        self.b = np.zeros(self.at.size)
        self.start = 0
        self.carry = (0, 0.0, 0.0)

    def add(self, values: np.ndarray) -> None:
        if not values.size:
            return
        x = values.astype(np.float64)
        ok = np.isfinite(x)
        d = np.where(ok, x - self.shift, 0.0)
        squares = d * d
        count = np.cumsum(ok, dtype=np.int64)
        count += self.carry[0]
        d[0] += self.carry[1]  # (the running sums go on from the last block's, addition after addition)
        squares[0] += self.carry[2]
        s1, s2 = np.cumsum(d), np.cumsum(squares)
        here = (self.at >= self.start) & (self.at < self.start + x.size)
        local = self.at[here] - self.start
        self.n_ok[here], self.a[here], self.b[here] = count[local], s1[local], s2[local]
        self.carry = (int(count[-1]), float(s1[-1]), float(s2[-1]))
        self.start += x.size

    def result(self) -> dict:
        at, n_ok, a, b = self.at, self.n_ok, self.a, self.b
        if at.size == 0:
            return {"n": [], "mean": [], "low": [], "high": []}
        mean = np.full(at.size, np.nan)
        low = np.full(at.size, np.nan)
        high = np.full(at.size, np.nan)
        some = n_ok > 0
        mean[some] = self.shift + a[some] / n_ok[some]
        if self.is_bool:
            for j in np.flatnonzero(some):
                n = int(n_ok[j])
                p = mean[j]
                centre = (p + Z95 * Z95 / (2 * n)) / (1 + Z95 * Z95 / n)
                half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / (1 + Z95 * Z95 / n)
                low[j], high[j] = max(0.0, centre - half), min(1.0, centre + half)
        else:
            two = n_ok > 1
            with np.errstate(invalid="ignore"):
                var = np.maximum(b[two] - a[two] * a[two] / n_ok[two], 0.0) / (n_ok[two] - 1)
            halves = np.array([t975(int(n) - 1) for n in n_ok[two]]) * np.sqrt(var / n_ok[two])
            low[two] = mean[two] - halves
            high[two] = mean[two] + halves
        return clean({"n": (at + 1).tolist(), "mean": mean, "low": low, "high": high})


def run_plots(store, run_id: str, outputs: list[str] | None = None, bins: int = 40, points: int = CURVE_POINTS) -> dict:
    """Histogram and convergence data for each output of a stored run: one column in memory at a time, or for a run
    too long to hold (:func:`ancho.streamed.too_long`) one stored chunk at a time."""
    record = store.get_run(run_id)
    names = list(record.schema) if outputs is None else [n for n in outputs if n in record.schema]
    names = [n for n in names if trajectory_steps(record.schema[n]) is None]  # trajectories: see run_fans
    plots = {}
    for name in names:
        if too_long(int(record.done or 0)):
            blocks: Blocks = ahead(partial(store.iter_column, run_id, name))
        else:
            blocks = _in_blocks(store.read_column(run_id, name))
        plots[name] = {"kind": record.schema[name], **column_plots(blocks, record.schema[name], bins, points)}
        del blocks
    return plots


# -- trajectories: fan charts -----------------------------------------------------------
#: the most steps a fan chart carries (evenly spaced, the last always in): a line no screen or page resolves finer
FAN_STEPS = 400
#: sample paths drawn over a fan: enough to see what one path looks like, few enough to see the fan
FAN_PATHS = 5


@dataclass(frozen=True)
class Fan:
    """The numbers of one trajectory output's fan chart, for the web page and the PDF alike.

    Per drawn step (``steps``, 0-based step numbers): the median, the 50%
    band (p25–p75), the 90% band (p5–p95) and the mean with its 95% interval,
    all taken from the run summary's per-step statistics (never recomputed);
    ``paths`` are the values of the run's first ``len(paths)`` sequences
    (``path_sequences``) at the same steps. None stands for a step with no
    finite value.
    """

    name: str
    total_steps: int
    count: int
    steps: list[int]
    median: list[float | None]
    p25: list[float | None]
    p75: list[float | None]
    p5: list[float | None]
    p95: list[float | None]
    mean: list[float | None]
    mean_low: list[float | None]
    mean_high: list[float | None]
    path_sequences: list[int] = field(default_factory=list)
    paths: list[list[float | None]] = field(default_factory=list)


def fan_steps(total: int, points: int = FAN_STEPS) -> np.ndarray:
    """Which steps of ``total`` a fan chart draws: all up to ``points``, else ``points`` evenly spaced, first and last in."""
    if total <= points:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, num=points).round().astype(np.int64))


def fan(name: str, stats: dict, paths: np.ndarray | None = None, sequences=(), points: int = FAN_STEPS) -> Fan:
    """One trajectory's fan from its summary entry (``summary["trajectories"][name]``) and a few rows of its values."""
    total = int(stats.get("steps") or len(stats.get("mean") or []))
    at = fan_steps(total, points)

    def pick(key: str) -> list[float | None]:
        values = np.asarray([np.nan if v is None else v for v in (stats.get(key) or [])], dtype=np.float64)
        if values.size != total:
            return [None] * at.size
        return clean(values[at])

    rows = [] if paths is None else [clean(np.asarray(row, dtype=np.float64)[at]) for row in paths]
    return Fan(
        name=name,
        total_steps=total,
        count=int(stats.get("count") or 0),
        steps=at.tolist(),
        median=pick("p50"),
        p25=pick("p25"),
        p75=pick("p75"),
        p5=pick("p5"),
        p95=pick("p95"),
        mean=pick("mean"),
        mean_low=pick("ci95_low"),
        mean_high=pick("ci95_high"),
        path_sequences=[int(s) for s in sequences][: len(rows)],
        paths=rows,
    )


def first_paths(store, run_id: str, name: str, count: int = FAN_PATHS) -> tuple[np.ndarray, list[int]]:
    """The first ``count`` sequences' values of a trajectory and their sequence numbers, reading only the first chunks."""
    from .columns import to_numpy

    rows: list[np.ndarray] = []
    numbers: list[int] = []
    held = 0
    for batch in store.iter_batches(run_id, ["sequence", name]):
        take = min(count - held, batch.num_rows)
        if take <= 0:
            break
        part = batch.slice(0, take)
        rows.append(to_numpy(part.column(1)))
        numbers += to_numpy(part.column(0)).tolist()
        held += take
        if held >= count:
            break
    steps = trajectory_steps(store.get_run(run_id).schema.get(name, "")) or 0
    return (np.concatenate(rows) if rows else np.empty((0, steps))), numbers


def run_fans(store, run_id: str, summary: dict | None = None, paths: int = FAN_PATHS) -> list[Fan]:
    """A :class:`Fan` per trajectory output of a stored run (its summary's statistics, its first sequences' paths)."""
    record = store.get_run(run_id)
    summary = record.summary if summary is None else summary
    found = (summary or {}).get("trajectories") or {}
    fans = []
    for name, kind in record.schema.items():
        if trajectory_steps(kind) is None or name not in found:
            continue
        values, numbers = first_paths(store, run_id, name, paths) if paths else (None, [])
        fans.append(fan(name, found[name], values, numbers))
    return fans
