"""The model API: what users subclass.

A model is a plain class (in the spirit of Mesa): parameters are annotated
class attributes with defaults, ``sequence(self, rng)`` returns one
replication's outputs (or, for a batch model, ``sequences(self, rng, n)``
returns n replications' outputs as arrays, in fixed blocks of ``block``:
see ancho.batch), and methods marked ``@ancho.summary`` add the model's
own statistics. Nothing here runs anything; the engine does.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import numbers
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ModelError, ParameterError

_MISSING = object()
_SUMMARY_FLAG = "__ancho_summary__"


def summary(func: Callable) -> Callable:
    """Mark a model method as a summary function.

    It is called once per run as ``func(self, results)`` with the results
    DataFrame (a ``sequence`` column and one column per output) and returns a
    JSON-serialisable value (number, string, list or dict) stored under
    ``summary["custom"][func.__name__]``.
    """
    setattr(func, _SUMMARY_FLAG, True)
    return func


@dataclass(frozen=True)
class Parameter:
    """A declared model parameter: its name, annotation and default."""

    name: str
    annotation: Any
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def type_name(self) -> str:
        a = self.annotation
        return a.__name__ if isinstance(a, type) else str(a).replace("typing.", "")

    def describe(self) -> dict:
        """JSON-friendly description (used by the CLI, the REST API and the web form)."""
        return {
            "name": self.name,
            "type": self.type_name,
            "default": None if self.required else self.jsonable(self.default),
            "required": self.required,
        }

    def jsonable(self, value: Any) -> Any:
        """``value`` (as :meth:`convert` gives it) as JSON that :meth:`convert` turns back into it: what a run's
        record and the model's description keep. Numbers and text as they are; anything else (a tuple, a set, a
        ``pathlib.Path``, a date, an Enum…) as pydantic writes it for the annotation; ±inf and NaN as text, which
        converts back (JSON has no such number: REST answered null for them, and records kept null). A value with
        no JSON form is a ParameterError naming the parameter: its run could be neither recorded nor reproduced."""
        from .jsontext import plain

        if hasattr(value, "tolist") and type(value).__module__ == "numpy":  # a NumPy scalar or array given as Any
            value = value.tolist()
        if type(value) is float and not math.isfinite(value):
            return str(value)  # "inf", "-inf", "nan"
        if plain(value):
            return value
        try:
            return _adapter(Any if self.annotation is object else self.annotation).dump_python(value, mode="json")
        except Exception as exc:  # noqa: BLE001 - whatever pydantic says: it is the message
            shown = " ".join(str(exc).split())[:200]
            raise ParameterError(
                f"{{PARAMS}} = {value!r} has no JSON form to keep with the run ({shown}); give it a type that has "
                "one (numbers, text, lists, dicts, pathlib.Path, dates, Enum…)",
                self.name,
            ) from None

    def convert(self, value: Any) -> Any:
        """Convert ``value`` (a Python value, a JSON value or a command-line string) to the annotation.

        Scalars (int, float, bool, str) are converted here because they are
        nearly every parameter and must import nothing; other annotations
        (``list[float]``, ``Literal[...]``, ``tuple[int, int]``…) go through
        pydantic, after decoding a JSON string from the command line.
        """
        ann = self.annotation
        try:
            if ann is Any or ann is object:
                return value
            if ann in _SCALARS:
                return _SCALARS[ann](value)
            return _convert_with_pydantic(ann, value)
        except (TypeError, ValueError) as exc:
            shown = repr(value) if not isinstance(value, str) else f"'{value}'"
            raise ParameterError(f"{{PARAMS}} expects {self.type_name}, got {shown}: {exc}", self.name) from None


def whole_number(v: Any) -> int:
    """``v`` as an int: an int, a whole float, or a text such as ``"42"``, ``" 1_000 "`` or ``"1e6"`` (the command
    line's); the one reading of a whole number for parameters and run counts alike (ValueError or TypeError)."""
    if isinstance(v, bool):
        raise TypeError("a bool is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise ValueError("not a whole number")
    if isinstance(v, str):
        s = v.strip().replace("_", "")
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)  # accepts "1e6"
        except ValueError:
            f = math.nan
        if math.isfinite(f) and f.is_integer():
            return int(f)
        raise ValueError("not a whole number")
    if hasattr(v, "__index__"):  # numpy integers
        return int(v.__index__())
    raise TypeError(f"{type(v).__name__} is not an integer")


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("a bool is not a number")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip().replace("_", ""))
        except ValueError:
            raise ValueError("not a number (write it like 0.5, 3 or 1e-6)") from None
    if hasattr(v, "__float__") and not isinstance(v, (bytes, bytearray)):
        return float(v)
    raise TypeError(f"{type(v).__name__} is not a number")


