"""The run page's "compare with…": another run of the same model against this one, as a table and a picture.

The numbers are the REST API's (``GET /api/v1/runs/{a}/compare/{b}``, the
service's :meth:`~ancho.server.service.Service.compare`), read into its typed
:class:`~ancho.server.schemas.Comparison`; nothing is recomputed here. This
run is ``a``, the chosen one ``b``, so each difference is b − a. The picker
lists the visitor's own succeeded runs of the same model and code only; a
run id typed into the address that is another user's, of another model, or
not finished gets the page back with a one-line reason (404 or 422), never a
server error.

The picture gives each output and target its own row and its own scale,
centred on "no difference" (outputs have different units, so one shared
axis would flatten all but the largest); a row whose 95% interval leaves 0
is marked significant, in words as well as in colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from markupsafe import Markup, escape

from ..errors import InputError, NotFound
from ..server.schemas import Comparison
from ..server.service import Service
from ..stores.base import RunRecord
from .charts import MR, MT, W, _frame, _rows_layout, _Scale, fmt
from .site import _row, _to_signin, current_session, render, router, service

#: the most of a user's recent succeeded runs looked through for the picker
SCAN = 1000
#: the most runs the picker offers (the newest)
CHOICES = 200


@dataclass(frozen=True)
class Difference:
    """One row of a comparison: an output's mean or a target's probability in both runs, b − a and its interval."""

    name: str
    target: bool
    a: float | None
    b: float | None
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None = None
    variance_reduction: float | None = None

    @property
    def significant(self) -> bool:
        """The 95% interval leaves 0: the runs differ beyond the noise."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def _ends(ci: list[float | None] | None) -> tuple[float | None, float | None]:
    return (ci[0], ci[1]) if ci and len(ci) == 2 else (None, None)


def differences(cmp: Comparison) -> list[Difference]:
    """The comparison's outputs, then its targets, as rows."""
    rows = []
    for name, o in cmp.outputs.items():
        extra = o.model_extra or {}
        rows.append(
            Difference(
                name,
                False,
                o.mean_a,
                o.mean_b,
                o.difference,
                *_ends(o.ci95),
                extra.get("p_value"),
                o.variance_reduction,
            )
        )
    for t in cmp.targets:
        extra = t.model_extra or {}
        rows.append(
            Difference(
                t.expr, True, t.probability_a, t.probability_b, t.difference, *_ends(t.ci95), extra.get("p_value")
            )
        )
    return rows


def candidates(svc: Service, user: str, record: RunRecord) -> list[RunRecord]:
    """The user's other succeeded runs of the same model and code, newest first: what ``record`` can be compared with."""
    found = []
    for r in svc.runs(user, "succeeded", SCAN):
        if r.id != record.id and r.model == record.model and r.source_hash == record.source_hash:
            found.append(r)
            if len(found) == CHOICES:
                break
    return found


def differences_svg(rows: list[Difference]) -> Markup | None:
    """Each row's difference as a dot on its 95% interval, on the row's own scale centred on 0; significant ones filled."""
    rows = [r for r in rows if r.difference is not None]
    if not rows:
        return None
    row_h = 44
    labels = [f"P({r.name})" if r.target else r.name for r in rows]
    height, left = _rows_layout(labels, row_h)
    height -= 24  # no shared axis under the rows: each row carries its own scale
    mid = (left + W - MR) / 2
    half_w = (W - MR - left) / 2 - 8
    body = []
    for i, r in enumerate(rows):
        top = MT + i * row_h
        cy = top + 16
        d = r.difference if r.difference is not None else 0.0
        ends = [abs(v) for v in (d, r.low, r.high) if v is not None and math.isfinite(v)]
        reach = (max(ends, default=0.0) or 1.0) * 1.1
        at = _Scale(-reach, reach, mid - half_w, mid + half_w)
        label = labels[i]
        verdict = "significant" if r.significant else "not significant"
        ci = f", 95% CI {fmt(r.low)} to {fmt(r.high)}" if r.low is not None and r.high is not None else ""
        words = escape(f"{label}: b − a = {fmt(d)}{ci}; {verdict}")
        body.append(f'<line class="grid" x1="{left}" x2="{W - MR}" y1="{cy}" y2="{cy}"/>')
        body.append(f'<line class="zero" x1="{mid}" x2="{mid}" y1="{top + 2}" y2="{top + 30}"/>')
        body.append(f'<text class="tick" x="{left - 8}" y="{cy + 4}" text-anchor="end">{escape(label)}</text>')
        for v, anchor in ((-reach, "start"), (reach, "end")):
            body.append(f'<text class="tick small" x="{at(v)}" y="{top + 40}" text-anchor="{anchor}">{fmt(v)}</text>')
        if r.low is not None and r.high is not None:
            body.append(f'<line class="whisker" x1="{at(r.low)}" x2="{at(r.high)}" y1="{cy}" y2="{cy}"/>')
            for v in (r.low, r.high):
                body.append(f'<line class="whisker" x1="{at(v)}" x2="{at(v)}" y1="{cy - 6}" y2="{cy + 6}"/>')
        css = "diff significant" if r.significant else "diff"
        body.append(
            f'<g class="probe" tabindex="0" role="img" aria-label="{words}"><title>{words}</title>'
            f'<circle class="{css}" cx="{at(d)}" cy="{cy}" r="6"/></g>'
        )
    count = sum(r.significant for r in rows)
    desc = (
        f"{len(rows)} differences (b − a), each on its own scale centred on no difference (the vertical line); "
        f"whiskers are 95% intervals; {count} significant (filled dots)."
    )
    return _frame("Differences between the runs", desc, body, "", role="group", height=height, left=left)


def _targets(a: RunRecord, b: RunRecord, asked: list[str]) -> list[str]:
    """The targets compared: both runs' own, then any asked for, each once."""
    out: list[str] = []
    for t in [*(a.targets or []), *(b.targets or []), *asked]:
        t = t.strip()
        if t and t not in out:
            out.append(t)
    return out


@router.get("/runs/{run_id}/compare")
async def compare_page(
    request: Request,
    run_id: str,
    other: Annotated[str, Query(alias="with", max_length=100)] = "",
    target: Annotated[list[Annotated[str, Query(max_length=200)]], Query(max_length=20)] = [],  # noqa: B006
):
    """This run (a) against the chosen one (b): the picker, and when one is chosen the table and the picture."""
    session = current_session(request)
    if session is None:
        return _to_signin(request)
    svc = service(request)
    record = await run_in_threadpool(svc.run, session.user, run_id)  # NotFound: the error page says so
    choices = await run_in_threadpool(candidates, svc, session.user, record)
    context: dict = {"run": _row(record), "choices": choices, "chosen": other.strip(), "asked": target, "error": None}
    status = 200
    if other.strip():
        try:
            b = await run_in_threadpool(svc.run, session.user, other.strip())
            cmp = await run_in_threadpool(svc.compare, session.user, run_id, b.id, _targets(record, b, target))
            parsed = Comparison.model_validate(cmp)
            rows = differences(parsed)
            extra = parsed.model_extra or {}
            counts = (extra.get("sequences_a"), extra.get("sequences_b"))
            context.update(
                other=_row(b), comparison=parsed, rows=rows, picture=differences_svg(rows), other_counts=counts
            )
        except NotFound:
            status = 404
            context["error"] = f"There is no run '{other.strip()}' of yours to compare with: pick one from the list."
        except InputError as exc:
            status = 422
            context["error"] = f"{str(exc).rstrip('.')}."
    return render(request, "compare.html", context, status, session)
