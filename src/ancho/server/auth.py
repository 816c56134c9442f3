"""Who is asking: the one place a request's credentials become a user.

Every front end asks :meth:`Auth.resolve` with the request's ASGI scope: the
REST routes (through the :data:`current_user` dependency), the status cache in
front of ``GET /api/v1/runs/{id}`` (:mod:`.fastpath`), the app's validation
error handler (a stranger's malformed body is a 401, not a 422) and the web
site. A request authenticates with ``Authorization: Bearer TOKEN``; without
one, a read (GET, HEAD) may use the web site's session cookie, which stands
for the token that opened it (:mod:`.sessions`). Changing things from the site
goes through its own CSRF-checked handlers (web/site.py), never the cookie
alone.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPBearer
from starlette.requests import cookie_parser

from ..errors import AnchoError
from .sessions import COOKIE, Session, Sessions
from .users import Users

#: the challenge every 401 carries
CHALLENGE = {"WWW-Authenticate": "Bearer"}
NO_TOKEN = "this endpoint needs a token: send 'Authorization: Bearer TOKEN' (ancho users add NAME prints one)"
BAD_TOKEN = "the token is not valid (revoked or mistyped)"


class AuthError(AnchoError):
    """No valid credentials (401 with :data:`CHALLENGE`; the web site sends its pages to sign-in instead)."""


class Forbidden(AnchoError):
    """A state-changing site request without a valid CSRF token or from another origin (403)."""


def credentials(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of raw ASGI headers, or None (no ``Authorization``, another scheme, an empty token).

    The first ``Authorization`` header counts, its scheme in any case and the
    token without surrounding spaces, as FastAPI's ``HTTPBearer`` reads it.
    """
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value (every ``Cookie`` header read, later ones winning, as Starlette's ``request.cookies``)."""
    found = None
    for name, value in headers:
        if name == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(COOKIE, found)
    return found


class Auth:
    """Resolves requests to users: bearer tokens (:class:`.users.Users`) and site sessions (:class:`.sessions.Sessions`)."""

    def __init__(self, users: Users, sessions: Sessions):
        self.users = users
        self.sessions = sessions

    def resolve(self, scope) -> str:
        """The user a request (ASGI scope) acts as; :class:`AuthError` saying what is missing otherwise.

        A token that is present is the only credential looked at, even beside a
        live session cookie: a client that sends a revoked token learns so.
        """
        token = credentials(scope["headers"])
        if token is None:
            if scope["method"] in ("GET", "HEAD"):
                session = self.session(scope)
                if session is not None:
                    return session.user
            raise AuthError(NO_TOKEN)
        user = self.users.authenticate(token)
        if user is None:
            raise AuthError(BAD_TOKEN)
        return user

    def session(self, scope) -> Session | None:
        """The live site session of a request's cookie (its user and CSRF token), or None."""
        return self.sessions.get(_cookie(scope["headers"]))


class BearerUser(HTTPBearer):
    """The routes' dependency: :meth:`Auth.resolve` of the request; documented in OpenAPI as HTTP bearer auth.

    ``async`` on purpose: the lookup takes microseconds (an in-memory token
    cache), and a sync dependency costs a hop to the thread pool and back per
    request (benchmarks/bench_server.py, docs/benchmarks.md).
    """

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        return request.app.state.auth.resolve(request.scope)


current_user = BearerUser(
    auto_error=False, scheme_name="HTTPBearer", description="A token from `ancho users add NAME`."
)


def needs_token(route) -> bool:
    """Whether a matched route authenticates its caller (everything but health, the API documents and the site)."""

    def walk(dependant) -> bool:
        return any(d.call is current_user or walk(d) for d in dependant.dependencies)

    dependant = getattr(route, "dependant", None)
    return dependant is not None and walk(dependant)
