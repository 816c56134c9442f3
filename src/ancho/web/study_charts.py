"""A study page's pictures as inline SVG, drawn on the server from the points table (see :mod:`.charts` for why SVG).

Which picture depends on how many parameters the design varies: one → each
output's mean with its 95% band (and each target's probability with its
interval) against the parameter; two → a heatmap of the mean (cells for a
grid, dots for a sampled design); more → parallel coordinates. Sensitivity
indices and a comparison with a baseline point are bars and whiskers. Every
picture has a title and a text description, and each mark a native tooltip.
Axes, scales and frames are :mod:`.charts`' own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from ..present import number
from .charts import (
    MB,
    ML,
    MR,
    MT,
    H,
    W,
    _axes,
    _columns_grid,
    _frame,
    _left,
    _rows_layout,
    _Scale,
    fmt,
    tick_step,
    ticks,
)
from .labels import GAP, fits, placed, shorten, slots, text_width
from .labels import label as text_label

#: parallel coordinates draw at most this many points (evenly spaced); the caption says when some are left out
MAX_LINES = 400
#: a picture marks at most this many points with a dot, whisker and tooltip (evenly spaced; lines and bands use all,
#: thinned to MAX_LINES vertices), so a 2,000-point study's page stays small; the description says so
MAX_MARKS = 120
#: a comparison draws at most this many points: those with the largest differences (the table lists more)
MAX_ROWS = 40


def _every(items: list, most: int) -> list:
    """At most ``most`` of ``items``, evenly spaced, the first and last included."""
    if len(items) <= most:
        return items
    step = (len(items) - 1) / (most - 1)
    return [items[round(k * step)] for k in range(most)]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positions(xs: Sequence) -> tuple[list[float], list[tuple[float, str]], float, float]:
    """x coordinates for values (numbers as they are; anything else by order of first appearance) and their ticks."""
    if all(_finite(x) for x in xs):
        lo, hi = min(xs), max(xs)
        return [float(x) for x in xs], [(v, fmt(v)) for v in ticks(lo, hi, 6)], lo, hi
    levels = list(dict.fromkeys(str(x) for x in xs))
    return (
        [float(levels.index(str(x))) for x in xs],
        [(float(i), s) for i, s in enumerate(levels)],
        -0.5,
        len(levels) - 0.5,
    )


def _outward(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] a little wider, out to the round ticks around it: the intervals' ends sit inside the plot, below
    its top tick and above its bottom one, rather than on (or past) its edges."""
    pad = (hi - lo) * 0.02 or abs(hi) * 0.02 or 1.0
    t = ticks(lo - pad, hi + pad, 8)  # (finer than the labelled ticks: little room is spent)
    if len(t) < 2:
        return lo - pad, hi + pad
    step = t[1] - t[0]
    return math.floor((lo - pad) / step + 1e-9) * step, math.ceil((hi + pad) / step - 1e-9) * step


