"""Studies as a service: typed functions every front end calls (the Python API, the CLI, the REST API next).

``new_study`` builds a study's record from a checked design; ``run_points``
(:mod:`.execute`) runs it; ``study_summary``, ``points_frame``,
``compare_runs`` and ``compare_points`` read what is stored. Each read takes
an ``owner``: another owner's study or run is :class:`~ancho.errors.NotFound`,
exactly as for runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import InputError, NotFound
from ..inputs import RunSettings
from ..loading import LoadedModel
from ..stats import clean
from ..stores.base import RunRecord, Store, StudyRecord
from .comparison import LazyColumns, compare_frames, holm
from .designs import Design
from .sensitivity import KINDS as SENSITIVITY_KINDS
from .sensitivity import analyze as sensitivity


def new_study_id() -> str:
    return "s" + uuid.uuid4().hex[:11]


def new_study(
    model: LoadedModel,
    design: Design,
    points: list[dict],
    params: dict[str, Any],
    settings: RunSettings,
    executor: str,
    workers: int | None,
    owner: str = "local",
    study_id: str | None = None,
    spec: dict | None = None,
) -> StudyRecord:
    """A queued study record: ``design`` already seeded and ``points`` checked (``design.points(model)``)."""
    return StudyRecord(
        id=study_id or new_study_id(),
        owner=owner,
        model=model.name,
        entry=model.ref.entry,
        source=model.source,
        design=clean(design.describe()),
        design_spec=clean(design.to_dict()),
        params=clean(dict(params)),
        seed=settings.seed,
        sequences=settings.sequences,
        targets=[t.expr for t in settings.targets],
        until=settings.until.expr if settings.until else None,
        max_sequences=settings.max_sequences,
        max_failures=settings.max_failures,
        executor=executor,
        workers=workers,
        points=[{"point": k, "params": clean(p), "run": None, "status": "queued"} for k, p in enumerate(points)],
        total=settings.sequences * len(points),
        spec=dict(spec or {}),
    )


def point_runs(store: Store, study: StudyRecord) -> list[RunRecord | None]:
    """Each point's run record, in point order (None for a point whose run was never created)."""
    out: list[RunRecord | None] = []
    for p in study.points:
        try:
            out.append(store.get_run(p["run"], study.owner) if p.get("run") else None)
        except NotFound:
            out.append(None)
    return out


def study_summary(store: Store, study_id: str, owner: str | None = None) -> dict:
    """The study summary object (DESIGN.md §2 Studies).

    ``sensitivity`` (sobol and morris designs) only once the study succeeded:
    the estimators need every point of the design, so a running, failed or
    cancelled study has none (:mod:`.sensitivity`). It is computed on the
    first read after the study ends and kept in the study record with the
    end time it belongs to; a resumed study ends again and gets it afresh.
    """
    study = store.get_study(study_id, owner)
    summary = _summary(store, study)
    if study.design.get("kind") in SENSITIVITY_KINDS and study.status == "succeeded":
        if study.sensitivity is not None and study.sensitivity_finished == study.finished:
            summary["sensitivity"] = study.sensitivity
        else:
            summary["sensitivity"] = study_sensitivity(study, summary)
            # kept for the study as it ended: a 10,000-point summary is read again without the bootstrap
            store.update_study(study.id, sensitivity=summary["sensitivity"], sensitivity_finished=study.finished)
    return summary


def study_sensitivity(study: StudyRecord, summary: dict) -> dict:
    """The ``sensitivity`` of a succeeded study's summary (without it), computed afresh from its points table."""
    table = _table(summary, study.targets, counts=True)
    outputs = [c[: -len(".mean")] for c in table.columns if c.endswith(".mean")]
    design = Design.from_dict(study.design_spec)
    return clean(sensitivity(design, table, outputs, list(study.targets)))


def _summary(store: Store, study: StudyRecord) -> dict:
    """The study summary without ``sensitivity``.

    Each point's run summary is taken as the store gives it: it was made JSON-safe when it was built
    (``stats.build_summary``), and cleaning 10,000 of them again took half of a summary read.
    """
    rows = []
    for p, run in zip(study.points, point_runs(store, study)):
        s = (run.summary or {}) if run is not None else {}
        rows.append(
            {
                "point": p["point"],
                "run": p.get("run"),
                "params": clean(run.params if run is not None else {**study.params, **p["params"]}),
                "status": run.status if run is not None else p.get("status", "queued"),
                "sequences": run.done - run.failures if run is not None else 0,
                "outputs": s.get("outputs", {}),
                "targets": s.get("targets", []),
                "custom": s.get("custom", {}),
                "failures": run.failures if run is not None else 0,
            }
        )
    d = study.design
    summary = clean(
        {
            "study": study.id,
            "status": study.status,
            "model": study.model,
            "seed": study.seed,
            "sequences": study.sequences,
            "design": {"kind": d.get("kind"), "parameters": d.get("parameters", []), "points": d.get("points")},
            "params": study.params,
        }
    )
    summary["points"] = rows
    return summary


