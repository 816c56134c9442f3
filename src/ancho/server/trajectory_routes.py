"""The REST API's trajectory outputs: ``GET /api/v1/runs/{id}/trajectories/{name}``.

A trajectory is a series per sequence (``float[STEPS]`` in the run's schema),
too wide for the run's plain CSV; this endpoint hands one of them back as a
long CSV (``sequence,step,value``), Parquet (``sequence`` and a fixed-size list
column) or JSON pages of rows. Registered on the runs' router (:mod:`.routes`
imports this module at its end); the owner check is the service's, as for
every run endpoint (the service's :mod:`.run_results`).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse

from .routes import ERRORS, Svc, User, page_response, parquet_response, router

#: rows of one JSON page at most; the values in it are bounded too (run_results.MAX_PAGE_VALUES)
MAX_PAGE = 10_000


@router.get(
    "/runs/{run_id}/trajectories/{name}",
    responses={
        **ERRORS,
        200: {
            "description": "JSON pages (format=json), a long CSV `sequence,step,value` (format=csv) or Parquet.",
            "content": {"application/json": {}, "text/csv": {}, "application/vnd.apache.parquet": {}},
        },
    },
    tags=["runs"],
)
def get_run_trajectory(
    run_id: str,
    name: str,
    user: User,
    svc: Svc,
    format: Literal["json", "csv", "parquet"] = "json",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_PAGE,
            description="Sequences of a JSON page. A page holds at most 1,000,000 values (steps × sequences): "
            "a larger limit is a 422 that says the largest this trajectory allows.",
        ),
    ] = 100,
) -> Any:
    """One trajectory output of every sequence. CSV and Parquet stream the whole run; JSON comes in pages."""
    trajectory = svc.results.trajectory(user, run_id, name)  # 404: another user's run, or no such trajectory
    if format == "csv":
        return StreamingResponse(
            svc.results.trajectory_csv(trajectory),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{run_id}-{name}.csv"'},
        )
    if format == "parquet":
        write = partial(svc.results.write_trajectory_parquet, trajectory)
        return parquet_response(svc, write, f"{run_id}-{name}.parquet")
    return page_response(svc.results.trajectory_page(trajectory, offset, limit))