def band_svg(param: str, name: str, xs: Sequence, mean: Sequence, low: Sequence, high: Sequence, probability: bool = False) -> Markup | None:  # fmt: skip
    """``name``'s mean (or probability) at each point against ``param``, with its 95% interval as a band and whiskers."""
    rows = sorted(
        ((x, m, lo, hi) for x, m, lo, hi in zip(xs, mean, low, high) if _finite(m)),
        key=lambda r: (not _finite(r[0]), r[0] if _finite(r[0]) else str(r[0])),
    )
    if not rows:
        return None
    px, xt, xlo, xhi = _positions([r[0] for r in rows])
    ys = [v for r in rows for v in r[1:] if _finite(v)]  # the means and their intervals' ends
    ylo, yhi = (0.0, 1.0) if probability else _outward(min(ys), max(ys))
    yt = [(v, f"{v:.0%}" if probability else fmt(v)) for v in ticks(ylo, yhi, 4)]
    x = _Scale(xlo, xhi, _left(yt), W - MR)
    y = _Scale(ylo, yhi, H - MB, MT)
    body = _axes(x, y, xt, yt)
    band = _every([(p, r[2], r[3]) for p, r in zip(px, rows) if _finite(r[2]) and _finite(r[3])], MAX_LINES)
    if len(band) > 1 and all(_finite(r[0]) for r in rows):
        upper = " ".join(f"{x(p)},{y(hi)}" for p, _, hi in band)
        lower = " ".join(f"{x(p)},{y(lo)}" for p, lo, _ in reversed(band))
        body.append(f'<polygon class="band" points="{upper} {lower}"><title>95% intervals</title></polygon>')
        line = _every(list(zip(px, rows)), MAX_LINES)
        body.append(f'<polyline class="line" points="{" ".join(f"{x(p)},{y(r[1])}" for p, r in line)}"/>')
    marked = _every(list(zip(px, rows)), MAX_MARKS)
    for p, (v, m, lo, hi) in marked:
        ci = f", 95% CI {fmt(lo)} to {fmt(hi)}" if _finite(lo) and _finite(hi) else ""
        if ci:
            body.append(f'<line class="whisker" x1="{x(p)}" x2="{x(p)}" y1="{y(lo)}" y2="{y(hi)}"/>')
        body.append(
            f'<circle class="dot" cx="{x(p)}" cy="{y(m)}" r="3.5"><title>{escape(param)} = {escape(fmt(v) if _finite(v) else v)}: '
            f"{escape(name)} {fmt(m)}{ci}</title></circle>"
        )
    what = f"Probability of {name}" if probability else f"Mean of {name}"
    some = f" ({len(marked)} of them marked)" if len(marked) < len(rows) else ""
    desc = f"{what} at {len(rows)} values of {param}{some}, from {fmt(min(r[1] for r in rows))} to {fmt(max(r[1] for r in rows))}; bands and whiskers are 95% intervals."
    ylabel = "probability" if probability else f"mean of {name}"
    return _frame(f"{what} against {param}", desc, body, param, ylabel, left=x.a)


def heatmap_svg(px: str, py: str, name: str, xs: Sequence, ys: Sequence, values: Sequence) -> Markup | None:
    """``name``'s mean over two parameters: a cell per grid point (or a dot per sampled point), darker is higher."""
    rows = [(a, b, v) for a, b, v in zip(xs, ys, values) if _finite(v)]
    if not rows:
        return None
    ax, xt, xlo, xhi = _positions([r[0] for r in rows])
    ay, yt, ylo, yhi = _positions([r[1] for r in rows])
    lo, hi = min(r[2] for r in rows), max(r[2] for r in rows)
    grid = len({(a, b) for a, b in zip(ax, ay)}) == len(rows) and len(set(ax)) * len(set(ay)) == len(rows)
    if grid:  # cells centred on each value, half a step beyond the outermost
        ux, uy = sorted(set(ax)), sorted(set(ay))
        sx = (ux[-1] - ux[0]) / (len(ux) - 1) if len(ux) > 1 else 1.0
        sy = (uy[-1] - uy[0]) / (len(uy) - 1) if len(uy) > 1 else 1.0
        xlo, xhi, ylo, yhi = ux[0] - sx / 2, ux[-1] + sx / 2, uy[0] - sy / 2, uy[-1] + sy / 2
    x = _Scale(xlo, xhi, _left(yt), W - MR)
    y = _Scale(ylo, yhi, H - MB, MT)
    body = _axes(x, y, xt, yt)
    marked = list(zip(ax, ay, rows)) if grid else _every(list(zip(ax, ay, rows)), MAX_LINES)
    for a, b, (va, vb, v) in marked:
        shade = 0.12 + 0.88 * ((v - lo) / (hi - lo) if hi > lo else 1.0)
        tip = f"<title>{escape(px)} = {escape(fmt(va) if _finite(va) else va)}, {escape(py)} = {escape(fmt(vb) if _finite(vb) else vb)}: mean {fmt(v)}</title>"
        if grid:
            x0, x1, y0, y1 = x(a - sx / 2), x(a + sx / 2), y(b + sy / 2), y(b - sy / 2)
            body.append(
                f'<rect class="heat" x="{x0}" y="{y0}" width="{round(x1 - x0, 2)}" height="{round(y1 - y0, 2)}" fill-opacity="{shade:.3f}">{tip}</rect>'
            )
        else:
            body.append(f'<circle class="heat" cx="{x(a)}" cy="{y(b)}" r="5" fill-opacity="{shade:.3f}">{tip}</circle>')
    some = f" ({len(marked)} drawn)" if len(marked) < len(rows) else ""
    desc = f"Mean of {name} over {px} and {py} at {len(rows)} points{some}: from {fmt(lo)} (lightest) to {fmt(hi)} (darkest)."
    return _frame(f"Mean of {name} over {px} and {py}", desc, body, px, py, left=x.a)


