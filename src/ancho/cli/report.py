"""``ancho report``: a run's PDF report and a notebook with its results loaded, from this machine or a server.

Which runs: ``--store`` (or nothing) means runs made on this machine;
``--url``/``$ANCHO_URL`` means the server's, rendered there and downloaded
with your token (a server never sends its files, only the report).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError
from . import app
from .client import Token, Url, connect, write_output

RunId = Annotated[
    str, typer.Argument(metavar="RUN", help="A run id: `ancho runs` lists this machine's, `ancho status` a server's.")
]


@app.command()
def report(
    run_id: RunId,
    pdf: Path | None = typer.Option(None, "--pdf", metavar="FILE", help="Write the PDF report to FILE."),
    notebook: Path | None = typer.Option(
        None,
        "--notebook",
        metavar="FILE",
        help="Write a Jupyter notebook that loads the results into a pandas DataFrame to FILE "
        "(a large local run also writes FILE's stem + .parquet beside it).",
    ),
    store: str | None = typer.Option(
        None, "--store", metavar="URL", help="A local run's store (default: $ANCHO_HOME)."
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Write a run's PDF report and/or a notebook with its results preloaded.

    A run made on this machine, or, with --url or $ANCHO_URL (and no --store), one on that server.
    Works for failed and cancelled runs too: they are described with the sequences stored before they ended.
    """
    if pdf is None and notebook is None:
        raise InputError("say what to write: --pdf FILE, --notebook FILE, or both")
    if pdf is not None and notebook is not None and pdf.expanduser().resolve() == notebook.expanduser().resolve():
        raise InputError(f"--pdf and --notebook name the same file '{pdf}'; give two files")
    written: list[Path] = []
    if url and store is None:
        with connect(url, token) as server:
            if pdf is not None:
                write_output(pdf.expanduser(), lambda sink: server.report(run_id, "pdf", sink))
                written.append(pdf)
            if notebook is not None:
                write_output(notebook.expanduser(), lambda sink: server.report(run_id, "notebook", sink))
                written.append(notebook)
    else:
        from ..reports import write_notebook, write_pdf
        from ..stores import open_store

        st = open_store(store)
        st.get_run(run_id)  # NotFound before any file is written
        if pdf is not None:
            write_output(pdf.expanduser(), lambda sink: write_pdf(st, run_id, sink))
            written.append(pdf)
        if notebook is not None:
            written += write_notebook(st, run_id, notebook)
    for path in written:
        print(os.fspath(path))
