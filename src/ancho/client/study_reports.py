"""A study's reports from a server (``GET /api/v1/studies/{id}/report.pdf`` and ``…/notebook.ipynb``).

Beside :meth:`Client.report` (a run's), for ``ancho report ID --url``, which
takes a run id or a study id: :func:`is_study` asks the server which it is,
the way ``ancho show`` asks the local store.
"""

from __future__ import annotations

from typing import BinaryIO
from urllib.parse import quote

from ..errors import NotFound
from . import Client


def is_study(client: Client, ident: str) -> bool:
    """Whether ``ident`` is one of the user's studies on the server (False: take it for a run id)."""
    try:
        client._json("GET", f"/studies/{quote(ident, safe='')}")
    except NotFound:
        return False
    return True


def study_report(client: Client, study_id: str, kind: str, sink: BinaryIO, baseline: int | None = None) -> int:
    """The study's PDF (``kind="pdf"``, compared with point ``baseline`` if given) or notebook, written to ``sink``."""
    return client.report(study_id, kind, sink, study=True, baseline=baseline)