def parallel_svg(params: list[str], name: str, columns: dict[str, Sequence], values: Sequence) -> Markup | None:
    """Parallel coordinates: an axis per parameter and one for ``name``'s mean; a line per point, darker is higher."""
    keep = [i for i, v in enumerate(values) if _finite(v)]
    if not keep or not params:
        return None
    shown = keep[:: max(1, math.ceil(len(keep) / MAX_LINES))]
    axes = [*params, f"mean of {name}"]
    data = [*(list(columns[p]) for p in params), list(values)]
    ranges = [_positions([col[i] for i in keep]) for col in data]
    ends = [(lo, hi) for _, _, lo, hi in ranges]
    # the last axis's lowest and highest values are written right of it: the margin holds them
    right = max(MR, GAP + max(text_width(fmt(v)) for v in ends[-1]) + 2)
    step = (W - ML - right) / (len(axes) - 1)
    xs = [round(ML + k * step, 2) for k in range(len(axes))]
    scales = [(dict(zip(keep, pos)), _Scale(lo, hi, H - MB, MT)) for pos, _, lo, hi in ranges]
    body: list[str] = []
    for ax in xs:
        body.append(f'<line class="axis" x1="{ax}" x2="{ax}" y1="{MT}" y2="{H - MB}"/>')
    body += _axis_names(axes, xs)
    for ax, (lo, hi), (_, s) in zip(xs, ends, scales):
        for v, dy in ((lo, -4), (hi, 12)):
            body.append(_axis_value(v, ax, s(v) + dy, step - 4 - GAP))
    vlo, vhi = min(values[i] for i in keep), max(values[i] for i in keep)
    for i in shown:
        pts = " ".join(f"{xs[k]},{s(pos[i])}" for k, (pos, s) in enumerate(scales))
        shade = 0.15 + 0.85 * ((values[i] - vlo) / (vhi - vlo) if vhi > vlo else 1.0)
        tip = ", ".join(f"{p} = {fmt(columns[p][i]) if _finite(columns[p][i]) else columns[p][i]}" for p in params)
        body.append(f'<polyline class="pc" points="{pts}" stroke-opacity="{shade:.3f}"><title>{escape(tip)}: mean {fmt(values[i])}</title></polyline>')  # fmt: skip
    more = f" ({len(shown)} of {len(keep)} drawn)" if len(shown) < len(keep) else ""
    desc = f"One line per point{more} across {', '.join(params)} to the mean of {name} ({fmt(vlo)} to {fmt(vhi)}); darker lines have higher means."
    return _frame(f"Parallel coordinates of {name}", desc, body, "", "")


def _axis_names(names: list[str], xs: list[float]) -> list[str]:
    """Parallel coordinates' axis names under their axes, never over a neighbour's: in one row when all fit, else
    in two staggered rows (twice the room); a name still too long is cut, whole in its tooltip."""
    rows = [list(range(len(names)))]
    if not all(fits(text_width(t), room) for t, (_, room) in zip(names, slots(xs, 2, W - 2))):
        rows = [list(range(0, len(names), 2)), list(range(1, len(names), 2))]
    out = []
    for r, row in enumerate(rows):
        for k, slot in zip(row, slots([xs[k] for k in row], 2, W - 2)):
            _, cx = placed(names[k], xs[k], slot)
            out.append(text_label(names[k], slot[1], class_="tick", x=cx, y=H - MB + 18 + 20 * r, text_anchor="middle"))
    return out


def _axis_value(v: Any, ax: float, y: float, room: float) -> str:
    """A parallel axis's lowest or highest value right of it, with fewer digits when the next axis is close."""
    text = fmt(v)
    for digits in (3, 2):
        if fits(text_width(text), room) or not _finite(v):
            break
        text = number(v, digits)
    tip = f"<title>{escape(fmt(v))}</title>" if text != fmt(v) else ""
    return f'<text class="tick" x="{round(ax + 4, 2)}" y="{y}">{tip}{escape(text)}</text>'