def points_frame(store: Store, study_id: str, owner: str | None = None):
    """One row per point: ``point``, the design's parameters, then per output ``NAME.mean``, ``NAME.ci95_low``,
    ``NAME.ci95_high``, ``NAME.std`` and per target ``p(EXPR)``, ``p(EXPR).ci95_low``, ``p(EXPR).ci95_high``
    (NaN where a point has no result)."""
    study = store.get_study(study_id, owner)
    return _table(_summary(store, study), study.targets)


def _table(summary: dict, targets: list[str], counts: bool = False):
    """The points table of ``summary``; ``counts`` adds ``NAME.count`` and ``p(EXPR).count`` (for sensitivity)."""
    import pandas as pd

    params = summary["design"]["parameters"]
    outputs: list[str] = []
    for p in summary["points"]:
        outputs += [n for n in p["outputs"] if n not in outputs]
    rows = []
    for p in summary["points"]:
        row: dict[str, Any] = {"point": p["point"], **{k: p["params"].get(k) for k in params}}
        for name in outputs:
            o = p["outputs"].get(name) or {}
            low, high = o.get("ci95") or (None, None)
            row.update({f"{name}.mean": o.get("mean"), f"{name}.ci95_low": low, f"{name}.ci95_high": high})
            row[f"{name}.std"] = o.get("std")
            if counts:
                row[f"{name}.count"] = o.get("count")
        found = {t["expr"]: t for t in p["targets"]}
        for expr in targets:
            t = found.get(expr) or {}
            low, high = t.get("ci95") or (None, None)
            row.update({f"p({expr})": t.get("probability"), f"p({expr}).ci95_low": low, f"p({expr}).ci95_high": high})
            if counts:
                row[f"p({expr}).count"] = p["sequences"]
        rows.append(row)
    columns = ["point", *params]
    for name in outputs:
        columns += [f"{name}.mean", f"{name}.ci95_low", f"{name}.ci95_high", f"{name}.std"]
    for expr in targets:
        columns += [f"p({expr})", f"p({expr}).ci95_low", f"p({expr}).ci95_high"]
    if counts:
        columns += [f"{name}.count" for name in outputs] + [f"p({expr}).count" for expr in targets]
    frame = pd.DataFrame(rows, columns=columns)
    stats = [c for c in columns[1 + len(params) :]]
    frame[stats] = frame[stats].astype(float)
    return frame


def _columns(store: Store, run: RunRecord) -> LazyColumns:
    return LazyColumns(
        store.read_column(run.id, "sequence"),
        list(run.schema),
        lambda n: store.read_column(run.id, n),
        run.schema,
        lambda n: store.iter_column(run.id, n),
    )


def compare_runs(store: Store, a: str, b: str, targets=(), owner: str | None = None) -> dict:
    """Compare run ``b`` with run ``a`` (``difference`` is b − a), reading one column at a time from the store."""
    ra, rb = store.get_run(a, owner), store.get_run(b, owner)
    if ra.model != rb.model or ra.source_hash != rb.source_hash:
        raise InputError(
            f"runs {a} and {b} are of different models ({ra.model or '?'} and {rb.model or '?'}"
            f"{', different code' if ra.model == rb.model else ''}): compare runs of one model"
        )
    for r in (ra, rb):
        if r.status != "succeeded":
            raise InputError(f"run {r.id} is {r.status}: only succeeded runs can be compared")
    return compare_frames(ra.id, rb.id, ra.seed, rb.seed, _columns(store, ra), _columns(store, rb), targets)


def compare_points(store: Store, study_id: str, baseline: int = 0, owner: str | None = None) -> dict:
    """Every succeeded point of a study against point ``baseline``, with Holm-adjusted p-values.

    ``{"study", "baseline", "comparisons": [{"point", ...compare_runs...}], "holm": "..."}``: each output's and
    target's ``p_value_holm`` is adjusted over all points for that output (the family of many comparisons).
    """
    study = store.get_study(study_id, owner)
    if not isinstance(baseline, int) or not 0 <= baseline < len(study.points):
        raise InputError(
            f"baseline {baseline!r} is not a point of study {study_id} (points 0..{len(study.points) - 1})"
        )
    base = study.points[baseline].get("run")
    if not base:
        raise InputError(f"point {baseline} of study {study_id} has no run yet")
    out = []
    for p in study.points:
        if p["point"] == baseline or not p.get("run") or p.get("status") != "succeeded":
            continue
        out.append({"point": p["point"], **compare_runs(store, base, p["run"], study.targets, study.owner)})
    names = sorted({n for c in out for n in c["outputs"]})
    for name in names:
        rows = [c["outputs"][name] for c in out if name in c["outputs"]]
        for row, adjusted in zip(rows, holm([r.get("p_value") for r in rows])):
            row["p_value_holm"] = adjusted
    for i in range(len(study.targets)):
        rows = [c["targets"][i] for c in out if len(c["targets"]) > i]
        for row, adjusted in zip(rows, holm([r.get("p_value") for r in rows])):
            row["p_value_holm"] = adjusted
    note = f"p_value_holm: Holm's correction over the {len(out)} comparisons" if len(out) > 1 else None
    return clean({"study": study.id, "baseline": baseline, "comparisons": out, "holm": note})
