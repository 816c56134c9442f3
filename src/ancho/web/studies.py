"""The web site's study pages: the list (``/studies``), the new-study form (``/studies/new``) and a study's page.

Registered on the site's router (site.py imports this module at its end),
with its sessions, CSRF checks, error pages and security headers. A study's
page is drawn from its summary once: the points table's rows, the pictures
(:mod:`.study_charts`) and the sensitivity are computed together and, once
the study has ended, kept in a small cache, so a 2,000-point study's page
does not reread every point's run on each view. The table is sorted and
paged on the server (links, so it works without JavaScript); live progress
follows the REST API's event stream (static/studies.js) and reloads the
page when the study ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from starlette.datastructures import UploadFile as StarletteUpload

from ..errors import AnchoError, NotFound
from ..server.schemas import study_view
from ..server.service import Service
from ..stores.base import StudyRecord
from .charts import fmt
from .newrun import handle, posted
from .newstudy import DESIGN_KINDS, STUDY_FIELDS, new_study_form, submit
from .site import Action, Kept, _duration, _to_signin, current_session, render, router, service
from .study_charts import band_svg, comparison_svg, heatmap_svg, parallel_svg, paths_svg, sensitivity_svg

#: rows of the points table per page (the pictures always show every point)
PAGE_ROWS = 100


@dataclass
class Figure:
    svg: Markup
    caption: str


@dataclass
class StudyData:
    """What a study's page shows of its summary, computed once: the table's columns and rows, pictures, sensitivity."""

    parameters: list[str]
    outputs: list[str]
    targets: list[str]
    rows: list[dict[str, Any]]
    figures: list[Figure] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(sort key, heading) of every sortable column."""
        return [
            ("point", "Point"),
            *((p, p) for p in self.parameters),
            *((f"{o}.mean", f"{o} mean") for o in self.outputs),
            *((f"p({t})", f"P({t})") for t in self.targets),
        ]


def _study_row(view: dict) -> dict:
    """What the list and a study's heading show of a study."""
    done, total = view["progress"]["done"], view["progress"]["total"]
    view["percent"] = 100.0 * done / total if total else (100.0 if view["status"] == "succeeded" else 0.0)
    end = view["finished"]
    view["duration"] = _duration(end - view["started"]) if view["started"] and end else "–"
    return view


def study_data(summary: dict) -> StudyData:
    """The page's table rows, pictures and sensitivity from a study summary (DESIGN.md §2 Studies)."""
    params: list[str] = list(summary["design"]["parameters"])
    outputs: list[str] = []
    for p in summary["points"]:
        outputs += [n for n, o in p["outputs"].items() if n not in outputs and isinstance(o, dict) and "mean" in o]
    targets = list(dict.fromkeys(t["expr"] for p in summary["points"] for t in p["targets"]))
    rows = []
    for p in summary["points"]:
        row: dict[str, Any] = {"point": p["point"], "run": p["run"], "status": p["status"], "sequences": p["sequences"]}
        row.update({k: p["params"].get(k) for k in params})
        for name in outputs:
            o = p["outputs"].get(name) or {}
            row[f"{name}.mean"] = o.get("mean")
            row[f"{name}.ci95"] = o.get("ci95")
        found = {t["expr"]: t for t in p["targets"]}
        for expr in targets:
            row[f"p({expr})"] = (found.get(expr) or {}).get("probability")
            row[f"p({expr}).ci95"] = (found.get(expr) or {}).get("ci95")
        rows.append(row)
    data = StudyData(params, outputs, targets, rows)
    data.figures = _figures(data)
    for name, entry in (summary.get("sensitivity") or {}).items():
        data.sensitivity.append({"name": name, "entry": entry, "svg": sensitivity_svg(name, entry)})
    return data


def _ci(rows: list[dict], key: str, side: int) -> list:
    return [(r.get(key) or [None, None])[side] for r in rows]


