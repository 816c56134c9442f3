"""Commands for studies and comparisons on this machine: ``study``, ``studies``, ``compare``.

``show``/``export`` (cli/local.py) find the run or study by :func:`find_record` and call :func:`show_study` and
:func:`export_study` for a study.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from ..errors import Field, FieldError, InputError, NotFound
from . import app
from .client import Token, Url, connect
from .local import options, parse_params

if TYPE_CHECKING:
    from ..stores.base import RunRecord, Store, StudyRecord

#: how this command line spells each design (errors on Field.DESIGN name the option)
DESIGN_FLAGS = ("--grid", "--random", "--lhs", "--sobol", "--morris", "--points")


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise InputError(f"'{text}' is not a number") from None


def parse_ranges(pairs: list[str]) -> dict[str, Any]:
    """``--range NAME=LOW:HIGH`` (a number range) or ``NAME=A,B,C`` (choices)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, spec = pair.partition("=")
        if not sep or not name.strip() or not spec:
            raise InputError(
                f"--range '{pair}' is not NAME=LOW:HIGH or NAME=A,B,C; write for example --range p=0.4:0.6"
            )
        low, colon, high = spec.partition(":")
        if colon:
            try:
                out[name.strip()] = (_number(low), _number(high))
            except InputError as exc:
                raise InputError(f"--range {name.strip()}: {exc}; write LOW:HIGH with two numbers") from None
        else:
            out[name.strip()] = spec.split(",")
    return out


def build_design(grid: list[str], random: int | None, lhs: int | None, sobol: int | None, morris: int | None,
                 points: str | None, ranges: list[str]):  # fmt: skip
    """The design the options name; exactly one of them."""
    from ..studies import designs

    chosen = [f for f, v in zip(DESIGN_FLAGS, (grid, random, lhs, sobol, morris, points)) if v]
    if len(chosen) != 1:
        raise InputError(
            "give one design: --grid NAME=V1,V2,… (repeatable), --random N, --lhs N, --sobol N, --morris N "
            f"or --points FILE.csv{f' (got {chosen[0]} and {chosen[1]})' if len(chosen) > 1 else ''}"
        )
    flag = chosen[0]
    if flag != "--grid" and flag != "--points" and not ranges:
        raise InputError(f"{flag} needs at least one --range NAME=LOW:HIGH (or NAME=A,B,C)")
    if flag in ("--grid", "--points") and ranges:
        raise InputError(f"--range is for sampled designs, not {flag}")
    try:
        if flag == "--grid":
            values: dict[str, list[str]] = {}
            for pair in grid:
                name, sep, spec = pair.partition("=")
                if not sep or not name.strip() or not spec:
                    raise InputError(f"--grid '{pair}' is not NAME=V1,V2,…; write for example --grid p=0.45,0.5")
                values[name.strip()] = spec.split(",")
            return designs.grid(**values)
        if flag == "--points":
            return designs.points(points)
        r = parse_ranges(ranges)
        n = {"--random": random, "--lhs": lhs, "--sobol": sobol, "--morris": morris}[flag]
        return getattr(designs, flag[2:])(n, **r)
    except FieldError as exc:
        raise InputError(f"{flag}: {exc}") from None


