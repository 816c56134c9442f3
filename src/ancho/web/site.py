"""The web site's pages and actions: thin handlers over the same :class:`~ancho.server.service.Service` as the REST API.

Pages (``/``, ``/signin``, ``/runs``, ``/runs/new``, ``/runs/{id}``) are HTML
rendered here, forms included (every page works without JavaScript); a
visitor without a session is sent to the sign-in page. Actions that change
something (the new-run form's post, a cancel, sign-in and sign-out) need the
session's CSRF token, in a form field or an ``X-CSRF-Token`` header, and a
same-origin ``Origin`` when the browser sends one. Reading (downloads, the
event stream, the run list's refresh) uses the REST API itself, which
accepts the session cookie for GET (server/auth.py resolves both).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile as StarletteUpload

from .. import __version__
from ..server.auth import Auth, AuthError, Forbidden
from ..server.dispatcher import submitted_elsewhere
from ..server.schemas import run_view
from ..server.service import Service
from ..server.sessions import COOKIE, SIGNIN_COOKIE, Session, Sessions, same
from ..stores.base import STATUSES
from .charts import FanChart, fan_charts, fmt, run_charts, targets_svg
from .newrun import NewRun, handle, posted

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = fmt
templates.env.filters["utc"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "–"

router = APIRouter(include_in_schema=False)
log = logging.getLogger("ancho.server")


#: every page: its own scripts only, no framing by other sites, forms post only here (style attributes
#: stay allowed: progress bars set their width)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# -- helpers ------------------------------------------------------------------------
def service(request: Request) -> Service:
    return request.app.state.service


def auth(request: Request) -> Auth:
    return request.app.state.auth


def sessions(request: Request) -> Sessions:
    return auth(request).sessions


def current_session(request: Request) -> Session | None:
    return auth(request).session(request.scope)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _same_origin(request: Request) -> bool:
    """A browser names the site a form or fetch came from; it must be this host (missing: not a browser request).

    Hosts are compared, not schemes: behind a proxy that ends TLS the server
    may see http while the browser says https (the proxy must pass ``Host`` on).
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)


def check_csrf(request: Request, session: Session, given: str | None) -> None:
    if not _same_origin(request):
        raise Forbidden("this request came from another site; use the form on this site")
    if not same(given or request.headers.get("x-csrf-token"), session.csrf):
        raise Forbidden(
            "the form has expired or did not come from this site (missing CSRF token); reload the page and try again"
        )


async def action_session(request: Request) -> Session:
    """The session behind a /site action, its CSRF token checked: an ``X-CSRF-Token`` header, or a form's ``csrf`` field."""
    session = current_session(request)
    if session is None:
        raise AuthError("you are signed out (the session expired or its token was revoked); sign in again")
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get("csrf")  # FastAPI has read the form already; this is its cached copy
        given = field if isinstance(field, str) else None
    check_csrf(request, session, given)
    return session


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/runs"