_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError("use true or false")
    if type(v).__name__ == "bool_":  # numpy.bool_
        return bool(v)
    raise TypeError(f"{type(v).__name__} is not a bool (use true or false)")


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise TypeError(f"{type(v).__name__} is not a string")


_SCALARS: dict[Any, Callable[[Any], Any]] = {int: whole_number, float: _to_float, bool: _to_bool, str: _to_str}


def _adapter(annotation: Any) -> Any:
    """pydantic's ``TypeAdapter`` for ``annotation``, made once (~50 µs each: a study converts, then records, each
    design point's value of the same parameter)."""
    try:
        hash(annotation)
    except TypeError:  # (an annotation that cannot be a cache key)
        from pydantic import TypeAdapter

        return TypeAdapter(annotation)
    return _cached_adapter(annotation)


@functools.lru_cache(maxsize=256)
def _cached_adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation)


def _convert_with_pydantic(annotation: Any, value: Any) -> Any:
    from pydantic import ValidationError

    if isinstance(value, str) and typing.get_origin(annotation) is typing.Literal:
        # a command line or a form gives every choice as text: "2" is the choice 2 of Literal[1, 2]
        for choice in typing.get_args(annotation):
            if value == choice or (not isinstance(choice, str) and value.strip() in (str(choice), json.dumps(choice))):
                return choice
    elif isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    try:
        return _adapter(annotation).validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(first.get("msg", str(exc))) from None


class Model:
    """Base class of every Ancho model.

    Subclass it, declare parameters as annotated class attributes with
    defaults, and write ``sequence(self, rng)``. Instances hold one set of
    parameter values; ``Model(stake=3)`` validates and converts them.
    ``sequence`` must treat ``self`` as read-only: sequences run in any order,
    on any worker, and must not depend on each other. Use ``setup(self)`` for
    expensive preparation done once per worker process.
    """

    __ancho_parameters__: ClassVar[dict[str, Parameter]] = {}
    __ancho_summaries__: ClassVar[tuple[str, ...]] = ()
    #: a batch model's block size B: sequences k·B … k·B+B−1 always come from one sequences(rng, B) call
    #: (4096: measured on Black–Scholes, see docs/models.md; a model may set its own, without an annotation)
    block: ClassVar[int] = 4096

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__ancho_parameters__ = _collect_parameters(cls)
        cls.__ancho_summaries__ = tuple(
            name
            for klass in reversed(cls.__mro__)
            for name, attr in vars(klass).items()
            if getattr(attr, _SUMMARY_FLAG, False)
        )
        # keep order, drop duplicates from overriding
        cls.__ancho_summaries__ = tuple(dict.fromkeys(cls.__ancho_summaries__))

    def __init__(self, **params: Any) -> None:
        for name, value in self.resolve_params(params).items():
            setattr(self, name, value)

    # -- parameters ---------------------------------------------------------
    @classmethod
    def parameters(cls) -> dict[str, Parameter]:
        """The declared parameters, in declaration order."""
        return dict(cls.__ancho_parameters__)

    @classmethod
    def resolve_params(cls, params: dict[str, Any] | None) -> dict[str, Any]:
        """Validate ``params`` against the declared parameters and fill in defaults.

        Raises :class:`ParameterError` naming the first unknown, missing or
        badly typed parameter.
        """
        params = dict(params or {})
        declared = cls.__ancho_parameters__
        unknown = [k for k in params if k not in declared]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            known = ", ".join(declared) or "(none)"
            raise ParameterError(f"unknown {{PARAMS}} for model {cls.__name__}{hint} (known parameters: {known})", name)
        resolved = {}
        for name, p in declared.items():
            if name in params:
                resolved[name] = p.convert(params[name])
            elif p.required:
                raise ParameterError(f"{{PARAMS}} of model {cls.__name__} has no default; give it a value", name)
            else:
                resolved[name] = p.default
        return resolved

    @classmethod
    def recorded_params(cls, params: dict[str, Any] | None) -> dict[str, Any]:
        """:meth:`resolve_params` as a run's record keeps them: JSON (:meth:`Parameter.jsonable`), which the model's
        instance in each worker converts back. Why: a ``pathlib.Path`` or a date parameter made the record's JSON
        fail with a traceback, after the run had been set up."""
        declared = cls.__ancho_parameters__
        return {name: declared[name].jsonable(value) for name, value in cls.resolve_params(params).items()}

    @property
    def params(self) -> dict[str, Any]:
        """This instance's parameter values."""
        return {name: getattr(self, name) for name in self.__ancho_parameters__}

    # -- the user's part ----------------------------------------------------
    def setup(self) -> None:
        """Called once per worker process before its first sequence; override for expensive preparation."""

    def sequence(self, rng):  # pragma: no cover - the user writes this (or sequences)
        """Run one replication with the private generator ``rng``; return ``{name: number or bool}``."""
        raise NotImplementedError(f"{type(self).__name__} must define sequence(self, rng)")

    def sequences(self, rng, n):  # pragma: no cover - a batch model writes this instead of sequence
        """Run ``n`` replications with the block's generator ``rng``; return ``{name: array of length n}``."""
        raise NotImplementedError(f"{type(self).__name__} must define sequences(self, rng, n)")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _collect_parameters(cls: type) -> dict[str, Parameter]:
    """Parameters are the annotated, public class attributes along the MRO (base first)."""
    found: dict[str, Parameter] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is Model:
            continue
        raw = vars(klass).get("__annotations__", {})
        if not raw:
            continue
        try:
            hints = typing.get_type_hints(klass)
        except Exception:  # unresolved forward references: fall back to the raw annotations
            hints = raw
        for name in raw:
            if name.startswith("_"):
                continue
            ann = hints.get(name, raw[name])
            if typing.get_origin(ann) is ClassVar or ann is ClassVar:
                continue
            default = vars(klass).get(name, _MISSING)
            if callable(default) and not isinstance(default, type):
                raise ModelError(f"{cls.__name__}.{name}: a parameter's default must be a value, not a function")
            p = Parameter(name, ann, default)
            if default is not _MISSING:
                try:
                    p = Parameter(name, ann, p.convert(default))
                except ParameterError as exc:
                    raise ModelError(f"{cls.__name__}: the default of {exc}") from None
            found[name] = p
    return found


