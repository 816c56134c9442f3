"""Targets (``rounds>=30``, ``max(infected)>=100``) and precision goals (``mean(payoff)+-0.01``,
``mean(last(wealth))+-1``).

A trajectory output (a 2-D column, sequences × steps) enters an expression only through a reduction to one
number per sequence: ``max(NAME)``, ``min(NAME)`` or ``last(NAME)``. A bare trajectory, or a reduction of a
scalar output, is an error naming the output (:func:`check_outputs`), never a silent per-step comparison.

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
#: a trajectory's reductions to one value per sequence (NaN steps are ignored by max/min, kept by last)
REDUCERS = {
    "max": lambda a: np.fmax.reduce(a, axis=1),
    "min": lambda a: np.fmin.reduce(a, axis=1),
    "last": lambda a: a[:, -1],
}
_OPERAND = rf"(?:(max|min|last)\s*\(\s*({_NAME})\s*\)|({_NAME}))"
_TARGET = re.compile(rf"^\s*{_OPERAND}\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")
_OPERAND_ONLY = re.compile(rf"^\s*{_OPERAND}\s*$")
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
    reduce: str | None = None  # "max", "min" or "last" of a trajectory output

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
                f"cannot read target '{text}': write OUTPUT OP NUMBER, for example 'rounds>=30', or "
                "max|min|last(TRAJECTORY) OP NUMBER, for example 'max(infected)>=100' (OP is one of >= <= > < == !=)",
                index=index,
            )
        reduce, inner, plain, op, value = m.groups()
        name = inner or plain
        operand = f"{reduce}({name})" if reduce else name
        return cls(f"{operand}{op}{value}", name, op, _value(value), reduce)

    def values(self, column: np.ndarray) -> np.ndarray:
        """The column this target compares: a trajectory reduced to one value per sequence, a scalar column as is."""
        if (column.ndim == 2) != (self.reduce is not None):
            raise ExpressionError(shape_error(self.expr, self.output, self.reduce, column.ndim == 2))
        return REDUCERS[self.reduce](column) if self.reduce else column

    def hits(self, column: np.ndarray) -> tuple[int, int]:
        """(how many values meet the target, how many values there are), ignoring NaN."""
        column = self.values(column)
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
    #: for mean(max|min|last(NAME)): the reduction, and ``output`` is the key "last(NAME)" the running tallies use
    reduce: str | None = None

    @property
    def source(self) -> str:
        """The model output this goal reads (``wealth`` for ``mean(last(wealth))``)."""
        if self.target is not None:
            return self.target.output
        return self.output[len(self.reduce) + 1 : -1] if self.reduce else self.output

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
            operand = _OPERAND_ONLY.match(inner)
            if not operand:
                raise ExpressionError(
                    f"precision goal '{text}': mean() takes one output name, for example mean(payoff), "
                    "or a trajectory's max|min|last, for example mean(last(wealth))",
                    Field.UNTIL,
                )
            reduce, name, bare = operand.groups()
            key = f"{reduce}({name})" if reduce else bare
            return cls(text.strip(), "mean", key, width, bool(pct), reduce=reduce)
        try:
            target = Target.parse(inner)
        except ExpressionError:
            raise ExpressionError(
                f"precision goal '{text}': p() takes a target such as p(rounds>=30)",
                Field.UNTIL,
            ) from None
        return cls(text.strip(), "p", target.output, width, bool(pct), target)


def reduced_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``max(NAME)``, ``min(NAME)`` and ``last(NAME)`` of every trajectory column: what mean() goals track."""
    return {f"{r}({name})": f(col) for name, col in columns.items() if col.ndim == 2 for r, f in REDUCERS.items()}


def shape_error(expr: str, output: str, reduce: str | None, is_trajectory: bool, example: str = "") -> str:
    """Why ``expr`` does not fit output ``output``; ``example``: how to write it instead ({output} filled in), by
    default a target's."""
    if is_trajectory:
        example = (example or "max({output})>=100").format(output=output)
        return (
            f"'{expr}': output '{output}' is a trajectory; use max({output}), min({output}) or last({output}) "
            f"to reduce it to one value per sequence, e.g. '{example}'"
        )
    return f"'{expr}': {reduce}() takes a trajectory, but output '{output}' is a single number per sequence; write '{output}' alone"


def check_outputs(kinds: dict[str, str], targets: list[Target], goal: Goal | None) -> None:
    """Every expression must name an output the model returns, reduced exactly when it is a trajectory."""
    known = ", ".join(kinds) or "(none)"
    for i, t in enumerate(targets):
        if t.output not in kinds:
            raise ExpressionError(
                f"target '{t.expr}' names output '{t.output}', but the model returns: {known}", index=i
            )
        if kinds[t.output].endswith("]") != (t.reduce is not None):
            raise ExpressionError(
                "target " + shape_error(t.expr, t.output, t.reduce, kinds[t.output].endswith("]")), index=i
            )
    if goal is None:
        return
    if goal.source not in kinds:
        raise ExpressionError(
            f"precision goal '{goal.expr}' names output '{goal.source}', but the model returns: {known}", Field.UNTIL
        )
    reduce = goal.target.reduce if goal.target is not None else goal.reduce
    if kinds[goal.source].endswith("]") != (reduce is not None):
        example = "mean(last({output}))+-0.1" if goal.target is None else "p(max({output})>=100)+-0.01"
        raise ExpressionError(
            "precision goal " + shape_error(goal.expr, goal.source, reduce, kinds[goal.source].endswith("]"), example),
            Field.UNTIL,
        )
