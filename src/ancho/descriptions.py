"""A model's description as a worker reports it, taken only in the shape :func:`ancho.model.describe_model` gives.

A server reads a submitted model in a worker where the model's own code ran
first (its module runs at import), so whatever comes back, the description
and the entry, hash and parameters beside it, is the model's to forge. The
driver used to hand it on as it came: a description whose name was a number
made the REST answer fail validation and the connection drop (a 5xx for bad
input). Here each field is checked for its type and bounds before anything
reads it; a misfit is one :class:`~ancho.errors.ModelError` line, which the
server answers with a 422 naming the model.
"""

from __future__ import annotations

from typing import Any

from .errors import ModelError
from .jsontext import plain
from .model import checked_block

#: the fields of describe_model()'s dict and of a parameter's describe()
MODEL_FIELDS = frozenset({"name", "doc", "parameters", "summaries", "kind", "block"})
PARAMETER_FIELDS = frozenset({"name", "type", "default", "required"})


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _parameter(p: Any) -> bool:
    return (
        isinstance(p, dict)
        and set(p) == PARAMETER_FIELDS
        and isinstance(p["name"], str)
        and p["name"].isidentifier()
        and isinstance(p["type"], str)
        and isinstance(p["required"], bool)
        and plain(p["default"], tuples=True)
    )


def checked_description(info: Any, where: str) -> dict[str, Any]:
    """``info`` if it is a model description as describe_model gives it, else a ModelError naming ``where``."""

    def misfit(what: str) -> ModelError:
        return ModelError(
            f"model {where}: the description its worker sent {what}; a model must not rewrite how Ancho describes it"
        )

    if not isinstance(info, dict) or set(info) != MODEL_FIELDS:
        raise misfit(f"has the fields {sorted(map(str, info)) if isinstance(info, dict) else type(info).__name__}")
    if not isinstance(info["name"], str) or not info["name"].isidentifier():
        raise misfit("names no Python class")
    if not isinstance(info["doc"], str):
        raise misfit("has a docstring that is not text")
    params = info["parameters"]
    if not isinstance(params, list) or not all(_parameter(p) for p in params):
        raise misfit("lists parameters that are not a name, a type, a JSON default and required")
    if len({p["name"] for p in params}) != len(params):
        raise misfit("names a parameter twice")
    if not _names(info["summaries"]):
        raise misfit("lists summaries that are not names")
    if info["kind"] == "batch":
        checked_block(info["block"], where)
    elif info["kind"] != "sequence" or info["block"] is not None:
        raise misfit("is neither a one-at-a-time model nor a batch model with a block")
    return info


def checked_inspection(found: Any, where: str) -> dict[str, Any]:
    """A worker's answer to Inspect (worker.inspect): entry, source hash, description, and the validated parameters
    or their error, each checked; else a ModelError naming ``where`` (the model asked for)."""
    if not isinstance(found, dict) or not {"entry", "source_hash", "model"} <= set(found):
        raise ModelError(f"model {where}: its worker's answer is not a model's description")
    if not isinstance(found["entry"], str) or not isinstance(found["source_hash"], str):
        raise ModelError(f"model {where}: its worker named its entry or source hash with something other than text")
    checked_description(found["model"], where)
    if "params" in found and not (isinstance(found["params"], dict) and plain(found["params"], tuples=True)):
        raise ModelError(f"model {where}: its worker sent parameter values that are not JSON")
    if "error" in found and not isinstance(found["error"], str):
        raise ModelError(f"model {where}: its worker sent a parameter error that is not text")
    return found