def _figures(data: StudyData) -> list[Figure]:
    rows, params, out = data.rows, data.parameters, []
    series = [(f"{o}.mean", o, False) for o in data.outputs] + [(f"p({t})", t, True) for t in data.targets]
    for key, name, probability in series:
        values = [r.get(key) for r in rows]
        svg: Markup | None
        if len(params) == 1:
            ci = f"{key.removesuffix('.mean')}.ci95"
            low, high = _ci(rows, ci, 0), _ci(rows, ci, 1)
            svg = band_svg(params[0], name, [r[params[0]] for r in rows], values, low, high, probability)
            caption = (
                f"{'Probability of' if probability else 'Mean of'} {name} against {params[0]}, with 95% intervals."
            )
        elif len(params) == 2:
            svg = heatmap_svg(params[0], params[1], name, [r[params[0]] for r in rows], [r[params[1]] for r in rows], values)  # fmt: skip
            caption = f"{'Probability of' if probability else 'Mean of'} {name} over {params[0]} and {params[1]}: darker is higher."
        else:
            svg = parallel_svg(params, name, {p: [r[p] for r in rows] for p in params}, values)
            caption = f"Each point as a line across the parameters to {'the probability of' if probability else 'the mean of'} {name}."
        if svg is not None:
            out.append(Figure(svg, caption))
    return out


def _value(v: Any) -> str:
    """A parameter's value in a picture's key: numbers (and true, false) as the site writes them (0.3, not
    0.30000000000000004), anything else as it is."""
    return fmt(v) if isinstance(v, (int, float)) else str(v)


def trajectory_figures(svc: Service, user: str, record: StudyRecord, data: StudyData) -> list[Figure]:
    """Each point's mean path per trajectory output, from the points' run summaries; nothing (and one read) when the
    first point's run has no trajectory. Shaded by the varied parameter when there is one, else by point order; the
    picture's key names the faintest line's and the strongest's value (or point)."""
    first = next((p["run"] for p in record.points if p.get("run")), None)
    try:
        if first is None or not (svc.run(user, first).summary or {}).get("trajectories"):
            return []
    except NotFound:  # a starting study names its points' runs before their records are written
        return []
    runs = svc.study_results.point_runs(user, record.id)
    by = data.parameters[0] if len(data.parameters) == 1 else None
    order = sorted(range(len(data.rows)), key=lambda k: (data.rows[k].get(by), k) if by else k)
    rank = {k: i / max(len(order) - 1, 1) for i, k in enumerate(order)}
    names = list(dict.fromkeys(n for r in runs if r and r.summary for n in (r.summary.get("trajectories") or {})))
    out = []
    for name in names:
        paths, keys = [], []
        for k in order:
            run, row = runs[k], data.rows[k]
            fan = ((run.summary or {}).get("trajectories") or {}).get(name) if run else None
            if fan and fan.get("mean"):
                label = f"point {row['point']}" + (f", {by} = {row[by]}" if by else "")
                paths.append((label, fan["mean"], rank[k]))
                keys.append(f"{by} = {_value(row[by])}" if by else f"point {row['point']}")
        svg = paths_svg(name, paths, (keys[0], keys[-1]) if keys else None)
        if svg is not None:
            shade = f"higher {by}" if by else "later points"
            out.append(Figure(svg, f"The mean path of {name} at each point (stronger lines for {shade})."))
    return out


cache = Kept(16)  # ended studies' pages and their comparisons


def _sorted_page(data: StudyData, sort: str, order: str, page: int) -> tuple[list[dict], int]:
    keys = {k for k, _ in data.columns}
    key = sort if sort in keys else "point"
    present = [r for r in data.rows if r.get(key) is not None]
    missing = [r for r in data.rows if r.get(key) is None]  # always last
    numeric = all(isinstance(r[key], (int, float)) for r in present)
    present.sort(key=lambda r: r[key] if numeric else str(r[key]), reverse=order == "desc")
    ordered = present + missing
    pages = max(1, math.ceil(len(ordered) / PAGE_ROWS))
    page = min(max(page, 1), pages)
    return ordered[(page - 1) * PAGE_ROWS : page * PAGE_ROWS], pages


