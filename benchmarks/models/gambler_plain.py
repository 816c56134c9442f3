"""The example gambler (examples/gambler.py) without its ``@ancho.summary`` function: what a study's points cost
Ancho itself, apart from the model's own pandas code (``bench_study.py --model benchmarks/models/gambler_plain.py``).

Its ``sequence`` is the example's own (a subclass would inherit the summary function too)."""

import importlib.util
from pathlib import Path

import ancho

_spec = importlib.util.spec_from_file_location(
    "ancho_bench_example_gambler", Path(__file__).resolve().parents[2] / "examples" / "gambler.py"
)
assert _spec is not None and _spec.loader is not None
_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_example)


class Gambler(ancho.Model):
    """Gambler's ruin: bet 1 per round until broke or at the goal."""

    stake: int = 10
    goal: int = 20
    p: float = 0.5

    sequence = _example.Gambler.sequence
