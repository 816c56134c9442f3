"""What went wrong with a request, as a value: the app's error handlers make one, each front end renders it.

The REST API answers a :class:`Problem` as JSON (``{"detail": …}``); the web
site renders the same value as an HTML page for its own paths. Mapping
errors to statuses happens here once, so the two cannot drift apart and the
site never has to parse a JSON body back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from ..errors import AnchoError, Conflict, InputError, NotFound, RunFailed
from .auth import CHALLENGE, AuthError, Forbidden
from .run_results import PageTooWide
from .service import FieldError


@dataclass(frozen=True)
class Problem:
    status: int
    #: a sentence, or pydantic-style errors (``[{"loc", "msg", "type"}]``) for a bad field
    detail: Any
    headers: dict[str, str] | None = None

    def json(self) -> JSONResponse:
        return JSONResponse({"detail": self.detail}, status_code=self.status, headers=self.headers)

    @property
    def sentence(self) -> str:
        """The detail as one sentence (a page shows it; a list of field errors is joined, each after its field)."""
        if isinstance(self.detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg', '')}"
                for e in self.detail
                if isinstance(e, dict)
            )
        return str(self.detail)


def short(text: str, limit: int = 1000) -> str:
    """Error messages quote the input at fault; a 60 KB run id need not come back whole."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def of_error(exc: AnchoError) -> Problem:
    """The status of each kind of error Ancho raises on purpose (anything unlisted is the client's: 400)."""
    text = short(str(exc))
    if isinstance(exc, AuthError):
        return Problem(401, text, CHALLENGE)
    if isinstance(exc, Forbidden):
        return Problem(403, text)
    if isinstance(exc, NotFound):
        return Problem(404, text)
    if isinstance(exc, PageTooWide):  # a query parameter, spelled as FastAPI's own validation names one
        return Problem(422, [{"loc": ["query", exc.param], "msg": text, "type": "value_error"}])
    if isinstance(exc, FieldError):
        return Problem(422, [{"loc": list(exc.loc), "msg": text, "type": "value_error"}])
    if isinstance(exc, InputError):
        return Problem(422, text)
    if isinstance(exc, (RunFailed, Conflict)):
        return Problem(409, text)
    return Problem(400, text)


def unauthenticated() -> Problem:
    """A request to an endpoint that needs a token whose body failed validation and that has no valid token."""
    return Problem(401, "this endpoint needs a valid token: send 'Authorization: Bearer TOKEN'", CHALLENGE)


def of_validation(errors: list[dict]) -> Problem:
    return Problem(
        422, [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
    )


def internal(exc: BaseException) -> Problem:
    """A bug, never the client's input: the server log has its traceback."""
    return Problem(500, f"internal error ({type(exc).__name__}); the server log has the details")