def _to_signin(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def render(
    request: Request, name: str, context: dict, status: int = 200, session: Session | None = None
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"session": session, "version": __version__, **context},
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _row(record) -> dict:
    """What the run list (and the run page's header) shows of a run."""
    view = run_view(record)
    now = time.time()
    end = record.finished or (now if record.status == "running" else None)
    view["duration"] = _duration(end - record.started) if record.started and end else "–"
    view["percent"] = (
        (100.0 * record.done / record.total) if record.total else (100.0 if record.status == "succeeded" else 0.0)
    )
    return view


# -- sign in and out ----------------------------------------------------------------
@router.get("/")
def home(request: Request):
    return RedirectResponse("/runs" if current_session(request) else "/signin", status_code=303)


def _signin_page(request: Request, next_: str, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "signin.html", {"csrf": nonce, "next": _local_path(next_), "error": error}, status)
    response.set_cookie(
        SIGNIN_COOKIE, nonce, max_age=3600, path="/signin", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


@router.get("/signin")
def signin_form(request: Request, next: str = "/runs"):
    if current_session(request):
        return RedirectResponse(_local_path(next), status_code=303)
    return _signin_page(request, next)


@router.post("/signin")
def signin(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/runs",
):
    if not _same_origin(request) or not same(csrf, request.cookies.get(SIGNIN_COOKIE)):
        return _signin_page(request, next, "The sign-in form expired or came from another site. Please try again.", 403)
    token = token.strip()
    if not token:
        return _signin_page(request, next, "Enter your API token (ancho users add NAME prints it).", 422)
    user = auth(request).users.authenticate(token)
    if user is None:
        return _signin_page(
            request,
            next,
            "That token is not valid: it may be mistyped or revoked. "
            "Ask your administrator for a new one (ancho users add NAME).",
            401,
        )
    sessions(request).close(request.cookies.get(COOKIE))  # signing in again (as anyone) replaces the old session
    sid, _ = sessions(request).open(user, token)
    response = RedirectResponse(_local_path(next), status_code=303)
    response.set_cookie(
        COOKIE,
        sid,
        max_age=int(sessions(request).lifetime),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
def signout(request: Request, csrf: Annotated[str, Form()] = ""):
    session = current_session(request)
    if session is not None:
        check_csrf(request, session, csrf)
        sessions(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- pages --------------------------------------------------------------------------
@router.get("/runs")
def runs_page(request: Request, status: str = "", limit: int = 100):
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    if status and status not in STATUSES:
        return render(
            request,
            "error.html",
            {"status": 422, "message": f"There is no run status '{status}': use one of {', '.join(STATUSES)}."},
            422,
            session,
        )
    limit = min(max(limit, 1), 1000)
    records = service(request).runs(session.user, status or None, limit)
    rows = [_row(r) for r in records]
    return render(
        request,
        "runs.html",
        {"runs": rows, "status": status, "statuses": STATUSES, "limit": limit, "more": len(rows) == limit},
        session=session,
    )


def _new_run_form(request: Request, session: Session, state: NewRun, status: int = 200) -> HTMLResponse:
    svc = service(request)
    every = svc.uploads.list(session.user)
    chosen = state.values.get("upload")
    uploads = every[:50] + [u for u in every[50:] if u["id"] == chosen]  # the chosen one, however old
    return render(
        request, "new.html", {"form": state, "uploads": uploads, "executors": svc.settings.executors}, status, session
    )


@router.get("/runs/new")
def new_run_page(request: Request):
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    return _new_run_form(request, session, NewRun())


@dataclass(frozen=True)
class RunPictures:
    """A finished run's drawn plots: per scalar output (``run_charts``), per trajectory output (``fan_charts``)."""

    charts: list[dict]
    fans: list[FanChart]


T = TypeVar("T")


class Kept:
    """Computed parts of pages that never change (a finished run's plots, an ended study's page), the newest
    ``size`` kept, so reloading a big run's or study's page does not reread it."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return cast(T, self.items[key])
        value = make()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


class _PlotCache:
    """Rendered plots of finished runs, the last 32."""

    def __init__(self, size: int = 32):
        self.kept = Kept(size)

    def get(self, svc: Service, run_id: str) -> RunPictures:
        def make() -> RunPictures:
            plots, fans = svc.results.plots(run_id)  # (behind the run page's own owner check)
            return RunPictures(run_charts(plots), fan_charts(fans))

        return self.kept.get(run_id, make)


plot_cache = _PlotCache()


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str):
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    svc = service(request)
    record = svc.run(session.user, run_id)  # NotFound: the error page says so
    run = _row(record)
    summary = record.summary
    charts, fans, targets_chart, chart_error = [], [], None, None
    if summary is not None:
        try:
            pictures = plot_cache.get(svc, run_id)
            charts, fans = pictures.charts, pictures.fans
        except Exception as exc:  # noqa: BLE001 - the page still shows the summary; the log has the traceback
            log.exception("plots of run %s", run_id)
            chart_error = f"The plots could not be drawn ({type(exc).__name__})."
        targets_chart = targets_svg(summary.get("targets") or [])
    failures = failure_groups(svc.failures(session.user, run_id, limit=20)) if record.failures else []
    rate = eta = None
    if record.status == "running" and record.started and record.done:
        elapsed = max(time.time() - record.started, 1e-6)
        rate = record.done / elapsed
        eta = (record.total - record.done) / rate if record.total > record.done else 0
    return render(
        request,
        "run.html",
        {
            "run": run,
            "summary": summary,
            "charts": charts,
            "fans": fans,
            "comparable": record.status == "succeeded",
            "targets_chart": targets_chart,
            "chart_error": chart_error,
            "failures": failures,
            "rate": rate,
            "eta": _duration(eta) if eta is not None else None,
            "live": not record.final,
            "has_results": record.done > record.failures,
            "elsewhere": submitted_elsewhere(record, svc.id),
        },
        session=session,
    )


from . import compare as _compare  # noqa: E402,F401 - the comparison page (/runs/{id}/compare) registers on this router

# -- actions (CSRF-checked) ---------------------------------------------------------
Action = Annotated[Session, Depends(action_session)]


@router.post("/runs/new")
async def new_run(request: Request, session: Action):
    """The new-run form's post (newrun): its parameters read, or the run started and its page shown."""
    form = await request.form()  # already parsed for the CSRF token: this is Starlette's kept copy
    state = posted(form)
    file = form.get("file")
    archive = (await file.read(), file.filename or "") if isinstance(file, StarletteUpload) and file.filename else None
    chosen = form.get("action")
    action = chosen if isinstance(chosen, str) else "default"
    run_id = await run_in_threadpool(handle, service(request), session.user, state, action, archive)
    if run_id is not None:
        return RedirectResponse(f"/runs/{run_id}", status_code=303)
    return _new_run_form(request, session, state, 422 if state.errors else 200)


@router.post("/site/runs/{run_id}/cancel")
def cancel_run(request: Request, run_id: str, session: Action) -> Response:
    """The run page's Cancel form: back to the run (its errors are pages, like the form's)."""
    service(request).cancel(session.user, run_id)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


from . import studies as _studies  # noqa: E402,F401 - the study pages register on this router


def failure_groups(failures: list[dict]) -> list[dict]:
    """Failed sequences in a row with the same error and traceback, as one entry: ``first``, ``last``, ``count``,
    ``error``, ``traceback``. Why: a batch model's failing block fails its every sequence with one exception, and
    the page showed the same traceback twenty times."""
    groups: list[dict] = []
    for f in failures:
        last = groups[-1] if groups else None
        if (
            last
            and (f["error"], f["traceback"]) == (last["error"], last["traceback"])
            and f["sequence"] == last["last"] + 1
        ):
            last["last"], last["count"] = f["sequence"], last["count"] + 1
        else:
            groups.append({"first": f["sequence"], "last": f["sequence"], "count": 1, "error": f["error"],
                           "traceback": f["traceback"]})  # fmt: skip
    return groups