def _rows_svg(title: str, desc: str, rows: list[tuple[str, Any, Any, Any, str]], xlabel: str, zero: bool = False) -> Markup | None:  # fmt: skip
    """Horizontal marks with whiskers, one row each: (label, value, low, high, css class); ``zero``: a line at 0."""
    rows = [r for r in rows if _finite(r[1])]
    if not rows:
        return None
    row_h = 26
    height, left = _rows_layout([r[0] for r in rows], row_h)
    ends = [v for r in rows for v in r[1:4] if _finite(v)] + ([0.0] if zero else [])
    lo, hi = min(ends + [0.0]), max(ends)
    x = _Scale(lo, hi if hi > lo else lo + 1, left, W - MR)
    body = _columns_grid(x, [(v, fmt(v)) for v in ticks(lo, hi, 5)], height)
    if zero:
        body.append(f'<line class="axis" x1="{x(0)}" x2="{x(0)}" y1="{MT}" y2="{height - MB}"/>')
    for i, (label, v, a, b, css) in enumerate(rows):
        cy = MT + i * row_h + row_h / 2
        ci = f", 95% CI {fmt(a)} to {fmt(b)}" if _finite(a) and _finite(b) else ""
        body.append(f'<text class="tick" x="{left - 8}" y="{cy + 4}" text-anchor="end">{escape(label)}</text>')
        if not zero:
            body.append(
                f'<rect class="bar" x="{x(0)}" y="{cy - 8}" width="{max(round(x(v) - x(0), 2), 0)}" height="16"/>'
            )
        if ci:
            body.append(f'<line class="whisker" x1="{x(a)}" x2="{x(b)}" y1="{cy}" y2="{cy}"/>')
        body.append(f'<circle class="dot {css}" cx="{x(v)}" cy="{cy}" r="4"><title>{escape(label)}: {fmt(v)}{ci}</title></circle>')  # fmt: skip
    return _frame(title, desc, body, xlabel, height=height, left=left)


def sensitivity_svg(name: str, entry: dict) -> Markup | None:
    """An output's Sobol S1 and ST (or Morris mu_star) per parameter as bars with their 95% intervals."""
    keys = ("S1", "ST") if entry.get("method") == "sobol" else ("mu_star",)
    rows = []
    for param in entry.get(keys[-1], {}):
        for key in keys:
            v = entry[key].get(param) or {}
            low, high = (v.get("ci95") or [None, None])[:2]
            rows.append((f"{param} {key}", v.get("value"), low, high, key))
    parts = "; ".join(f"{label} {fmt(v)}" for label, v, *_ in rows if _finite(v))
    return _rows_svg(f"Sensitivity of {name}", f"{parts}; whiskers are 95% bootstrap intervals.", rows, "index")


def comparison_svg(name: str, rows: list[tuple[int, Any, Any, Any]], baseline: int) -> Markup | None:
    """Each point's difference from the baseline point with its 95% interval; points whose interval leaves 0 marked."""
    marks = [
        (f"point {p}", d, a, b, "significant" if _finite(a) and _finite(b) and (a > 0 or b < 0) else "")
        for p, d, a, b in rows
    ]
    count = sum(m[4] == "significant" for m in marks)
    shown = marks
    if len(marks) > MAX_ROWS:  # the largest differences, in point order
        largest = sorted(marks, key=lambda m: -abs(m[1]) if _finite(m[1]) else 0)[:MAX_ROWS]
        shown = [m for m in marks if m in largest]
    some = f" (the {len(shown)} largest differences drawn)" if len(shown) < len(marks) else ""
    desc = f"Difference of {name} from point {baseline} at {len(marks)} points{some}; {count} differ significantly (95% interval leaves 0, filled)."  # fmt: skip
    return _rows_svg(f"{name}: each point minus point {baseline}", desc, shown, f"difference in {name}", zero=True)


#: a trajectory picture draws at most this many points' mean paths (evenly spaced), each thinned to MAX_LINES steps
MAX_PATHS = 60
#: a mean-path picture's key sits above the plot (its text's baseline at KEY_Y), which starts PATHS_TOP down
KEY_Y, PATHS_TOP = MT + 4, MT + 22
#: the key's sample line: its length and the space between it and its text
SWATCH, SWATCH_GAP = 18, 4
#: a line may pass its axis's outermost tick by this much of a step (a few pixels) rather than add a step of room
OVERSHOOT = 0.05


