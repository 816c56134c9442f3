"""Errors that reach users.

Every error Ancho raises on purpose is an :class:`AnchoError`: its message
names the input that caused it and says what to do, so the CLI can print it on
one line and the server can return it as a 4xx body without a traceback.
"""

from __future__ import annotations


class AnchoError(Exception):
    """Base of all errors meant for users (one line, actionable)."""

    #: the CLI exits with this code; the server maps subclasses to HTTP statuses
    exit_code = 2


class InputError(AnchoError, ValueError):
    """Something the user passed is wrong (a parameter, an option, a path)."""


class ParameterError(InputError):
    """A model parameter is unknown, missing, or of the wrong type."""


class ModelError(InputError):
    """The model code cannot be found, loaded, or does not follow the model API."""


class ExpressionError(InputError):
    """A target or precision-goal expression cannot be parsed or names no output."""


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
