"""Checking a study's points in the server without importing the model: against the worker's description of it.

A submission's model is read once, in a sandboxed worker, which reports each
parameter's name, type and default (``describe_model``). The design's points
are then converted and checked here against a stand-in class with those
parameters, so a bad point is a 422 before anything is queued, and the
server process never runs the user's code.
"""

from __future__ import annotations

import ast
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import Field, FieldError, ParameterError
from ..model import Model, Parameter
from ..pysource import parse_expression

#: the names a worker's description of a parameter's type (``Parameter.type_name``) may use that the server rebuilds
#: without importing anything: builtins and typing's generics, as ``str(annotation)`` spells them
_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "list": list,
    "List": list,
    "tuple": tuple,
    "Tuple": tuple,
    "dict": dict,
    "Dict": dict,
    "set": set,
    "Set": set,
    "frozenset": frozenset,
    "FrozenSet": frozenset,
    "Sequence": typing.Sequence,
    "Mapping": typing.Mapping,
    "Any": Any,
    "None": None,
    "NoneType": None,
    "Optional": typing.Optional,
    "Union": typing.Union,
    "Literal": typing.Literal,
}
#: a described type longer than this is not rebuilt (the worker checks the value)
_MAX_TYPE_NAME = 1000


class _Unknown(Exception):
    """A described type names something the server cannot rebuild (a model's own class): the worker checks it."""


def described_annotation(type_name: str) -> Any:
    """The annotation a worker described as ``type_name`` (``"list[float]"``, ``"Literal['a', 'b']"``,
    ``"float | None"``…), rebuilt from builtins and typing only; ``Any`` for what names anything else.

    Why: a design's values for these parameters are then converted exactly as the model converts them (pydantic,
    over the same annotation) at submit time, so a wrong one is a 422 naming its point, not a failed point later.
    Parsed, never evaluated.
    """
    if len(type_name) > _MAX_TYPE_NAME:
        return Any
    try:
        return _build(parse_expression(type_name).body)
    except (_Unknown, SyntaxError, TypeError, ValueError, RecursionError):
        return Any


def _build(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_build(node.left), _build(node.right)]  # noqa: UP007 - built from parts at run time
    if isinstance(node, ast.Subscript):
        base = _build(node.value)
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base is typing.Literal:
            args = tuple(ast.literal_eval(part) for part in parts)
        else:
            args = tuple(... if isinstance(p, ast.Constant) and p.value is ... else _build(p) for p in parts)
        return base[args if len(args) > 1 else args[0]]
    raise _Unknown(ast.dump(node))


@dataclass(frozen=True)
class _Described(Parameter):
    """A parameter rebuilt from its description, named in errors as the model spells its type (``float | None``)."""

    described: str = ""

    @property
    def type_name(self) -> str:
        return self.described or super().type_name


def described_model(info: dict) -> type[Model]:
    """A stand-in Model class with the parameters a worker described (``describe_model``), to check a design's points.

    Every parameter whose type is built from builtins and typing (int, float, bool, str, ``list[float]``,
    ``tuple[int, int]``, ``Literal[...]``, ``dict[str, float]``, ``float | None``…) converts exactly as in the
    model (:func:`described_annotation`); a type naming the model's own classes takes the value as given and
    is checked by the worker that runs the point.
    """
    declared: dict[str, Parameter] = {}
    for p in info.get("parameters", []):
        described = str(p.get("type") or "Any")
        annotation = described_annotation(described)
        declared[p["name"]] = (
            _Described(p["name"], annotation, described=described)
            if p.get("required")
            else _Described(p["name"], annotation, p.get("default"), described)
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
