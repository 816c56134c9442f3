"""European options under geometric Brownian motion, priced by Monte Carlo.

The stock follows geometric Brownian motion under the risk-neutral measure,

    dS = r S dt + sigma S dW,   so   S_T = S0 * exp((r - sigma**2/2) T + sigma sqrt(T) Z),

with Z a standard normal. A European call pays max(S_T - K, 0) at time T, a
put max(K - S_T, 0); their prices today are the expected payoffs discounted
at the risk-free rate, exp(-r T) E[payoff].

Each sequence draws ONE normal Z, so the sequences are independent and the
standard errors Ancho reports are honest (antithetic pairs inside a sequence
would be fine too, but would change what one "sequence" means). The outputs
``call`` and ``put`` are the discounted payoffs, so their means are the Monte
Carlo prices, with 95% confidence intervals.

Closed form (Black-Scholes, 1973), with N the standard normal CDF:

    d1 = (ln(S0/K) + (r + sigma**2/2) T) / (sigma sqrt(T)),   d2 = d1 - sigma sqrt(T)
    call = S0 N(d1) - K exp(-r T) N(d2)
    put  = K exp(-r T) N(-d2) - S0 N(-d1)          (put-call parity: call - put = S0 - K exp(-r T))
    P(call finishes in the money) = P(S_T > K) = N(d2)

With the defaults (S0=100, K=100, r=0.05, sigma=0.2, T=1): call = 10.4506,
put = 5.5735, N(d2) = 0.5596. The model's summary functions report these
closed-form values next to the estimates; the target ``call>0`` estimates N(d2):

    ancho run examples/option.py --sequences 100000 --target 'call>0'
    ancho run examples/option.py --param sigma=0.4 --param K=120 --target 'call>0'
    ancho run examples/option.py --until 'mean(call)+-0.05'    # about 330,000 sequences

``BSCall`` below is the same call as a *batch* model: ``sequences(rng, n)``
draws n normals at once and returns arrays, ~50 times faster per sequence
(docs/models.md, "Batch models"). ``ancho run examples/option.py`` runs
``EuropeanOption`` (named by ``__ancho_default__``); choose the batch one with

    ancho run examples/option.py:BSCall --sequences 10000000 --target 'payoff>0'
"""

import math

import numpy as np

import ancho

#: the model ``ancho run examples/option.py`` runs when no class is named (the file defines two)
__ancho_default__ = "EuropeanOption"


def normal_cdf(x: float) -> float:
    """The standard normal CDF, N(x), from the error function."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(S0: float, K: float, r: float, sigma: float, T: float) -> dict:
    """Black-Scholes prices of the European call and put, and N(d2) = P(S_T > K)."""
    discount = math.exp(-r * T)
    if sigma * math.sqrt(T) == 0:  # no randomness: S_T = S0 exp(rT) for sure
        forward = S0 - K * discount
        return {"call": max(forward, 0.0), "put": max(-forward, 0.0), "in_the_money": float(forward > 0)}
    d1 = (math.log(S0 / K) + (r + 0.5 * sigma**2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    return {
        "call": S0 * normal_cdf(d1) - K * discount * normal_cdf(d2),
        "put": K * discount * normal_cdf(-d2) - S0 * normal_cdf(-d1),
        "in_the_money": normal_cdf(d2),
    }


class EuropeanOption(ancho.Model):
    """European call and put on a stock following geometric Brownian motion."""

    S0: float = 100.0  # stock price today
    K: float = 100.0  # strike price
    r: float = 0.05  # risk-free interest rate (continuously compounded, per year)
    sigma: float = 0.2  # volatility (per sqrt(year))
    T: float = 1.0  # time to expiry (years)

    def sequence(self, rng):
        z = rng.standard_normal()
        s_T = self.S0 * math.exp((self.r - 0.5 * self.sigma**2) * self.T + self.sigma * math.sqrt(self.T) * z)
        discount = math.exp(-self.r * self.T)
        return {
            "call": discount * max(s_T - self.K, 0.0),
            "put": discount * max(self.K - s_T, 0.0),
        }

    # Closed-form values, shown under "custom summaries" next to the estimates.
    # They do not depend on the results: the point is to compare.

    @ancho.summary
    def black_scholes_call(self, results):
        return black_scholes(self.S0, self.K, self.r, self.sigma, self.T)["call"]

    @ancho.summary
    def black_scholes_put(self, results):
        return black_scholes(self.S0, self.K, self.r, self.sigma, self.T)["put"]

    @ancho.summary
    def in_the_money_probability(self, results):
        """N(d2): compare with the target 'call>0'."""
        return black_scholes(self.S0, self.K, self.r, self.sigma, self.T)["in_the_money"]

    @ancho.summary
    def call_error_in_standard_errors(self, results):
        """(Monte Carlo price - Black-Scholes price) / standard error: usually between -2 and 2."""
        exact = black_scholes(self.S0, self.K, self.r, self.sigma, self.T)["call"]
        n = len(results)
        if n < 2:
            return None
        sem = results.call.std() / math.sqrt(n)
        if not sem > 1e-12 * max(1.0, abs(exact)):  # no randomness (sigma = 0): nothing to measure
            return None
        return float((results.call.mean() - exact) / sem)


class BSCall(ancho.Model):
    """A European call as a batch model: n sequences per call, one normal each, as arrays.

    Sequence i's normal is element i mod B of the block's draws, where the
    block (B = ``block`` sequences) takes its generator from sequence
    (i // B)·B: see docs/reproducibility.md.
    """

    s0: float = 100.0  # stock price today
    k: float = 105.0  # strike price
    r: float = 0.05  # risk-free interest rate
    sigma: float = 0.2  # volatility
    t: float = 1.0  # time to expiry (years)

    def sequences(self, rng, n):
        z = rng.standard_normal(n)
        st = self.s0 * np.exp((self.r - self.sigma**2 / 2) * self.t + self.sigma * np.sqrt(self.t) * z)
        return {"payoff": np.exp(-self.r * self.t) * np.maximum(st - self.k, 0.0)}

    @ancho.summary
    def black_scholes_call(self, results):
        return black_scholes(self.s0, self.k, self.r, self.sigma, self.t)["call"]
