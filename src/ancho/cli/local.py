"""Commands that work on this machine: ``run``, ``runs``, ``show``, ``export``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ..errors import Field, FieldError, InputError, api_spelling
from . import app

#: the run's fields as this command line names them (the options of ``run`` and ``submit``)
FLAGS = {
    Field.SEQUENCES: "--sequences",
    Field.MAX_SEQUENCES: "--max-sequences",
    Field.MAX_FAILURES: "--max-failures",
    Field.UNTIL: "--until",
    Field.TARGETS: "--target",
    Field.PARAMS: "--param",
    Field.SEED: "--seed",
    Field.EXECUTOR: "--executor",
    Field.WORKERS: "--workers",
}


def cli_spelling(field: Field, name: str | None = None, index: int | None = None) -> str:
    """A field as its option; a parameter by its name (``parameter 'stake'``), as the model declares it."""
    if field is Field.PARAMS and name is not None:
        return api_spelling(field, name, index)
    return FLAGS.get(field) or api_spelling(field, name, index)


def cli_message(exc: FieldError) -> str:
    """``--max-sequences caps a precision goal: …``: the message with options for fields, led by the option at fault."""
    text = exc.spelled(cli_spelling)
    flag = FLAGS.get(exc.field)
    if flag is None or (exc.field is Field.PARAMS and exc.name is None):  # nothing better to point at
        return text
    if exc.field is Field.PARAMS:
        flag = f"{flag} {exc.name}"
    return text if text.startswith(flag) else f"{flag}: {text}"


@contextmanager
def options() -> Iterator[None]:
    """Errors about a run's fields, as this command line names them (``--max-sequences``, not ``max_sequences``)."""
    try:
        yield
    except FieldError as exc:
        raise InputError(cli_message(exc)) from None


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``--param k=v`` pairs to a dict of strings (the model's annotations convert them)."""
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--param '{pair}' is not NAME=VALUE; write for example --param stake=3")
        params[key] = value
    return params


@app.command()
def run(
    model: str = typer.Argument(
        ...,
        metavar="SOURCE[:Class]",
        help="A .py file or folder; or https://…/model.tar.gz, s3://bucket/key.tar.gz, git+https://host/repo.git@REF "
        "(add :path/file.py:Class when needed).",
    ),
    sequences: int | None = typer.Option(
        None, "--sequences", "-n", help="How many sequences (default 1000; with --until, the first batch)."
    ),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Seed of the run (default: a fresh one, recorded)."),
    param: list[str] = typer.Option(
        [], "--param", "-p", metavar="NAME=VALUE", help="A model parameter; repeat for several."
    ),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Worker processes (default: all cores)."),
    executor: str = typer.Option("local", "--executor", "-x", metavar="URL", help="'local' or a Spark master URL."),
    store: str | None = typer.Option(
        None, "--store", metavar="URL", help="A folder, or cassandra://user:pass@host:port (default: $ANCHO_HOME)."
    ),
    target: list[str] = typer.Option(
        [], "--target", "-t", metavar="EXPR", help="A threshold such as 'rounds>=30'; repeat for several."
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="EXPR", help="Precision goal such as 'mean(payoff)+-0.01'."
    ),
    max_sequences: int | None = typer.Option(None, "--max-sequences", help="Cap for --until (default 1,000,000)."),
    max_failures: int = typer.Option(0, "--max-failures", help="Sequences allowed to raise before the run fails."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly the summary object as JSON on stdout."),
    sandbox: bool = typer.Option(
        False,
        "--sandbox",
        help="For someone else's model: run its code only in sandboxed workers (bubblewrap: no network, no sight of "
        "$ANCHO_HOME), never in this process.",
    ),
) -> None:
    """Run a model and print its summary.

    Without --sandbox the model's code runs unsandboxed, in this process and its workers (git and URL sources too):
    it is trusted like any program you run.
    """
    from ..api import run as run_model
    from .render import RunProgress, print_summary

    with options(), RunProgress(enabled=True) as bar:
        results = run_model(
            model,
            parse_params(param),
            sequences,
            seed,
            workers,
            executor,
            store,
            target,
            until,
            max_sequences,
            max_failures,
            progress=bar,
            announce=lambda m: print(f"ancho: {m}", file=sys.stderr),
            sandbox=sandbox,
        )
    final = results.record
    if as_json:
        sys.stdout.write(json.dumps(final.summary) + "\n")
    elif final.summary is not None:
        print_summary(final.summary, final)


@app.command()
def runs(
    store: str | None = typer.Option(None, "--store", metavar="URL", help="Where the runs are (default: $ANCHO_HOME)."),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    limit: int = typer.Option(50, "--limit", help="At most this many (newest first)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run records as JSON, without their summaries (`ancho show RUN --json`)."
    ),
) -> None:
    """List the runs in a store, newest first."""
    from ..stores import STATUSES, open_store
    from .render import out_console, runs_table

    if status is not None and status not in STATUSES:
        raise InputError(f"--status '{status}' is not one of {', '.join(STATUSES)}")
    records = open_store(store).list_runs(status=status, limit=limit, summaries=False)
    if as_json:  # (as GET /runs: a summary of long trajectories is megabytes a run; `ancho show RUN --json` has it)
        sys.stdout.write(json.dumps([{k: v for k, v in r.to_dict().items() if k != "summary"} for r in records]) + "\n")
    elif not records:
        out_console.print("no runs yet: try `ancho run examples/gambler.py`")
    else:
        out_console.print(runs_table(records))


@app.command()
def show(
    run_id: str = typer.Argument(..., metavar="RUN"),
    store: str | None = typer.Option(None, "--store", metavar="URL"),
    as_json: bool = typer.Option(False, "--json", help="Print exactly the summary object."),
    failures: bool = typer.Option(False, "--failures", help="List the sequences that failed, with tracebacks."),
) -> None:
    """Show a run's or a study's summary again (or why it failed)."""
    from rich.text import Text

    from ..stores import open_store
    from ..stores.base import StudyRecord
    from .render import out_console, print_summary
    from .studies import find_record, show_study

    st = open_store(store)
    record = find_record(st, run_id)
    if isinstance(record, StudyRecord):
        return show_study(st, record.id, as_json)
    if failures:
        for f in st.failures(run_id):
            out_console.print(Text.assemble((f"sequence {f.sequence}", "bold"), f": {f.error}"))  # (the error: plain)
            out_console.print(f.traceback, markup=False, highlight=False)
        return
    if record.summary is None:
        if as_json:
            sys.stdout.write(json.dumps({"run": record.id, "status": record.status, "error": record.error}) + "\n")
        else:
            out_console.print(
                f"run {record.id}: {record.status}, {record.done:,}/{record.total:,} sequences"
                + (f"\nerror: {record.error}" if record.error else ""),
                markup=False,
            )
        if record.status == "failed":
            raise typer.Exit(1)
        return
    if as_json:
        sys.stdout.write(json.dumps(record.summary) + "\n")
    else:
        print_summary(record.summary, record)


@app.command()
def export(
    run_id: str = typer.Argument(..., metavar="RUN"),
    format: str = typer.Option("csv", "--format", "-f", help="csv or parquet."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
    store: str | None = typer.Option(None, "--store", metavar="URL"),
    trajectory: str | None = typer.Option(
        None, "--trajectory", metavar="NAME", help="CSV of one trajectory output, long: sequence,step,value."
    ),
) -> None:
    """Write every sequence's outputs as CSV or Parquet (of a study: its points table)."""
    from ..exports import trajectory_names, write_csv, write_parquet
    from ..stores import open_store
    from ..stores.base import StudyRecord
    from .studies import export_study, find_record

    if format not in ("csv", "parquet"):
        raise InputError(f"--format '{format}' is not csv or parquet")
    st = open_store(store)
    study = isinstance(find_record(st, run_id), StudyRecord)
    if trajectory is not None and (format != "csv" or study):
        raise InputError(
            "--trajectory NAME writes one of a run's trajectories as long CSV (sequence,step,value), with --format "
            "csv; for Parquet, --format parquet without --trajectory writes every output, each trajectory as a "
            "list column (a row a sequence)"
        )
    if format == "parquet" and output is None and sys.stdout.isatty():
        raise InputError("Parquet is binary: give --output FILE (or redirect stdout)")
    sink = open(output, "wb") if output else sys.stdout.buffer
    try:
        if study:
            export_study(st, run_id, format, sink)
        else:
            if format == "csv":
                left_out = [] if trajectory else trajectory_names(st, run_id)
                write_csv(st, run_id, sink, trajectory)
                if left_out:  # a CSV cell holds one number: say where the series went
                    typer.echo(
                        f"note: trajectory outputs left out of the CSV ({', '.join(left_out)}); "
                        f"export one with --trajectory {left_out[0]}, or all with --format parquet",
                        err=True,
                    )
            else:
                write_parquet(st, run_id, sink)
    finally:
        if output:
            sink.close()
        else:
            sink.flush()
