"""The run page's plots as inline SVG, drawn on the server from :mod:`ancho.plotdata`.

Why SVG from the server rather than a JavaScript chart library: the plots
are static pictures of a finished run, so drawing them once here needs no
script, nothing to vendor or keep up to date, and works offline, in print
and with JavaScript off; the SVG scales to any width (a phone's included)
through its viewBox, carries a text title and description for screen
readers, and every bar or point has a native tooltip (``<title>``). Colours
come from the page's stylesheet (classes, not fill attributes), so the
plots follow its light and dark themes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

from ..plotdata import Fan
from ..present import number
from .labels import TICK_PAD, TITLE_PX, compact, fit_ticks, label, left_margin, text_width, tick_room

W, H = 560, 280
#: plot area margins: left (y labels), right, top, bottom (x labels)
ML, MR, MT, MB = 64, 16, 16, 44


def fmt(v: float | None) -> str:
    """A number on an axis or in a table of the site: four significant digits (see ancho.present)."""
    return number(v, 4)


def tick_step(lo: float, hi: float, count: int = 5) -> float:
    """The round step (1, 2 or 5 times a power of ten) between about ``count`` ticks over [lo, hi] (``lo < hi``)."""
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks inside [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    step = tick_step(lo, hi, count)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False):
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(v)
        return round(self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a), 2)


def _frame(
    title: str, desc: str, body: list[str], xlabel: str, ylabel: str = "", role: str = "img", *, height: int = H, left: float = ML
) -> Markup:  # fmt: skip
    """The SVG around every picture of the site: its title and description (also its ``aria-label``), the axis labels.

    ``role="group"`` when it holds focusable parts (an image's parts are hidden from screen readers); ``height``
    and ``left`` for pictures of one row per item (:func:`_rows_layout`), whose height grows with the rows and
    whose left margin fits their labels (and for plots whose margin fits their y tick labels). An empty axis label
    is left out; a long one is cut to the picture, its whole text in its tooltip.
    """
    words = f"{title}. {desc}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {height}" role="{role}" aria-label="{escape(words)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>",
        *body,
    ]
    if xlabel:
        half = min(text_width(xlabel, TITLE_PX), W - 8) / 2
        centre = round(min(max((left + W - MR) / 2, half + 4), W - 4 - half), 2)
        parts.append(label(xlabel, W - 8, TITLE_PX, class_="axis-label", x=centre, y=height - 6, text_anchor="middle"))
    if ylabel:
        mid = (MT + height - MB) / 2
        parts.append(
            label(ylabel, height - MB - MT, TITLE_PX, class_="axis-label", x=16, y=mid, text_anchor="middle",
                  transform=f"rotate(-90 16 {mid})")
        )  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))


def _rows_layout(labels: list[str], row_h: int, most: int = 220) -> tuple[int, int]:
    """(height, left margin) of a picture with one row per label: room for the longest label (at phone text sizes
    too), at least 60 and at most ``most`` pixels."""
    left = min(max(max(len(label) for label in labels) * 8 + 16, 60), most)
    return MT + row_h * len(labels) + MB, left


def _columns_grid(x: _Scale, marks: list[tuple[float, str]], height: int) -> list[str]:
    """Vertical grid lines with their values under the rows (a row picture's x axis)."""
    out = [f'<line class="grid" x1="{x(v)}" x2="{x(v)}" y1="{MT}" y2="{height - MB}"/>' for v, _ in marks]
    for _, cx, text in fit_ticks([(x(v), text) for v, text in marks], 2, W - 2):
        out.append(f'<text class="tick" x="{cx}" y="{height - MB + 18}" text-anchor="middle">{escape(text)}</text>')
    return out


def _left(yt: list[tuple[float, str]]) -> float:
    """The left margin of a plot whose y tick labels are ``yt``."""
    return left_margin([text for _, text in yt], ML)


def _axes(x: _Scale, y: _Scale, xt: list[tuple[float, str]], yt: list[tuple[float, str]]) -> list[str]:
    """Grid, ticks and axis lines of a plot spanning ``x``'s pixels (its left margin from :func:`_left`).

    Every x tick gets its mark; its labels are thinned until none overlaps the next, and kept inside the picture.
    """
    left, right = x.a, x.b
    out = []
    for v, text in yt:
        py = y(v)
        out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{py}" y2="{py}"/>')
        out.append(
            label(text, tick_room(left), class_="tick", x=round(left - TICK_PAD, 2), y=py + 4, text_anchor="end")
        )
    for v, _ in xt:
        out.append(f'<line class="tick-mark" x1="{x(v)}" x2="{x(v)}" y1="{H - MB}" y2="{H - MB + 5}"/>')
    for _, cx, text in fit_ticks([(x(v), text) for v, text in xt], 2, W - 2):
        out.append(f'<text class="tick" x="{cx}" y="{H - MB + 18}" text-anchor="middle">{escape(text)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{H - MB}" y2="{H - MB}"/>')
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{y.b}" y2="{H - MB}"/>')
    return out


def histogram_svg(name: str, hist: dict) -> Markup | None:
    """Bars of one output's histogram (``plotdata.histogram``); None when it has no finite value."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if not counts:
        return None
    total = sum(counts)
    top = max(counts) or 1
    yt = [(v, compact(v)) for v in ticks(0, top, 4)]
    x = _Scale(edges[0], edges[-1], _left(yt), W - MR)
    y = _Scale(0, top * 1.05, H - MB, MT)
    body: list[str] = []
    boolean = hist.get("kind") == "bool"
    integer = hist.get("kind") == "int" and all(float(e + 0.5).is_integer() for e in edges)
    wide = integer and any(b - a != 1 for a, b in zip(edges, edges[1:]))  # bars of several integers each
    integer = integer and not wide
    if boolean:
        xt = [(0.0, "false"), (1.0, "true")]
    elif integer and len(counts) <= 25:
        xt = [(e + 0.5, fmt(int(e + 0.5))) for e in edges[:-1]]
        step = max(1, math.ceil(len(xt) / 10))
        xt = xt[::step]
    else:
        xt = [(v, fmt(v)) for v in ticks(edges[0], edges[-1], 6)]
    body += _axes(x, y, xt, yt)
    for i, c in enumerate(counts):
        x0, x1 = x(edges[i]), x(edges[i + 1])
        y0 = y(c)
        if boolean:
            where = "false" if i == 0 else "true"
        elif integer:
            where = fmt(int(edges[i] + 0.5))
        elif wide:
            where = f"{fmt(int(edges[i] + 0.5))} to {fmt(int(edges[i + 1] - 0.5))}"
        else:
            where = f"{fmt(edges[i])} to {fmt(edges[i + 1])}"
        share = c / total if total else 0
        body.append(
            f'<rect class="bar" x="{x0 + 0.5}" y="{y0}" width="{max(x1 - x0 - 1, 0.5)}" height="{round(H - MB - y0, 2)}">'
            f"<title>{escape(where)}: {c:,} sequences ({share:.1%})</title></rect>"
        )
    extra = f"; {hist['nonfinite']:,} NaN or infinite values not shown" if hist.get("nonfinite") else ""
    desc = f"Histogram of {total:,} sequences from {fmt(edges[0])} to {fmt(edges[-1])}; tallest bar {top:,}{extra}."
    return _frame(f"Distribution of {name}", desc, body, name, "sequences", left=x.a)


def convergence_svg(name: str, conv: dict) -> Markup | None:
    """The running mean of one output with its 95% band against the number of sequences (log scale)."""
    pts = [
        (n, m, lo, hi)
        for n, m, lo, hi in zip(conv.get("n", []), conv.get("mean", []), conv.get("low", []), conv.get("high", []))
        if m is not None
    ]
    if len(pts) < 2:
        return None
    band = [(n, lo, hi) for n, _, lo, hi in pts if lo is not None and hi is not None]
    ys = [m for _, m, _, _ in pts] + [v for _, lo, hi in band for v in (lo, hi)]
    # the first few sequences' band is very wide: clip the view to where the mean itself has been
    means = [m for _, m, _, _ in pts]
    span = max(means) - min(means)
    ylo, yhi = min(ys), max(ys)
    last_half = (band[-1][2] - band[-1][1]) / 2 if band else 0
    pad = max(span, last_half * 8, abs(means[-1]) * 1e-9, 1e-12)
    ylo, yhi = max(ylo, min(means) - pad), min(yhi, max(means) + pad)
    n_last = pts[-1][0]
    yt = [(v, fmt(v)) for v in ticks(ylo, yhi, 4)]
    left = _left(yt)
    x = _Scale(1, max(n_last, 2), left, W - MR, log=True)
    y = _Scale(ylo, yhi, H - MB, MT)
    clamp = lambda v: min(max(v, ylo), yhi)  # noqa: E731
    xt = [(10.0**k, compact(10**k)) for k in range(0, int(math.log10(max(n_last, 1)) + 1e-9) + 1)]
    body = _axes(x, y, xt, yt)
    if band:
        upper = " ".join(f"{x(n)},{y(clamp(hi))}" for n, _, hi in band)
        lower = " ".join(f"{x(n)},{y(clamp(lo))}" for n, lo, _ in reversed(band))
        body.append(
            f'<polygon class="band" points="{upper} {lower}"><title>95% confidence band of the mean</title></polygon>'
        )
    line = " ".join(f"{x(n)},{y(clamp(m))}" for n, m, _, _ in pts)
    body.append(f'<polyline class="line" points="{line}"/>')
    final = pts[-1][1]
    body.append(f'<line class="final" x1="{left}" x2="{W - MR}" y1="{y(final)}" y2="{y(final)}"/>')
    for n, m, lo, hi in pts[:: max(1, len(pts) // 40)] + [pts[-1]]:
        ci = f", 95% CI {fmt(lo)} to {fmt(hi)}" if lo is not None and hi is not None else ""
        body.append(
            f'<circle class="point" cx="{x(n)}" cy="{y(clamp(m))}" r="3"><title>after {n:,} sequences: mean {fmt(m)}{ci}</title></circle>'
        )
    last = pts[-1]
    ci = f" (95% CI {fmt(last[2])} to {fmt(last[3])})" if last[2] is not None and last[3] is not None else ""
    desc = f"Running mean of {name} over {n_last:,} sequences, ending at {fmt(final)}{ci}; the shaded band is the 95% interval."
    return _frame(f"Running mean of {name}", desc, body, "sequences (log scale)", f"mean of {name}", left=left)


def targets_svg(targets: list[dict]) -> Markup | None:
    """Each target's probability as a bar with its 95% interval as a whisker."""
    rows = [t for t in targets if t.get("probability") is not None]
    if not rows:
        return None
    row_h = 34
    height, left = _rows_layout([t["expr"] for t in rows], row_h, most=240)
    x = _Scale(0, 1, left, W - MR)
    body = _columns_grid(x, [(v, f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1)], height)
    for i, t in enumerate(rows):
        top = MT + i * row_h + 6
        p = t["probability"]
        lo, hi = (t.get("ci95") or [None, None])[:2]
        ci = f", 95% CI {lo:.2%} to {hi:.2%}" if lo is not None and hi is not None else ""
        body.append(f'<text class="tick" x="{left - 8}" y="{top + 15}" text-anchor="end">{escape(t["expr"])}</text>')
        body.append(
            f'<rect class="bar" x="{x(0)}" y="{top}" width="{round(x(p) - x(0), 2)}" height="{row_h - 12}">'
            f"<title>P({escape(t['expr'])}) = {p:.2%}{ci}</title></rect>"
        )
        if lo is not None and hi is not None:
            cy = top + (row_h - 12) / 2
            body.append(f'<line class="whisker" x1="{x(lo)}" x2="{x(hi)}" y1="{cy}" y2="{cy}"/>')
            for v in (lo, hi):
                body.append(f'<line class="whisker" x1="{x(v)}" x2="{x(v)}" y1="{cy - 6}" y2="{cy + 6}"/>')
    names = "; ".join(f"{t['expr']}: {t['probability']:.2%}" for t in rows)
    desc = f"{names}; whiskers show 95% intervals."
    return _frame("Target probabilities", desc, body, "probability", height=height, left=left)


def run_charts(plots: dict) -> list[dict]:
    """Per output: its name, histogram and convergence SVG (from ``plotdata.run_plots``)."""
    return [
        {
            "name": name,
            "histogram": histogram_svg(name, p["histogram"]),
            "convergence": convergence_svg(name, p["convergence"]),
            "nonfinite": p["histogram"].get("nonfinite", 0),
        }
        for name, p in plots.items()
    ]


# -- trajectories -------------------------------------------------------------------------
#: focusable markers a fan chart carries (keyboard and screen-reader users step through them)
FAN_PROBES = 12
#: rows of the table under a fan chart (its text alternative)
FAN_ROWS = 11


def _lines(points: list[tuple[float, float | None]]) -> list[str]:
    """SVG point lists of a line broken where a value is missing (None)."""
    runs: list[list[str]] = [[]]
    for px, py in points:
        if py is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(f"{px},{py}")
    return [" ".join(r) for r in runs if len(r) > 1]


def _band(xs: list[float], low: list[float | None], high: list[float | None]) -> str:
    """A polygon's points around the steps where both edges are known (upper edge left to right, lower back)."""
    keep = [(x, lo, hi) for x, lo, hi in zip(xs, low, high) if lo is not None and hi is not None]
    upper = [f"{x},{hi}" for x, _, hi in keep]
    lower = [f"{x},{lo}" for x, lo, _ in reversed(keep)]
    return " ".join(upper + lower)


def _spread(f: Fan, i: int) -> str:
    """One step's numbers in words (a probe's label and tooltip)."""
    return (
        f"step {f.steps[i]}: median {fmt(f.median[i])}, 50% of paths {fmt(f.p25[i])} to {fmt(f.p75[i])}, "
        f"90% {fmt(f.p5[i])} to {fmt(f.p95[i])}; mean {fmt(f.mean[i])} (95% CI {fmt(f.mean_low[i])} to {fmt(f.mean_high[i])})"
    )


def _every(n: int, count: int) -> list[int]:
    """About ``count`` indices of ``n`` evenly spaced, the first and last included."""
    if n <= count:
        return list(range(n))
    return sorted({round(k * (n - 1) / (count - 1)) for k in range(count)})


def fan_svg(f: Fan) -> Markup | None:
    """A trajectory's fan: 90% and 50% bands of the paths, the median, the mean with its 95% band, a few paths.

    Each of :data:`FAN_PROBES` steps is a focusable marker whose label reads
    that step's numbers, so the chart can be explored with the keyboard.
    """
    series = [f.p5, f.p95, f.p25, f.p75, f.median, f.mean, f.mean_low, f.mean_high, *f.paths]
    values = [v for s in series for v in s if v is not None]
    if not f.steps or not values:
        return None
    last = f.steps[-1]
    yt = [(v, fmt(v)) for v in ticks(min(values), max(values), 4)]
    x = _Scale(f.steps[0], max(last, f.steps[0] + 1), _left(yt), W - MR)
    y = _Scale(min(values), max(values), H - MB, MT)
    xs = [x(s) for s in f.steps]

    def ys(vals: list[float | None]) -> list[float | None]:
        return [None if v is None else y(v) for v in vals]

    xt = [(v, fmt(v)) for v in ticks(f.steps[0], last, 6) if float(v).is_integer()]
    body = _axes(x, y, xt, yt)
    body.append(
        f'<polygon class="fan90" points="{_band(xs, ys(f.p5), ys(f.p95))}"><title>90% of paths (p5 to p95)</title></polygon>'
    )
    body.append(
        f'<polygon class="fan50" points="{_band(xs, ys(f.p25), ys(f.p75))}"><title>50% of paths (p25 to p75)</title></polygon>'
    )
    for seq, path in zip(f.path_sequences, f.paths):
        for pts in _lines(list(zip(xs, ys(path)))):
            body.append(f'<polyline class="path" points="{pts}"><title>sequence {seq}</title></polyline>')
    body.append(
        f'<polygon class="meanband" points="{_band(xs, ys(f.mean_low), ys(f.mean_high))}"><title>95% confidence band of the mean</title></polygon>'
    )
    for pts in _lines(list(zip(xs, ys(f.mean)))):
        body.append(f'<polyline class="mean" points="{pts}"><title>mean</title></polyline>')
    for pts in _lines(list(zip(xs, ys(f.median)))):
        body.append(f'<polyline class="median" points="{pts}"><title>median</title></polyline>')
    for i in _every(len(f.steps), FAN_PROBES):
        words = escape(_spread(f, i))
        mid = f.median[i]
        dot = f'<circle cx="{xs[i]}" cy="{y(mid)}" r="4"/>' if mid is not None else ""
        body.append(
            f'<g class="probe" tabindex="0" role="img" aria-label="{words}"><title>{words}</title>'
            f'<line x1="{xs[i]}" x2="{xs[i]}" y1="{MT}" y2="{H - MB}"/>{dot}</g>'
        )
    shown = f"; thin lines: sequences {', '.join(map(str, f.path_sequences))}" if f.paths else ""
    desc = (
        f"{f.count:,} paths of {f.total_steps:,} steps. Shaded: the middle 90% and 50% of paths at each step; "
        f"solid line: the median, ending at {fmt(f.median[-1])}; dashed line: the mean with its 95% band, "
        f"ending at {fmt(f.mean[-1])}{shown}."
    )
    return _frame(f"Fan chart of {f.name}", desc, body, "step", f.name, role="group", left=x.a)


@dataclass(frozen=True)
class FanRow:
    """One step's numbers in the table under a fan chart (the chart's text alternative)."""

    step: int
    p5: float | None
    p25: float | None
    median: float | None
    p75: float | None
    p95: float | None
    mean: float | None
    ci95: tuple[float | None, float | None]


@dataclass(frozen=True)
class FanChart:
    """What the run page shows of one trajectory output: the SVG, a few steps' numbers, the paths drawn."""

    name: str
    svg: Markup | None
    rows: list[FanRow]
    steps: int
    paths: list[int]


def fan_rows(f: Fan, count: int = FAN_ROWS) -> list[FanRow]:
    """A few steps' numbers, evenly spread, the first and last included."""
    return [
        FanRow(
            f.steps[i], f.p5[i], f.p25[i], f.median[i], f.p75[i], f.p95[i], f.mean[i], (f.mean_low[i], f.mean_high[i])
        )
        for i in _every(len(f.steps), count)
    ]


def fan_charts(fans: list[Fan]) -> list[FanChart]:
    """Per trajectory output: its fan SVG, the table of a few steps and the paths drawn."""
    return [FanChart(f.name, fan_svg(f), fan_rows(f), f.total_steps, f.path_sequences) for f in fans]
