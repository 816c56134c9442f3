"""Reports of a run for people: a PDF (ReportLab + Matplotlib) and a notebook with the results preloaded.

:mod:`.facts` gathers what both show (the run record, its summary, failures,
the model's docstring); :mod:`.figures` draws :mod:`ancho.plotdata`'s numbers
with Matplotlib, so the PDF and the web site show the same histograms and
convergence bands; :mod:`.pdf` and :mod:`.notebook` lay them out. The CLI
(``ancho report``) and the REST API (``…/report.pdf``, ``…/notebook.ipynb``)
call :func:`write_pdf` and :func:`build_notebook`; a study's report
(:mod:`.study_pdf`, :mod:`.study_notebook`, over :mod:`.study_facts` and
:mod:`.study_figures`) is built the same way from the study's summary and
points table.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from .notebook import build_notebook, write_notebook
from .pdf import write_pdf
from .study_notebook import build_study_notebook, write_study_notebook
from .study_pdf import write_study_pdf

__all__ = [
    "build_notebook",
    "build_study_notebook",
    "rendering",
    "write_notebook",
    "write_pdf",
    "write_study_notebook",
    "write_study_pdf",
]

#: reports rendered at once in one process: each takes a core, and a server's
#: thread pool would otherwise let a burst of report requests take them all
MAX_CONCURRENT = 2
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


@contextmanager
def rendering():
    """Hold one of the :data:`MAX_CONCURRENT` rendering slots (waiting for one if need be)."""
    with _slots:
        yield
