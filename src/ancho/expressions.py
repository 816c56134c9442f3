"""Targets (``rounds>=30``) and precision goals (``mean(payoff)+-0.01``).

Both are tiny languages parsed with one regular expression each: no
``eval``, so an expression typed into a web form or a REST body can never
run code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .errors import ExpressionError, Field

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|true|false|True|False"
_OPS = {
    ">=": np.greater_equal,
    "<=": np.less_equal,
    ">": np.greater,
    "<": np.less,
    "==": np.equal,
    "!=": np.not_equal,
}
_TARGET = re.compile(rf"^\s*({_NAME})\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")
_GOAL = re.compile(r"^\s*(mean|p)\s*\((.+)\)\s*(?:\+-|±|\+/-)\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*$")
_BARE_NAME = re.compile(rf"^\s*({_NAME})\s*$")


def _value(text: str) -> float:
    low = text.lower()
    if low == "true":
        return 1.0
    if low == "false":
        return 0.0
    return float(text)


@dataclass(frozen=True)
class Target:
    """A threshold on one output; its probability is reported with a Wilson interval."""

    expr: str
    output: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str, index: int | None = None) -> Target:
        """The target ``text``; an error names it as the run's target number ``index`` (from 0), when given."""
        if not isinstance(text, str):
            raise ExpressionError(f"target {text!r} must be a string such as 'wealth>=1e6'", index=index)
        m = _TARGET.match(text)
        if not m:
            bare = _BARE_NAME.match(text)
            if bare:  # a bool output on its own means "is true"
                return cls(f"{bare.group(1)}==1", bare.group(1), "==", 1.0)
            raise ExpressionError(
                f"cannot read target '{text}': write OUTPUT OP NUMBER, for example 'rounds>=30' (OP is one of >= <= > < == !=)",
                index=index,
            )
        name, op, value = m.groups()
        return cls(f"{name}{op}{value}", name, op, _value(value))

    def hits(self, column: np.ndarray) -> tuple[int, int]:
        """(how many values meet the target, how many values there are), ignoring NaN."""
        if column.dtype.kind == "f":
            valid = ~np.isnan(column)
            n = int(valid.sum())
            return int(_OPS[self.op](column[valid], self.value).sum()), n
        return int(np.count_nonzero(_OPS[self.op](column, self.value))), int(column.size)


@dataclass(frozen=True)
class Goal:
    """A precision goal: run until the 95% CI half-width of a statistic is at most ``width``."""

    expr: str
    statistic: str  # "mean" or "p"
    output: str
    width: float
    relative: bool = False  # width is a fraction of |estimate|
    target: Target | None = None

    @classmethod
    def parse(cls, text: str) -> Goal:
        if not isinstance(text, str):
            raise ExpressionError(f"precision goal {text!r} must be a string such as 'mean(payoff)+-0.01'", Field.UNTIL)
        m = _GOAL.match(text)
        if not m:
            raise ExpressionError(
                f"cannot read precision goal '{text}': write mean(OUTPUT)+-WIDTH or p(OUTPUT>=VALUE)+-WIDTH, "
                "for example 'mean(payoff)+-0.01', 'p(rounds>=30)+-0.005' or 'mean(payoff)+-1%'",
                Field.UNTIL,
            )
        stat, inner, width_s, pct = m.groups()
        width = float(width_s) / (100.0 if pct else 1.0)
        if not width > 0 or not math.isfinite(width):
            raise ExpressionError(f"precision goal '{text}': the width must be a positive number", Field.UNTIL)
        if stat == "mean":
            name = _BARE_NAME.match(inner)
            if not name:
                raise ExpressionError(
                    f"precision goal '{text}': mean() takes one output name, for example mean(payoff)", Field.UNTIL
                )
            return cls(text.strip(), "mean", name.group(1), width, bool(pct))
        try:
            target = Target.parse(inner)
        except ExpressionError:
            raise ExpressionError(
                f"precision goal '{text}': p() takes a target such as p(rounds>=30)",
                Field.UNTIL,
            ) from None
        return cls(text.strip(), "p", target.output, width, bool(pct), target)


def check_outputs(kinds: dict[str, str], targets: list[Target], goal: Goal | None) -> None:
    """Every expression must name an output the model returns."""
    known = ", ".join(kinds) or "(none)"
    for i, t in enumerate(targets):
        if t.output not in kinds:
            raise ExpressionError(
                f"target '{t.expr}' names output '{t.output}', but the model returns: {known}", index=i
            )
    if goal is not None and goal.output not in kinds:
        raise ExpressionError(
            f"precision goal '{goal.expr}' names output '{goal.output}', but the model returns: {known}", Field.UNTIL
        )
