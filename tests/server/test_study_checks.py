"""The server rebuilds a parameter's type from a worker's description without importing or evaluating anything,
and converts a design's values with it exactly as the model itself does (the same values pass and fail)."""

from __future__ import annotations

import typing
from typing import Any, Literal

import pytest

import ancho
from ancho.errors import ParameterError
from ancho.model import describe_model
from ancho.server.study_checks import described_annotation, described_model


class Kinds(ancho.Model):
    n: int = 3
    x: float = 0.5
    flag: bool = False
    name: str = "a"
    weights: list[float] = [1.0]
    pair: tuple[int, int] = (1, 2)
    rest: tuple[int, ...] = ()
    mode: Literal["fast", "slow"] = "fast"
    level: Literal[1, 2] = 1
    table: dict[str, float] = {}
    maybe: float | None = None
    old: typing.Optional[typing.List[int]] = None  # noqa: UP006, UP045 - the older spelling is described too
    either: typing.Union[int, str] = 0  # noqa: UP007
    anything: Any = None

    def sequence(self, rng):
        return {"y": 0.0}


VALUES = [0, 1, -2, 1.5, "2", "fast", "medium", True, None, [1, 2], [1.0, "a"], ["x"], [], (1, 2), {"a": 1.0},
          {"a": "b"}, "[1, 2]", '{"a": 2}', "1e3"]  # fmt: skip


@pytest.mark.parametrize("name", list(Kinds.parameters()))
def test_every_value_passes_or_fails_as_in_the_model(name):
    """For each parameter kind, the stand-in converts each value to the same result, or rejects it too."""
    real = Kinds.parameters()[name]
    stand_in = described_model(describe_model(Kinds)).parameters()[name]
    assert stand_in.type_name == real.type_name  # errors spell the type as the model does
    for value in VALUES:
        try:
            expected = real.convert(value)
        except ParameterError:
            with pytest.raises(ParameterError, match=f"'{name}'"):
                stand_in.convert(value)
        else:
            assert stand_in.convert(value) == expected, (name, value)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "model.Color",
        "list[model.Color]",
        "Literal[Color.RED]",
        "open",
        "list[" * 400 + "int" + "]" * 400,
        "x" * 5000,
        "int if True else str",
        "",
    ],
)
def test_what_names_anything_else_is_left_to_the_worker(text):
    assert described_annotation(text) is Any
