"""Where a chart's text goes and how long it may be, so labels stay inside the picture and apart.

The SVG is drawn once on the server, without a browser to measure text, so
widths are estimated: a generous 0.62 em a character at the largest size the
stylesheet gives chart text (on phones, where the 560-unit picture is scaled
down, site.css sets 17px ticks and 18px axis titles). What fits at that size
fits on a desktop too. Margins follow the labels' widths, tick labels are
thinned until they stop overlapping, and a name too long for its room is cut
with an ellipsis, the whole name kept in its tooltip (``<title>``).

Widths and positions are hundredths of a unit, and rooms are worked out from
them (a margin less what stands beside the labels): every comparison of a
width with its room goes through :func:`fits`, which allows :data:`SLACK` for
the floating-point error of that arithmetic (97.24 − 34 is 63.2399…, a
hair under the 63.24 of a six-character label the margin was sized for).
"""

from __future__ import annotations

from markupsafe import escape

#: chart text sizes (SVG units) on phones, the largest the stylesheet uses: ticks and axis titles
TICK_PX, TITLE_PX = 17, 18
#: a character's width in ems: above the 0.5–0.56 em of digits and lower-case letters in sans-serif faces
EM = 0.62
#: the least space between two labels
GAP = 6
#: a y tick label ends this far left of the plot, and the rotated y axis title needs this much room left of the labels
TICK_PAD, Y_TITLE_ROOM = 6, 28
#: how much a width may exceed its room and still fit: less than the hundredth of a unit widths are rounded to,
#: more than any floating-point error of adding and subtracting them
SLACK = 0.005


def text_width(text: str, px: float = TICK_PX) -> float:
    """The estimated width of ``text`` at ``px``."""
    return round(len(text) * px * EM, 2)


def fits(width: float, room: float) -> bool:
    """Whether something ``width`` wide fits in ``room`` (to within :data:`SLACK`): the one comparison of widths."""
    return width <= room + SLACK


def shorten(text: str, room: float, px: float = TICK_PX) -> str:
    """``text``, or as much of it as fits in ``room`` followed by an ellipsis."""
    if fits(text_width(text, px), room):
        return text
    keep = max(int((room + SLACK) / (px * EM)) - 1, 1)
    return text[:keep].rstrip() + "…"


def label(text: str, room: float, px: float = TICK_PX, **attrs: object) -> str:
    """A ``<text>`` element holding ``text`` cut to ``room``; when cut, the whole text is its tooltip."""
    short = shorten(text, room, px)
    tip = f"<title>{escape(text)}</title>" if short != text else ""
    spelled = " ".join(f'{k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f"<text {spelled}>{tip}{escape(short)}</text>"


def compact(v: float) -> str:
    """A count on an axis: 9,000, then 12k, 400k, 2.5M, 1B — six-digit labels crowd a 560-unit picture."""
    a = abs(v)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if a >= size:
            unit = 1e3 if suffix == "k" else size
            return f"{round(v / unit, 6):g}{suffix}"
    return f"{round(v):,}" if float(v).is_integer() else f"{v:g}"


def left_margin(texts: list[str], least: float, most: float = 200) -> float:
    """Room left of the plot for y tick labels (``texts``) and the rotated axis title beside them: every label fits
    :func:`tick_room` of it unless the widest is wider than ``most`` allows."""
    widest = max((text_width(t) for t in texts), default=0)
    return round(min(max(least, widest + TICK_PAD + Y_TITLE_ROOM), most), 2)


def tick_room(left: float) -> float:
    """The room of a y tick label in a plot whose left margin is ``left`` (see :func:`left_margin`)."""
    return round(left - TICK_PAD - Y_TITLE_ROOM, 2)


def fit_ticks(marks: list[tuple[float, str]], lo: float, hi: float) -> list[tuple[float, float, str]]:
    """(position, text x, text) of centred tick labels at positions ``marks``: inside [lo, hi], every one
    kept, or every second, third… (the first always), until none overlaps the next."""
    kept: list[tuple[float, float, str]] = []
    for stride in range(1, len(marks) + 1):
        kept, ends = [], []
        for p, text in marks[::stride]:
            half = text_width(text) / 2
            c = round(min(max(p, lo + half), hi - half), 2)
            kept.append((p, c, text))
            ends.append((c - half, c + half))
        if all(fits(a[1] + GAP, b[0]) for a, b in zip(ends, ends[1:])):
            return kept
    return kept[:1]


def slots(centres: list[float], lo: float, hi: float) -> list[tuple[float, float]]:
    """For labels wanted centred at ``centres`` (in order) in one row: (text x, room) each, never overlapping —
    each label's room runs halfway to its neighbours, and inside [lo, hi]."""
    out = []
    for k, c in enumerate(centres):
        a = lo if k == 0 else (centres[k - 1] + c) / 2 + GAP / 2
        b = hi if k == len(centres) - 1 else (c + centres[k + 1]) / 2 - GAP / 2
        out.append((a, b))
    return [(round((a + b) / 2, 2), round(b - a, 2)) for a, b in out]


def placed(text: str, centre: float, slot: tuple[float, float], px: float = TICK_PX) -> tuple[str, float]:
    """``text`` cut to its slot's room and its x: centred at ``centre`` when it fits there, else shifted inside."""
    x, room = slot
    short = shorten(text, room, px)
    half = text_width(short, px) / 2
    lo, hi = x - room / 2, x + room / 2
    return short, round(min(max(centre, lo + half), hi - half), 2)
