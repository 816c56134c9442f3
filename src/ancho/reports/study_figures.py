"""Matplotlib pictures of a study for its PDF: outputs against the design's parameters, mean paths, sensitivity, comparisons.

Which picture depends on how many parameters the design varies, as on the
study web page: one — each output's mean with its 95% band (each target's
probability with its interval) against the parameter; two — a heatmap of the
mean (cells for a full grid, coloured points otherwise); more — parallel
coordinates, one line per point coloured by the mean. Every number comes from
the points table or the study summary; this module only draws. Figures use
the Agg canvas, never pyplot (see :mod:`.figures`).
"""

from __future__ import annotations

import math
from typing import Any

from .figures import BAR, LINE, png, style_axes
from .study_facts import MeanPath

#: (width, height) in inches: a full A4 text width
WIDE = (7.0, 2.6)
TALL = (7.0, 3.4)


def _figure(size: tuple[float, float]):
    from .figures import new_figure

    return new_figure(size=size)


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)


def _axis(values: list) -> tuple[list[float], list[str] | None]:
    """Positions on an axis: the numbers themselves, or 0, 1, 2… for choices (returned as tick labels)."""
    if _numeric(values):
        return [math.nan if v is None else float(v) for v in values], None
    labels = list(dict.fromkeys(str(v) for v in values))
    return [float(labels.index(str(v))) for v in values], labels


def _f(v: Any) -> float:
    return math.nan if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def against_one(frame, parameter: str, columns: tuple[str, str, str], label: str) -> bytes:
    """A mean or probability with its 95% interval (``columns``: value, low, high) against the one varied ``parameter``."""
    fig = _figure(WIDE)
    ax = fig.subplots()
    rows = sorted(frame[[parameter, *columns]].itertuples(index=False), key=_sort_key)
    x, labels = _axis([r[0] for r in rows])
    mean, low, high = ([_f(r[k]) for r in rows] for k in (1, 2, 3))
    if labels is None and len(x) > 1:
        ax.fill_between(x, low, high, color=LINE, alpha=0.2, linewidth=0, label="95% CI")
        ax.plot(x, mean, color=LINE, linewidth=1.2, marker="o", markersize=2.5, label="mean")
    else:
        err = [[max(0.0, m - lo) for m, lo in zip(mean, low)], [max(0.0, hi - m) for m, hi in zip(mean, high)]]
        ax.errorbar(x, mean, yerr=err, fmt="o", color=LINE, markersize=3, capsize=3, linewidth=1)
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(parameter, fontsize=8)
    ax.set_title(f"{label} with its 95% interval, by {parameter}", fontsize=9, loc="left")
    return _done(fig, [ax])


def _sort_key(row) -> tuple:
    v = row[0]
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def heatmap(frame, parameters: list[str], column: str, label: str) -> bytes:
    """The mean of ``column`` over two parameters: cells when the points form a grid, coloured points otherwise."""
    import numpy as np

    a, b = parameters
    fig = _figure(TALL)
    ax = fig.subplots()
    xa, la = _axis(frame[a].tolist())
    xb, lb = _axis(frame[b].tolist())
    z = [_f(v) for v in frame[column].tolist()]
    ua, ub = sorted(set(xa)), sorted(set(xb))
    if len(ua) * len(ub) <= 4 * len(z) and len(ua) <= 60 and len(ub) <= 60:
        grid = np.full((len(ub), len(ua)), np.nan)
        sums: dict[tuple[int, int], list[float]] = {}
        for i, j, v in zip(xa, xb, z):
            sums.setdefault((ua.index(i), ub.index(j)), []).append(v)
        for (i, j), vs in sums.items():
            grid[j, i] = float(np.nanmean(vs)) if any(not math.isnan(v) for v in vs) else np.nan
        mesh = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(ua)), la if la else [_tick(v) for v in ua], fontsize=7)
        ax.set_yticks(range(len(ub)), lb if lb else [_tick(v) for v in ub], fontsize=7)
        for i, j in sums:
            if len(ua) * len(ub) <= 64 and not math.isnan(grid[j, i]):
                ax.text(i, j, f"{grid[j, i]:.3g}", ha="center", va="center", fontsize=6.5, color="white")
    else:
        mesh = ax.scatter(xa, xb, c=z, cmap="viridis", s=14, edgecolors="none")
        if la:
            ax.set_xticks(range(len(la)), la)
        if lb:
            ax.set_yticks(range(len(lb)), lb)
    fig.colorbar(mesh, ax=ax, pad=0.01).ax.tick_params(labelsize=7)
    ax.set_xlabel(a, fontsize=8)
    ax.set_ylabel(b, fontsize=8)
    ax.set_title(f"{label}: mean by {a} and {b}", fontsize=9, loc="left")
    return _done(fig, [ax], grid=False)


def _tick(v: float) -> str:
    return f"{v:.3g}"


