"""Running a model's ``@ancho.summary`` functions.

They are user code, so they run where the model's sequences run (a worker
process, later inside its sandbox), reading the results through a *results
source*: a description of where this one run's results are (see
``Store.results_source``) rather than the store itself, so the code can
read this run and nothing else.
"""

from __future__ import annotations

from typing import Any

from .stats import clean


def compute_summaries(cls, params: dict, source: dict, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Each named summary over the results DataFrame; one that raises gets ``{"error": …}`` as its value."""
    from .stores import read_results_source

    frame = read_results_source(source).to_pandas()
    return apply_summaries(cls(**params), frame, names)


def apply_summaries(instance, frame, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Each named summary function of a model instance over ``frame`` (a copy each, so one cannot spoil the next)."""
    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = clean(getattr(instance, name)(frame.copy()))
        except Exception as exc:  # a broken summary function is reported in its slot; the others still count
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