def _covering(lo: float, hi: float, count: int) -> tuple[float, float, list[float]]:
    """About ``count`` + 1 round ticks from the one at or below ``lo`` to the one at or above ``hi`` (to within
    :data:`OVERSHOOT` of a step), and the range to plot: the ticks' and the data's together. The top tick is level
    with a line reaching a round value (200, not 150 below it); of the round steps that cover the data, the one
    wasting least room wins, then the one nearest ``count`` intervals."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return lo, hi, ticks(lo, hi, count)
    options = []
    for c in (count - 1, count, count + 1):
        step = tick_step(lo, hi, c)
        first, last = math.floor(lo / step + OVERSHOOT), math.ceil(hi / step - OVERSHOOT)
        options.append((round((last - first) * step / (hi - lo), 6), abs(last - first - count), first, last, step))
    *_, first, last, step = min(options)
    marks = [k * step for k in range(first, last + 1)]
    return min(lo, marks[0]), max(hi, marks[-1]), marks


def _stroke(shade: float) -> str:
    """A mean path's opacity and width for its shade (0..1): both grow with it, and the faintest is still plain."""
    return f'stroke-opacity="{0.4 + 0.6 * shade:.3f}" stroke-width="{1.5 + shade:.2f}"'


def _key(ends: tuple[str, str], shades: tuple[float, float], left: float, right: float) -> list[str]:
    """The key above a mean-path plot: a sample of the faintest line and of the strongest, each followed by what it
    stands for (cut to half the width, whole in its tooltip)."""
    out, x0 = [], left
    room = round((right - left - GAP) / 2 - SWATCH - SWATCH_GAP, 2)
    for text, shade, which in zip(ends, shades, ("faintest", "strongest")):
        tip = f"<title>{which} line: {escape(text)}</title>"
        out.append(
            f'<line class="mpath" x1="{x0}" x2="{x0 + SWATCH}" y1="{KEY_Y - 4}" y2="{KEY_Y - 4}" {_stroke(shade)}>{tip}</line>'
        )
        out.append(text_label(text, room, class_="tick key", x=x0 + SWATCH + SWATCH_GAP, y=KEY_Y))
        x0 = round(x0 + SWATCH + SWATCH_GAP + text_width(shorten(text, room)) + 2 * GAP, 2)
    return out


def paths_svg(name: str, paths: list[tuple[str, list, float]], ends: tuple[str, str] | None = None) -> Markup | None:
    """Each point's mean path of trajectory ``name``: (label, per-step means, shade 0..1), stronger for a higher shade.

    A key above the plot shows the faintest and the strongest line with ``ends`` (what they stand for: "drift = 0",
    "drift = 2"), by default the labels of the faintest and strongest paths drawn.
    """
    paths = [(label, list(mean), shade) for label, mean, shade in paths if mean]
    if not paths:
        return None
    drawn = _every(paths, MAX_PATHS)
    steps = max(len(m) for _, m, _ in drawn)
    values = [v for _, m, _ in drawn for v in m if _finite(v)]
    if not values:
        return None
    lo, hi, marks = _covering(min(values), max(values), 4)
    yt = [(v, fmt(v)) for v in marks]
    x = _Scale(0, max(steps - 1, 1), _left(yt), W - MR)
    y = _Scale(lo, hi, H - MB, PATHS_TOP)
    body = _axes(x, y, [(v, fmt(v)) for v in ticks(0, steps - 1, 6)], yt)
    faint, strong = min(drawn, key=lambda p: p[2]), max(drawn, key=lambda p: p[2])
    ends = ends or (faint[0], strong[0])
    body += _key(ends, (faint[2], strong[2]), x.a, x.b)
    for label, mean, shade in sorted(drawn, key=lambda p: p[2]):  # the strongest on top
        kept = _every([(k, v) for k, v in enumerate(mean) if _finite(v)], MAX_LINES)
        pts = " ".join(f"{x(k)},{y(v)}" for k, v in kept)
        last = kept[-1][1] if kept else None
        body.append(
            f'<polyline class="mpath" points="{pts}" {_stroke(shade)}>'
            f"<title>{escape(label)}: last mean {fmt(last)}</title></polyline>"
        )
    lowest, highest = min(values), max(values)
    some = f" ({len(drawn)} of {len(paths)} drawn)" if len(drawn) < len(paths) else ""
    desc = (
        f"The mean path of {name} over {steps} steps at {len(paths)} points{some}, from {fmt(lowest)} to "
        f"{fmt(highest)}; the faintest, thinnest line is {ends[0]}, the strongest, thickest {ends[1]}."
    )
    return _frame(f"Mean path of {name} at each point", desc, body, "step", f"mean of {name}", left=x.a)
