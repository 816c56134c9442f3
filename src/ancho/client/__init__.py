"""A small client for an Ancho server's REST API (``ancho serve``), used by the CLI's client verbs.

    from ancho.client import Client, pack

    with Client.from_env() as server:            # ANCHO_URL, ANCHO_TOKEN
        archive = pack("examples/gambler.py")
        upload = server.upload(archive.data, archive.filename)
        run = server.submit({"upload": upload["id"], "entry": archive.entry}, params={"stake": 3}, sequences=10_000)
        for state in server.events(run["id"]):   # {"id", "status", "done", "total", "failures"}, last one with "end"
            ...
        summary = server.summary(run["id"])

Every failure is an :class:`~ancho.errors.AnchoError` with a one-line message
that names the server, the run or the field at fault and says what to do:
:class:`NoServer`, :class:`Unreachable`, :class:`Unauthorized`,
:class:`~ancho.errors.NotFound`, :class:`Rejected` (the server's 4xx detail),
:class:`NotFinished` (no summary yet) and :class:`ServerError` (5xx).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from .. import __version__
from ..errors import InputError, NotFound
from .errors import (
    ClientError,
    NoServer,
    NotFinished,
    Rejected,
    ServerError,
    Unauthorized,
    Unreachable,
    describe_detail,
    normalize_url,
)
from .events import _sse
from .pack import Packed, pack

__all__ = [
    "Client",
    "describe_detail",
    "normalize_url",
    "Packed",
    "pack",
    "ClientError",
    "NoServer",
    "Unreachable",
    "Unauthorized",
    "Rejected",
    "NotFinished",
    "ServerError",
]

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


# -- the client ---------------------------------------------------------------
class Client:
    """Typed calls to one server as one user. ``url``: ``http://host:port``; ``token``: from ``ancho users add``."""

    def __init__(
        self,
        url: str | None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = normalize_url(url)
        self.token = (token or "").strip() or None
        headers = {"User-Agent": f"ancho/{__version__}", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None, **kwargs) -> Client:
        """A client for ``url``/``token``, defaulting to ``$ANCHO_URL``/``$ANCHO_TOKEN``."""
        return cls(url or os.environ.get("ANCHO_URL"), token or os.environ.get("ANCHO_TOKEN"), **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- endpoints ------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/health", auth=False)

    def upload(self, data: bytes, filename: str = "model.tar.gz") -> dict:
        """POST /models: store a .tar.gz/.zip of a model's source; returns ``{"id", "filename", "size", "created"}``."""
        return self._json(
            "POST", "/models", files={"file": (filename, data, "application/gzip")}, action="upload", timeout=300.0
        )

    def submit(
        self,
        model: dict,
        *,
        params: dict | None = None,
        sequences: int | None = None,
        seed: int | None = None,
        targets: list[str] | tuple[str, ...] = (),
        until: str | None = None,
        max_sequences: int | None = None,
        max_failures: int | None = None,
        executor: str | None = None,
    ) -> dict:
        """POST /runs: queue a run of ``model`` (``{"upload": id, "entry": "file.py:Class"}``); returns ``{"id", "status"}``."""
        body: dict[str, Any] = {
            "model": {k: v for k, v in model.items() if v is not None},
            "params": dict(params or {}),
            "targets": list(targets),
        }
        for key, value in (
            ("sequences", sequences),
            ("seed", seed),
            ("until", until),
            ("max_sequences", max_sequences),
            ("max_failures", max_failures),
            ("executor", executor),
        ):
            if value is not None:
                body[key] = value
        # the server checks the model and parameters in a worker before it answers
        return self._json("POST", "/runs", json=body, action="run", timeout=300.0)

    def get_run(self, run_id: str) -> dict:
        """GET /runs/{id}: ``{"id", "status", "progress": {"done", "total"}, "model", "params", "error", …}``."""
        return self._json("GET", f"/runs/{_q(run_id)}", run=run_id)

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[dict]:
        """GET /runs: your runs, newest first."""
        if status is not None and status not in STATUSES:
            raise InputError(f"status '{status}' is not one of {', '.join(STATUSES)}")
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._json("GET", "/runs", params=params)

    def summary(self, run_id: str) -> dict:
        """GET /runs/{id}/summary: the summary object (as ``ancho run --json``); NotFinished until the run succeeds."""
        return self._json("GET", f"/runs/{_q(run_id)}/summary", run=run_id)

    def compare(self, run_a: str, run_b: str, targets: list[str] | tuple[str, ...] = ()) -> dict:
        """GET /runs/{a}/compare/{b}: run b against run a, the comparison object (``ancho compare --json``)."""
        path = f"/runs/{_q(run_a)}/compare/{_q(run_b)}"
        # a 404 is either run: the message names both
        return self._json("GET", path, params={"target": list(targets)}, run=f"{run_a}' or '{run_b}", timeout=300.0)

    def failures(self, run_id: str, limit: int = 100) -> list[dict]:
        """GET /runs/{id}/failures: ``[{"sequence", "error", "traceback"}]``."""
        return self._json("GET", f"/runs/{_q(run_id)}/failures", params={"limit": limit}, run=run_id)

    def cancel(self, run_id: str) -> dict:
        """POST /runs/{id}/cancel: the run afterwards (a finished run comes back unchanged)."""
        return self._json("POST", f"/runs/{_q(run_id)}/cancel", run=run_id, timeout=90.0)

    def results_page(self, run_id: str, offset: int = 0, limit: int = 10_000) -> dict:
        """One JSON page of results: ``{"total", "offset", "next", "results": [{"sequence", …}]}``."""
        return self._json(
            "GET",
            f"/runs/{_q(run_id)}/results",
            params={"format": "json", "offset": offset, "limit": limit},
            run=run_id,
        )

    def rows(self, run_id: str, page: int = 10_000) -> Iterator[dict]:
        """Every sequence's outputs as dicts, page by page."""
        offset: int | None = 0
        while offset is not None:
            body = self.results_page(run_id, offset, page)
            yield from body["results"]
            offset = body.get("next")

    def results(self, run_id: str, format: str = "csv", chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The whole run's results as CSV (a header, then one line per sequence) or Parquet bytes, streamed."""
        if format not in ("csv", "parquet"):
            raise InputError(f"format '{format}' is not csv or parquet (use rows() for JSON)")
        with self._stream(
            "GET",
            f"/runs/{_q(run_id)}/results",
            params={"format": format},
            run=run_id,
            timeout=httpx.Timeout(600.0, connect=10.0),
        ) as response:
            try:
                yield from response.iter_bytes(chunk_size)
            except httpx.TransportError as exc:
                raise Unreachable(
                    f"the server at {self.url} broke off sending the results of run '{run_id}': {_reason(exc)}"
                ) from None

    def download(self, run_id: str, format: str, sink: BinaryIO) -> int:
        """Write :meth:`results` to a binary file object; returns the number of bytes."""
        n = 0
        for block in self.results(run_id, format):
            sink.write(block)
            n += len(block)
        return n

    def report(self, ident: str, kind: str, sink: BinaryIO, *, study: bool = False, baseline: int | None = None) -> int:
        """GET /runs/{id}/report.pdf (``kind="pdf"``) or …/notebook.ipynb (``"notebook"``), written to ``sink``; returns the bytes.

        ``study=True``: the study ``ident``'s (its PDF compared with point ``baseline`` when given). The server
        renders it on request (seconds for a model with many outputs, more for a large study), hence the long
        read timeout.
        """
        name = {"pdf": "report.pdf", "notebook": "notebook.ipynb"}.get(kind)
        if name is None:
            raise InputError(f"report kind '{kind}' is not pdf or notebook")
        what, path = ("study", "studies") if study else ("run", "runs")
        params = {"baseline": baseline} if baseline is not None and kind == "pdf" else None
        n = 0
        with self._stream(
            "GET",
            f"/{path}/{_q(ident)}/{name}",
            run=None if study else ident,
            params=params,
            timeout=httpx.Timeout(600.0, connect=10.0),
        ) as response:
            try:
                for block in response.iter_bytes(1 << 16):
                    sink.write(block)
                    n += len(block)
            except httpx.TransportError as exc:
                raise Unreachable(
                    f"the server at {self.url} broke off sending the {name} of {what} '{ident}': {_reason(exc)}"
                ) from None
        return n

    def events(self, run_id: str, *, give_up_after: float = 60.0, idle: float = 30.0) -> Iterator[dict]:
        """Follow a run: yields ``{"id", "status", "done", "total", "failures"}`` as it changes, ending with the
        final state, which has ``"end": True`` (and ``"error"``).

        Reads the server-sent events of GET /runs/{id}/events. A stream that
        breaks off (the server restarting: its runs resume) is reopened; only
        a server unreachable for ``give_up_after`` seconds ends in Unreachable.
        The first connection is not retried, so a wrong URL fails at once.
        """
        path = f"/runs/{_q(run_id)}/events"
        down_since: float | None = None
        connected = False
        while True:
            try:
                with self._stream(
                    "GET",
                    path,
                    run=run_id,
                    timeout=httpx.Timeout(10.0, read=idle),
                    headers={"Accept": "text/event-stream"},
                ) as response:
                    connected, down_since = True, None
                    for event, data in _sse(response.iter_lines()):
                        try:
                            state = json.loads(data)
                        except ValueError:
                            raise ServerError(
                                f"the server at {self.url} sent an event that is not JSON: {data[:200]!r}"
                            ) from None
                        if event == "end":
                            yield {**state, "end": True}
                            return
                        if event == "progress":
                            yield state
            except httpx.ReadTimeout:
                continue  # nothing changed for a while (a queued run): ask again
            except Unreachable:
                if not connected:
                    raise
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > give_up_after:
                    raise Unreachable(
                        f"lost the server at {self.url} while watching run '{run_id}' "
                        f"(no answer for {give_up_after:.0f} s); the run goes on there: ancho watch {run_id}"
                    ) from None
            except httpx.TransportError:
                pass  # the stream broke off: reopen it
            time.sleep(1.0)

    # -- plumbing -------------------------------------------------------------
    def _json(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        run: str | None = None,
        action: str | None = None,
        timeout: float | None = None,
        **kwargs,
    ) -> Any:
        if auth:
            self._need_token()
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=10.0)
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self._unreachable(exc)) from None
        self._check(response, method, path, run, action)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"the server at {self.url} answered {method} {path} with something that is not JSON; "
                "is ANCHO_URL the address of an Ancho server?"
            ) from None

    def _stream(self, method: str, path: str, *, run: str | None = None, **kwargs):
        """A context manager around a streamed response whose status was checked."""
        self._need_token()
        client = self

        class _Ctx:
            def __enter__(self):
                try:
                    self.cm = client._http.stream(method, path, **kwargs)
                    response = self.cm.__enter__()
                except httpx.TransportError as exc:
                    if isinstance(exc, httpx.ReadTimeout):
                        raise
                    raise Unreachable(client._unreachable(exc)) from None
                if response.status_code >= 400:
                    try:
                        response.read()
                        client._check(response, method, path, run, None)
                    finally:
                        self.cm.__exit__(None, None, None)
                return response

            def __exit__(self, *exc):
                return self.cm.__exit__(*exc)

        return _Ctx()

    def _need_token(self) -> None:
        if not self.token:
            raise Unauthorized(
                "no token: set ANCHO_TOKEN (or pass --token) to a token that `ancho users add NAME` "
                f"printed on the server at {self.url}"
            )

    def _unreachable(self, exc: httpx.TransportError) -> str:
        return f"cannot reach the Ancho server at {self.url} ({_reason(exc)}); is `ancho serve` running there? (ANCHO_URL or --url)"

    def _check(self, response: httpx.Response, method: str, path: str, run: str | None, action: str | None) -> None:
        code = response.status_code
        if code < 400:
            return
        try:
            body = response.json()
            detail = body.get("detail") if isinstance(body, dict) else body
        except ValueError:
            body, detail = None, " ".join(response.text.split())[:300]
        said = describe_detail(detail) if detail not in (None, "") else response.reason_phrase
        if code == 401:
            raise Unauthorized(
                f"the server at {self.url} refused the token: {said.rstrip('.')}; create one with "
                "`ancho users add NAME` on the server and set ANCHO_TOKEN (or pass --token)"
            )
        if code == 404:
            if not (isinstance(body, dict) and "detail" in body):  # Ancho's 404s are JSON
                raise ServerError(
                    f"the server at {self.url} answered {method} {path} with HTTP 404 ({said[:100]}); "
                    "is ANCHO_URL the address of an Ancho server?"
                )
            if run is not None:
                raise NotFound(f"no run '{run}' on the server at {self.url} (`ancho status` lists your runs)")
            raise NotFound(
                f"the server at {self.url} has nothing at {method} {path} ({said}); is ANCHO_URL the address of an Ancho server?"
            )
        if code == 409 and run is not None and isinstance(body, dict) and "status" in body:
            status, error = body.get("status"), " ".join(str(body.get("error") or "").split()) or None
            if status in ("queued", "running"):
                msg = f"run '{run}' is {status}; its summary exists once it has succeeded (ancho watch {run})"
            else:
                msg = (
                    f"run '{run}' failed: {error or 'no reason recorded'}"
                    if status == "failed"
                    else f"run '{run}' was {status}"
                )
                msg += "; it has no summary"
            raise NotFinished(msg, status, error)
        if code == 413:
            raise Rejected(
                f"the server refused the {action or 'request'} as too large: {said}"
                + ("; leave data files out of the model folder" if action == "upload" else ""),
                code,
                detail,
            )
        if 400 <= code < 500:
            what = {"run": "run", "upload": "model upload"}.get(action or "", "request")
            raise Rejected(f"the server rejected the {what}: {said}", code, detail)
        raise ServerError(
            f"the server at {self.url} failed on {method} {path} (HTTP {code}: {said}); its log says more"
        )


def _q(run_id: str) -> str:
    return quote(str(run_id), safe="")


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    text = str(exc).strip()
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "unknown host"
    return text.splitlines()[0][:200] if text else type(exc).__name__
