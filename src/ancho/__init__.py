"""Ancho: run stochastic simulation models on a laptop or a cluster, keep every result.

    import ancho

    class Gambler(ancho.Model):
        stake: int = 10
        def sequence(self, rng):
            ...
            return {"won": won, "rounds": rounds}

    results = ancho.run(Gambler, sequences=10_000, seed=1)

Importing ``ancho`` loads only the model API (workers import it too, and
start-up time counts); ``run`` and ``Results`` load the engine on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import AnchoError
from .model import Model, Parameter, summary

__all__ = [
    "Model",
    "Parameter",
    "summary",
    "run",
    "Results",
    "study",
    "Study",
    "compare",
    "grid",
    "lhs",
    "sobol",
    "morris",
    "points",
    "stream",
    "AnchoError",
    "__version__",
]  # (``ancho.random`` is exported too, but not by ``import *``: it would shadow the standard library's module)


def __getattr__(name: str):
    if name in ("run", "Results", "study", "Study", "compare"):
        from . import api

        return getattr(api, name)
    if name in ("grid", "random", "lhs", "sobol", "morris", "points"):
        from .studies import designs

        return getattr(designs, name)
    if name == "stream":
        from .streams import stream

        return stream
    raise AttributeError(f"module 'ancho' has no attribute {name!r}")
