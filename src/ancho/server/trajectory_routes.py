"""The REST API's trajectory outputs: ``GET /api/v1/runs/{id}/trajectories/{name}``.

A trajectory is a series per sequence (``float[STEPS]`` in the run's schema),
too wide for the run's plain CSV; this endpoint hands one of them back as a
long CSV (``sequence,step,value``), Parquet (``sequence`` and a fixed-size list
column) or JSON pages of rows. Registered on the runs' router (:mod:`.routes`
imports this module at its end); the owner check is the service's, as for
every run endpoint.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse

from ..errors import NotFound
from .routes import ERRORS, Svc, User, parquet_response, router

#: rows of one JSON page at most: a page of 1,000-step series is then ~8 MB of numbers
MAX_PAGE = 10_000


def _check(svc: Svc, user: str, run_id: str, name: str) -> int:
    """The series' length; NotFound (404) for another user's run, or a name that is not one of its trajectories."""
    from ..exports import trajectory_names

    record = svc.run(user, run_id)
    names = trajectory_names(svc.store, run_id)
    if name not in names:
        has = ", ".join(names) if names else "none"
        raise NotFound(f"run {run_id} has no trajectory output '{name}' (its trajectory outputs: {has})")
    return int(record.schema[name].rstrip("]").split("[")[1])


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
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Any:
    """One trajectory output of every sequence. CSV and Parquet stream the whole run; JSON comes in pages."""
    steps = _check(svc, user, run_id, name)
    if format == "csv":
        from ..exports import csv_chunks

        return StreamingResponse(
            csv_chunks(svc.store, run_id, trajectory=name),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{run_id}-{name}.csv"'},
        )
    if format == "parquet":
        import pyarrow.parquet as pq

        def write(fh) -> None:
            with pq.ParquetWriter(fh, svc.store.arrow_schema(run_id, ["sequence", name]), compression="zstd") as w:
                for batch in svc.store.iter_batches(run_id, ["sequence", name]):
                    w.write_batch(batch)

        return parquet_response(svc, write, f"{run_id}-{name}.parquet")
    return _page(svc, run_id, name, steps, offset, limit)


def _page(svc: Svc, run_id: str, name: str, steps: int, offset: int, limit: int) -> dict[str, Any]:
    from ..columns import to_numpy

    sequences: list[int] = []
    values: list[list[float | None]] = []
    seen = 0
    for batch in svc.store.iter_batches(run_id, ["sequence", name]):
        n = batch.num_rows
        if seen + n <= offset:
            seen += n
            continue
        lo = max(0, offset - seen)
        take = batch.slice(lo, limit - len(sequences))
        seqs = to_numpy(take.column(0))
        rows = to_numpy(take.column(1)).reshape(len(seqs), steps)
        sequences.extend(int(s) for s in seqs)
        values.extend([None if v != v else float(v) for v in row] for row in rows)  # NaN → null (JSON)
        seen += n
        if len(sequences) >= limit:
            break
    return {"run": run_id, "name": name, "steps": steps, "offset": offset, "sequences": sequences, "values": values}
