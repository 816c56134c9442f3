"""The REST API under /api/v1: thin handlers over :class:`~ancho.server.service.Service`."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import __version__
from ..errors import NotFound
from .auth import current_user
from .schemas import (
    Created,
    Error,
    FailureView,
    Health,
    InspectRequest,
    ModelView,
    ResultsPage,
    RunRequest,
    RunView,
    Summary,
    UploadView,
    run_view,
)
from .service import Service


def _operation_id(route) -> str:
    """Operation ids are the handlers' names (``submit_run``): what a generated client's functions are called."""
    return route.name


router = APIRouter(prefix="/api/v1", generate_unique_id_function=_operation_id)

#: FastAPI's type for a route's documented responses
Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {
    401: {"model": Error, "description": "No or invalid token"},
    404: {"model": Error, "description": "No such object for this user"},
}
#: what a request with a body may also get: an unreadable body (400), one too large (413), a bad value (422)
BODY_ERRORS: Responses = {
    **ERRORS,
    400: {
        "model": Error,
        "description": "The body could not be read (not UTF-8, a broken multipart form, a bad Content-Length)",
    },
    413: {"model": Error, "description": "The body is larger than the server accepts (setting max_body_bytes)"},
    422: {"model": Error, "description": "A value is wrong; `detail` names it"},
}


# ``async def`` on purpose: returning an attribute in the thread pool would cost a hop there and back per request.
async def service(request: Request) -> Service:
    return request.app.state.service


User = Annotated[str, Depends(current_user)]
Svc = Annotated[Service, Depends(service)]


@router.get("/health", response_model=Health, tags=["server"])
async def health() -> dict:
    """Liveness: 200 without a token."""
    return {"status": "ok", "version": __version__}


# -- models -------------------------------------------------------------------
@router.post("/models", status_code=201, response_model=UploadView, responses=BODY_ERRORS, tags=["models"])
async def upload_model(
    user: User,
    svc: Svc,
    file: UploadFile = File(..., description="A .tar.gz, .tar or .zip of the model's source folder."),
) -> dict:
    """Upload a model's source. Content-addressed: the same bytes always get the same id."""
    data = await file.read()
    return await run_in_threadpool(svc.uploads.add, user, data, file.filename or "")


@router.get("/models", response_model=list[UploadView], responses=ERRORS, tags=["models"])
def list_models(user: User, svc: Svc) -> list[dict]:
    """Your uploaded models, newest first."""
    return svc.uploads.list(user)


@router.get("/models/{model_id}", response_model=UploadView, responses=ERRORS, tags=["models"])
def get_model(model_id: str, user: User, svc: Svc) -> dict:
    return svc.uploads.get(user, model_id)


@router.post("/inspect", response_model=ModelView, responses=BODY_ERRORS, tags=["models"])
def inspect_model(body: InspectRequest, user: User, svc: Svc) -> dict:
    """The model's name, docstring and parameters (types, defaults), read by a worker; with ``params``, validates them."""
    found = svc.inspect(user, body.model, body.params)
    return {**found["model"], "entry": found["entry"]}


# -- runs ---------------------------------------------------------------------
@router.post("/runs", status_code=201, response_model=Created, responses=BODY_ERRORS, tags=["runs"])
def submit_run(body: RunRequest, user: User, svc: Svc) -> dict:
    """Queue a run. The whole spec is validated against the model first (422 naming the bad field)."""
    record = svc.submit(user, body)
    return {"id": record.id, "status": record.status}


@router.get("/runs", response_model=list[RunView], responses=ERRORS, tags=["runs"])
def list_runs(
    user: User,
    svc: Svc,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    """Your runs, newest first."""
    return [run_view(r) for r in svc.runs(user, status, limit)]


@router.get("/runs/{run_id}", response_model=RunView, responses=ERRORS, tags=["runs"])
async def get_run(run_id: str, user: User, svc: Svc):
    """The run's status and progress: what clients poll.

    A successful read is answered before it gets here, with the same bytes, by
    the status cache in front of this route (server/fastpath.py).
    """
    return Response(await svc.run_status(user, run_id), media_type="application/json")


@router.get(
    "/runs/{run_id}/summary",
    responses={
        **ERRORS,
        200: {"model": Summary},
        409: {"model": Error, "description": "The run has not succeeded (yet)"},
    },
    tags=["runs"],
)
def get_run_summary(run_id: str, user: User, svc: Svc) -> dict:
    """The summary object (same as `ancho run --json`)."""
    record = svc.run(user, run_id)
    if record.summary is None:
        # FastAPI reads the annotation as the 200 response's model, so the 409 is outside it
        return JSONResponse(  # type: ignore[return-value]
            status_code=409,
            content={
                "detail": f"run {run_id} is {record.status}; a summary exists once it has succeeded",
                "status": record.status,
                "error": record.error,
            },
        )
    return record.summary


@router.get("/runs/{run_id}/failures", response_model=list[FailureView], responses=ERRORS, tags=["runs"])
def get_run_failures(
    run_id: str, user: User, svc: Svc, limit: Annotated[int, Query(ge=1, le=10000)] = 100
) -> list[dict]:
    """Sequences that raised, with tracebacks."""
    return svc.failures(user, run_id, limit)


@router.get(
    "/runs/{run_id}/results",
    responses={
        **ERRORS,
        200: {
            "description": "JSON pages (format=json), CSV (a header line, then one line per sequence) or Parquet.",
            "content": {
                "application/json": {"schema": ResultsPage.model_json_schema()},
                "text/csv": {},
                "application/vnd.apache.parquet": {},
            },
        },
    },
    tags=["runs"],
)
def get_run_results(
    run_id: str,
    user: User,
    svc: Svc,
    format: Literal["json", "csv", "parquet"] = "json",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=100_000,
            description="Rows of a JSON page. A page holds at most 1,000,000 values (a trajectory counts its "
            "steps): a larger limit is cut to what fits, the answer's `limit` says how many, and `next` leads on.",
        ),
    ] = 1000,
):
    """Every sequence's outputs. CSV and Parquet stream the whole run; JSON comes in pages bounded in values."""
    if format == "csv":
        return StreamingResponse(
            svc.results.csv(user, run_id),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{run_id}.csv"'},
        )
    if format == "parquet":
        return parquet_response(svc, lambda fh: svc.results.write_parquet(user, run_id, fh), f"{run_id}.parquet")
    return page_response(svc.results.page(user, run_id, offset, limit))


