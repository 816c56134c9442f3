"""What can go wrong talking to a server: each an AnchoError with a one-line message naming what is at fault."""

from __future__ import annotations

import json
from typing import Any

from ..errors import AnchoError, InputError


class ClientError(AnchoError):
    """Talking to the server went wrong."""


class NoServer(ClientError, InputError):
    """Neither ``--url`` nor ``ANCHO_URL`` names a server."""


class Unreachable(ClientError):
    exit_code = 1


class Unauthorized(ClientError):
    """The token is missing, mistyped or revoked (HTTP 401)."""


class Rejected(ClientError, InputError):
    """The server refused the request (4xx); ``detail`` is what it said."""

    def __init__(self, message: str, status: int, detail: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class NotFinished(ClientError):
    """A run has no summary because it has not succeeded (yet); ``status`` and ``error`` say where it is."""

    exit_code = 1

    def __init__(self, message: str, status: str | None = None, error: str | None = None):
        super().__init__(message)
        self.status = status
        self.error = error


class ServerError(ClientError):
    """The server failed (5xx) or answered with something that is not Ancho's API."""

    exit_code = 1


def normalize_url(url: str | None) -> str:
    """``host:port``, ``http://host:port/`` or ``…/api/v1`` → ``http://host:port`` (NoServer if empty)."""
    url = (url or "").strip()
    if not url:
        raise NoServer(
            "no server given: set ANCHO_URL to its address (export ANCHO_URL=http://127.0.0.1:8642) or pass --url"
        )
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise NoServer(f"server URL '{url}' must start with http:// or https://")
    url = url.rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    return url


def describe_detail(detail: Any) -> str:
    """The server's ``detail`` as one line: pydantic-style lists become ``field.path: message; …``."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(x) for x in item.get("loc", ()) if x not in ("body", "query", "path")]
                msg = str(item.get("msg", "")).strip()
                parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(p for p in parts if p)
    if isinstance(detail, dict):
        return json.dumps(detail)
    return " ".join(str(detail).split())