def model_class(model: Any) -> type[Model]:
    """Accept a Model subclass or instance; return the class."""
    if isinstance(model, type) and issubclass(model, Model):
        return model
    if isinstance(model, Model):
        return type(model)
    raise ModelError(
        f"expected an ancho.Model subclass or instance, got {model!r}; define class MyModel(ancho.Model) with a sequence(self, rng) method"
    )


#: the largest block a batch model may ask for (one block's arrays live in a worker's memory at once)
MAX_BLOCK = 1 << 24


def batch_block(cls: type[Model]) -> int | None:
    """The block size of a batch model, None for a one-at-a-time model; a one-line ModelError otherwise.

    A model defines exactly one of ``sequence`` and ``sequences``: with both,
    which one runs would be a guess; with neither, nothing can run.
    """
    one = cls.sequence is not Model.sequence
    batch = cls.sequences is not Model.sequences
    if one and batch:
        raise ModelError(
            f"model {cls.__name__} defines both sequence and sequences; keep one "
            "(sequence(self, rng) for one replication, sequences(self, rng, n) for n at once)"
        )
    if not one and not batch:
        raise ModelError(
            f"model {cls.__name__} defines neither sequence(self, rng) nor sequences(self, rng, n); define one"
        )
    if not batch:
        return None
    return checked_block(cls.block, cls.__name__)


def checked_block(block: object, name: str) -> int:
    """``block`` if it is a whole number from 1 to ``MAX_BLOCK``, else a one-line ModelError naming model ``name``.
    Checked where the model is read and again where chunks are planned (a worker's description may be forged)."""
    if isinstance(block, numbers.Integral) and not isinstance(block, bool) and type(block) is not int:
        block = int(block)  # (np.int64(100): a whole number too)
    if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= MAX_BLOCK:
        raise ModelError(f"model {name}: block = {block!r}; it must be a whole number from 1 to {MAX_BLOCK:,}")
    return block


def describe_model(cls: type[Model]) -> dict:
    """What the CLI, REST API and web form show about a model (and what a run records of it).

    ``kind`` is "sequence" or "batch"; ``block`` is a batch model's block
    size (None otherwise): it is part of what a batch model's results depend
    on, so the run's record keeps it even if the class later changes it.
    """
    import inspect

    block = batch_block(cls)
    return {
        "name": cls.__name__,
        "doc": inspect.getdoc(cls) if cls.__doc__ else "",
        "parameters": [_described(p, cls.__name__) for p in cls.__ancho_parameters__.values()],
        "summaries": list(cls.__ancho_summaries__),
        "kind": "batch" if block else "sequence",
        "block": block,
    }


def _described(p: Parameter, model: str) -> dict:
    """``p.describe()``, or a ModelError naming the model when its default has no JSON form."""
    try:
        return p.describe()
    except ParameterError as exc:
        default = exc.spelled(lambda field, name, index: f"the default of parameter '{name}'")  # (its own spelling)
        raise ModelError(f"model {model}: {default}") from None
