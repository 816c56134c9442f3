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

import numpy as np

from .stats import Z95, clean, t975

#: the most points a convergence curve carries: enough for a smooth line on a page or a screen
CURVE_POINTS = 200
#: integer outputs with at most this many distinct values get one bar per value
MAX_INTEGER_BARS = 60


def histogram(column: np.ndarray, kind: str, bins: int = 40) -> dict:
    """Bar edges and counts of one output; NaN and infinities are counted apart, not binned.

    Bools get two bars (false, true); integers with a narrow range one bar per
    value, centred on it, so a count of rounds never straddles two bars.
    """
    values = np.asarray(column)
    if kind == "bool" or values.dtype == np.bool_:
        trues = int(np.count_nonzero(values))
        return {"kind": "bool", "edges": [-0.5, 0.5, 1.5], "counts": [int(values.size) - trues, trues], "nonfinite": 0}
    finite = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, dtype=bool)
    nonfinite = int(values.size - np.count_nonzero(finite))
    values = values[finite] if nonfinite else values
    if values.size == 0:
        return {"kind": kind, "edges": [], "counts": [], "nonfinite": nonfinite}
    lo, hi = values.min(), values.max()
    if kind == "int" and int(hi) - int(lo) < MAX_INTEGER_BARS:
        edges = np.arange(int(lo), int(hi) + 2, dtype=np.float64) - 0.5
    elif lo == hi:
        edges = np.array([float(lo) - 0.5, float(lo) + 0.5])
    else:
        edges = np.histogram_bin_edges(values, bins=bins, range=(float(lo), float(hi)))
    counts, edges = np.histogram(values, bins=edges)
    return {"kind": kind, "edges": clean(edges), "counts": counts.tolist(), "nonfinite": nonfinite}


def convergence(column: np.ndarray, kind: str, points: int = CURVE_POINTS) -> dict:
    """The running mean of one output in sequence order, with its 95% interval, at up to ``points`` sizes.

    ``n`` counts the sequences read so far (NaN outputs included, as on the
    progress bar), the mean and band use the finite values among them: the
    same definitions as the summary (Student t for numbers, Wilson for bools),
    so the last point equals the summary's ``mean`` and ``ci95``. Sizes are
    spaced evenly on a log scale, where the band narrows, and always end at
    the whole run.
    """
    values = np.asarray(column)
    total = int(values.size)
    if total == 0:
        return {"n": [], "mean": [], "low": [], "high": []}
    x = values.astype(np.float64)
    ok = np.isfinite(x)
    x = np.where(ok, x, 0.0)
    # cumulative sums around a shift: the variance of large, tightly spread values keeps its digits
    shift = float(x[ok][0]) if ok.any() else 0.0
    d = np.where(ok, x - shift, 0.0)
    count = np.cumsum(ok, dtype=np.int64)
    s1 = np.cumsum(d)
    s2 = np.cumsum(d * d)
    if total <= points:
        at = np.arange(total)
    else:
        at = np.unique(np.geomspace(1, total, num=points).round().astype(np.int64)) - 1
        at[-1] = total - 1
    n_ok, a, b = count[at], s1[at], s2[at]
    mean = np.full(at.size, np.nan)
    low = np.full(at.size, np.nan)
    high = np.full(at.size, np.nan)
    some = n_ok > 0
    mean[some] = shift + a[some] / n_ok[some]
    if kind == "bool" or values.dtype == np.bool_:
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
        half = np.array([t975(int(n) - 1) for n in n_ok[two]]) * np.sqrt(var / n_ok[two])
        low[two] = mean[two] - half
        high[two] = mean[two] + half
    return clean({"n": (at + 1).tolist(), "mean": mean, "low": low, "high": high})


def run_plots(store, run_id: str, outputs: list[str] | None = None, bins: int = 40, points: int = CURVE_POINTS) -> dict:
    """Histogram and convergence data for each output of a stored run (one column in memory at a time)."""
    record = store.get_run(run_id)
    names = list(record.schema) if outputs is None else [n for n in outputs if n in record.schema]
    plots = {}
    for name in names:
        kind = record.schema[name]
        column = store.read_column(run_id, name)
        plots[name] = {
            "kind": kind,
            "histogram": histogram(column, kind, bins),
            "convergence": convergence(column, kind, points),
        }
        del column
    return plots
