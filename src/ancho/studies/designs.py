"""Designs: how a study's points (sets of parameter values) are chosen.

A :class:`Design` is a frozen description (kind, parameters, settings, seed)
that regenerates the same points whenever it is asked; nothing is sampled
until :meth:`Design.points` is given the model, which validates every point
against the model's parameters before anything runs.

Ranges: ``(low, high)`` for a number, a list for choices. A float parameter
takes values in [low, high]; an int parameter whole numbers in [low, high]
(both ends included, each equally likely); choices are picked with equal
probability. Random, Latin hypercube and Sobol designs sample the unit cube
and map each column through its range, so one mapping serves all of them:
``u`` in [0, 1) becomes ``low + u (high - low)`` for a float,
``low + floor(u (high - low + 1))`` for an int and ``choices[floor(u k)]``.
Morris designs sit on a grid of levels, so they round instead (level 0 is
``low``, the last level ``high``).

In JSON (the REST body) a range is ``[low, high]`` and choices are
``{"choices": [...]}`` (JSON has no tuples; a list of anything other than two
numbers is read as choices too).

Seeds: a sampled design keeps its own seed. Given none, the study derives one
from its seed (:meth:`Design.seeded`), so the study's seed alone regenerates
its points; :meth:`Design.describe` records it either way.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import Field, FieldError, InputError, ParameterError
from ..model import Model, Parameter, model_class
from ..streams import MAX_SEED

#: the most points a design may have unless the caller says otherwise (the server has its own setting)
MAX_POINTS = 100_000
KINDS = ("grid", "random", "lhs", "sobol", "morris", "points")
_SAMPLED = ("random", "lhs", "sobol", "morris")
#: mixed into a study's seed to derive a design's, so the two never coincide
_DESIGN_DOMAIN = 0x5EED_DE51


def _error(message: str, name: str | None = None) -> FieldError:
    return FieldError(Field.DESIGN, message, name=name)


@dataclass(frozen=True)
class Range:
    """One parameter's span: ``low``/``high`` for a number, or ``choices``."""

    name: str
    low: Any = None
    high: Any = None
    choices: tuple | None = None

    @classmethod
    def read(cls, name: str, spec: Any) -> Range:
        """A range from Python (a tuple is a span, a list choices) or JSON (``[low, high]``, ``{"choices": [...]}``)."""
        if isinstance(spec, Mapping):
            if set(spec) != {"choices"}:
                raise _error(
                    f"design range for '{name}': write {{\"choices\": [...]}} or [low, high], got {dict(spec)!r}", name
                )
            spec = list(spec["choices"])
        elif isinstance(spec, tuple):
            if len(spec) != 2:
                raise _error(f"design range for '{name}' must be (low, high), got {spec!r}", name)
            return cls(name, spec[0], spec[1])
        elif isinstance(spec, list) and len(spec) == 2 and all(_is_number(v) for v in spec):
            return cls(name, spec[0], spec[1])
        if isinstance(spec, (list, np.ndarray)):
            if len(spec) == 0:
                raise _error(f"design range for '{name}' has no choices: give at least one value", name)
            return cls(name, choices=tuple(spec.tolist() if isinstance(spec, np.ndarray) else spec))
        raise _error(f"design range for '{name}' must be (low, high) or a list of choices, got {spec!r}", name)

    def to_json(self) -> Any:
        return {"choices": list(self.choices)} if self.choices is not None else [self.low, self.high]

    def typed(self, p: Parameter) -> Range:
        """This range with its ends or choices converted to ``p``'s type; low < high checked."""
        if self.choices is not None:
            return replace(self, choices=tuple(_convert(p, v, self.name) for v in self.choices))
        if p.annotation not in (int, float):
            raise _error(
                f"design range for '{self.name}': parameter '{self.name}' is {p.type_name}; "
                "a (low, high) range needs an int or float parameter, give a list of choices instead",
                self.name,
            )
        low, high = _convert(p, self.low, self.name), _convert(p, self.high, self.name)
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise _error(f"design range for '{self.name}': low ({low}) must be below high ({high})", self.name)
        return replace(self, low=low, high=high)

    def from_unit(self, u: np.ndarray, rounded: bool = False) -> list:
        """Map unit-cube coordinates to values (``rounded``: nearest level, for Morris grids)."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if self.choices is not None:
            k = len(self.choices)
            idx = np.rint(u * (k - 1)) if rounded else np.minimum(np.floor(u * k), k - 1)
            return [self.choices[int(i)] for i in idx]
        if isinstance(self.low, int):
            span = self.high - self.low
            off = np.rint(u * span) if rounded else np.minimum(np.floor(u * (span + 1)), span)
            return [self.low + int(o) for o in off]
        return (self.low + u * (self.high - self.low)).tolist()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _convert(p: Parameter, value: Any, name: str, where: str = "") -> Any:
    """``value`` converted by ``p``'s annotation, in the JSON form a study's record keeps (Parameter.jsonable)."""
    try:
        return p.jsonable(p.convert(value))
    except ParameterError as exc:
        raise _error(f"design value for '{name}'{where}: {exc}", name) from None


@dataclass(frozen=True)
class Design:
    """A study's design: ``kind``, the parameters it varies, its settings and (for sampled kinds) its seed.

    ``values`` (grid): parameter -> values; ``ranges`` (sampled kinds):
    parameter -> :class:`Range`; ``rows`` (points): the given points.
    """

    kind: str
    values: Mapping[str, tuple] = field(default_factory=dict)
    ranges: Mapping[str, Range] = field(default_factory=dict)
    rows: tuple = ()
    n: int = 0
    levels: int = 0
    calc_second_order: bool = False
    seed: int | None = None

    # -- what it is ------------------------------------------------------------
    @property
    def parameters(self) -> list[str]:
        if self.kind == "grid":
            return list(self.values)
        if self.kind == "points":
            return list(dict.fromkeys(k for row in self.rows for k in row))
        return list(self.ranges)

    @property
    def size(self) -> int:
        """How many points the design has (known without sampling)."""
        d = len(self.ranges)
        if self.kind == "grid":
            return math.prod(len(v) for v in self.values.values()) if self.values else 0
        if self.kind == "points":
            return len(self.rows)
        if self.kind == "sobol":
            return self.n * ((2 * d + 2) if self.calc_second_order else (d + 2))
        if self.kind == "morris":
            return self.n * (d + 1)
        return self.n

    def seeded(self, study_seed: int | None) -> Design:
        """This design with a seed: its own if it has one, else derived from ``study_seed`` (or fresh when that is None)."""
        if self.kind not in _SAMPLED or self.seed is not None:
            return self
        if study_seed is None:
            from ..streams import new_seed

            return replace(self, seed=new_seed())
        state = np.random.SeedSequence([int(study_seed), _DESIGN_DOMAIN]).generate_state(1, np.uint64)[0]
        return replace(self, seed=int(state) & MAX_SEED)

    def problem(self) -> dict:
        """SALib's problem dict for the sensitivity analysis (names in column order; bounds as given, choices [0, k])."""
        return {
            "num_vars": len(self.ranges),
            "names": list(self.ranges),
            "bounds": [[0, len(r.choices)] if r.choices is not None else [r.low, r.high] for r in self.ranges.values()],
        }

    def describe(self) -> dict:
        """The summary's ``design`` object, plus everything needed to regenerate the points."""
        out: dict[str, Any] = {"kind": self.kind, "parameters": self.parameters, "points": self.size}
        if self.kind == "grid":
            out["values"] = self.to_dict()["grid"]
        elif self.kind != "points":  # given points are kept as the study's points table
            out.update(self.to_dict()[self.kind])
        if self.kind in ("sobol", "morris"):
            out["problem"] = self.problem()
            out["sampled_in"] = "unit cube, mapped through the ranges"
        return out

    # -- the REST body shape ---------------------------------------------------------
    def to_dict(self) -> dict:
        """The REST body's ``design`` field (``{"grid": {...}}``, ``{"lhs": {"n": 64, "ranges": {...}, "seed": 5}}``…)."""
        if self.kind == "grid":
            return {"grid": {k: list(v) for k, v in self.values.items()}}
        if self.kind == "points":
            return {"points": [dict(r) for r in self.rows]}
        body: dict[str, Any] = {}
        if self.kind == "morris":
            body.update(trajectories=self.n, levels=self.levels)
        else:
            body["n"] = self.n
        if self.kind == "sobol":
            body["calc_second_order"] = self.calc_second_order
        body["ranges"] = {k: r.to_json() for k, r in self.ranges.items()}
        if self.seed is not None:
            body["seed"] = self.seed
        return {self.kind: body}

    @classmethod
    def from_dict(cls, body: Any) -> Design:
        """Read a REST body's ``design`` field; a one-line error names what is wrong."""
        if isinstance(body, Design):
            return body
        if not isinstance(body, Mapping) or len(body) != 1 or next(iter(body)) not in KINDS:
            raise _error(f"design must be one of {{{', '.join(repr(k) for k in KINDS)}: ...}}, got {body!r}")
        ((kind, spec),) = body.items()
        if kind == "grid":
            if not isinstance(spec, Mapping):
                raise _error('design grid must map each parameter to a list of values, e.g. {"p": [0.45, 0.5]}')
            return grid(**spec)
        if kind == "points":
            return points(spec)
        if not isinstance(spec, Mapping):
            raise _error(f'design {kind} must be an object with its settings and "ranges"')
        known = {
            "random": {"n", "ranges", "seed"},
            "lhs": {"n", "ranges", "seed"},
            "sobol": {"n", "ranges", "seed", "calc_second_order"},
            "morris": {"trajectories", "levels", "ranges", "seed"},
        }[kind]
        extra = sorted(set(spec) - known)
        if extra:
            raise _error(f"design {kind} has unknown setting '{extra[0]}' (known: {', '.join(sorted(known))})")
        ranges = spec.get("ranges")
        if not isinstance(ranges, Mapping):
            raise _error(f'design {kind} needs "ranges": an object of parameter -> [low, high] or {{"choices": [...]}}')
        seed = spec.get("seed")
        if kind == "morris":
            return morris(spec.get("trajectories"), levels=spec.get("levels", 4), seed=seed, **ranges)
        if kind == "sobol":
            return sobol(spec.get("n"), seed=seed, calc_second_order=spec.get("calc_second_order", False), **ranges)
        return (random if kind == "random" else lhs)(spec.get("n"), seed=seed, **ranges)

    # -- the points ------------------------------------------------------------------
    def points(self, model: Any, max_points: int = MAX_POINTS) -> list[dict]:
        """Every point as ``{parameter: value}``, each value converted and checked against ``model``'s parameters.

        Raises a :class:`FieldError` (``Field.DESIGN``) naming the culprit
        before anything runs: an unknown parameter, a badly typed value, a
        bad range, an empty design or more than ``max_points`` points.
        """
        cls: type[Model] = model_class(model)
        declared = cls.parameters()
        for name in self.parameters:
            if name not in declared:
                known = ", ".join(declared) or "(none)"
                raise _error(
                    f"design parameter '{name}' is not a parameter of model {cls.__name__} (known parameters: {known})",
                    name,
                )
        size = self.size
        if size == 0:
            raise _error(f"design {self.kind} has no points: give it at least one value per parameter")
        if size > max_points:
            raise _error(f"design {self.kind} has {size:,} points, over the cap of {max_points:,}: make it smaller")
        if self.kind == "grid":
            typed = {k: [_convert(declared[k], v, k) for v in vs] for k, vs in self.values.items()}
            return [dict(zip(typed, combo)) for combo in itertools.product(*typed.values())]
        if self.kind == "points":
            names = self.parameters
            out = []
            for i, row in enumerate(self.rows):
                missing = [k for k in names if k not in row]  # (None and "" are values: a str or optional one)
                if missing:
                    raise _error(
                        f"design point {i} has no value for '{missing[0]}': every point needs every column", missing[0]
                    )
                out.append({k: _convert(declared[k], row[k], k, f" in point {i}") for k in names})
            return out
        if self.seed is None:
            raise InputError(f"design {self.kind} has no seed yet: call .seeded(study_seed) first, or give seed=")
        typed_ranges = [r.typed(declared[name]) for name, r in self.ranges.items()]
        unit = self.unit_sample()
        columns = [r.from_unit(unit[:, j], rounded=self.kind == "morris") for j, r in enumerate(typed_ranges)]
        names = list(self.ranges)
        return [dict(zip(names, vals)) for vals in zip(*columns)]

    def unit_sample(self) -> np.ndarray:
        """The sampled kinds' points in the unit cube (rows x parameters): what SALib's analysers take as X."""
        d, n, seed = len(self.ranges), self.n, self.seed
        if self.kind == "random":
            return np.random.default_rng(seed).random((n, d))
        if self.kind == "lhs":
            from scipy.stats import qmc

            return qmc.LatinHypercube(d=d, rng=np.random.default_rng(seed)).random(n)
        unit_problem = {"num_vars": d, "names": list(self.ranges), "bounds": [[0.0, 1.0]] * d}
        if self.kind == "sobol":
            from SALib.sample import sobol as salib_sobol

            return salib_sobol.sample(unit_problem, n, calc_second_order=self.calc_second_order, seed=seed)
        from SALib.sample import morris as salib_morris

        return salib_morris.sample(unit_problem, n, num_levels=self.levels, seed=seed)


