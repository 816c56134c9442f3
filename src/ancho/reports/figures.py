"""Matplotlib drawings of :mod:`ancho.plotdata`'s numbers: a histogram and a convergence plot per output, a fan chart per trajectory.

The numbers come from plotdata (as on the web site); this module only
draws them. Figures are built with ``matplotlib.figure.Figure`` and the Agg
canvas, never pyplot: pyplot keeps global state, and the server draws
reports for several requests at once in its thread pool. Matplotlib is
imported on first use, so nothing pays the import who does not draw.
"""

from __future__ import annotations

import io
import math
import re

#: figure size in inches (width, height): two panels side by side across an A4 page
SIZE = (7.0, 2.5)
DPI = 150
BAR = "#4c72b0"
LINE = "#c44e52"
#: the convergence plot's y axis is scaled to the curve from this many sequences on
SETTLE = 20
#: a panel title's type size (points) and the most lines it wraps to before its name is shortened in the middle
TITLE_SIZE = 9
TITLE_LINES = 3
#: where a title may break a line: after a space or a punctuation mark common in output names
BREAKS = re.compile(r"[^ _\-.:/]*[ _\-.:/]?")


def new_figure(dpi: int = DPI, size: tuple[float, float] = SIZE):
    """A figure for :func:`output_figure`; reusing one for many outputs avoids Matplotlib's per-figure set-up."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax, grid: bool = True) -> None:
    """The look every report plot shares: small ticks, a light grid, no top or right frame."""
    ax.tick_params(labelsize=7)
    if grid:
        ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.spines[["top", "right"]].set_visible(False)


def png(fig) -> bytes:
    """The figure as PNG bytes at its own resolution."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def fit_title(ax, name: str, suffix: str) -> None:
    """Title ``ax`` with ``name`` + ``suffix``, wrapped to the room it has (a long output name ran into the next
    panel's title); past :data:`TITLE_LINES` lines the name loses its middle to an ellipsis (the summary table
    has it whole). Lay the axes out before calling: the room is measured from their position."""
    fig = ax.figure
    axes = [a for a in fig.axes if a is not ax and a.get_position().x0 > ax.get_position().x0]
    end = min((a.get_position().x0 for a in axes), default=1.0)
    room = (end - ax.get_position().x0) * fig.get_figwidth() * 72 - 8  # points, with a gap before the next title
    lines = _wrap(name + suffix, room)
    kept = len(name)
    while len(lines) > TITLE_LINES and kept > 2:
        kept = max(2, kept * 3 // 4)
        lines = _wrap(name[: (kept + 1) // 2] + "…" + name[len(name) - kept // 2 :] + suffix, room)
    # a name's $ is a dollar, not the start of mathtext
    ax.set_title("\n".join(lines).replace("$", r"\$"), fontsize=TITLE_SIZE, loc="left")


def _wrap(text: str, room: float) -> list[str]:
    """``text`` in lines at most ``room`` points wide in the title's type, broken after spaces and punctuation
    where it can be, else anywhere."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    measure, font = TextToPath(), FontProperties(size=TITLE_SIZE)

    def width(s: str) -> float:
        return measure.get_text_width_height_descent(s, font, ismath=False)[0]

    lines: list[str] = []
    line = ""
    for token in (t for t in BREAKS.findall(text) if t):
        while token:
            if width(line + token) <= room:
                line, token = line + token, ""
            elif line:
                lines.append(line.rstrip())
                line = ""
            else:  # a token wider than the room on its own: as many characters as fit
                cut = max(1, next((k for k in range(len(token), 0, -1) if width(token[:k]) <= room), 1))
                lines.append(token[:cut])
                token = token[cut:]
    return lines + ([line.rstrip()] if line.strip() else [])


def make_room_for_titles(fig, axes) -> None:
    """Lower the plots' top so the tallest (wrapped) title stays inside the figure."""
    lines = max(len(a.get_title(loc="left").splitlines()) for a in axes)
    if lines > 1:
        fig.subplots_adjust(top=1 - (8 + 11 * lines) / (fig.get_figheight() * 72))


def _num(values) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def draw_histogram(ax, hist: dict, name: str) -> None:
    """Bars over plotdata's edges; bools labelled false/true; NaN/inf counted in the title."""
    edges, counts = _num(hist["edges"]), hist["counts"]
    suffix = ": distribution"
    if hist.get("nonfinite"):
        suffix += f" ({hist['nonfinite']:,} NaN/inf not shown)"
    fit_title(ax, name, suffix)
    ax.set_ylabel("sequences", fontsize=8)
    if not counts:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    if hist["kind"] == "bool" or (hist["kind"] == "int" and all(b - a == 1.0 for a, b in zip(edges, edges[1:]))):
        # one bar per value, with gaps, so counts read as counts of values rather than of ranges
        ax.bar([a + 0.5 for a in edges[:-1]], counts, width=0.8, color=BAR, alpha=0.85)
        if hist["kind"] == "bool":
            ax.set_xticks([0, 1], ["false", "true"])
    else:
        ax.stairs(counts, edges, fill=True, color=BAR, alpha=0.85)
    ax.set_ylim(bottom=0)
    from matplotlib.ticker import EngFormatter, MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks for small runs
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))  # 25k, not 25000: the margin stays fixed


def draw_convergence(ax, conv: dict, name: str) -> None:
    """The running mean against the number of sequences (log scale), with its 95% band."""
    fit_title(ax, name, ": running mean and 95% band")
    ax.set_xlabel("sequences", fontsize=8)
    n = conv["n"]
    if not n:
        ax.text(0.5, 0.5, "no sequences", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    mean, low, high = _num(conv["mean"]), _num(conv["low"]), _num(conv["high"])
    ax.fill_between(n, low, high, color=LINE, alpha=0.2, linewidth=0, label="95% CI")
    ax.plot(n, mean, color=LINE, linewidth=1.2, label="mean")
    if n[-1] > 10:
        ax.set_xscale("log")
    finite = [v for v in mean if not math.isnan(v)]
    if finite:
        ax.axhline(finite[-1], color="0.4", linewidth=0.6, linestyle=":")
    # The first few sequences give a band many times wider than the rest: scale the axis to the
    # curve from SETTLE sequences on, so the part worth reading fills the plot.
    start = min(SETTLE, n[-1])
    shown = [v for k, a, b, c in zip(n, mean, low, high) if k >= start for v in (a, b, c) if not math.isnan(v)]
    if shown:
        lo, hi = min(shown), max(shown)
        pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 0.5
        ax.set_ylim(lo - pad, hi + pad)


def output_figure(name: str, plots: dict, dpi: int = DPI, fig=None) -> bytes:
    """PNG bytes of one output's histogram and convergence plot side by side (on ``fig``, cleared first, if given)."""
    fig = fig if fig is not None else new_figure(dpi)
    fig.clear()
    left, right = fig.subplots(1, 2)
    # fixed margins rather than tight_layout, which measured every tick label again and took half the time
    fig.subplots_adjust(left=0.08, right=0.985, bottom=0.17, top=0.9, wspace=0.22)
    draw_histogram(left, plots["histogram"], name)
    draw_convergence(right, plots["convergence"], name)
    for ax in (left, right):
        style_axes(ax)
    make_room_for_titles(fig, (left, right))
    return png(fig)


def draw_fan(ax, fan, paths: bool = True) -> None:
    """A trajectory's fan chart from a :class:`ancho.plotdata.Fan`: the 90% and 50% bands, the median,
    the mean with its 95% band and (``paths``) the first sequences' own paths."""
    x = fan.steps
    fit_title(ax, fan.name, f": fan chart over {fan.count:,} sequences")
    ax.set_xlabel("step", fontsize=8)
    if not x:
        ax.text(0.5, 0.5, "no steps", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    ax.fill_between(x, _num(fan.p5), _num(fan.p95), color=BAR, alpha=0.18, linewidth=0, label="90% band")
    ax.fill_between(x, _num(fan.p25), _num(fan.p75), color=BAR, alpha=0.35, linewidth=0, label="50% band")
    ax.plot(x, _num(fan.median), color=BAR, linewidth=1.2, label="median")
    ax.fill_between(x, _num(fan.mean_low), _num(fan.mean_high), color=LINE, alpha=0.35, linewidth=0)
    ax.plot(x, _num(fan.mean), color=LINE, linewidth=1.0, linestyle="--", label="mean (95% band)")
    if paths:
        for k, row in enumerate(fan.paths):
            ax.plot(x, _num(row), color="0.25", linewidth=0.5, alpha=0.7, label="sample paths" if k == 0 else None)
    ax.legend(fontsize=6.5, frameon=False, loc="best")


def fan_figure(fan, dpi: int = DPI, fig=None) -> bytes:
    """PNG bytes of one trajectory: its fan chart (left) and its sample paths alone (right)."""
    fig = fig if fig is not None else new_figure(dpi)
    fig.clear()
    left, right = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.985, bottom=0.17, top=0.9, wspace=0.22)
    draw_fan(left, fan, paths=False)
    fit_title(right, fan.name, f": sequences {', '.join(map(str, fan.path_sequences)) or '–'}")
    right.set_xlabel("step", fontsize=8)
    for number, row in zip(fan.path_sequences, fan.paths):
        right.plot(fan.steps, _num(row), linewidth=0.8, label=f"sequence {number}")
    right.plot(fan.steps, _num(fan.mean), color=LINE, linewidth=1.0, linestyle="--", label="mean")
    right.legend(fontsize=6, frameon=False, loc="best")
    for ax in (left, right):
        style_axes(ax)
    make_room_for_titles(fig, (left, right))
    return png(fig)