def parallel(frame, parameters: list[str], column: str, label: str) -> bytes:
    """Parallel coordinates: an axis per parameter (scaled to its range) and one for the mean; a line per point."""
    import numpy as np
    from matplotlib.collections import LineCollection

    fig = _figure(TALL)
    ax = fig.subplots()
    axes = [*parameters, column]
    scaled, ends = [], []
    for name in axes:
        x, labels = _axis(frame[name].tolist())
        arr = np.asarray(x, dtype=float)
        lo, hi = (np.nanmin(arr), np.nanmax(arr)) if np.isfinite(arr).any() else (0.0, 1.0)
        scaled.append((arr - lo) / (hi - lo) if hi > lo else np.full(arr.shape, 0.5))
        ends.append((labels[0], labels[-1]) if labels else (_tick(lo), _tick(hi)))
    ys = np.column_stack(scaled)
    segments = [np.column_stack([np.arange(len(axes)), row]) for row in ys]
    values = np.asarray([_f(v) for v in frame[column].tolist()])
    lines = LineCollection(segments, array=values, cmap="viridis", linewidths=0.8, alpha=0.7)
    ax.add_collection(lines)
    fig.colorbar(lines, ax=ax, pad=0.01).ax.tick_params(labelsize=7)
    for k, (lo, hi) in enumerate(ends):
        ax.axvline(k, color="0.3", linewidth=0.6)
        ax.text(k, -0.06, lo, ha="center", va="top", fontsize=6.5)
        ax.text(k, 1.06, hi, ha="center", va="bottom", fontsize=6.5)
    ax.set_xlim(-0.2, len(axes) - 0.8)
    ax.set_ylim(-0.15, 1.15)
    ax.set_xticks(range(len(axes)), [*parameters, f"{label} mean"], fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"{label}: parallel coordinates, a line per point", fontsize=9, loc="left")
    return _done(fig, [ax], grid=False)


def mean_paths(name: str, paths: list[MeanPath], colour_by: dict[int, float] | None = None) -> bytes:
    """Each point's mean path of trajectory ``name`` (coloured by the one varied parameter when there is one)."""
    import numpy as np
    from matplotlib.collections import LineCollection

    fig = _figure(WIDE)
    ax = fig.subplots()
    segments = [np.column_stack([p.steps, [_f(v) for v in p.mean]]) for p in paths]
    if colour_by:
        lines = LineCollection(segments, array=[colour_by.get(p.point, math.nan) for p in paths], cmap="viridis")
        fig.colorbar(lines, ax=ax, pad=0.01).ax.tick_params(labelsize=7)
    else:
        lines = LineCollection(segments, color=BAR, alpha=0.6)
    lines.set_linewidth(0.8)
    ax.add_collection(lines)
    ax.autoscale_view()
    ax.set_xlabel("step", fontsize=8)
    ax.set_title(f"{name}: mean path of each of {len(paths)} points", fontsize=9, loc="left")
    return _done(fig, [ax])


def sensitivity_bars(name: str, entry: dict) -> bytes:
    """The indices of one output (Sobol S1 and ST, or Morris mu_star) per parameter, as bars with 95% intervals."""
    fig = _figure(WIDE)
    ax = fig.subplots()
    keys = ["S1", "ST"] if entry.get("method") == "sobol" else ["mu_star"]
    names = list((entry.get(keys[0]) or {}).keys())
    height = 0.8 / len(keys)
    for k, key in enumerate(keys):
        ys = [i + (k - (len(keys) - 1) / 2) * height for i in range(len(names))]
        vals = [_f(entry[key][n]["value"]) for n in names]
        cis = [entry[key][n].get("ci95") or [math.nan, math.nan] for n in names]
        err = [[max(0.0, v - _f(c[0])) for v, c in zip(vals, cis)], [max(0.0, _f(c[1]) - v) for v, c in zip(vals, cis)]]
        ax.barh(ys, vals, height=height * 0.9, xerr=err, color=(BAR, LINE)[k], alpha=0.85, label=key, capsize=2)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", linewidth=0.6)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_title(f"{name}: {' and '.join(keys)} with bootstrap 95% intervals", fontsize=9, loc="left")
    return _done(fig, [ax])


def differences(name: str, rows: list[tuple[int, float, list]]) -> bytes:
    """Each point's difference from the baseline, with its 95% interval ((point, difference, ci95) rows)."""
    fig = _figure(WIDE)
    ax = fig.subplots()
    x = [r[0] for r in rows]
    d = [_f(r[1]) for r in rows]
    err = [[max(0.0, v - _f(r[2][0])) for v, r in zip(d, rows)], [max(0.0, _f(r[2][1]) - v) for v, r in zip(d, rows)]]
    ax.errorbar(x, d, yerr=err, fmt="o", color=LINE, markersize=2.5, capsize=2, linewidth=0.8)
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.set_xlabel("point", fontsize=8)
    ax.set_title(f"{name}: difference from the baseline, 95% interval", fontsize=9, loc="left")
    return _done(fig, [ax])


def _done(fig, axes: list, grid: bool = True) -> bytes:
    for ax in axes:
        style_axes(ax, grid)
    fig.subplots_adjust(left=0.09, right=0.985, bottom=0.17, top=0.9)
    return png(fig)
