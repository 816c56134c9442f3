"""A stochastic SIR epidemic, simulated exactly with Gillespie's algorithm.

A closed population of N people: S susceptible, I infected (and infectious),
R recovered. Two kinds of event happen at random times:

    infection   S, I -> S-1, I+1   at rate beta * S * I / N
    recovery    I    -> I-1        at rate gamma * I

Gillespie's direct method draws the time to the next event from an
exponential distribution with the total rate, then picks which event it was
with probability proportional to its rate. The epidemic ends when nobody is
infected. Each sequence is one epidemic; its outputs are

    final_size     people ever infected (including the initial ones), int
    peak_infected  the largest number infected at the same time, int
    duration       time until the last recovery (in 1/gamma units: days if
                   gamma is per day), float
    major          final_size >= major_fraction * N (a major outbreak), bool
    infected       a trajectory: the number infected at the start of each day
                   0, 1, …, days-1 (a list of `days` ints; 0 once the epidemic
                   is over), summarised step by step in the summary's
                   "trajectories" and drawn as a fan chart

Known values (the basic reproduction number is R0 = beta / gamma):

* Early on an epidemic is a branching process; each infected person infects
  a geometric number of others with mean R0. It dies out early (a *minor*
  outbreak) with probability (1/R0)**infected when R0 > 1 (1 when R0 <= 1),
  for large N. With the defaults (R0 = 2, infected = 1): P(major) = 0.5.
* A major outbreak infects a fraction z of the population, where z solves
  the final-size equation z = 1 - s0 exp(-R0 z) with s0 = 1 - infected/N
  (classically z = 1 - exp(-R0 z)). With R0 = 2: z = 0.797, so about 797 of
  N = 1000 people.

Both are large-N limits. For the defaults (N = 1000) the exact values, from
the embedded jump chain (tests/test_examples.py computes them), are
P(major) = 0.4979 and a mean major final fraction of 0.7954: Monte Carlo
needs tens of thousands of sequences before it can tell the difference.

The summary functions report both theoretical values next to the simulated
ones. Try

    ancho run examples/sir.py --sequences 2000 --target 'final_size>=100'
    ancho run examples/sir.py --param beta=0.3 --target major       # R0 = 1.5: P(major) = 1/3
    ancho run examples/sir.py --param infected=3 --target major     # P(major) = 1 - 0.5**3 = 0.875
    ancho run examples/sir.py --target 'max(infected)>=100'         # the epidemic ever reaches 100 at once (on a day)
    ancho export RUN --trajectory infected                          # the curves as CSV: sequence,step,value
"""

import math

import ancho


def final_size_fraction(R0: float, s0: float = 1.0) -> float:
    """The positive root of z = 1 - s0 exp(-R0 z) (0 when R0 * s0 <= 1 and s0 = 1), by bisection."""
    f = lambda z: z - 1.0 + s0 * math.exp(-R0 * z)  # noqa: E731
    if s0 >= 1.0 and R0 <= 1.0:
        return 0.0
    # f(1) = s0 exp(-R0) > 0 and f is negative just above 0 (or at 0 if s0 < 1): bisect in between.
    lo, hi = (1e-12 if s0 >= 1.0 else 0.0), 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


class SIR(ancho.Model):
    """Stochastic SIR epidemic (Gillespie's direct method)."""

    N: int = 1000  # population size
    beta: float = 0.4  # infection rate: contacts per infected per day that would infect a susceptible
    gamma: float = 0.2  # recovery rate per infected per day (1/gamma = mean infectious period: 5 days)
    infected: int = 1  # infected at time 0 (everyone else is susceptible)
    major_fraction: float = 0.1  # an outbreak is "major" when final_size >= major_fraction * N
    days: int = 120  # length of the infected curve (one value per day)

    def sequence(self, rng):
        N, beta, gamma = self.N, self.beta, self.gamma
        if not 0 < self.infected <= N:
            raise ValueError(f"infected must be between 1 and N={N}, got {self.infected}")
        S, I = N - self.infected, self.infected
        t, peak = 0.0, I
        # Every event infects or removes someone, so there are at most 2*S + I of them:
        # draw all the random numbers at once, as Python floats (4x faster than one
        # rng call per event; unused ones are simply thrown away).
        n_max = 2 * S + I
        waits = rng.standard_exponential(n_max).tolist()
        coins = rng.random(n_max).tolist()
        k = 0
        days = self.days
        curve = [0] * days  # infected at the start of each day (0 after the end)
        day = 0
        while I > 0:
            infection = beta * S * I / N
            total = infection + gamma * I
            t_next = t + waits[k] / total  # time to the next event ~ Exponential(total)
            while day < days and day < t_next:  # the days that begin before this event see the current I
                curve[day] = I
                day += 1
            t = t_next
            if coins[k] * total < infection:  # which event: infection with probability infection/total
                S -= 1
                I += 1
                if I > peak:
                    peak = I
            else:
                I -= 1
            k += 1
        final_size = N - S
        return {
            "final_size": final_size,
            "peak_infected": peak,
            "duration": t,
            "major": final_size >= self.major_fraction * N,
            "infected": curve,
        }

    @property
    def R0(self) -> float:
        return self.beta / self.gamma

    @ancho.summary
    def p_major_theory(self, results):
        """1 - (1/R0)**infected: compare with the mean of 'major' (large-N branching-process limit)."""
        return 1.0 - min(1.0, 1.0 / self.R0) ** self.infected

    @ancho.summary
    def major_final_fraction(self, results):
        """Mean final_size / N among major outbreaks (None if there were none)."""
        major = results.loc[results.major, "final_size"]
        return float(major.mean() / self.N) if len(major) else None

    @ancho.summary
    def final_fraction_theory(self, results):
        """The root z of z = 1 - s0 exp(-R0 z): compare with major_final_fraction."""
        return final_size_fraction(self.R0, 1.0 - self.infected / self.N)
