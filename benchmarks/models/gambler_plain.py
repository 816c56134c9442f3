"""The example gambler (examples/gambler.py) without its ``@ancho.summary`` function: what a study's points cost
Ancho itself, apart from the model's own pandas code (``bench_study.py --model benchmarks/models/gambler_plain.py``).

Its ``sequence`` is the example's, written out: a model file is shipped to Spark's workers alone (with its own
folder), so it cannot load the example from its path there, and a subclass would inherit the summary function.
"""

import ancho


class Gambler(ancho.Model):
    """Gambler's ruin: bet 1 per round until broke or at the goal."""

    stake: int = 10
    goal: int = 20
    p: float = 0.5

    def sequence(self, rng):
        x, rounds = self.stake, 0
        while 0 < x < self.goal:
            x += 1 if rng.random() < self.p else -1
            rounds += 1
        return {"won": x >= self.goal, "rounds": rounds}
