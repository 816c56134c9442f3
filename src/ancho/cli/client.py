"""Commands that talk to a server (``ancho serve``): ``submit``, ``status``, ``watch``, ``results``, ``cancel``.

They read the server's address from ``--url`` or ``$ANCHO_URL`` and the
user's token from ``--token`` or ``$ANCHO_TOKEN`` (``ancho users add NAME``
on the server prints one).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from ..errors import InputError, RunCancelled, RunFailed
from . import app

Url = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="ANCHO_URL", metavar="URL", help="The server, e.g. http://127.0.0.1:8642 (default: $ANCHO_URL)."
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ANCHO_TOKEN",
        metavar="TOKEN",
        show_default=False,
        help="Your API token from `ancho users add NAME` (default: $ANCHO_TOKEN).",
    ),
]
RunId = Annotated[str, typer.Argument(metavar="RUN", help="A run id, as `ancho submit` printed it.")]


def connect(url: str | None, token: str | None):
    from ..client import Client

    return Client.from_env(url, token)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@app.command()
def submit(
    model: str = typer.Argument(
        ...,
        metavar="SOURCE[:Class]",
        help="A .py file or folder (packed and uploaded), or an https/s3/git source the server fetches (as for `ancho run`).",
    ),
    sequences: int | None = typer.Option(
        None, "--sequences", "-n", help="How many sequences (default 1000; with --until, the first batch)."
    ),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Seed of the run (default: a fresh one, recorded)."),
    param: list[str] = typer.Option(
        [], "--param", "-p", metavar="NAME=VALUE", help="A model parameter; repeat for several."
    ),
    target: list[str] = typer.Option(
        [], "--target", "-t", metavar="EXPR", help="A threshold such as 'rounds>=30'; repeat for several."
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="EXPR", help="Precision goal such as 'mean(payoff)+-0.01'."
    ),
    max_sequences: int | None = typer.Option(None, "--max-sequences", help="Cap for --until."),
    max_failures: int | None = typer.Option(
        None, "--max-failures", help="Sequences allowed to raise before the run fails (default 0)."
    ),
    executor: str | None = typer.Option(
        None, "--executor", metavar="URL", help="'local' (default) or the server's Spark master URL."
    ),
    watch_it: bool = typer.Option(
        False, "--watch", help="Then follow the run like `ancho watch` and print its summary."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the created run as JSON (with --watch: exactly the summary object)."
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload a local model and queue a run of it; prints the run id.

    A folder is packed whole (without caches, .git and virtual environments); a single
    file is sent alone. The server checks the model and the parameters before queueing.
    """
    from ..client import Rejected, pack
    from ..inputs import run_settings
    from ..sources.fetch import parse_source_arg
    from .local import options, parse_params

    params = parse_params(param)
    with (
        options()
    ):  # the run-request rules, checked here before anything is packed and sent (the server checks its cap)
        run_settings(sequences, 0 if seed is None else seed, target, until, max_sequences, max_failures)
    remote = parse_source_arg(model)  # an https/s3/git source: the server fetches it itself
    with connect(url, token) as server:
        if remote is not None:
            spec, entry = remote
            source = {**spec, **({"entry": entry} if entry else {})}
            packed = None
        else:
            packed = pack(model)
            upload = server.upload(packed.data, packed.filename)
            source = {"upload": upload["id"], "entry": packed.entry}
        try:
            created = server.submit(
                source,
                params=params,
                sequences=sequences,
                seed=seed,
                targets=target,
                until=until,
                max_sequences=max_sequences,
                max_failures=max_failures,
                executor=executor,
            )
        except Rejected as exc:
            if packed is None:
                raise
            raise Rejected(local_paths(str(exc), model, packed.top), exc.status, exc.detail) from None
        run_id = created["id"]
        if as_json and not watch_it:
            emit_json(created)
            return
        if not as_json:
            print(run_id, flush=True)
        if watch_it:
            follow(server, run_id, as_json)


