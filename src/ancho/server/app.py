"""The ASGI application, assembled: the REST API and the web site over one service, the middleware, start-up and shutdown.

Layers (imports only run downward): the web site (``ancho.web``) and the REST
routes (:mod:`.routes`) are two front ends over :class:`.service.Service`;
both resolve callers with :mod:`.auth` and describe errors as a
:class:`.problems.Problem`. This module alone knows both front ends: it
mounts them, and answers each error as a page on the site's paths and as
JSON elsewhere.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import AnchoError
from ..web import error_page, mount_site
from . import problems
from .auth import Auth, AuthError, needs_token
from .fastpath import StatusCache, route_of
from .problems import Problem
from .routes import get_run, router
from .service import Service
from .sessions import Sessions
from .settings import Settings

log = logging.getLogger("ancho.server")

DESCRIPTION = """
Submit runs of stochastic simulation models, follow them, and fetch their results.

Every endpoint but `/api/v1/health` needs `Authorization: Bearer TOKEN` (a token from
`ancho users add NAME`). A user sees and touches only their own models, runs and
results: anything else is 404. Errors are JSON: `{"detail": …}` saying what is wrong.
"""


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared or streamed.

    A declared Content-Length is checked before the app runs. A body without
    one (chunked) is read here first, up to the limit, and then handed to the
    app: stopping it half-way through the app's own reading would surface as
    the app's parse error (FastAPI turns any failure while reading a body into
    400), not as 413.
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _json(send, 400, "the Content-Length header is not a number")
                if declared > self.limit:
                    return await _json(
                        send, 413, f"the request body is {declared:,} bytes; this server accepts at most {self.limit:,}"
                    )
                return await self.app(scope, receive, send)
        parts: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                first = message
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await _json(
                    send, 413, f"the request body is over {self.limit:,} bytes, the most this server accepts"
                )
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(parts), "more_body": False}
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


class HeadAsGet:
    """ASGI middleware: ``HEAD`` answers as ``GET`` would, headers only, on every GET endpoint (API, site, fast path).

    FastAPI's routes take GET only, so HEAD got 405 while the ``Allow`` header
    (and HTTP) said it was allowed. Here HEAD becomes GET for the app, the
    status and headers (Content-Length included) go out as they are, and the
    body is dropped. A streamed body (the event stream) is stopped after its
    headers: the app is told the client went away, as if it had.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)
        import anyio

        finished = anyio.Event()

        async def head_send(message):
            if finished.is_set():
                return
            if message["type"] == "http.response.body":
                finished.set()
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        async def head_receive():
            if finished.is_set():
                return {"type": "http.disconnect"}
            got = None
            async with anyio.create_task_group() as tg:

                async def client():
                    nonlocal got
                    got = await receive()
                    tg.cancel_scope.cancel()

                async def answered():
                    await finished.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(client)
                tg.start_soon(answered)
            return got if got is not None else {"type": "http.disconnect"}

        await self.app({**scope, "method": "GET"}, head_receive, head_send)


async def _json(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _watch_for_shutdown(svc: Service) -> None:
    """Set ``svc.stopping`` as soon as Uvicorn is told to stop, before it waits for open requests.

    Uvicorn waits (up to its graceful timeout) for responses in progress
    before the lifespan shutdown runs, and an event stream of a running run
    never ends by itself: so streams watch this flag and close, and a SIGTERM
    takes a moment instead of the whole timeout. Uvicorn's own signal
    handlers are installed by now; ours runs first and then calls them.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signals can only be handled on the main thread (an embedding test client, say)
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum, frame, previous=previous):
            svc.stopping.set()
            previous(signum, frame)

        signal.signal(sig, handler)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for ``path`` (HEAD too where GET is, as Starlette serves it)."""
    import re

    patterns = getattr(app.state, "path_patterns", None)
    if patterns is None:
        patterns = [
            (re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(p)) + "$"), {m.upper() for m in ops})
            for p, ops in app.openapi().get("paths", {}).items()
        ]
        app.state.path_patterns = patterns
    found: set[str] = set()
    for regex, methods in patterns:
        if regex.match(path):
            found |= methods
    if "GET" in found:
        found.add("HEAD")
    return sorted(found)


def _files_as_binary(app: FastAPI) -> None:
    """Describe uploaded files as ``type: string, format: binary`` too, in the OpenAPI document.

    FastAPI (OpenAPI 3.1) describes a multipart file only by
    ``contentMediaType``, which client generators (openapi-python-client,
    OpenAPI Generator) do not read as a file: a generated client then sends the
    archive as text and cannot upload a model. ``format: binary`` is what they
    read (tests/server/test_openapi_client.py).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # (which keeps it as app.openapi_schema)
        for schema in document.get("components", {}).get("schemas", {}).values():
            for prop in (schema.get("properties") or {}).values():
                if prop.get("type") == "string" and "contentMediaType" in prop:
                    prop.setdefault("format", "binary")
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.load()
    svc = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(
            "Ancho %s: home %s, store %s, %d runs at a time, %d workers each",
            __version__,
            settings.home,
            svc.store.url,
            settings.concurrency,
            settings.workers,
        )
        svc.start()
        _watch_for_shutdown(svc)
        # What exists now (modules, the app, its routes) lives as long as the server: frozen, the collector stops
        # re-scanning it in every full collection, which were the longest pauses of an idle server's request
        # latency (p99 of 32 clients: 56-97 ms → 31-40 ms; benchmarks/bench_server.py, docs/benchmarks.md)
        gc.collect()
        gc.freeze()
        yield
        log.info("shutting down: running runs go back to the queue and resume on the next start")
        svc.shutdown()

    app = FastAPI(
        title="Ancho",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    _files_as_binary(app)
    app.state.service = svc
    app.state.auth = auth = Auth(svc.users, Sessions(settings.db_path))  # sessions after users: they join its table
    app.include_router(router)
    mount_site(app)

    def answer(request: Request, problem: Problem):
        """The site's paths get their errors as pages, the API and static files as JSON."""
        page = error_page(request, problem)
        return page if page is not None else problem.json()

    @app.exception_handler(AnchoError)
    async def ancho_error(request: Request, exc: AnchoError):
        return answer(request, problems.of_error(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # FastAPI parses the body before it resolves dependencies, so a malformed body would
        # otherwise be judged (422) before the missing token (401): strangers learn nothing.
        if needs_token(request.scope.get("route")):
            try:
                auth.resolve(request.scope)
            except AuthError:
                return answer(request, problems.unauthenticated())
        return answer(request, problems.of_validation(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path only;
            # /runs has a GET and a POST route, so list what the API document says the path allows.
            methods = _allowed_methods(request.app, request.scope.get("path", ""))
            if methods:
                headers["Allow"] = ", ".join(methods)
        return answer(request, Problem(exc.status_code, exc.detail, headers or None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # A bug, never the client's input: logged with its traceback, answered like every other error.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return answer(request, problems.internal(exc))

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # ahead of the size limit, routing and dependencies; matched by the route's own pattern
    app.add_middleware(StatusCache, service=svc, auth=auth, route=route_of(router.routes, get_run))
    app.add_middleware(HeadAsGet)  # outside the status cache, so a HEAD of a status read is answered there too
    if settings.trusted_proxies:
        # Outermost: everything after sees the browser's scheme (a TLS-terminating proxy's https makes the web
        # site's cookies Secure) and address. Only the listed proxies are believed; Uvicorn's own handling, which
        # believes 127.0.0.1 by default, is off (cli/server.py), so this is the one place forwarded headers count.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=[str(h) for h in settings.trusted_proxies])
    return app
