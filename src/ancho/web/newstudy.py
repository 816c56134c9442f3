"""The new-study form: the new-run form (:mod:`.newrun`) plus a design, done on the server the same way.

Everything about the model's source, reading its parameters, the run
settings and placing errors next to their fields is the new-run form's
(:func:`~.newrun.handle` with this module's :func:`submit`); this module only
reads the design fields into the REST API's ``design`` body and checks it
with :class:`ancho.studies.Design` before submitting, so a bad range or value
is shown next to that parameter's field.

Design fields: ``design_kind`` (grid, random, lhs, sobol, morris),
``design_n`` (points; Sobol's base size; Morris' trajectories), ``levels``
(Morris), and per parameter ``design-NAME``: grid values ``0.45, 0.5`` or a
range ``LOW:HIGH`` (or choices ``a, b, c``) for the sampled kinds. A
parameter whose design field is empty keeps its value (``param-NAME``).
``baseline`` is the point every other is compared with on the study's page.
"""

from __future__ import annotations

from typing import Any

from ..errors import AnchoError, FieldError
from ..server.schemas import StudyRequest
from ..server.service import Service
from ..studies import Design
from .newrun import NewRun, run_body, submitted

#: the design kinds as the REST API names them, with the form's labels
DESIGN_KINDS = {
    "grid": "Grid",
    "random": "Random",
    "lhs": "Latin hypercube",
    "sobol": "Sobol (Saltelli)",
    "morris": "Morris",
}
#: the new-study form's fields beyond the new-run form's
STUDY_FIELDS = ("design_kind", "design_n", "levels", "baseline")


def new_study_form() -> NewRun:
    return NewRun(values={"kind": "upload", "sequences": "1000", "design_kind": "grid", "levels": "4"})


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def _count(state: NewRun, name: str, label: str) -> int | None:
    text = state.values.get(name, "").strip()
    number = _number(text)
    if not isinstance(number, int) or number < 1:
        state.error(name, f"{label}: enter a whole number of at least 1.")
        return None
    return number


def design_body(state: NewRun) -> dict | None:
    """The REST API's ``design`` from the form's fields, checked; None with the errors placed next to their fields."""
    v = state.values
    kind = v.get("design_kind", "")
    if kind not in DESIGN_KINDS:
        state.error("design_kind", f"Choose a design kind: one of {', '.join(DESIGN_KINDS)}.")
        return None
    varied = {k.removeprefix("design-"): t.strip() for k, t in v.items() if k.startswith("design-") and t.strip()}
    if not varied:
        where = "design" if state.model else "model"
        state.error(where, "Read the model's parameters, then give values or a range to at least one of them.")
        return None
    body: dict[str, Any]
    if kind == "grid":
        body = {"grid": {name: [x.strip() for x in text.split(",") if x.strip()] for name, text in varied.items()}}
    else:
        ranges: dict[str, Any] = {}
        for name, text in varied.items():
            low, colon, high = text.partition(":")
            if colon:
                ends = (_number(low.strip()), _number(high.strip()))
                if None in ends:
                    state.error(f"design-{name}", f"{name}: write a range as LOW:HIGH with two numbers, e.g. 0.4:0.6.")
                    continue
                ranges[name] = list(ends)
            else:
                ranges[name] = {"choices": [x.strip() for x in text.split(",") if x.strip()]}
        label = {"sobol": "Base size n", "morris": "Trajectories"}.get(kind, "Points")
        n = _count(state, "design_n", label)
        if kind == "morris":
            levels = _count(state, "levels", "Levels")
            body = {"morris": {"trajectories": n, "levels": levels, "ranges": ranges}}
        else:
            body = {kind: {"n": n, "ranges": ranges}}
    if state.errors:
        return None
    try:
        Design.from_dict(body)
    except FieldError as exc:
        message = str(exc)
        if exc.name and f"design-{exc.name}" in v:
            state.error(f"design-{exc.name}", message)
        else:  # the design's own settings: its size, Morris' levels
            state.error("levels" if "levels" in message else "design_n" if " n" in message else "design", message)
        return None
    return body


def submit(svc: Service, user: str, state: NewRun, source: dict) -> str | None:
    """Start the study the form describes (newrun.handle's ``submit``); its id, or None with the errors placed."""
    body = run_body(svc, user, state, source)
    design = design_body(state) if body is not None else None
    baseline = state.values.get("baseline", "").strip()
    if baseline and not (isinstance(_number(baseline), int) and int(baseline) >= 0):
        state.error("baseline", "Baseline: enter a point's number (0 is the first point).")
    if body is None or design is None or state.errors:
        return None
    # the design varies its parameters: their fixed values stay out of params (else the API would call them twice)
    body["params"] = {k: x for k, x in body["params"].items() if f"design-{k}" not in _varied(state)}
    body["design"] = design
    try:
        size = Design.from_dict(design).size
    except AnchoError:  # pragma: no cover - design_body checked it
        size = 0
    if baseline and int(baseline) >= size:
        state.error("baseline", f"Baseline: the design has {size:,} points (0 to {size - 1:,}); choose one of them.")
        return None

    def start() -> str:
        return svc.submit_study(user, StudyRequest.model_validate(body)).id

    return submitted(svc, user, state, source, start)


def _varied(state: NewRun) -> set[str]:
    return {k for k, t in state.values.items() if k.startswith("design-") and t.strip()}
