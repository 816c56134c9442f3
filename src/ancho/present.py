"""How numbers, intervals, times and durations read to people: one spelling for the terminal, the web and reports.

They were written once per front end and disagreed (six significant digits
on the terminal, four on the web; local time in the CLI, UTC in reports), so
the same run read differently depending on where it was looked at. Every
front end now formats through these functions; only the number of digits is
the caller's choice (an axis label wants fewer than a table).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

#: a missing value, in every front end
MISSING = "–"


def number(x: Any, digits: int = 6) -> str:
    """A value from a summary as people read it: whole numbers with thousands separators, others with ``digits``
    significant digits (scientific notation far from 1), booleans as ``true``/``false``, structures as JSON."""
    if isinstance(x, (dict, list)):  # custom summaries may return structures (or {"error": …})
        return json.dumps(x)
    if x is None:
        return MISSING
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x.is_integer() and abs(x) < 1e15:
            return f"{int(x):,}"
        a = abs(x)
        if a >= 1e7 or a < 1e-4:
            return f"{x:.{max(digits - 1, 1)}e}"
        if a < 1:
            return f"{x:.{digits}g}"
        rounded = round(x, digits - 1 - math.floor(math.log10(a)))  # digits significant, separators kept
        return f"{int(rounded):,}" if rounded.is_integer() else f"{rounded:,}"
    return str(x)


def interval(pair: Sequence[Any] | None, digits: int = 6) -> str:
    """A confidence interval as ``[low, high]``."""
    return MISSING if not pair else f"[{number(pair[0], digits)}, {number(pair[1], digits)}]"


#: an output's summary columns as ``ancho show`` and the PDF report print them, with the significant digits of each
#: (a count is a whole number: its digits do not matter), so a number reads the same in the terminal and the report
SUMMARY_COLUMNS = {"mean": 5, "95% CI": 5, "std": 4, "min": 5, "p5": 5, "p50": 5, "p95": 5, "max": 5, "count": 6}


def summary_cell(stats: dict[str, Any], column: str) -> str:
    """One output's ``column`` (a key of :data:`SUMMARY_COLUMNS`) from its summary ``stats``, as printed."""
    digits = SUMMARY_COLUMNS[column]
    return interval(stats["ci95"], digits) if column == "95% CI" else number(stats[column], digits)


def timestamp(ts: float | None) -> str:
    """A moment in UTC, labelled: runs are made on servers and read elsewhere, so local time would mislead."""
    return MISSING if not ts else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """An elapsed time: ``0.42 s`` under a minute (runs are often that short), then ``3m 07s`` and ``2h 05m``."""
    if seconds is None:
        return MISSING
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def run_duration(started: float | None, finished: float | None, running: bool = True) -> str:
    """How long a run took, or has taken so far while it is ``running``."""
    if not started:
        return MISSING
    end = finished or (time.time() if running else None)
    return MISSING if end is None else duration(end - started)


#: the eight heights of a sparkline, lowest first
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 24, span: float = 0.0) -> str:
    """A series as one line of block characters, at most ``width`` wide, lowest value ``▁`` and highest ``█``.

    Why: a terminal shows a trajectory's shape at a glance where 120 numbers would not. Longer series are cut into
    ``width`` runs of consecutive steps, each drawn at the mean of its finite values; a run with none (steps no
    sequence gave a number for, ``null`` in a summary) is a space; a flat series is drawn at mid height. ``span``:
    the least range the bars stand for (a trajectory's means: their intervals' width), so that a series varying less
    than that, noise about a flat mean, is drawn near mid height and not stretched into a false trend.
    """
    if not values or width < 1:
        return ""
    n = len(values)
    cells = min(width, n)
    edges = [round(i * n / cells) for i in range(cells + 1)]
    heights: list[float | None] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        finite = [float(v) for v in values[a:b] if v is not None and math.isfinite(v)]
        heights.append(math.fsum(finite) / len(finite) if finite else None)
    known = [h for h in heights if h is not None]
    if not known:
        return " " * cells
    lo, hi = min(known), max(known)
    if hi - lo < span:
        middle = (hi + lo) / 2
        lo, hi = middle - span / 2, middle + span / 2
    top = len(BARS) - 1
    return "".join(
        " " if h is None else BARS[top // 2 if hi == lo else round((h - lo) / (hi - lo) * top)] for h in heights
    )


__all__ = ["BARS", "MISSING", "duration", "interval", "number", "run_duration", "sparkline", "timestamp"]


#: a traceback frame's absolute file path
_FRAME_PATH = re.compile(r'File "(/[^"\n]*)"')
#: where a library's own file starts in a path: an environment's packages, or Python's standard library
_LIBRARY = re.compile(r"/(site-packages|dist-packages|lib/python\d+\.\d+)/")


def client_traceback(tb: str, root: str | None) -> str:
    """A server run's traceback as its owner sees it (the API, the web site, reports): the model's files relative
    to its source ``root``, a library's from ``<python>/lib/…`` on, any other absolute path by its file name alone.
    Why: numpy's frames in a model's error are the user's business; the server's folders, its interpreter's and
    the model environments' paths are not."""
    if root:
        tb = tb.replace(root.rstrip("/") + "/", "")
    return _FRAME_PATH.sub(_frame_path, tb)


def _frame_path(m: re.Match[str]) -> str:
    path = m.group(1)
    lib = _LIBRARY.search(path)
    return f'File "<python>/{path[lib.start() + 1 :]}"' if lib else f'File "…/{path.rsplit("/", 1)[-1]}"'