def page_response(page: dict[str, Any]) -> Response:
    """A JSON page of results (up to a million values) rendered by orjson: FastAPI's generic encoder would walk each
    value again in Python, and Starlette's ``json.dumps`` took ~0.58 s of a 1M-value trajectory page, orjson ~0.04 s
    (the same numbers: both write a float's shortest round-trip text; non-finite values are nulls already)."""
    import orjson

    return Response(orjson.dumps(page), media_type="application/json")


def parquet_response(svc: Service, write, filename: str) -> StreamingResponse:
    """Parquet's footer comes last, so the file is written whole first (to an anonymous temporary file, which
    leaves nothing behind however the download ends), then streamed with its length."""
    fh = tempfile.TemporaryFile(dir=svc.settings.home)
    try:
        write(fh)
    except BaseException:
        fh.close()
        raise
    size = fh.tell()
    fh.seek(0)

    def blocks():
        with fh:
            while block := fh.read(1 << 20):
                yield block

    return StreamingResponse(
        blocks(),
        media_type="application/vnd.apache.parquet",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(size)},
    )


@router.get(
    "/runs/{run_id}/report.pdf",
    responses={**ERRORS, 200: {"content": {"application/pdf": {}}, "description": "The run's report as a PDF."}},
    response_class=Response,
    tags=["runs"],
)
def get_run_report(run_id: str, user: User, svc: Svc) -> Response:
    """A PDF report: the run, its summary, targets, custom summaries, a histogram and convergence plot per output, failures.

    Works for every run: one that has not succeeded is described with the sequences stored so far.
    """
    pdf = svc.report_pdf(user, run_id)  # a sync handler: rendering runs in the thread pool, off the event loop
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="ancho-{run_id}.pdf"'}
    )


@router.get(
    "/runs/{run_id}/notebook.ipynb",
    responses={
        **ERRORS,
        200: {"content": {"application/x-ipynb+json": {}}, "description": "A Jupyter notebook (nbformat 4)."},
    },
    response_class=Response,
    tags=["runs"],
)
def get_run_notebook(run_id: str, request: Request, user: User, svc: Svc) -> Response:
    """A Jupyter notebook that loads the run's results into a pandas DataFrame and reproduces its summary and plots.

    Small runs are embedded; larger ones are fetched from this server's
    `…/results?format=parquet` with the token in `ANCHO_TOKEN` when the notebook runs (no token is written in it).
    """
    api_url = str(request.base_url).rstrip("/")
    notebook = svc.report_notebook(user, run_id, api_url)
    return Response(
        notebook,
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="ancho-{run_id}.ipynb"'},
    )


@router.get(
    "/runs/{run_id}/events",
    responses={
        **ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: `progress` while the run changes, then `end`.",
        },
    },
    tags=["runs"],
)
async def get_run_events(run_id: str, user: User, svc: Svc):
    """Live progress as server-sent events: `progress` events `{id, status, done, total, failures}`, then one `end`."""
    await svc.rendered_run(user, run_id, _progress)  # 404 before the stream starts

    async def stream():
        last = None
        while not svc.stopping.is_set():  # a stopping server closes the stream; clients reconnect
            try:
                data = json.loads(await svc.rendered_run(user, run_id, _progress))
            except NotFound:
                return
            final, error = data.pop("final"), data.pop("error")
            if data != last:
                yield f"event: progress\ndata: {json.dumps(data)}\n\n"
                last = data
            if final:
                yield f"event: end\ndata: {json.dumps({**data, 'error': error})}\n\n"
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _progress(record) -> bytes:
    """What an event stream polls of a run (kept by the server like the status: Service.rendered_run)."""
    return json.dumps(
        {
            "id": record.id,
            "status": record.status,
            "done": record.done,
            "total": record.total,
            "failures": record.failures,
            "final": record.final,
            "error": record.error,
        }
    ).encode()


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunView,
    tags=["runs"],
    responses={
        **ERRORS,
        409: {"model": Error, "description": "The run was submitted to another server sharing this server's store"},
    },
)
def cancel_run(run_id: str, user: User, svc: Svc) -> dict:
    """Cancel a queued or running run (its workers stop at once); a finished run is returned unchanged.

    A run submitted to another server that shares this server's store is
    cancelled there (409 here): only the server executing a run can stop it
    without racing its own writes.
    """
    return run_view(svc.cancel(user, run_id))


# The studies and comparison endpoints, and the trajectories', live in their own modules, registered on this
# router when they are imported.
from . import study_routes, trajectory_routes  # noqa: E402, F401
