"""The status read, answered in front of the framework.

``GET /api/v1/runs/{id}`` is what every client polls, so it is most of a
busy server's requests. Through FastAPI it cost about 0.8 ms of CPU: routing,
dependency resolution, the exception and body-limit layers, each a few
coroutines deep. On this project's 2-core machine that capped status reads
near 1,250/s with a p99 of 80-90 ms under 32 clients, the same as the bare
health check; a minimal FastAPI app measured 2,300/s there and a bare ASGI
app 6,000-10,000/s (benchmarks/bench_server.py, docs/benchmarks.md).

So the one successful case is answered here: a GET with a valid bearer
token for a run of that token's user. It calls what the route calls
(``Users.authenticate``, ``Service.run_status``) and sends the same bytes and
headers. Anything else, including every error and the web site's cookie,
goes on to the app unchanged, which answers and documents it; a test checks
that both answer alike (tests/server/test_fastpath.py).
"""

from __future__ import annotations

import logging

from fastapi.security.utils import get_authorization_scheme_param

from ..errors import AnchoError
from .service import Service

log = logging.getLogger("ancho.server")

PREFIX = "/api/v1/runs/"


class StatusReads:
    """ASGI middleware answering successful status reads; everything else goes to ``app``."""

    def __init__(self, app, service: Service):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        body = await self._answer(scope) if scope["type"] == "http" else None
        if body is None:
            return await self.app(scope, receive, send)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope) -> bytes | None:
        """The response body, or None when the app must answer."""
        path = scope["path"]
        if scope["method"] != "GET" or scope.get("root_path") or not path.startswith(PREFIX):
            return None
        run_id = path[len(PREFIX):]
        if not run_id or "/" in run_id:
            return None
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:  # the first one, as Starlette's Headers.get reads it
                    authorization = value.decode("latin-1")
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None  # a body: the app's size limit and errors apply
        scheme, token = get_authorization_scheme_param(authorization)
        if not token or scheme.lower() != "bearer":
            return None
        try:
            user = self.service.users.authenticate(token)
            return None if user is None else await self.service.run_status(user, run_id)
        except AnchoError:
            return None  # not found, not the user's: the app says so
        except Exception:  # noqa: BLE001 - a bug: the app's handler logs it and answers in JSON
            log.debug("status read of %r left to the app", run_id, exc_info=True)
            return None
