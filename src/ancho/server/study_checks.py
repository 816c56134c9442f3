"""Checking a study's points in the server without importing the model: against the worker's description of it.

A submission's model is read once, in a sandboxed worker, which reports each
parameter's name, type and default (``describe_model``). The design's points
are then converted and checked here against a stand-in class with those
parameters, so a bad point is a 422 before anything is queued, and the
server process never runs the user's code.
"""

from __future__ import annotations

from typing import Any

from ..errors import Field, FieldError, ParameterError
from ..model import Model, Parameter

#: how a worker describes a parameter's type -> the type, for the types converted without importing anything
_DESCRIBED_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def described_model(info: dict) -> type[Model]:
    """A stand-in Model class with the parameters a worker described (``describe_model``), to check a design's points.

    int, float, bool and str parameters convert exactly as in the model; any other type (``list[float]``,
    ``Literal[...]``) takes the value as given and is checked by the worker that runs the point.
    """
    declared = {}
    for p in info.get("parameters", []):
        annotation = _DESCRIBED_TYPES.get(p.get("type"), Any)
        declared[p["name"]] = (
            Parameter(p["name"], annotation)
            if p.get("required")
            else Parameter(p["name"], annotation, p.get("default"))
        )
    cls: type[Model] = type(str(info.get("name") or "Model"), (Model,), {"__module__": __name__})
    cls.__ancho_parameters__ = declared
    return cls


def resolve_points(described: type[Model], given: dict, points: list[dict]) -> dict:
    """Every parameter's value from ``given`` and the defaults (what run_points lays each point over), each point's
    combination checked first; a bad ``given`` value is the ``params`` field's error, a bad point the ``design``'s."""
    for k, point in enumerate(points):
        try:
            described.resolve_params({**given, **point})
        except ParameterError as exc:
            if exc.name in point:
                raise FieldError(Field.DESIGN, f"design point {k}: {exc}") from None
            raise
    defaults = {n: p.default for n, p in described.parameters().items() if not p.required}
    return {**defaults, **{n: described.parameters()[n].convert(v) for n, v in given.items()}}
