"""How summaries, runs and progress look on a terminal (Rich)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..present import SUMMARY_COLUMNS, run_duration, sparkline, summary_cell
from ..present import interval as ci
from ..present import number as fmt
from ..present import timestamp as when

err_console = Console(stderr=True)
out_console = Console()


def summary_tables(summary: dict, record=None, failures_command: str = "ancho show {run} --failures") -> list:
    """Rich renderables for a summary: a heading line, outputs, targets, custom summaries.

    ``failures_command`` is the command that lists failed sequences (it differs for a server's runs).
    """
    parts: list = []
    head = [
        f"run {summary['run']}",
        summary["status"],
        f"{summary['sequences']:,} sequences",
        f"seed {summary['seed']}",
    ]
    if record is not None and getattr(record, "block", None):
        head.append(f"block {record.block:,}")
    if record is not None and record.started and record.finished:
        head.append(f"{record.finished - record.started:.2f} s")
    parts.append(Dotted(head))
    if summary.get("params"):
        parts.append(Text("params: " + ", ".join(f"{k}={v!r}" for k, v in summary["params"].items())))
    trajectories = summary.get("trajectories") or {}
    if summary["outputs"] or not trajectories:  # (a run of trajectories alone has no empty table above theirs)
        parts.append(outputs_table(summary["outputs"]))
    if trajectories:
        parts.append(trajectories_table(trajectories))
    if summary.get("targets"):
        tt = _table("targets")
        for col in ("target", "probability", "95% CI"):
            _column(tt, col, "left" if col == "target" else "right", fold=col == "target")
        for row in summary["targets"]:
            _add(tt, row["expr"], fmt(row["probability"], 5), ci(row["ci95"], 5))
        parts.append(tt)
    if summary.get("until"):
        u = summary["until"]
        state = "met" if u["met"] else f"NOT met (stopped at max_sequences={u['max_sequences']:,})"
        parts.append(
            Text(f"precision goal {u['expr']}: half-width {fmt(u['half_width'])} (goal {fmt(u['goal'])}), {state}")
        )
    if summary.get("custom"):
        ct = _table("custom summaries")
        _column(ct, "summary", "left", fold=True)
        _column(ct, "value", "right", fold=True)  # (a structure a summary function returned may be long)
        for k, v in summary["custom"].items():
            _add(ct, k, fmt(v))
        parts.append(ct)
    if summary.get("failures"):
        parts.append(
            Text.assemble(
                (f"{summary['failures']:,} sequences failed", "yellow"),
                f" ({failures_command.format(run=summary['run'])})",
            )
        )
    return parts


class Dotted:
    """Parts of a heading joined by ``  ·  ``, as many a line as the terminal has room for: a line never ends on the
    dot nor breaks inside a part (``seed 4351…`` stays whole) unless a part alone is wider than the terminal."""

    SEPARATOR = "  ·  "

    def __init__(self, parts: Sequence[str]):
        self.parts = list(parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = ""
        for part in self.parts:
            if line and len(line) + len(self.SEPARATOR) + len(part) > options.max_width:
                yield Text(line)
                line = part
            else:
                line = f"{line}{self.SEPARATOR}{part}" if line else part
        if line:
            yield Text(line)


class Fitted:
    """A table with as many of its columns as the terminal has room for.

    Why: a table wider than the terminal was squeezed by Rich, which cut names and numbers short (``fina…``,
    ``44.1…``): a number cut short reads as another number. ``build(left_out)`` makes the table without the columns
    whose keys it is given; the groups in ``left_out_first`` go in turn, least needed first, until it fits (with
    none left to go, its column of names wraps: see :func:`_column`).
    """

    def __init__(self, build: Callable[[tuple[Any, ...]], Table], left_out_first: Sequence[tuple[Any, ...]]):
        self.build = build
        self.left_out_first = left_out_first

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(1 << 20)  # (a measurement is clamped to the width it is given)
        for cut in range(len(self.left_out_first) + 1):
            table = self.build(tuple(c for group in self.left_out_first[:cut] for c in group))
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
        note, table.caption = table.caption, None  # (said below the table at the terminal's width, not the table's)
        yield table  # (still too wide with every group left out: its column of names wraps)
        if note:
            yield note if isinstance(note, Text) else Text(str(note))


def _fitted(
    title: str | None,
    columns: Sequence[str],
    rows: list[dict[str, str]],
    left_out_first: Sequence[tuple[str, ...]],
    left: Sequence[str],
    fold: str,
) -> Fitted:
    """A table of ``rows`` (each its cells by column) under ``columns``, as many as fit (:class:`Fitted`): the
    columns in ``left`` justified left, the others right, the column ``fold`` (of names) the one that may wrap. The
    cells are made once, whatever the number of widths tried."""

    def build(left_out: tuple[str, ...]) -> Table:
        t = _table(title)
        shown = [c for c in columns if c not in left_out]
        for col in shown:
            _column(t, col, "left" if col in left else "right", fold=col == fold)
        for cells in rows:
            _add(t, *(cells[c] for c in shown))
        _left_out_caption(t, left_out)
        return t

    return Fitted(build, left_out_first)


def _left_out_caption(table: Table, left_out: Sequence[str]) -> None:
    if left_out:
        names = f"{', '.join(left_out[:-1])} and {left_out[-1]}" if len(left_out) > 1 else left_out[0]
        table.caption = Text(
            f"{names} left out to fit the terminal (--json has {'them' if len(left_out) > 1 else 'it'})"
        )
        table.caption_justify = "left"


#: the outputs table's columns, and the order in which a narrow terminal leaves them out (tails first, then the
#: spread, then the extremes: the mean, its interval, the median and the count are what a run is read by)
OUTPUT_COLUMNS = ("output", *SUMMARY_COLUMNS)
LEFT_OUT_FIRST = (("p5", "p95"), ("std",), ("min", "max"))


def outputs_table(outputs: dict) -> Fitted:
    """The outputs table: names, numbers and intervals never cut (``--json`` has every value with all its digits)."""

    rows = [{"output": name, **{c: summary_cell(s, c) for c in SUMMARY_COLUMNS}} for name, s in outputs.items()]
    return _fitted("outputs", OUTPUT_COLUMNS, rows, LEFT_OUT_FIRST, ("output",), "output")


#: the trajectories table's columns, and the order in which a narrow terminal leaves them out
TRAJECTORY_COLUMNS = ("trajectory", "steps", "shape", "first", "last", "highest", "at step", "count")
TRAJECTORY_LEFT_OUT_FIRST = (("highest", "at step"), ("first",), ("count",))


def trajectories_table(trajectories: dict) -> Fitted:
    """One row per trajectory output: the shape of its mean step by step, its first, last and highest mean.

    The summary JSON has every step's mean, interval and percentiles; a terminal shows the shape (steps from 0, as
    in ``ancho export --trajectory``), and the run page, report and notebook draw the bands."""

    rows = []
    for name, s in trajectories.items():
        means = s["mean"]
        finite = [(v, i) for i, v in enumerate(means) if v is not None and math.isfinite(v)]
        top = max(finite, key=lambda pair: pair[0]) if finite else (None, None)
        rows.append(
            {
                "trajectory": name,
                "steps": fmt(s["steps"]),
                "shape": sparkline(means, 20, _interval_width(s)),
                "first": fmt(means[0] if means else None, 5),
                "last": fmt(means[-1] if means else None, 5),
                "highest": fmt(top[0], 5),
                "at step": fmt(top[1]),
                "count": fmt(s["count"]),
            }
        )
    title = "trajectories (mean of each step)"
    return _fitted(title, TRAJECTORY_COLUMNS, rows, TRAJECTORY_LEFT_OUT_FIRST, ("trajectory", "shape"), "trajectory")


def _interval_width(trajectory: dict) -> float:
    """The median width of a trajectory's steps' 95% intervals of the mean (0 without them): what its mean can be
    told apart from, so its sparkline does not draw differences smaller than that as a shape."""
    lows, highs = trajectory.get("ci95_low") or [], trajectory.get("ci95_high") or []
    widths = sorted(h - lo for lo, h in zip(lows, highs) if lo is not None and h is not None and math.isfinite(h - lo))
    return widths[len(widths) // 2] if widths else 0.0


def _add(table: Table, *cells: str) -> None:
    """A row of plain text. Why: names, values, expressions and errors come from models and servers, and Rich reads
    ``[…]`` in a string as markup (a parameter value ``[/]`` raised ``MarkupError`` and ``[red]x`` was shown as a red
    ``x``)."""
    table.add_row(*(Text(c) for c in cells))


def _column(table: Table, header: str, justify: JustifyMethod, fold: bool = False) -> None:
    """A column whose header is plain text (it may hold an output's name or a target's expression, see :func:`_add`).

    Its cells are never cut: the column of names (``fold``) wraps them onto more lines when the terminal is too
    narrow for the table (Rich narrows that column first, as the only one that may wrap), the others keep their
    numbers on one line; :class:`Fitted` leaves whole columns out before that."""
    table.add_column(Text(header), justify=justify, no_wrap=not fold, overflow="fold" if fold else "ellipsis")


def _table(title: str | None = None) -> Table:
    return Table(
        title=None if title is None else Text(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def print_summary(summary: dict, record=None, failures_command: str = "ancho show {run} --failures") -> None:
    print_parts(summary_tables(summary, record, failures_command))


def print_parts(parts: list) -> None:
    """Print renderables (:func:`summary_tables`, :func:`study_tables`, :func:`comparison_tables`) on stdout."""
    for part in parts:
        out_console.print(part)


def duration(record) -> str:
    """How long a run took (so far, while it runs)."""
    return run_duration(record.started, record.finished, record.status == "running")


def runs_table(records) -> Fitted:
    """One line per run, in the summary tables' style. Only a model name may be cut short (ids, counts and times
    never are; a narrow terminal loses the duration, then the creation time); a run's sequences read ``done/total``
    only while they differ (running, failed or interrupted)."""
    return _records_table(records, "run")


def studies_table(records) -> Fitted:
    """One line per study, as :func:`runs_table`, with its design (kind × points) and sequences over every point."""
    return _records_table(records, "study")


def _records_table(records, kind: str) -> Fitted:
    design = ("design",) if kind == "study" else ()
    columns = (kind, "model", "status", *design, "sequences", "created", "duration")
    rows = [
        {
            kind: r.id,
            "model": r.model,
            "status": r.status,
            "design": f"{r.design.get('kind')} × {len(r.points):,}" if kind == "study" else "",
            "sequences": f"{r.done:,}" if r.done == r.total else f"{r.done:,}/{r.total:,}",
            "created": when(r.created),
            "duration": duration(r),
        }
        for r in records
    ]
    left = [c for c in columns if c not in ("sequences", "duration")]
    return _fitted(None, columns, rows, (("duration",), ("created",)), left, "model")


class RunProgress:
    """A progress bar on stderr with sequences/s and time left; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and err_console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self):
        self._t0 = time.monotonic()
        return self

    def _start(self) -> None:
        """Show the bar at the first progress report, not before: Rich refreshes it from a thread, and
        local workers are forked only while the driver has no other thread (executors/local.py)."""
        if self.enabled and self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[phase]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("run", total=None, rate="", phase="running")

    def __call__(self, done: int, total: int) -> None:
        self._start()
        if self._progress is not None and self._task is not None:
            elapsed = max(time.monotonic() - self._t0, 1e-9)
            # every sequence done: the summary is read from the store (a long trajectory's takes seconds)
            phase = "summarising" if total and done >= total else "running"
            rate = f"{done / elapsed:,.0f} seq/s"
            self._progress.update(self._task, completed=done, total=total, rate=rate, phase=phase)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)


