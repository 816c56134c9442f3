"""``ancho report``: a run's or a study's PDF report and notebook, from this machine or a server.

Which runs: ``--store`` (or nothing) means runs made on this machine;
``--url``/``$ANCHO_URL`` means the server's, rendered there and downloaded
with your token (a server never sends its files, only the report). The id
is looked up as a study first, then as a run, as ``ancho show`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError, NotFound
from . import app
from .client import Token, Url, connect, write_output

RunId = Annotated[
    str,
    typer.Argument(
        metavar="RUN|STUDY",
        help="A run id or a study id: `ancho runs` and `ancho studies` list this machine's, `ancho status` a server's runs.",
    ),
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
    baseline: int | None = typer.Option(
        None,
        "--baseline",
        metavar="POINT",
        min=0,
        help="A study's PDF also compares every point with this point (common random numbers).",
    ),
    url: Url = None,
    token: Token = None,
) -> None:
    """Write a run's or a study's PDF report and/or a notebook with its results preloaded.

    A run or study made on this machine, or, with --url or $ANCHO_URL (and no --store), one on that server.
    Works for failed and cancelled runs too: they are described with the sequences stored before they ended.
    """
    if pdf is None and notebook is None:
        raise InputError("say what to write: --pdf FILE, --notebook FILE, or both")
    if pdf is not None and notebook is not None and pdf.expanduser().resolve() == notebook.expanduser().resolve():
        raise InputError(f"--pdf and --notebook name the same file '{pdf}'; give two files")
    written: list[Path] = []
    if url and store is None:
        with connect(url, token) as server:
            from ..client.study_reports import is_study, study_report

            if is_study(server, run_id):
                for kind, path in (("pdf", pdf), ("notebook", notebook)):
                    if path is not None:
                        write_output(
                            path.expanduser(), lambda sink, k=kind: study_report(server, run_id, k, sink, baseline)
                        )
                        written.append(path)
                return _print(written)
            if baseline is not None:
                raise InputError(f"--baseline compares the points of a study; '{run_id}' is a run")
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
        if _is_study(st, run_id):
            from ..reports import write_study_notebook
            from ..reports.study_facts import gather_study
            from ..reports.study_pdf import render_study

            if pdf is not None:
                data = gather_study(st, run_id, baseline=baseline)  # a bad --baseline before any file is written
                write_output(pdf.expanduser(), lambda sink: render_study(data, sink))
                written.append(pdf)
            if notebook is not None:
                written += write_study_notebook(st, run_id, notebook)
            return _print(written)
        st.get_run(run_id)  # NotFound before any file is written
        if baseline is not None:
            raise InputError(f"--baseline compares the points of a study; '{run_id}' is a run")
        if pdf is not None:
            write_output(pdf.expanduser(), lambda sink: write_pdf(st, run_id, sink))
            written.append(pdf)
        if notebook is not None:
            written += write_notebook(st, run_id, notebook)
    _print(written)


def _is_study(st, ident: str) -> bool:
    """Whether ``ident`` is a study in the store (else it is taken for a run id), as ``ancho show`` tells them."""
    try:
        st.get_study(ident)
    except NotFound:
        return False
    return True


def _print(written: list[Path]) -> None:
    for path in written:
        print(os.fspath(path))