@app.command()
def status(
    run_id: Annotated[
        str | None, typer.Argument(metavar="[RUN]", help="A run id; without it, a table of your runs.")
    ] = None,
    only: str | None = typer.Option(None, "--status", help="In the table, only runs with this status."),
    limit: int = typer.Option(
        50,
        "--limit",
        min=1,
        max=1000,
        help="At most this many runs in the table (newest first), or failures with --failures.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run (or the list of runs) as the server describes it."
    ),
    failures: bool = typer.Option(
        False, "--failures", help="With RUN: list the sequences that failed, with tracebacks."
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Show a run's status, or list your runs on the server.

    With RUN: its status, progress, parameters and error. Without: your runs, newest first.
    """
    from .render import out_console, runs_table

    if failures and run_id is None:
        raise InputError(
            "--failures lists one run's failed sequences: give the run, as in `ancho status RUN --failures`"
        )
    with connect(url, token) as server:
        if run_id is not None:
            if failures:
                found = server.failures(run_id, limit=limit)
                if as_json:
                    emit_json(found)
                else:
                    for f in found:
                        print(f"sequence {f['sequence']}: {f['error']}\n{f['traceback'].rstrip()}")
                return
            run = server.get_run(run_id)
            if as_json:
                emit_json(run)
            else:
                describe_run(run)
            return
        runs = server.list_runs(status=only, limit=limit)
    if as_json:
        emit_json(runs)
    elif not runs:
        out_console.print(
            "no runs"
            + (f" with status {only}" if only else "")
            + " on this server yet: try `ancho submit examples/gambler.py`",
            markup=False,
            highlight=False,
        )
    else:
        out_console.print(runs_table([as_record(r) for r in runs]))


@app.command()
def watch(
    run_id: RunId,
    as_json: bool = typer.Option(
        False, "--json", help="At the end, print exactly the summary object instead of tables."
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Follow a run live, then print its summary.

    A progress bar on a terminal (sequences/s, time left); the summary at the end.
    Exits 1 if the run failed or was cancelled, with the reason on stderr.
    """
    with connect(url, token) as server:
        follow(server, run_id, as_json)


@app.command()
def results(
    run_id: RunId,
    format: str = typer.Option(
        "summary",
        "--format",
        "-f",
        help="summary (default; also 'json'): the summary object as JSON. "
        "csv or parquet: every sequence's outputs (a header, then one line per sequence).",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
    url: Url = None,
    token: Token = None,
) -> None:
    """Fetch a run's summary, or all its rows (CSV, Parquet)."""
    fmt = format.lower()
    if fmt not in ("summary", "json", "csv", "parquet"):
        raise InputError(f"--format '{format}' is not summary, json, csv or parquet")
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise InputError("Parquet is binary: give --output FILE (or redirect stdout)")
    with connect(url, token) as server:
        if fmt in ("summary", "json"):
            text = (json.dumps(server.summary(run_id)) + "\n").encode()
            write_output(output, lambda sink: sink.write(text))
            return
        run = server.get_run(run_id)
        if run["status"] != "succeeded":
            done = run["progress"]["done"]
            print(
                f"ancho: warning: run {run_id} is {run['status']}: these are the {done:,} sequences stored so far",
                file=sys.stderr,
            )
        write_output(output, lambda sink: server.download(run_id, fmt, sink))


@app.command()
def cancel(
    run_id: RunId,
    as_json: bool = typer.Option(False, "--json", help="Print the run afterwards as JSON."),
    url: Url = None,
    token: Token = None,
) -> None:
    """Cancel a queued or running run.

    Its workers stop at once; a finished run is left as it is.
    """
    with connect(url, token) as server:
        before = server.get_run(run_id)
        after = server.cancel(run_id)
    if as_json:
        emit_json(after)
        return
    done, total = after["progress"]["done"], after["progress"]["total"]
    if before["status"] in ("succeeded", "failed", "cancelled"):
        print(
            f"run {run_id} had already {'been cancelled' if before['status'] == 'cancelled' else before['status']}; nothing to cancel"
        )
    elif after["status"] == "cancelled":
        print(f"run {run_id} cancelled after {done:,} of {total:,} sequences")
    else:
        print(f"run {run_id} is {after['status']} ({done:,}/{total:,} sequences)")


# -- helpers ------------------------------------------------------------------
def follow(server, run_id: str, as_json: bool) -> None:
    """Watch ``run_id`` to its end; print its summary, or raise RunFailed/RunCancelled."""
    final = None
    try:
        with WatchProgress(run_id) as bar:
            for state in server.events(run_id):
                bar(state)
                if state.get("end"):
                    final = state
    except KeyboardInterrupt:
        print(
            f"ancho: stopped watching; run {run_id} goes on on the server (ancho watch {run_id}, ancho cancel {run_id})",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
    status = final["status"] if final else "unknown"
    if status == "succeeded":
        summary = patiently(lambda: server.summary(run_id))
        if as_json:
            emit_json(summary)
        else:
            print_tables(summary, as_record(patiently(lambda: server.get_run(run_id))))
        return
    done, total = (final or {}).get("done", 0), (final or {}).get("total", 0)
    if status == "cancelled":
        raise RunCancelled(f"run {run_id} was cancelled after {done:,} of {total:,} sequences")
    error = " ".join(str((final or {}).get("error") or "no reason recorded").split())
    raise RunFailed(f"run {run_id} {status}: {error}")


def patiently(call, give_up_after: float = 60.0):
    """``call()``, retried while the server is unreachable (it may be restarting just as a run ended)."""
    import time

    from ..client import Unreachable

    deadline = time.monotonic() + give_up_after
    while True:
        try:
            return call()
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


class WatchProgress:
    """A Rich progress bar on stderr (status, bar, done/total, sequences/s, time left); silent without a terminal."""

    def __init__(self, run_id: str):
        from .render import err_console

        self.run_id = run_id
        self.console = err_console
        self.enabled = err_console.is_terminal
        self._progress: Any = None  # a rich Progress once the first update arrives
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
            from rich.text import Text

            class Count(ProgressColumn):
                def render(self, task):
                    total = f"{int(task.total):,}" if task.total is not None else "?"
                    return Text(f"{int(task.completed):,}/{total}", style="progress.download")

            class Rate(ProgressColumn):
                def render(self, task):
                    speed = task.finished_speed or task.speed
                    return Text(f"{speed:,.0f} seq/s" if speed else "", style="progress.data.speed")

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                Count(),
                Rate(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __call__(self, state: dict) -> None:
        if self._progress is None:
            return
        done, total = int(state.get("done") or 0), int(state.get("total") or 0) or None
        description = state.get("status", "")
        if state.get("failures"):
            description += f" ({state['failures']:,} failed)"
        if self._task is None:
            self._task = self._progress.add_task(description, total=total, completed=done)
        else:
            self._progress.update(self._task, description=description, total=total, completed=done)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)


def print_tables(summary: dict, record) -> None:
    """render.print_summary, with the hint for failed sequences pointing at this server."""
    from .render import print_summary

    print_summary(summary, record, failures_command="ancho status {run} --failures")


def as_record(run: dict) -> SimpleNamespace:
    """A run as the server describes it, shaped like a store record for render.py."""
    progress = run.get("progress") or {}
    return SimpleNamespace(**{**run, "done": progress.get("done", 0), "total": progress.get("total", 0)})


def describe_run(run: dict) -> None:
    from .render import duration, when

    r = as_record(run)
    pct = f" ({100 * r.done / r.total:.0f}%)" if r.total else ""
    lines = [
        f"run {r.id}  ·  {r.model}  ·  {r.status}  ·  {r.done:,}/{r.total:,} sequences{pct}",
        f"created {when(r.created)}  ·  started {when(r.started)}  ·  finished {when(r.finished)}  ·  {duration(r)}",
        f"seed {r.seed}  ·  entry {r.entry}"
        + (f"  ·  block {r.block:,}" if getattr(r, "block", None) else "")
        + (f"  ·  params: {', '.join(f'{k}={v!r}' for k, v in r.params.items())}" if r.params else ""),
    ]
    if r.targets:
        lines.append("targets: " + ", ".join(r.targets))
    if r.until:
        lines.append(
            f"until {r.until} (at most {r.max_sequences:,} sequences)" if r.max_sequences else f"until {r.until}"
        )
    if r.failures:
        lines.append(f"{r.failures:,} sequences failed (allowed: {r.max_failures:,}): ancho status {r.id} --failures")
    if r.error and r.status != "cancelled":
        lines.append(f"error: {r.error}")
    print("\n".join(lines))


def local_paths(message: str, spec: str, top: str | None) -> str:
    """Show the server's copy of an uploaded model (``…/sources/trees/ID[/top]``) as the user's own path."""
    import re

    from ..loading import split_spec

    path = Path(split_spec(spec)[0])
    local = str(path if top else path.parent) or "."
    pattern = r"/\S*?/sources/trees/[0-9a-f]{64}" + (re.escape("/" + top) if top else "")
    return re.sub(pattern, lambda m: local, message)


def write_output(output: Path | None, write) -> None:
    """Call ``write(binary sink)`` on stdout, or on ``output`` (atomically: a failed download leaves no partial file)."""
    if output is None:
        try:
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # `ancho results RUN -f csv | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return
    from ..exports import write_file

    write_file(output, write)
