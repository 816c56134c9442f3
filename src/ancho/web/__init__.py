"""The web site served by ``ancho serve`` at ``/``: sign in, submit runs, follow them, explore their results.

:func:`mount_site` adds it to the server's app: the pages and actions
(:mod:`.site`), the static files (served by Ancho itself: nothing comes from
a CDN), the session table, and HTML error pages for the site's own paths
while the REST API keeps answering errors in JSON.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .sessions import Sessions
from .site import HERE, Forbidden, current_session, render, router

#: paths whose errors stay JSON: the REST API and static files (the site's forms get pages)
_JSON_PREFIXES = ("/api/", "/static/")


def is_page(request: Request) -> bool:
    """Whether a request is for one of the site's HTML pages (its errors are pages too)."""
    return not request.url.path.startswith(_JSON_PREFIXES)


def _message(detail) -> str:
    """An error body's ``detail`` (a string, or pydantic-style errors) as one sentence for a page."""
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg', '')}" for e in detail if isinstance(e, dict))
    return str(detail)


def _as_page(handler):
    """Wrap an exception handler of the app: same status and message, as an HTML page on the site's paths."""

    async def wrapped(request: Request, exc: Exception):
        import json

        response = await handler(request, exc)
        if not is_page(request) or not isinstance(response, JSONResponse):
            return response
        try:
            detail = json.loads(response.body).get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        status = response.status_code
        if status == 401:  # a page asking for a token: the way in is signing in
            from fastapi.responses import RedirectResponse

            return RedirectResponse("/signin", status_code=303)
        message = _message(detail) if status != 500 else "Something went wrong on the server; its log has the details."
        if status == 404:
            message = "There is nothing here: the page or run does not exist, or it is not yours."
        if status == 405:
            message = f"This page cannot be requested with {request.method}."
        try:
            session = current_session(request)
        except Exception:  # noqa: BLE001 - an error page must render even when the database does not
            session = None
        return render(request, "error.html", {"status": status, "message": message}, status, session)

    return wrapped


def mount_site(app: FastAPI) -> None:
    """Add the web site to the server's app (call after the app's exception handlers are registered)."""
    app.state.web_sessions = Sessions(app.state.service.settings.db_path)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    async def forbidden(request: Request, exc: Forbidden):
        return JSONResponse({"detail": str(exc)}, status_code=403)

    app.add_exception_handler(Forbidden, forbidden)
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _as_page(handler)
