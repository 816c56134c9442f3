"""``ancho shell RUN``: an IPython session with a run's results preloaded, from this machine or a server.

The quickest way from "the run finished" to "let me look at the data": the
session starts with ``results`` (the run), ``frame`` (every sequence's
outputs in a pandas DataFrame) and ``summary`` (the summary object), plus
``np``, ``pd`` and ``ancho``. Which runs: as for ``ancho report``, ``--store``
(or nothing) means this machine's, ``--url``/``$ANCHO_URL`` a server's, whose
rows are downloaded once as Parquet.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import typer

from ..errors import InputError
from . import app
from .client import Token, Url, connect
from .report import RunId


@dataclass
class ServerRun:
    """A server's run as the shell holds it: what ``ancho.Results`` offers, read once over the REST API."""

    run_id: str
    summary: dict[str, Any]
    frame: Any = field(repr=False)
    url: str = ""

    @property
    def status(self) -> str:
        return str(self.summary.get("status", ""))

    def column(self, name: str):
        return self.frame[name].to_numpy()


def _server_namespace(url: str | None, token: str | None, run_id: str) -> dict[str, Any]:
    import pandas as pd

    with connect(url, token) as server:
        summary = server.summary(run_id)
        buf = io.BytesIO()
        server.download(run_id, "parquet", buf)
    frame = pd.read_parquet(io.BytesIO(buf.getvalue()))
    return {"results": ServerRun(run_id, summary, frame, url or ""), "frame": frame, "summary": summary}


def _local_namespace(store_url: str | None, run_id: str) -> dict[str, Any]:
    from ..api import Results
    from ..stores import open_store

    store = open_store(store_url)
    results = Results(store, store.get_run(run_id))
    return {"results": results, "frame": results.frame, "summary": results.summary}


def namespace(
    run_id: str, store: str | None = None, url: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """The names a shell on ``run_id`` starts with."""
    import numpy as np
    import pandas as pd

    import ancho

    ns = _server_namespace(url, token, run_id) if url and store is None else _local_namespace(store, run_id)
    return {**ns, "np": np, "pd": pd, "ancho": ancho}


@app.command()
def shell(
    run_id: RunId,
    command: str | None = typer.Option(
        None,
        "--command",
        "-c",
        metavar="CODE",
        help="Run CODE with the run loaded, then exit (no interactive session).",
    ),
    store: str | None = typer.Option(
        None, "--store", metavar="URL", help="A local run's store (default: $ANCHO_HOME)."
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Open IPython with a run's results loaded: `results`, `frame` (pandas), `summary`.

    A run made on this machine, or, with --url or $ANCHO_URL (and no --store), one on that server.
    """
    try:
        from IPython import start_ipython
    except ImportError:
        raise InputError("ancho shell needs IPython: pip install 'ancho[report]' (or pip install ipython)") from None
    ns = namespace(run_id, store, url, token)
    rows, outputs = len(ns["frame"]), [c for c in ns["frame"].columns if c != "sequence"]
    banner = (
        f"Ancho run {run_id} ({ns['summary'].get('status', '?')}): {rows:,} sequences, outputs {', '.join(outputs) or '–'}\n"
        "Loaded: results, frame (pandas DataFrame), summary (dict), np, pd, ancho\n"
    )
    argv = ["--no-confirm-exit", "--colors=NoColor" if command else "--colors=Neutral"]
    if command is not None:
        argv += ["-c", command]
    else:
        argv.append(f"--TerminalInteractiveShell.banner2={banner}")
    start_ipython(argv=argv, user_ns=ns)
