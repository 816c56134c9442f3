"""The status cache: a response cache in front of the route ``GET /api/v1/runs/{id}`` (routes.get_run).

What it caches: nothing of its own. It answers with the response body of a
run's status that the server keeps per run while the store's version of the
run is unchanged (server/status.py, reached through ``Service.run_status``,
which also checks that the run is the caller's). What it saves: the framework.
``GET /api/v1/runs/{id}`` is what every client polls, so it is most of a busy
server's requests, and through FastAPI's routing, dependency resolution and
exception layers it cost about 0.8 ms of CPU: on this project's 2-core
machine that capped status reads near 1,250/s with a p99 of 80-90 ms under
32 clients, where a bare ASGI app answers 6,000-10,000/s
(benchmarks/bench_server.py, docs/benchmarks.md).

A hit is a GET that the route itself would match (the app's own route object
decides, root path included), without a body, whose caller :meth:`Auth.resolve
<ancho.server.auth.Auth.resolve>` accepts and who owns the run: it is answered
here with the route's bytes and headers. Everything else, every error
included, is a miss and goes on to the app unchanged, which answers and
documents it; a test checks that both answer alike
(tests/server/test_fastpath.py).
"""

from __future__ import annotations

import logging

from starlette.routing import Match

from ..errors import AnchoError
from .auth import Auth
from .service import Service

log = logging.getLogger("ancho.server")

_HEADERS = (b"content-type", b"application/json")


class StatusCache:
    """ASGI middleware answering status reads that hit; the rest goes to ``app``.

    ``route`` is the app's route for ``routes.get_run`` (see :func:`route_of`).
    """

    def __init__(self, app, service: Service, auth: Auth, route):
        self.app = app
        self.service = service
        self.auth = auth
        self.route = route

    async def __call__(self, scope, receive, send):
        body = await self._answer(scope) if scope["type"] == "http" else None
        if body is None:
            return await self.app(scope, receive, send)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), _HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope) -> bytes | None:
        """The cached response body, or None when the route must answer."""
        if scope["method"] != "GET":
            return None
        match, child = self.route.matches(scope)
        if match is not Match.FULL:
            return None
        for name, value in scope["headers"]:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None  # a body: the app's size limit and errors apply
        try:
            user = self.auth.resolve(scope)
            return await self.service.run_status(user, child["path_params"]["run_id"])
        except AnchoError:
            return None  # no valid credentials, not found, not the user's: the route says so
        except Exception:  # noqa: BLE001 - a bug: the app's handler logs it and answers in JSON
            log.debug("status read of %s left to the app", scope["path"], exc_info=True)
            return None


def route_of(routes, endpoint):
    """The app's route serving ``endpoint`` (the cache matches requests exactly as the app's router does)."""
    for route in routes:
        if getattr(route, "endpoint", None) is endpoint:
            return route
    raise LookupError(f"no route serves {endpoint.__name__}")
