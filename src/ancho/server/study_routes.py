"""The REST API's studies (``/api/v1/studies``) and run comparisons (``/api/v1/runs/{a}/compare/{b}``).

Thin handlers over :class:`~ancho.server.service.Service`, registered on the
same router as the runs' (:mod:`.routes` imports this module at its end).
Each point of a study is an ordinary run, readable under ``/api/v1/runs``.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Annotated, Literal

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from ..errors import NotFound
from ..stats import clean
from .routes import BODY_ERRORS, ERRORS, Svc, User, router
from .schemas import Comparison, Created, Error, StudyRequest, StudySummary, StudyView, study_view


@router.get(
    "/runs/{run_id}/compare/{other_id}",
    response_model=Comparison,
    responses={**ERRORS, 422: {"model": Error, "description": "Runs of different models, or not succeeded"}},
    tags=["runs"],
)
def compare_runs(
    run_id: str,
    other_id: str,
    user: User,
    svc: Svc,
    target: Annotated[list[Annotated[str, Query(max_length=200)]], Query(max_length=100)] = [],  # noqa: B006
) -> dict:
    """Run `other_id` against run `run_id` (`difference` is b − a), output by output and per `target` expression.

    Paired on common random numbers when both runs have the same seed (the interval then comes from the
    per-sequence differences), Welch's interval otherwise.
    """
    return svc.compare(user, run_id, other_id, target)


@router.post("/studies", status_code=201, response_model=Created, responses=BODY_ERRORS, tags=["studies"])
def submit_study(body: StudyRequest, user: User, svc: Svc) -> dict:
    """Queue a study: one run per point of `design`, all with the study's seed (common random numbers).

    Every point is checked against the model before anything is queued (422 naming `design` or `params`).
    """
    record = svc.submit_study(user, body)
    return {"id": record.id, "status": record.status}


@router.get("/studies", response_model=list[StudyView], responses=ERRORS, tags=["studies"])
def list_studies(user: User, svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Your studies, newest first."""
    return [study_view(s) for s in svc.studies(user, limit)]


@router.get("/studies/{study_id}", response_model=StudyView, responses=ERRORS, tags=["studies"])
def get_study(study_id: str, user: User, svc: Svc) -> dict:
    """The study's status and progress (sequences over every point)."""
    return study_view(svc.study(user, study_id))


@router.get("/studies/{study_id}/summary", response_model=StudySummary, responses=ERRORS, tags=["studies"])
def get_study_summary(study_id: str, user: User, svc: Svc) -> dict:
    """The study summary object (same as `ancho study --json`): each point's run summary, as far as it has got."""
    return svc.study_results.summary(user, study_id)


@router.get(
    "/studies/{study_id}/points",
    responses={
        **ERRORS,
        200: {
            "description": "One row per point: `point`, the design's parameters, then NAME.mean, NAME.ci95_low, "
            "NAME.ci95_high, NAME.std per output and p(EXPR), p(EXPR).ci95_low, p(EXPR).ci95_high per target.",
            "content": {"application/json": {}, "text/csv": {}, "application/vnd.apache.parquet": {}},
        },
    },
    tags=["studies"],
)
def get_study_points(study_id: str, user: User, svc: Svc, format: Literal["json", "csv", "parquet"] = "json"):
    """The points table (`Study.frame`): JSON `{"study", "columns", "points": [row, …]}`, CSV or Parquet."""
    frame = svc.study_results.points(user, study_id)
    if format == "csv":
        return Response(
            frame.to_csv(index=False),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{study_id}-points.csv"'},
        )
    if format == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return Response(
            buf.getvalue(),
            media_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": f'attachment; filename="{study_id}-points.parquet"'},
        )
    rows = clean(frame.to_dict(orient="records"))
    return {"study": study_id, "columns": list(frame.columns), "points": rows}


@router.get(
    "/studies/{study_id}/events",
    responses={
        **ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: `progress` while the study changes, then `end`.",
        },
    },
    tags=["studies"],
)
async def get_study_events(study_id: str, user: User, svc: Svc):
    """Live progress as server-sent events: `progress` events `{id, status, done, total, points, points_finished}`
    (sequences over every point), then one `end`."""
    await run_in_threadpool(svc.study, user, study_id)  # 404 before the stream starts

    async def stream():
        last = None
        while not svc.stopping.is_set():  # a stopping server closes the stream; clients reconnect
            try:
                view = study_view(await run_in_threadpool(svc.study, user, study_id))
            except NotFound:
                return
            data = {k: view[k] for k in ("id", "status", "points", "points_finished")}
            data.update(view["progress"])
            if data != last:
                yield f"event: progress\ndata: {json.dumps(data)}\n\n"
                last = data
            if data["status"] in ("succeeded", "failed", "cancelled"):
                yield f"event: end\ndata: {json.dumps({**data, 'error': view['error']})}\n\n"
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.post(
    "/studies/{study_id}/cancel",
    response_model=StudyView,
    tags=["studies"],
    responses={
        **ERRORS,
        409: {"model": Error, "description": "The study was submitted to another server sharing this server's store"},
    },
)
def cancel_study(study_id: str, user: User, svc: Svc) -> dict:
    """Cancel a queued or running study (its running point stops at once); a finished study is returned unchanged."""
    return study_view(svc.cancel_study(user, study_id))


@router.get(
    "/studies/{study_id}/report.pdf",
    responses={
        **ERRORS,
        200: {"content": {"application/pdf": {}}, "description": "The study's report as a PDF."},
        422: {"model": Error, "description": "`baseline` is not a point of the study"},
    },
    response_class=Response,
    tags=["studies"],
)
def get_study_report(
    study_id: str, user: User, svc: Svc, baseline: Annotated[int | None, Query(ge=0)] = None
) -> Response:
    """A PDF report: the study and its design, the points table, pictures against the parameters, mean paths of
    trajectories, sensitivity (sobol and morris designs) and, with `baseline`, every point against that point."""
    pdf = svc.study_results.report_pdf(user, study_id, baseline)  # a sync handler: rendering runs in the thread pool
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="ancho-{study_id}.pdf"'}
    )


@router.get(
    "/studies/{study_id}/notebook.ipynb",
    responses={
        **ERRORS,
        200: {"content": {"application/x-ipynb+json": {}}, "description": "A Jupyter notebook (nbformat 4)."},
    },
    response_class=Response,
    tags=["studies"],
)
def get_study_notebook(study_id: str, request: Request, user: User, svc: Svc) -> Response:
    """A Jupyter notebook with the points table in pandas, its pictures, and `load_point(k)` fetching any point's
    results from this server with the token in `ANCHO_TOKEN` (no token is written in it)."""
    notebook = svc.study_results.report_notebook(user, study_id, str(request.base_url).rstrip("/"))
    return Response(
        notebook,
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="ancho-{study_id}.ipynb"'},
    )