def _no_blanks(rows: list[dict]) -> list[dict]:
    """Table rows (a CSV file's, a DataFrame's) whose blank cells are refused: there a blank is a gap, not a value."""
    for i, row in enumerate(rows):
        for k, v in row.items():
            if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v)):
                raise _error(f"design point {i} has no value for '{k}': every point needs every column", k)
    return rows


# -- the user-facing constructors ----------------------------------------------------------
def grid(**values: Any) -> Design:
    """Every combination of the given values: ``grid(p=[0.45, 0.5], goal=[10, 20])`` has 4 points."""
    if not values:
        raise _error("design grid has no parameters: give at least one, e.g. grid(p=[0.45, 0.5])")
    out = {}
    for name, vs in values.items():
        if isinstance(vs, (str, bytes)) or not isinstance(vs, (Sequence, np.ndarray)):
            raise _error(f"design grid values for '{name}' must be a list, got {vs!r}", name)
        if len(vs) == 0:
            raise _error(f"design grid values for '{name}' are empty: give at least one value", name)
        out[name] = tuple(vs.tolist() if isinstance(vs, np.ndarray) else vs)
    return Design("grid", values=out)


def _count(what: str, kind: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise _error(f"design {kind} {what} must be a whole number of at least 1, got {n!r}")
    return int(n)


def _ranges(kind: str, ranges: Mapping[str, Any]) -> dict[str, Range]:
    if not ranges:
        raise _error(f"design {kind} has no ranges: give at least one, e.g. {kind}(64, p=(0.4, 0.6))")
    return {name: Range.read(name, spec) for name, spec in ranges.items()}


def _seed(kind: str, seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise _error(f"design {kind} seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def random(n: Any, /, *, seed: int | None = None, **ranges: Any) -> Design:
    """``n`` points drawn independently and uniformly from the ranges."""
    return Design("random", ranges=_ranges("random", ranges), n=_count("n", "random", n), seed=_seed("random", seed))


def lhs(n: Any, /, *, seed: int | None = None, **ranges: Any) -> Design:
    """A Latin hypercube of ``n`` points: each parameter's range cut in ``n`` strata, each stratum hit once."""
    return Design("lhs", ranges=_ranges("lhs", ranges), n=_count("n", "lhs", n), seed=_seed("lhs", seed))


def sobol(n: Any, /, *, seed: int | None = None, calc_second_order: Any = False, **ranges: Any) -> Design:
    """Saltelli's sampling for Sobol indices: ``n`` (a power of two) base points, ``n (d + 2)`` points in all
    (``n (2d + 2)`` with ``calc_second_order``), d the number of ranges."""
    n = _count("n", "sobol", n)
    if n & (n - 1):
        below = 1 << (n.bit_length() - 1)
        raise _error(f"design sobol n={n} is not a power of two: use {below} or {below * 2}")
    if not isinstance(calc_second_order, bool):
        raise _error(f"design sobol calc_second_order must be true or false, got {calc_second_order!r}")
    return Design(
        "sobol", ranges=_ranges("sobol", ranges), n=n, calc_second_order=calc_second_order, seed=_seed("sobol", seed)
    )


def morris(trajectories: Any, /, levels: Any = 4, *, seed: int | None = None, **ranges: Any) -> Design:
    """Morris' elementary-effects screening: ``trajectories`` paths of d + 1 points on a grid of ``levels`` levels."""
    trajectories = _count("trajectories", "morris", trajectories)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2 or levels % 2:
        raise _error(f"design morris levels must be an even whole number of at least 2 (4 is usual), got {levels!r}")
    return Design(
        "morris", ranges=_ranges("morris", ranges), n=trajectories, levels=int(levels), seed=_seed("morris", seed)
    )


def points(rows: Any) -> Design:
    """Given points: a list of dicts, a pandas DataFrame or the path of a CSV file (header: parameter names)."""
    if isinstance(rows, (str, os.PathLike)):
        rows = _no_blanks(_read_csv(os.fspath(rows)))
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = _no_blanks(rows.to_dict(orient="records"))
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise _error(
            f"design points must be a list of {{parameter: value}} objects, a DataFrame or a CSV path, got {type(rows).__name__}"
        )
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise _error(f"design point {i} must be an object of parameter -> value, got {row!r}")
    return Design("points", rows=tuple(dict(r) for r in rows))


def _read_csv(path: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if not header or any(not (h or "").strip() for h in header):
                raise _error(f"design points file {path}: the first line must name every column (parameter names)")
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise _error(
                        f"design points file {path} line {line}: it has a different number of values than the header"
                    )
                rows.append({k.strip(): v for k, v in row.items()})
            return rows
    except OSError as exc:
        raise _error(f"design points file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _error(f"design points file {path} is not UTF-8 text") from None