#: a study's points shown in a terminal; more are counted under the table (``--json`` and ``ancho export`` have all)
POINTS_SHOWN = 40


def study_tables(summary: dict) -> list:
    """Rich renderables for a study's summary: a heading, the parameters every point shares, a table of its points
    (the varied parameters, and each output's mean and target's probability), the sensitivity of each output.

    Before, each point was a line holding every parameter's value and the means at four digits, so a study read as
    a wall of dictionaries; it now reads as the run summaries do (five digits, columns that fit the terminal)."""
    design = summary["design"]
    varied = list(design["parameters"])
    points = summary["points"]
    head = (
        f"study {summary['study']}  ·  {summary['status']}  ·  model {summary['model']}  ·  seed {summary['seed']}  ·  "
        f"{design['kind']} design over {', '.join(varied)}  ·  {design['points']:,} point{'' if design['points'] == 1 else 's'} of "
        f"{summary['sequences']:,} sequences"
    )
    parts: list = [Text(head)]
    shared = {k: v for k, v in (points[0]["params"] if points else {}).items() if k not in varied}
    shared = {k: v for k, v in shared.items() if all(p["params"].get(k) == v for p in points)}
    if shared:
        parts.append(Text("params every point shares: " + ", ".join(f"{k}={v!r}" for k, v in shared.items())))
    if points:
        parts.append(_points_table(points, varied))
    for name, entry in summary.get("sensitivity", {}).items():
        parts.append(_sensitivity_table(name, entry))
        if entry.get("noise_share") is not None:
            parts.append(
                Text(
                    f"noise_share {fmt(entry['noise_share'], 3)}: the share of the variance of {name}'s point means "
                    "that is replication noise"
                )
            )
        if entry.get("warning"):
            parts.append(Text(entry["warning"], style="yellow"))
    return parts


