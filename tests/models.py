"""Small models used across the tests (importable, so cloudpickle sends them by reference)."""

from __future__ import annotations

import os

import ancho


class Trivial(ancho.Model):
    """One uniform draw per sequence."""

    def sequence(self, rng):
        return {"x": rng.random()}


class Mixed(ancho.Model):
    """Outputs of every kind, so schemas and casts get exercised."""

    n: int = 5

    def sequence(self, rng):
        k = int(rng.integers(0, self.n))
        return {"u": float(rng.random()), "k": k, "even": k % 2 == 0, "z": float(rng.standard_normal())}


class Flaky(ancho.Model):
    """Sequences divisible by ``every`` raise."""

    every: int = 10

    def sequence(self, rng):
        x = rng.random()
        if self.every and rng.integers(0, self.every) == 0:
            raise ZeroDivisionError("unlucky draw")
        return {"x": x}


class KillsWorkerOnce(ancho.Model):
    """A worker kills itself at its ``at``-th sequence, once per run (a marker file remembers)."""

    marker: str = ""
    at: int = 50

    def setup(self):
        self._count = 0

    def sequence(self, rng):
        self._count += 1
        if self._count == self.at:
            kill_once(self.marker)
        return {"x": rng.random()}


class KillsAtDraw(ancho.Model):
    """A worker kills itself, once per run (a marker file remembers), in the sequence whose first draw is ``draw``
    (``ancho.streams.reference_generator(seed, i).random()``: the sequence ``i``, wherever it runs)."""

    marker: str = ""
    draw: float = -1.0

    def sequence(self, rng):
        x = rng.random()
        if x == self.draw:
            kill_once(self.marker)
        return {"x": x}


class Slow(ancho.Model):
    """Sleeps, so a run lasts long enough to cancel or kill."""

    seconds: float = 0.01

    def sequence(self, rng):
        import time

        time.sleep(self.seconds)
        return {"x": rng.random()}


def kill_once(marker: str) -> None:
    """Called from a sequence: SIGKILL this worker the first time only."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), 9)
