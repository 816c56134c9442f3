"""What a study's report says, gathered once for the PDF and the notebook.

A study is read only through what the studies service already computes
(:func:`~ancho.studies.service.study_summary`, the points table, and
:func:`~ancho.studies.service.compare_points` when a baseline is asked for):
the report adds no statistics of its own, so its numbers are the ones
``ancho show``, the REST API and the web page give. Trajectory outputs add one
mean path per point, read from each point's run summary (the per-step means
the run already has), thinned to the fan chart's steps so a 1,000-step
series over 2,000 points stays a few MB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..chunk import trajectory_steps
from ..errors import InputError, NotFound
from ..present import interval as ci
from ..present import number as fmt
from ..present import run_duration
from ..present import timestamp as when
from ..stores.base import RunRecord, Store, StudyRecord
from .facts import model_doc


@dataclass(frozen=True)
class MeanPath:
    """One point's mean path of a trajectory output, at ``steps`` (None where a step has no finite mean)."""

    point: int
    steps: list[int]
    mean: list[float | None]


@dataclass
class StudyReportData:
    record: StudyRecord
    #: the study summary object (DESIGN.md §2 Studies), with ``sensitivity`` for a succeeded sobol/morris study
    summary: dict
    #: the points table (``Study.frame``): pandas DataFrame, one row per point
    frame: Any
    doc: str
    #: the first point's run record that exists (its model's docstring, its outputs' kinds), or None
    first: RunRecord | None
    #: ``compare_points`` against ``baseline``, or None when no baseline was asked for
    comparison: dict | None = None
    baseline: int | None = None
    #: trajectory output → each point's mean path
    paths: dict[str, list[MeanPath]] = field(default_factory=dict)

    @property
    def parameters(self) -> list[str]:
        """The design's varied parameters, in design order."""
        return list(self.summary["design"].get("parameters") or [])

    @property
    def outputs(self) -> list[str]:
        """Scalar outputs, in the order of the points table."""
        return [c[: -len(".mean")] for c in self.frame.columns if c.endswith(".mean")]

    @property
    def targets(self) -> list[str]:
        return list(self.record.targets)


def gather_study(store: Store, study_id: str, owner: str | None = None, baseline: int | None = None) -> StudyReportData:
    """The study's record, summary, points table, point runs and mean paths (NotFound for another owner's study).

    ``baseline``: a point number to compare every other succeeded point with (common random numbers);
    an out-of-range point is an :class:`~ancho.errors.InputError` naming the valid ones.
    """
    from ..plotdata import fan_steps
    from ..studies.service import compare_points, point_runs, points_frame, study_summary

    record = find_study(store, study_id, owner)
    summary = study_summary(store, study_id, owner)
    frame = points_frame(store, study_id, owner)
    # a point's run is read once more only when the study has trajectories: 2,000 points take ~0.5 s a pass
    first = next((r for r in point_runs(store, replace(record, points=record.points[:1])) if r is not None), None)
    series = first is not None and any(trajectory_steps(k) is not None for k in first.schema.values())
    runs = point_runs(store, record) if series else []
    comparison = None
    if baseline is not None:
        if not 0 <= baseline < len(record.points):
            raise InputError(
                f"baseline {baseline} is not a point of study {study_id}: give a point from 0 to {len(record.points) - 1}"
            )
        comparison = compare_points(store, study_id, baseline, owner)
    paths: dict[str, list[MeanPath]] = {}
    for p, run in zip(record.points, runs):
        if run is None or not run.summary:
            continue
        for name, stats in (run.summary.get("trajectories") or {}).items():
            if trajectory_steps(run.schema.get(name, "")) is None:
                continue
            mean = stats.get("mean") or []
            at = fan_steps(len(mean))
            paths.setdefault(name, []).append(MeanPath(p["point"], at.tolist(), [mean[i] for i in at]))
    doc = model_doc(first) if first is not None else ""
    return StudyReportData(record, summary, frame, doc, first, comparison, baseline, paths)


def find_study(store: Store, study_id: str, owner: str | None = None) -> StudyRecord:
    """The study, or NotFound; for one of the owner's run ids the message says it is a run (its report is the run's)."""
    try:
        return store.get_study(study_id, owner)
    except NotFound:
        try:
            store.get_run(study_id, owner)
        except NotFound:
            raise NotFound(f"no study '{study_id}'") from None
        raise NotFound(f"'{study_id}' is a run, not a study: ask for the run's report instead") from None


