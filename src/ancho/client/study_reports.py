"""A study's reports from a server (``GET /api/v1/studies/{id}/report.pdf`` and ``…/notebook.ipynb``).

Beside :meth:`Client.report` (a run's), for ``ancho report ID --url``, which
takes a run id or a study id: :func:`is_study` asks the server which it is,
the way ``ancho show`` asks the local store.
"""

from __future__ import annotations

from typing import BinaryIO
from urllib.parse import quote

import httpx

from ..errors import InputError, NotFound
from . import Client, _reason
from .errors import Unreachable


def is_study(client: Client, ident: str) -> bool:
    """Whether ``ident`` is one of the user's studies on the server (False: take it for a run id)."""
    try:
        client._json("GET", f"/studies/{quote(ident, safe='')}")
    except NotFound:
        return False
    return True


def study_report(client: Client, study_id: str, kind: str, sink: BinaryIO, baseline: int | None = None) -> int:
    """The study's PDF (``kind="pdf"``, compared with point ``baseline`` if given) or notebook, written to ``sink``."""
    name = {"pdf": "report.pdf", "notebook": "notebook.ipynb"}.get(kind)
    if name is None:
        raise InputError(f"report kind '{kind}' is not pdf or notebook")
    params = {"baseline": baseline} if baseline is not None and kind == "pdf" else None
    n = 0
    path = f"/studies/{quote(study_id, safe='')}/{name}"
    with client._stream("GET", path, params=params, timeout=httpx.Timeout(600.0, connect=10.0)) as response:
        try:
            for block in response.iter_bytes(1 << 16):
                sink.write(block)
                n += len(block)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"the server at {client.url} broke off sending the {name} of study '{study_id}': {_reason(exc)}"
            ) from None
    return n
