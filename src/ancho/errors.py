"""Errors that reach users.

Every error Ancho raises on purpose is an :class:`AnchoError`: its message
names the input that caused it and says what to do, so the CLI can print it on
one line and the server can return it as a 4xx body without a traceback.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable


class AnchoError(Exception):
    """Base of all errors meant for users (one line, actionable)."""

    #: the CLI exits with this code; the server maps subclasses to HTTP statuses
    exit_code = 2


class InputError(AnchoError, ValueError):
    """Something the user passed is wrong (a parameter, an option, a path)."""


class Field(enum.StrEnum):
    """The inputs of a run, named once for every front end.

    A :class:`FieldError` says which one it is about; each front end spells it
    its own way (the CLI ``--max-sequences``, REST and ``ancho.run``
    ``max_sequences``, the web form puts the message next to the field).
    The value is the field's path in a REST request body.
    """

    REQUEST = ""
    SEQUENCES = "sequences"
    MAX_SEQUENCES = "max_sequences"
    MAX_FAILURES = "max_failures"
    UNTIL = "until"
    TARGETS = "targets"
    PARAMS = "params"
    SEED = "seed"
    EXECUTOR = "executor"
    WORKERS = "workers"
    MODEL = "model"
    MODEL_ENTRY = "model.entry"
    MODEL_UPLOAD = "model.upload"
    MODEL_URL = "model.url"
    MODEL_GIT = "model.git"
    MODEL_REF = "model.ref"
    DESIGN = "design"

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.value.split(".")) if self.value else ()


_BY_PATH = {f.value: f for f in Field}

#: how a front end writes a field: (field, parameter name or None, target index or None) -> text
Spelling = Callable[[Field, "str | None", "int | None"], str]


def api_spelling(field: Field, name: str | None = None, index: int | None = None) -> str:
    """``ancho.run``'s argument names, which are also the REST body's fields."""
    if field is Field.PARAMS and name is not None:
        return f"parameter '{name}'"
    return field.value or "the request"


_PLACEHOLDER = re.compile(r"\{(" + "|".join(f.name for f in Field) + r")\}")


class FieldError(InputError):
    """Bad input in one field of a run's request: ``field`` (with ``index`` for a target, ``name`` for a parameter).

    The message is written once, without any front end's spelling: it names
    fields as placeholders (``{MAX_SEQUENCES} caps a precision goal``) that
    :meth:`spelled` fills in. ``str()`` is the ``ancho.run``/REST spelling;
    the CLI renders it with its flags (:meth:`for_cli`), the server returns
    ``loc`` (the REST body path, as pydantic gives it) beside it.
    """

    def __init__(self, field: Field | tuple, message: str, *, index: int | None = None, name: str | None = None):
        if isinstance(field, tuple):  # a REST ``loc`` (the server's and the web form's way to address a field)
            path = [p for p in field if p != "body"]
            if path and isinstance(path[-1], int):
                index = path.pop()
            while path and ".".join(map(str, path)) not in _BY_PATH:
                path.pop()  # a part this vocabulary does not name: the field around it
            field = _BY_PATH[".".join(map(str, path))]
        self.field = field
        self.index = index
        self.name = name
        self.template = message
        super().__init__(self.spelled(api_spelling))

    def spelled(self, spell: Spelling) -> str:
        """The message with every field written as ``spell`` writes it."""

        def one(match: re.Match) -> str:
            field = Field[match.group(1)]
            own = field is self.field
            return spell(field, self.name if own else None, self.index if own else None)

        return _PLACEHOLDER.sub(one, self.template)

    @property
    def loc(self) -> tuple:
        """Where the field is in a REST request body (``("body", "targets", 1)``)."""
        return ("body", *self.field.path, *(() if self.index is None else (self.index,)))

    def __reduce__(self):  # crosses process boundaries (worker errors) whole
        return (_rebuild, (type(self), self.field, self.template, self.index, self.name))


def _rebuild(cls, field, template, index, name):
    err = FieldError.__new__(cls)
    FieldError.__init__(err, field, template, index=index, name=name)
    return err


class ParameterError(FieldError):
    """A model parameter is unknown, missing, or of the wrong type (``name``, when known, is the parameter)."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(Field.PARAMS, message, name=name)


class ModelError(InputError):
    """The model code cannot be found, loaded, or does not follow the model API."""


class ExpressionError(FieldError):
    """A target (``index``: which one) or precision-goal (``Field.UNTIL``) expression cannot be parsed or names no output."""

    def __init__(self, message: str, field: Field = Field.TARGETS, index: int | None = None):
        super().__init__(field, message, index=index)


class OutputError(AnchoError):
    """A sequence returned outputs that break the contract (not a mapping, not numbers, names change)."""

    exit_code = 1


class RunFailed(AnchoError):
    """The run ended in the ``failed`` status; the message says why."""

    exit_code = 1


class StoreError(AnchoError):
    """The store could not keep what it was given (a full disk, a lost connection); nothing half-written counts as stored."""

    exit_code = 1


class Conflict(AnchoError):
    """The request cannot be done in the object's present state or place (HTTP 409); the message says where it can."""

    exit_code = 1


class RunCancelled(AnchoError):
    exit_code = 1


class NotFound(InputError, LookupError):
    """A run (or other stored object) does not exist."""
