"""The run-request rules: a run's counts and expressions, checked once for every front end.

``ancho.run``, ``ancho run`` and the server (with its own cap) all call
:func:`run_settings`; each error is a :class:`~ancho.errors.FieldError`
naming its field, which each front end spells its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import Field, FieldError
from .expressions import Goal, Target
from .model import whole_number
from .streams import MAX_SEED, new_seed

MAX_SEQUENCES = 10**12
#: a precision goal's cap when none is given
DEFAULT_GOAL_CAP = 1_000_000
#: the run's size (with a precision goal: its first batch) when none is given
DEFAULT_SEQUENCES = 1000


@dataclass(frozen=True)
class RunSettings:
    """A run's counts and expressions, checked: what :func:`run_settings` returns."""

    sequences: int
    seed: int
    targets: list[Target]
    until: Goal | None
    max_sequences: int | None
    max_failures: int


def run_settings(
    sequences: Any = None,
    seed: Any = None,
    targets: Any = (),
    until: str | Goal | None = None,
    max_sequences: Any = None,
    max_failures: Any = 0,
    *,
    cap: int = MAX_SEQUENCES,
    capped_by: str | None = None,
) -> RunSettings:
    """The run-request rules, for every front end (``ancho.run``, ``ancho run``, the server): the one place they are.

    ``sequences`` is the run's size, or with ``until`` (a precision goal) the
    first batch; ``max_sequences`` caps a goal only (default: the smaller of
    ``DEFAULT_GOAL_CAP`` and ``cap``, never below the first batch). ``cap``
    bounds both counts: a server passes its own limit, and ``capped_by``
    ("this server") to say whose limit it is. Raises the first
    :class:`FieldError`, its message free of any front end's spelling.
    """
    targets = [targets] if isinstance(targets, str) else list(targets or ())
    parsed = [t if isinstance(t, Target) else Target.parse(t, index=i) for i, t in enumerate(targets)]
    goal = until if isinstance(until, Goal) else Goal.parse(until) if until is not None else None
    first = _count(Field.SEQUENCES, DEFAULT_SEQUENCES if sequences is None else sequences, 1, cap, capped_by)
    seed = _count(Field.SEED, new_seed() if seed is None else seed, 0, MAX_SEED)
    if max_sequences is not None:
        if goal is None:
            raise FieldError(
                Field.MAX_SEQUENCES,
                "{MAX_SEQUENCES} caps a precision goal: give it with {UNTIL}, or give only {SEQUENCES}",
            )
        max_sequences = _count(Field.MAX_SEQUENCES, max_sequences, 1, cap, capped_by)
        if max_sequences < first:
            raise FieldError(
                Field.MAX_SEQUENCES,
                f"{{MAX_SEQUENCES}} ({max_sequences:,}) is below {{SEQUENCES}} ({first:,}), the first batch",
            )
    elif goal is not None:
        max_sequences = max(min(DEFAULT_GOAL_CAP, cap), first)
    failures = _count(Field.MAX_FAILURES, max_failures or 0, 0, MAX_SEQUENCES)
    return RunSettings(first, seed, parsed, goal, max_sequences, failures)


def _count(field: Field, value: Any, low: int, high: int, capped_by: str | None = None) -> int:
    """A whole number in ``low..high``, read as a model's int parameter is (:func:`whole_number`)."""
    try:
        number = whole_number(value)
    except (TypeError, ValueError):
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        raise FieldError(field, f"{{{field.name}}} must be a whole number, got {shown}") from None
    if number > high and capped_by:
        raise FieldError(
            field, f"{{{field.name}}}: {capped_by} allows at most {high:,} sequences per run, got {number:,}"
        )
    if not low <= number <= high:
        raise FieldError(field, f"{{{field.name}}} must be between {low:,} and {high:,}, got {number:,}")
    return number
