"""Sensitivity analysis of a study (SALib): which parameters move each output, with bootstrap 95% intervals.

Computed from the points table alone (one row per point, a few numbers per
output), so memory is bounded by the number of points, never by sequences.

- ``sobol`` designs: first-order ``S1`` and total ``ST`` indices (and ``S2``
  when the design was sampled with ``calc_second_order``), by
  ``SALib.analyze.sobol.analyze`` on the point means in design order.
- ``morris`` designs: ``mu_star`` (with an interval) and ``sigma`` by
  ``SALib.analyze.morris.analyze``, X being the design's unit-cube sample, so
  an elementary effect is the change of the output over a whole range.

SALib's ``*_conf`` are half-widths at ``conf_level``; we report
``ci95: [value - h, value + h]``. The bootstrap is seeded with the design's
seed, so the same study always gives the same summary.

Why ``noise_share``: a point's mean of a stochastic model is itself noisy; the
indices treat that noise as if a parameter caused it. mean(std²/count) over
points divided by the variance of the point means says how much of what the
indices split is replication noise (0: none; 1: the points do not differ
beyond noise). Why ``warning``: intervals that overlap at the top (or are
wider than 0.5) cannot rank the parameters, and a user should know the fix.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .designs import Design

#: bootstrap resamples for the intervals (SALib's default)
RESAMPLES = 100
#: an interval wider than this (in index units; for Morris, relative to the largest mu_star) cannot rank anything
WIDE = 0.5
#: above this noise share the warning also suggests more sequences per point
NOISY = 0.1
KINDS = ("sobol", "morris")


def _interval(value: float, half: float) -> dict:
    return {"value": float(value), "ci95": [float(value - half), float(value + half)]}


def noise_share(means: np.ndarray, stds: np.ndarray | None, counts: np.ndarray | None) -> float | None:
    """mean over points of std²/count, over the variance of the point means (at most 1; None when undefined)."""
    if stds is None or counts is None or len(means) < 2:
        return None
    spread = float(np.var(means, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = float(np.nanmean(np.where(counts > 0, stds**2 / counts, np.nan)))
    if not np.isfinite(noise):
        return None
    if spread <= 0:
        return None if noise <= 0 else 1.0
    return min(noise / spread, 1.0)


def _sobol(design: Design, problem: dict, y: np.ndarray) -> dict:
    from SALib.analyze import sobol

    r = sobol.analyze(
        problem, y, calc_second_order=design.calc_second_order, num_resamples=RESAMPLES, conf_level=0.95,
        seed=design.seed,
    )  # fmt: skip
    names = problem["names"]
    out: dict[str, Any] = {
        "method": "sobol",
        "S1": {n: _interval(r["S1"][i], r["S1_conf"][i]) for i, n in enumerate(names)},
        "ST": {n: _interval(r["ST"][i], r["ST_conf"][i]) for i, n in enumerate(names)},
    }
    if design.calc_second_order:
        out["S2"] = {
            a: {names[j]: _interval(r["S2"][i, j], r["S2_conf"][i, j]) for j in range(i + 1, len(names))}
            for i, a in enumerate(names[:-1])
        }
    return out


def _morris(design: Design, problem: dict, x: np.ndarray, y: np.ndarray) -> dict:
    from SALib.analyze import morris

    r = morris.analyze(
        problem, x, y, num_resamples=RESAMPLES, conf_level=0.95, num_levels=design.levels, seed=design.seed
    )
    names = problem["names"]
    return {
        "method": "morris",
        "mu_star": {n: _interval(r["mu_star"][i], r["mu_star_conf"][i]) for i, n in enumerate(names)},
        "sigma": {n: float(r["sigma"][i]) for i, n in enumerate(names)},
    }


def _warning(entry: dict, design: Design, share: float | None) -> str | None:
    """Say so when the intervals cannot rank the parameters, and what would fix it."""
    ranked = entry["ST"] if entry["method"] == "sobol" else entry["mu_star"]
    scale = 1.0
    if entry["method"] == "morris":
        scale = max((abs(v["value"]) for v in ranked.values()), default=0.0) or 1.0
    which = "ST" if entry["method"] == "sobol" else "mu_star"
    order = sorted(ranked, key=lambda n: ranked[n]["value"], reverse=True)
    reasons = []
    if len(order) >= 2 and ranked[order[0]]["ci95"][0] <= ranked[order[1]]["ci95"][1]:
        reasons.append(f"the two largest ({order[0]}, {order[1]}) have overlapping {which} intervals")
    widths = [
        ((v["ci95"][1] - v["ci95"][0]) / scale, key, n)
        for key in (("S1", "ST") if entry["method"] == "sobol" else ("mu_star",))
        for n, v in entry[key].items()
    ]
    width, key, name = max(widths)
    if width > WIDE:
        reasons.append(f"the {key} interval of {name} is {width:.2f} wide")
    if not reasons:
        return None
    bigger = f"sobol n={design.n * 4}" if design.kind == "sobol" else f"morris trajectories={design.n * 4}"
    text = f"intervals too wide to rank the parameters ({'; '.join(reasons)}): use a larger design ({bigger})"
    if share is not None and share > NOISY:
        text += f" or more sequences per point (replication noise is {share:.0%} of the variance across points)"
    return text


def analyze(design: Design, table: Any, outputs: list[str], targets: list[str]) -> dict:
    """The summary's ``sensitivity`` object for ``design`` (sobol or morris) from its points ``table``.

    ``table`` (a DataFrame, one row per point in design order) holds, per
    output, ``NAME.mean`` and optionally ``NAME.std`` and ``NAME.count``; per
    target ``p(EXPR)`` and optionally ``p(EXPR).count``. An output missing at
    any point (a failed point, an output not every point returned) or equal at
    every point is left out: the estimators need every point of the design.
    """
    if design.kind not in KINDS or len(table) != design.size:
        return {}
    names = list(design.ranges)
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    x = design.unit_sample() if design.kind == "morris" else None
    columns: list[tuple[str, str, str | None, str]] = [
        (name, f"{name}.mean", f"{name}.std", f"{name}.count") for name in outputs
    ]
    columns += [(f"p({e})", f"p({e})", None, f"p({e}).count") for e in targets]
    out: dict[str, Any] = {}
    for key, mean_col, std_col, count_col in columns:
        if mean_col not in table:
            continue
        y = np.asarray(table[mean_col], dtype=float)
        if not np.all(np.isfinite(y)) or np.ptp(y) == 0:
            continue
        counts = np.asarray(table[count_col], dtype=float) if count_col in table else None
        if std_col is None:  # a probability's per-point variance is p(1 - p)
            stds = np.sqrt(y * (1 - y))
        else:
            stds = np.asarray(table[std_col], dtype=float) if std_col in table else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            entry = _sobol(design, problem, y) if x is None else _morris(design, problem, x, y)
        share = noise_share(y, stds, counts)
        entry["noise_share"] = share
        warning = _warning(entry, design, share)
        if warning:
            entry["warning"] = warning
        out[key] = entry
    return out
