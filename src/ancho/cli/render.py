"""How summaries, runs and progress look on a terminal (Rich)."""

from __future__ import annotations

import time

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
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

from ..present import interval as ci
from ..present import number as fmt
from ..present import run_duration, sparkline
from ..present import timestamp as when

err_console = Console(stderr=True)
out_console = Console()


def summary_tables(summary: dict, record=None, failures_command: str = "ancho show {run} --failures") -> list:
    """Rich renderables for a summary: a heading line, outputs, targets, custom summaries.

    ``failures_command`` is the command that lists failed sequences (it differs for a server's runs).
    """
    parts: list = []
    head = f"run {summary['run']}  ·  {summary['status']}  ·  {summary['sequences']:,} sequences  ·  seed {summary['seed']}"
    if record is not None and getattr(record, "block", None):
        head += f"  ·  block {record.block:,}"
    if record is not None and record.started and record.finished:
        head += f"  ·  {record.finished - record.started:.2f} s"
    parts.append(head)
    if summary.get("params"):
        parts.append("params: " + ", ".join(f"{k}={v!r}" for k, v in summary["params"].items()))
    trajectories = summary.get("trajectories") or {}
    if summary["outputs"] or not trajectories:  # (a run of trajectories alone has no empty table above theirs)
        parts.append(OutputsTable(summary["outputs"]))
    if trajectories:
        parts.append(trajectories_table(trajectories))
    if summary.get("targets"):
        tt = _table("targets")
        for col in ("target", "probability", "95% CI"):
            tt.add_column(col, justify="left" if col == "target" else "right", no_wrap=col == "95% CI")
        for row in summary["targets"]:
            tt.add_row(row["expr"], fmt(row["probability"], 5), ci(row["ci95"], 5))
        parts.append(tt)
    if summary.get("until"):
        u = summary["until"]
        state = "met" if u["met"] else f"NOT met (stopped at max_sequences={u['max_sequences']:,})"
        parts.append(f"precision goal {u['expr']}: half-width {fmt(u['half_width'])} (goal {fmt(u['goal'])}), {state}")
    if summary.get("custom"):
        ct = _table("custom summaries")
        ct.add_column("summary")
        ct.add_column("value", justify="right")
        for k, v in summary["custom"].items():
            ct.add_row(k, fmt(v))
        parts.append(ct)
    if summary.get("failures"):
        parts.append(
            f"[yellow]{summary['failures']:,} sequences failed[/yellow] ({failures_command.format(run=summary['run'])})"
        )
    return parts


#: the outputs table's columns, and the order in which a narrow terminal leaves them out (tails first, then the
#: spread, then the extremes: the mean, its interval, the median and the count are what a run is read by)
OUTPUT_COLUMNS = ("output", "mean", "95% CI", "std", "min", "p5", "p50", "p95", "max", "count")
LEFT_OUT_FIRST = (("p5", "p95"), ("std",), ("min", "max"))


class OutputsTable:
    """The outputs table, with as many columns as the terminal has room for.

    Why: with every column, a run of long output names or long numbers is ~100 characters wide, and Rich squeezed it
    into 80 by cutting names and numbers short (``fina…``, ``44.1…``): a number cut short reads as another number.
    So the least needed columns go first, named under the table; names, numbers and intervals are never cut (the
    summary JSON, ``--json``, has every value, with all its digits).
    """

    def __init__(self, outputs: dict):
        self.outputs = outputs

    def table(self, left_out: tuple[str, ...] = ()) -> Table:
        t = _table("outputs")
        shown = [c for c in OUTPUT_COLUMNS if c not in left_out]
        for col in shown:
            t.add_column(col, justify="left" if col == "output" else "right", no_wrap=True)
        for name, s in self.outputs.items():
            cells = {
                "output": name,
                "mean": fmt(s["mean"], 5),
                "95% CI": ci(s["ci95"], 5),
                "std": fmt(s["std"], 4),
                "min": fmt(s["min"], 5),
                "p5": fmt(s["p5"], 5),
                "p50": fmt(s["p50"], 5),
                "p95": fmt(s["p95"], 5),
                "max": fmt(s["max"], 5),
                "count": fmt(s["count"]),
            }
            t.add_row(*(cells[c] for c in shown))
        if left_out:
            t.caption = f"{', '.join(left_out[:-1])} and {left_out[-1]} left out to fit the terminal (--json has them)"
            t.caption_justify = "left"
        return t

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(1 << 20)  # (a measurement is clamped to the width it is given)
        for cut in range(len(LEFT_OUT_FIRST) + 1):
            table = self.table(tuple(c for group in LEFT_OUT_FIRST[:cut] for c in group))
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
        yield table  # (still too wide, as few columns as it can: the terminal folds it)


def trajectories_table(trajectories: dict) -> Table:
    """One row per trajectory output: the shape of its mean step by step, its first, last and highest mean.

    The summary JSON has every step's mean, interval and percentiles; a terminal shows the shape (steps from 0, as
    in ``ancho export --trajectory``), and the run page, report and notebook draw the bands."""
    t = _table("trajectories (mean of each step)")
    for col in ("trajectory", "steps", "shape", "first", "last", "highest", "at step", "count"):
        t.add_column(col, justify="left" if col in ("trajectory", "shape") else "right", no_wrap=col == "shape")
    for name, s in trajectories.items():
        means = s["mean"]
        finite = [(v, i) for i, v in enumerate(means) if v is not None]
        top = max(finite, key=lambda pair: pair[0]) if finite else (None, None)
        t.add_row(
            name,
            fmt(s["steps"]),
            sparkline(means, 20),
            fmt(means[0] if means else None, 5),
            fmt(means[-1] if means else None, 5),
            fmt(top[0], 5),
            fmt(top[1]),
            fmt(s["count"]),
        )
    return t


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )


def print_summary(summary: dict, record=None, failures_command: str = "ancho show {run} --failures") -> None:
    for part in summary_tables(summary, record, failures_command):
        out_console.print(part)


def duration(record) -> str:
    """How long a run took (so far, while it runs)."""
    return run_duration(record.started, record.finished, record.status == "running")


def runs_table(records) -> Table:
    """One line per run, in the summary tables' style. Only a model name may be cut short (ids, counts and times
    never are); a run's sequences read ``done/total`` only while they differ (running, failed or interrupted)."""
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("run", "model", "status", "sequences", "created", "duration"):
        t.add_column(col, justify="right" if col in ("sequences", "duration") else "left", no_wrap=col != "model")
    for r in records:
        sequences = f"{r.done:,}" if r.done == r.total else f"{r.done:,}/{r.total:,}"
        t.add_row(r.id, r.model, r.status, sequences, when(r.created), duration(r))
    return t


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
                TextColumn("[bold]running"),
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
            self._task = self._progress.add_task("run", total=None, rate="")

    def __call__(self, done: int, total: int) -> None:
        self._start()
        if self._progress is not None and self._task is not None:
            elapsed = max(time.monotonic() - self._t0, 1e-9)
            self._progress.update(self._task, completed=done, total=total, rate=f"{done / elapsed:,.0f} seq/s")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
