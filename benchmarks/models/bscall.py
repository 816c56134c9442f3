"""The Black–Scholes call of DESIGN.md §2 "Batch models", as a batch model and one sequence at a time.

Both compute the same discounted payoff from one standard normal per
sequence and have no custom summaries, so bench_batch.py compares only how
they run.
"""

import math

import numpy as np

import ancho


class BSCall(ancho.Model):
    s0: float = 100.0
    k: float = 105.0
    r: float = 0.05
    sigma: float = 0.2
    t: float = 1.0

    def sequences(self, rng, n):
        z = rng.standard_normal(n)
        st = self.s0 * np.exp((self.r - self.sigma**2 / 2) * self.t + self.sigma * np.sqrt(self.t) * z)
        return {"payoff": np.exp(-self.r * self.t) * np.maximum(st - self.k, 0.0)}


class BSCallOne(ancho.Model):
    s0: float = 100.0
    k: float = 105.0
    r: float = 0.05
    sigma: float = 0.2
    t: float = 1.0

    def sequence(self, rng):
        z = rng.standard_normal()
        st = self.s0 * math.exp((self.r - self.sigma**2 / 2) * self.t + self.sigma * math.sqrt(self.t) * z)
        return {"payoff": math.exp(-self.r * self.t) * max(st - self.k, 0.0)}
