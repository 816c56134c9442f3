"""The web site served by ``ancho serve`` at ``/``: sign in, submit runs, follow them, explore their results.

:func:`mount_site` adds it to the server's app: the pages and actions
(:mod:`.site`) and the static files (served by Ancho itself: nothing comes
from a CDN). The server's app assembly (server/app.py) mounts it and asks
:func:`error_page` to render each error on the site's own paths, while the
REST API keeps answering errors in JSON.

The site is a front end over the server's service: it imports from
``ancho.server`` (the service, the auth resolver and its sessions, the
schemas, the typed :class:`~ancho.server.problems.Problem`), never the REST
routes, and nothing in ``ancho.server`` but the app assembly imports it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ..server.problems import Problem
from .site import HERE, current_session, render, router

#: paths whose errors stay JSON: the REST API and static files (the site's forms get pages)
_JSON_PREFIXES = ("/api/", "/static/")


def is_page(request: Request) -> bool:
    """Whether a request is for one of the site's HTML pages (its errors are pages too)."""
    return not request.url.path.startswith(_JSON_PREFIXES)


def error_page(request: Request, problem: Problem) -> Response | None:
    """A problem with one of the site's pages, as a page (same status); None for the API's paths, which answer JSON."""
    if not is_page(request):
        return None
    if problem.status == 401:  # a page asking for a token: the way in is signing in
        return RedirectResponse("/signin", status_code=303)
    message = problem.sentence
    if problem.status == 500:
        message = "Something went wrong on the server; its log has the details."
    elif problem.status == 404:
        message = "There is nothing here: the page or run does not exist, or it is not yours."
    elif problem.status == 405:
        message = f"This page cannot be requested with {request.method}."
    try:
        session = current_session(request)
    except Exception:  # noqa: BLE001 - an error page must render even when the database does not
        session = None
    return render(request, "error.html", {"status": problem.status, "message": message}, problem.status, session)


def mount_site(app: FastAPI) -> None:
    """Add the site's pages and static files to the server's app (its sessions are the app's ``state.auth``)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
