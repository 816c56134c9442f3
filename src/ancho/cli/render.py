"""How summaries, runs and progress look on a terminal (Rich)."""

from __future__ import annotations

import time

from rich import box
from rich.console import Console
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
    # Fits an 80-column terminal: no vertical rules, intervals never wrapped, 5 significant digits
    # (the summary JSON has them all); outputs wider than that are the terminal's to fold.
    trajectories = summary.get("trajectories") or {}
    if summary["outputs"] or not trajectories:  # (a run of trajectories alone has no empty table above theirs)
        t = _table("outputs")
        for col in ("output", "mean", "95% CI", "std", "min", "p5", "p50", "p95", "max", "count"):
            t.add_column(col, justify="left" if col == "output" else "right", no_wrap=col == "95% CI")
        for name, s in summary["outputs"].items():
            t.add_row(
                name,
                fmt(s["mean"], 5),
                ci(s["ci95"], 5),
                fmt(s["std"], 4),
                fmt(s["min"], 5),
                fmt(s["p5"], 5),
                fmt(s["p50"], 5),
                fmt(s["p95"], 5),
                fmt(s["max"], 5),
                fmt(s["count"]),
            )
        parts.append(t)
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
    t = Table()
    for col in ("run", "model", "status", "sequences", "created", "duration"):
        t.add_column(col, justify="right" if col in ("sequences", "duration") else "left")
    for r in records:
        t.add_row(r.id, r.model, r.status, f"{r.done:,}/{r.total:,}", when(r.created), duration(r))
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