def _points_table(points: list[dict], varied: list[str]) -> Fitted:
    """A row per point. Columns are keyed by what they hold (a parameter, an output, a target), not by their header:
    an output may share its name with a varied parameter or with ``status`` (its header then says ``(mean)``)."""
    outputs = list(dict.fromkeys(name for p in points for name in p["outputs"]))
    targets = list(dict.fromkeys(t["expr"] for p in points for t in p["targets"]))
    shown_points = points[:POINTS_SHOWN]
    taken = {"point", "status", "run", *varied}
    keys: list[tuple[str, str]] = [("point", ""), *(("param", k) for k in varied), ("status", "")]
    keys += [*(("output", o) for o in outputs), *(("target", e) for e in targets), ("run", "")]
    headers = {key: key[0] for key in keys}
    headers.update({("param", k): k for k in varied})
    headers.update({("output", o): f"{o} (mean)" if o in taken else o for o in outputs})
    headers.update({("target", e): f"p({e})" for e in targets})

    def build(left_out: tuple[tuple[str, str], ...]) -> Table:
        t = _table("points (each output's mean, each target's probability)")
        columns = [key for key in keys if key not in left_out]
        for key in columns:
            _column(t, headers[key], "left" if key[0] in ("status", "run") else "right")
        for p in shown_points:
            cells = {("point", ""): fmt(p["point"]), ("status", ""): p["status"], ("run", ""): p["run"] or "–"}
            cells.update({("param", k): fmt(p["params"].get(k), 5) for k in varied})
            cells.update({("output", k): fmt(p["outputs"].get(k, {}).get("mean"), 5) for k in outputs})
            cells.update({("target", t["expr"]): fmt(t.get("probability"), 5) for t in p["targets"]})
            _add(t, *(cells.get(key, "–") for key in columns))
        _left_out_caption(t, [headers[key] for key in left_out])
        if len(points) > len(shown_points):
            more = f"{len(points) - len(shown_points):,} more points not shown (--json or ancho export have them)"
            t.caption = Text(f"{t.caption}; {more}" if t.caption else more)
            t.caption_justify = "left"
        return t

    # the run ids go first, then targets and outputs from the last: the point, its parameters and status stay
    optional = [(("run", ""),), *((("target", e),) for e in reversed(targets))]
    optional += [(("output", o),) for o in reversed(outputs[1:])]
    return Fitted(build, optional)