def _comparison(svc: Service, user: str, record: StudyRecord, baseline: int) -> dict:
    """Every point against ``baseline`` (paired on common random numbers), with a picture per output; an error text
    instead when the study cannot be compared yet."""
    try:
        found = svc.study_results.compare_points(user, record.id, baseline)
    except AnchoError as exc:
        return {"error": str(exc)}
    figures = []
    names = sorted({n for c in found["comparisons"] for n in c["outputs"]})
    for name in names:
        rows = [
            (c["point"], o.get("difference"), *(o.get("ci95") or [None, None])[:2])
            for c in found["comparisons"]
            if (o := c["outputs"].get(name))
        ]
        svg = comparison_svg(name, rows, baseline)
        if svg is not None:
            figures.append(
                Figure(svg, f"{name}: each point minus point {baseline}, 95% intervals; filled dots differ.")
            )
    return {**found, "names": names, "figures": figures}


# -- pages ----------------------------------------------------------------------------------------------------------
@router.get("/studies")
def studies_page(request: Request, limit: int = 100):
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    limit = min(max(limit, 1), 1000)
    rows = [_study_row(study_view(s)) for s in service(request).studies(session.user, limit)]
    return render(request, "studies.html", {"studies": rows, "limit": limit, "more": len(rows) == limit}, session=session)  # fmt: skip


def _new_study_form(request: Request, session, state, status: int = 200):
    svc = service(request)
    every = svc.uploads.list(session.user)
    chosen = state.values.get("upload")
    uploads = every[:50] + [u for u in every[50:] if u["id"] == chosen]  # the chosen one, however old
    context = {"form": state, "uploads": uploads, "executors": svc.settings.executors, "kinds": DESIGN_KINDS}
    return render(request, "newstudy.html", context, status, session)


@router.get("/studies/new")
def new_study_page(request: Request):
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    return _new_study_form(request, session, new_study_form())


@router.post("/studies/new")
async def new_study(request: Request, session: Action):
    """The new-study form's post: the new-run form's handling (newrun.handle) with a study's submit."""
    form = await request.form()  # already parsed for the CSRF token: this is Starlette's kept copy
    state = posted(form, STUDY_FIELDS, ("design-",))
    file = form.get("file")
    archive = (await file.read(), file.filename or "") if isinstance(file, StarletteUpload) and file.filename else None
    chosen = form.get("action")
    action = chosen if isinstance(chosen, str) else "default"
    study_id = await run_in_threadpool(handle, service(request), session.user, state, action, archive, submit)
    if study_id is not None:
        baseline = state.values.get("baseline", "").strip()
        return RedirectResponse(f"/studies/{study_id}" + (f"?baseline={baseline}" if baseline else ""), status_code=303)
    return _new_study_form(request, session, state, 422 if state.errors else 200)


@router.get("/studies/{study_id}")
def study_page(request: Request, study_id: str, sort: str = "point", order: str = "asc", page: int = 1, baseline: str = ""):  # fmt: skip
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    svc = service(request)
    record = svc.study(session.user, study_id)  # NotFound: the error page says so
    view = _study_row(study_view(record))

    def make() -> StudyData:
        data = study_data(svc.study_results.summary(session.user, study_id))
        data.figures += trajectory_figures(svc, session.user, record, data)
        return data

    data = cache.get((study_id, record.status, record.finished), make) if record.final else make()
    rows, pages = _sorted_page(data, sort, order if order in ("asc", "desc") else "asc", page)
    comparison, chosen = None, None
    if baseline.strip():
        try:
            chosen = int(baseline)
        except ValueError:
            comparison = {"error": f"baseline '{baseline}' is not a point's number: enter one from 0 to {len(record.points) - 1}"}  # fmt: skip
        if chosen is not None:
            if record.final:
                comparison = cache.get((study_id, record.finished, "baseline", chosen), lambda: _comparison(svc, session.user, record, chosen))  # fmt: skip
            else:
                comparison = {"error": "points are compared once the study has ended; this page reloads then"}
    context = {
        "study": view,
        "data": data,
        "rows": rows,
        "sort": sort if sort in {k for k, _ in data.columns} else "point",
        "order": order,
        "page": min(max(page, 1), pages),
        "pages": pages,
        "live": not record.final,
        "comparison": comparison,
        "baseline": chosen,
    }
    return render(request, "study.html", context, session=session)


@router.post("/site/studies/{study_id}/cancel")
def cancel_study(request: Request, study_id: str, session: Action) -> Response:
    """The study page's Cancel form: back to the study."""
    service(request).cancel_study(session.user, study_id)
    return RedirectResponse(f"/studies/{study_id}", status_code=303)