def design_rows(data: StudyReportData) -> list[tuple[str, str]]:
    """The design as (label, text): kind, parameters with their ranges or values, sizes."""
    d = data.record.design
    rows = [("Design", str(d.get("kind") or "–")), ("Points", fmt(len(data.record.points)))]
    for key in ("n", "trajectories", "levels", "calc_second_order"):
        if key in d:
            rows.append((key.replace("_", " ").capitalize(), fmt(d[key])))
    ranges = d.get("ranges") or {}
    values = d.get("values") or {}
    for name in data.parameters:
        if name in ranges:
            r = ranges[name]
            text = (
                "one of " + ", ".join(fmt(v) for v in r["choices"])
                if isinstance(r, dict) and "choices" in r
                else f"{fmt(r[0])} to {fmt(r[1])}"
            )
        elif name in values:
            text = ", ".join(fmt(v) for v in values[name])
        else:
            seen = data.frame[name].drop_duplicates().tolist() if name in data.frame else []
            text = ", ".join(fmt(v) for v in seen[:12]) + (f", … ({len(seen)} values)" if len(seen) > 12 else "")
        rows.append((f"Parameter {name}", text))
    if d.get("sampled_in"):
        rows.append(("Sampled in", str(d["sampled_in"])))
    return rows


def study_rows(data: StudyReportData) -> list[tuple[str, str]]:
    """The study's identity, settings and timings as (label, text) pairs."""
    r = data.record
    rows = [("Study", r.id), ("Status", r.status), ("Model", f"{r.model} ({r.entry})" if r.entry else r.model)]
    rows.append(("Source", r.source or "–"))
    rows.append(("Seed", f"{r.seed} (every point: common random numbers)"))
    asked = f"{fmt(r.sequences)} per point" if r.sequences else ""
    if r.until:
        asked = f"until {r.until}" + (f", at most {fmt(r.max_sequences)} per point" if r.max_sequences else "")
    rows.append(("Sequences", f"{fmt(r.done)} executed over all points" + (f" ({asked})" if asked else "")))
    if r.params:
        rows.append(("Fixed parameters", ", ".join(f"{k}={fmt(v)}" for k, v in r.params.items())))
    if r.targets:
        rows.append(("Targets", ", ".join(r.targets)))
    rows.append(("Executor", r.executor + (f", {r.workers} workers" if r.workers else "")))
    if r.owner and r.owner != "local":
        rows.append(("Owner", r.owner))
    rows += [
        ("Created", when(r.created)),
        ("Finished", when(r.finished)),
        ("Duration", run_duration(r.started, r.finished, r.status == "running")),
    ]
    if r.error:
        rows.append(("Error", r.error))
    return rows


def point_cells(
    data: StudyReportData, outputs: list[str], targets: list[str], digits: int = 6
) -> tuple[list[str], list[list[str]]]:
    """The points table as text: a header and one row per point (point, run, parameters, then mean and 95% CI
    of each of ``outputs`` and probability and 95% CI of each of ``targets``)."""
    head = ["point", *data.parameters]
    for name in outputs:
        head += [f"{name} mean", "95% CI"]
    for expr in targets:
        head += [f"p({expr})", "95% CI"]
    rows = []
    for row in data.frame.to_dict(orient="records"):
        cells = [str(int(row["point"])), *(fmt(_plain(row[p]), digits) for p in data.parameters)]
        for name in outputs:
            cells += [fmt(_plain(row[f"{name}.mean"]), digits), ci(_pair(row, f"{name}.ci95"), digits)]
        for expr in targets:
            cells += [fmt(_plain(row[f"p({expr})"]), digits), ci(_pair(row, f"p({expr}).ci95"), digits)]
        rows.append(cells)
    return head, rows


def _plain(v: Any) -> Any:
    """A table cell's value as Python: NumPy scalars to Python, NaN to None."""
    from ..stats import clean

    return clean(v.item() if hasattr(v, "item") else v)


def _pair(row: dict, prefix: str) -> list | None:
    low, high = _plain(row[f"{prefix}_low"]), _plain(row[f"{prefix}_high"])
    return None if low is None and high is None else [low, high]
