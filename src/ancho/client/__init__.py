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

import gzip
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from . import __version__
from .errors import AnchoError, InputError, ModelError, NotFound

__all__ = [
    "Client",
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


# -- errors -------------------------------------------------------------------
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


# -- packing a local model ----------------------------------------------------
#: the server's unpacking caps (sources/extract.py); refusing here saves an upload
MAX_FILES = 10_000
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Packed:
    """A model source packed for upload: ``data`` (.tar.gz bytes), a file name, and the run's ``model.entry``."""

    data: bytes
    filename: str
    entry: str | None
    files: int
    #: the archive's top folder (a packed folder goes in one), or None for a single file
    top: str | None = None


def pack(spec: str) -> Packed:
    """Pack ``PATH[:Class]`` (PATH: a ``.py`` file or a folder; ``FOLDER:file.py[:Class]`` too) as a .tar.gz in memory.

    A folder is packed whole (without caches, ``.git``, virtual environments
    and ``*.pyc``), so the model can import its sibling modules and a
    ``requirements.txt`` at its root reaches the server. A single file is
    packed alone, under its own name, and becomes the entry. The archive is
    deterministic (sorted, fixed times and owners): the same source always
    gives the same bytes, hence the same upload id on the server.
    """
    from .loading import split_spec
    from .tree import source_files

    path_s, file, class_name = split_spec(spec)
    path = Path(path_s).expanduser()
    if not path.exists():
        raise ModelError(f"model path '{path_s}' does not exist; give a .py file or a folder containing one")
    members: list[tuple[str, Path]] = []
    if path.is_file():
        if path.suffix != ".py":
            raise ModelError(f"model file '{path_s}' is not a .py file")
        if file:
            raise ModelError(
                f"cannot read the model '{spec}': a file takes only :Class (FOLDER:file.py:Class is for folders)"
            )
        members.append((path.name, path))
        top = None
        entry: str | None = path.name
        filename = path.stem + ".tar.gz"
    else:
        root = path.resolve()
        if file:
            if not (root / file).is_file():
                raise ModelError(f"'{file}' not found in model folder '{path_s}'")
        elif not any(p.is_file() for p in root.glob("*.py")):
            raise ModelError(f"model folder '{path_s}' has no .py file; put the model in model.py")
        top = root.name if root.name and not root.name.startswith(".") else "model"
        total = 0
        for rel, full in source_files(root):
            total += full.stat().st_size
            if len(members) >= MAX_FILES or total > MAX_BYTES:
                raise InputError(
                    f"model folder '{path_s}' holds more than {MAX_FILES:,} files or {MAX_BYTES // 2**20} MiB, "
                    "more than a server unpacks; submit a folder with just the model's code"
                )
            members.append((f"{top}/{rel}", full))
        entry = ":".join(x for x in (file, class_name) if x) or None
        class_name = None  # already in the entry
        filename = top + ".tar.gz"
    if class_name:
        entry = f"{entry}:{class_name}"
    return Packed(_tar_gz(members), filename, entry, len(members), top)


def _tar_gz(members: list[tuple[str, Path]]) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        dirs: set[str] = set()
        for arcname, full in members:
            parts = arcname.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_info(d, tarfile.DIRTYPE, 0o755))
            data = full.read_bytes()
            mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info = _info(arcname, tarfile.REGTYPE, mode)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


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

    def report(self, run_id: str, kind: str, sink: BinaryIO) -> int:
        """GET /runs/{id}/report.pdf (``kind="pdf"``) or …/notebook.ipynb (``"notebook"``), written to ``sink``; returns the bytes.

        The server renders it on request (seconds for a model with many outputs), hence the long read timeout.
        """
        name = {"pdf": "report.pdf", "notebook": "notebook.ipynb"}.get(kind)
        if name is None:
            raise InputError(f"report kind '{kind}' is not pdf or notebook")
        n = 0
        with self._stream(
            "GET", f"/runs/{_q(run_id)}/{name}", run=run_id, timeout=httpx.Timeout(600.0, connect=10.0)
        ) as response:
            try:
                for block in response.iter_bytes(1 << 16):
                    sink.write(block)
                    n += len(block)
            except httpx.TransportError as exc:
                raise Unreachable(
                    f"the server at {self.url} broke off sending the {name} of run '{run_id}': {_reason(exc)}"
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


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events from text lines: (event name, data)."""
    event, data = "message", []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)