@app.command()
def study(
    model: str | None = typer.Argument(None, metavar="PATH[:Class]", help="A .py file or folder (not with --resume)."),
    grid: list[str] = typer.Option([], "--grid", metavar="NAME=V1,V2,…", help="Grid values; repeat per parameter."),
    random: int | None = typer.Option(None, "--random", metavar="N", help="N uniform random points."),
    lhs: int | None = typer.Option(None, "--lhs", metavar="N", help="N Latin hypercube points."),
    sobol: int | None = typer.Option(None, "--sobol", metavar="N", help="Saltelli's design, N a power of two."),
    morris: int | None = typer.Option(None, "--morris", metavar="N", help="Morris design with N trajectories."),
    points: str | None = typer.Option(None, "--points", metavar="FILE.csv", help="The points, one per CSV row."),
    range_: list[str] = typer.Option([], "--range", metavar="NAME=LOW:HIGH|NAME=A,B,C", help="A sampled range."),
    param: list[str] = typer.Option([], "--param", "-p", metavar="NAME=VALUE", help="A parameter every point shares."),
    sequences: int | None = typer.Option(None, "--sequences", "-n", help="Sequences per point (default 1000)."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="The study's seed (every point's run uses it)."),
    target: list[str] = typer.Option([], "--target", "-t", metavar="EXPR", help="A threshold such as 'rounds>=30'."),
    until: str | None = typer.Option(None, "--until", metavar="EXPR", help="A precision goal per point."),
    max_sequences: int | None = typer.Option(None, "--max-sequences", help="Cap per point for --until."),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Worker processes (default: all cores)."),
    executor: str = typer.Option("local", "--executor", "-x", metavar="URL", help="'local' or a Spark master URL."),
    store: str | None = typer.Option(None, "--store", metavar="URL", help="A folder or cassandra://… URL."),
    resume: str | None = typer.Option(None, "--resume", metavar="STUDY", help="Continue an interrupted study."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly the study summary object as JSON."),
) -> None:
    """Run a model at every point of a design (each point an ordinary run with the study's seed)."""
    from ..api import study as run_study
    from .render import RunProgress

    if resume is None and not model:
        raise InputError("give the model PATH[:Class] (or --resume STUDY to continue a study)")
    design = None if resume else build_design(grid, random, lhs, sobol, morris, points, range_)
    flag = next((f for f, v in zip(DESIGN_FLAGS, (grid, random, lhs, sobol, morris, points)) if v), "--resume")
    with options(), _design_errors(flag), RunProgress(enabled=True) as bar:
        result = run_study(
            model,
            design,
            parse_params(param),
            sequences,
            seed,
            workers,
            executor,
            store,
            target,
            until,
            max_sequences,
            progress=bar,
            resume=resume,
        )
    _print(result.summary, as_json)
    if result.status != "succeeded":
        print(f"ancho: error: study {result.study_id}: {result.record.error}", file=sys.stderr)
        raise typer.Exit(1)


@contextmanager
def _design_errors(flag: str) -> Iterator[None]:
    """A design error found while checking the points against the model, spelled as the option that gave it."""
    try:
        yield
    except FieldError as exc:
        if exc.field is not Field.DESIGN:
            raise
        raise InputError(f"{flag}: {exc}") from None


def _print(summary: dict, as_json: bool) -> None:
    from .render import print_parts, study_tables

    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    print_parts(study_tables(summary))


@app.command()
def studies(
    store: str | None = typer.Option(None, "--store", metavar="URL", help="Where the studies are."),
    limit: int = typer.Option(50, "--limit", help="At most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the study records as JSON."),
) -> None:
    """List the studies in a store, newest first."""
    from ..stores import open_store
    from .render import out_console, studies_table

    records = open_store(store).list_studies(limit=limit)
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in records]) + "\n")
        return
    if not records:
        out_console.print("no studies yet: try `ancho study examples/gambler.py --grid p=0.45,0.5`")
        return
    out_console.print(studies_table(records))


@app.command()
def compare(
    run_a: str = typer.Argument(..., metavar="RUN_A"),
    run_b: str = typer.Argument(..., metavar="RUN_B"),
    target: list[str] = typer.Option([], "--target", "-t", metavar="EXPR", help="A threshold to compare."),
    store: str | None = typer.Option(None, "--store", metavar="URL", help="Local runs' store (default: $ANCHO_HOME)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly the comparison object."),
    url: Url = None,
    token: Token = None,
) -> None:
    """Compare run B with run A (b − a), paired on common random numbers when their seeds match.

    Runs made on this machine, or, with --url or $ANCHO_URL (and no --store), runs on that server.
    """
    from ..stores import open_store
    from ..studies.service import compare_runs
    from .render import comparison_tables, print_parts

    if url and store is None:
        with connect(url, token) as server:
            result = server.compare(run_a, run_b, target)
    else:
        with options():
            result = compare_runs(open_store(store), run_a, run_b, target)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    print_parts(comparison_tables(result))


def find_record(st: Store, record_id: str) -> RunRecord | StudyRecord:
    """The study or the run with this id: the one lookup of the commands that take either (``show``, ``export``)."""
    try:
        return st.get_study(record_id)
    except NotFound:
        pass
    try:
        return st.get_run(record_id)
    except NotFound:
        raise NotFound(f"no run or study '{record_id}': `ancho runs` and `ancho studies` list them") from None


def show_study(st, study_id: str, as_json: bool) -> None:
    from ..studies.service import study_summary

    _print(study_summary(st, study_id), as_json)


def export_study(st, study_id: str, format: str, sink) -> None:
    """The points table (``Study.frame``) as CSV or Parquet."""
    from ..studies.service import points_frame

    frame = points_frame(st, study_id)
    if format == "csv":
        sink.write(frame.to_csv(index=False).encode())
    else:
        frame.to_parquet(sink, index=False)


__all__ = ["build_design", "export_study", "find_record", "show_study"]