def _sensitivity_table(name: str, entry: dict) -> Table:
    """Sobol: each parameter's total (ST) and first-order (S1) index; Morris: mu_star and sigma; with their 95%
    intervals where the summary has them (bootstrap; Morris's sigma has none)."""
    sobol = entry.get("method") == "sobol"
    columns = ("ST", "S1") if sobol else ("mu_star", "sigma")
    t = _table(f"sensitivity of {name} ({'Sobol' if sobol else 'Morris'})")
    _column(t, "parameter", "left", fold=True)
    with_ci = {c: any(isinstance(v, dict) for v in entry.get(c, {}).values()) for c in columns}
    for col in columns:
        _column(t, col, "right")
        if with_ci[col]:
            _column(t, "95% CI", "right")
    for param in entry.get(columns[0], {}):
        row = [param]
        for col in columns:
            v = entry.get(col, {}).get(param)
            row.append(fmt(v.get("value") if isinstance(v, dict) else v, 3))
            if with_ci[col]:
                row.append(ci(v.get("ci95") if isinstance(v, dict) else None, 3))
        _add(t, *row)
    return t


def comparison_tables(result: dict) -> list:
    """Rich renderables for a comparison (b − a): a heading, then each output's and target's two values, their
    difference, its 95% interval and p-value (and a paired comparison's variance reduction), five digits as in a
    run's summary. Before, a line per output at four digits, without the two means."""
    how = "paired (same seed)" if result["paired"] else "unpaired (Welch)"
    n_a, n_b = result.get("sequences_a"), result.get("sequences_b")
    counts = (
        f"{n_a:,} and {n_b:,} sequences"
        if isinstance(n_a, int) and isinstance(n_b, int) and n_a != n_b and not result["paired"]
        else f"{result['sequences']:,} sequences"
    )
    parts: list = [Text(f"{result['b']} − {result['a']}  ·  {how}  ·  {counts}")]
    if result["outputs"]:
        parts.append(_comparison_table("output", result["outputs"].items(), "mean", result["paired"]))
    if result["targets"]:
        rows = [(t["expr"], t) for t in result["targets"]]
        parts.append(_comparison_table("target", rows, "probability", False))
    return parts


def _comparison_table(kind: str, rows, value: str, paired: bool) -> Fitted:
    short = "mean" if value == "mean" else "p"
    columns = (
        kind,
        f"{short} a",
        f"{short} b",
        "b − a",
        "95% CI",
        "p-value",
        *(("variance reduction",) if paired else ()),
    )

    cells = []
    for name, o in rows:
        vr = o.get("variance_reduction")
        cells.append(
            {
                kind: name,
                f"{short} a": fmt(o.get(f"{value}_a"), 5),
                f"{short} b": fmt(o.get(f"{value}_b"), 5),
                "b − a": _signed(o.get("difference")),
                "95% CI": ci(o.get("ci95"), 5),
                "p-value": fmt(o.get("p_value"), 3),
                "variance reduction": f"{fmt(vr, 3)}×" if vr is not None else fmt(None),
            }
        )
    return _fitted(f"{kind}s: b − a", columns, cells, (("p-value",), ("variance reduction",)), (kind,), kind)


def _signed(x) -> str:
    """A difference with its sign (``+0.049``; a negative one has its own)."""
    text = fmt(x, 5)
    return f"+{text}" if isinstance(x, (int, float)) and x > 0 else text
