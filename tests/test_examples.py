"""The examples in examples/ reproduce their known values.

Each example runs through ``ancho.run`` (fixed seeds, two workers, a private
store) and once through the ``ancho`` command line with ``--json``. Every
statistical check has a stated tolerance:

* a mean or a proportion must be within ``Z_TOL = 4`` standard errors of
  the exact value (a correct model fails such a check with probability
  about 6e-5; the seeds are fixed, so a pass is reproducible);
* where the known value is a large-N limit (the SIR epidemic), it gets an
  extra, stated allowance for the finite-N bias, and the test also compares
  against the exact finite-N value, computed below, within 4 standard errors.

No check depends on timing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ancho

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ANCHO = Path(sys.executable).parent / "ancho"
WORKERS = 2
Z_TOL = 4.0  # standard errors allowed between an estimate and the exact value
SUMMARY_KEYS = {"run", "status", "sequences", "seed", "params", "outputs", "targets", "custom", "failures"}


@pytest.fixture
def ancho_home(tmp_path, monkeypatch) -> Path:
    """A private ANCHO_HOME (also seen by the CLI subprocess) that doubles as the store."""
    home = tmp_path / "ancho_home"
    monkeypatch.setenv("ANCHO_HOME", str(home))
    return home


def run_example(name: str, home: Path, **kwargs) -> ancho.Results:
    kwargs.setdefault("workers", WORKERS)
    results = ancho.run(str(EXAMPLES / name), store=str(home), **kwargs)
    assert results.status == "succeeded"
    assert results.summary["failures"] == 0
    return results


def run_cli(*args: str) -> dict:
    """``ancho run ... --json`` in a subprocess; returns the parsed summary object."""
    proc = subprocess.run(
        [str(ANCHO), "run", *args, "--workers", str(WORKERS), "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["status"] == "succeeded" and summary["failures"] == 0
    return summary


def assert_mean_close(stats: dict, exact: float, what: str, allowance: float = 0.0) -> None:
    """|mean - exact| <= Z_TOL standard errors (+ an allowance for a known bias)."""
    err = abs(stats["mean"] - exact)
    assert err <= Z_TOL * stats["sem"] + allowance, (
        f"{what}: estimate {stats['mean']:.6g} vs exact {exact:.6g}: off by {err / stats['sem']:.2f} standard errors"
    )


def assert_proportion_close(p_hat: float, n: int, exact: float, what: str, allowance: float = 0.0) -> None:
    """|p_hat - p| <= Z_TOL * sqrt(p(1-p)/n) (+ allowance), the standard error taken at the exact p."""
    se = math.sqrt(exact * (1 - exact) / n)
    err = abs(p_hat - exact)
    assert err <= Z_TOL * se + allowance, (
        f"{what}: estimate {p_hat:.6g} vs exact {exact:.6g} (n={n}): off by {err / se:.2f} standard errors"
    )


# -- gambler's ruin ---------------------------------------------------------------------------------


def gambler_exact(stake: int, goal: int, p: float) -> tuple[float, float]:
    """(P(win), E[rounds]) for gambler's ruin with unit bets."""
    if p == 0.5:
        return stake / goal, stake * (goal - stake)
    q = 1 - p
    r = q / p
    win = (1 - r**stake) / (1 - r**goal)
    return win, stake / (q - p) - goal / (q - p) * win


def test_gambler_fair_game(ancho_home):
    res = run_example("gambler.py", ancho_home, sequences=4000, seed=11)
    s = res.summary
    win, rounds = gambler_exact(10, 20, 0.5)  # 0.5 and 100
    assert_mean_close(s["outputs"]["won"], win, "P(win)")
    assert_mean_close(s["outputs"]["rounds"], rounds, "E[rounds]")
    # the custom summary is what the frame says it is
    frame = res.frame
    assert s["custom"]["median_rounds_when_won"] == float(frame.loc[frame.won, "rounds"].median())


@pytest.mark.parametrize("stake, goal, p", [(3, 10, 0.45), (5, 8, 0.6)])
def test_gambler_biased_game(ancho_home, stake, goal, p):
    res = run_example(
        "gambler.py",
        ancho_home,
        params={"stake": stake, "goal": goal, "p": p},
        sequences=4000,
        seed=12,
        targets=["won"],
    )
    s = res.summary
    win, rounds = gambler_exact(stake, goal, p)
    assert_mean_close(s["outputs"]["won"], win, "P(win)")
    assert_proportion_close(s["targets"][0]["probability"], 4000, win, "target won")
    assert_mean_close(s["outputs"]["rounds"], rounds, "E[rounds]")


def test_gambler_closed_form_sanity():
    # the formula for p != 1/2 tends to the fair-game one
    win, rounds = gambler_exact(3, 10, 0.5 + 1e-7)
    assert win == pytest.approx(0.3, abs=1e-5) and rounds == pytest.approx(21, abs=1e-3)
    assert gambler_exact(3, 10, 0.45) == pytest.approx((0.128252, 17.174765), abs=1e-6)  # DESIGN.md's example run


# -- European option --------------------------------------------------------------------------------


def black_scholes_scipy(S0, K, r, sigma, T):
    """An independent Black-Scholes implementation (scipy) to check the example's own."""
    from scipy.stats import norm

    d1 = (math.log(S0 / K) + (r + sigma**2 / 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    call = S0 * norm.cdf(d1) - K * math.exp(-r * T) * norm.cdf(d2)
    put = K * math.exp(-r * T) * norm.cdf(-d2) - S0 * norm.cdf(-d1)
    return call, put, norm.cdf(d2)


@pytest.mark.parametrize(
    "params",
    [{}, {"S0": 90.0, "K": 110.0, "r": 0.02, "sigma": 0.35, "T": 2.0}],
    ids=["defaults", "out-of-the-money"],
)
def test_option_matches_black_scholes(ancho_home, params):
    n = 20_000
    res = run_example("option.py", ancho_home, params=params, sequences=n, seed=21, targets=["call>0", "put>0"])
    s = res.summary
    p = {"S0": 100.0, "K": 100.0, "r": 0.05, "sigma": 0.2, "T": 1.0, **params}
    call, put, itm = black_scholes_scipy(**p)
    custom = s["custom"]
    # the example's closed form (math.erf) agrees with scipy's
    assert custom["black_scholes_call"] == pytest.approx(call, rel=1e-9)
    assert custom["black_scholes_put"] == pytest.approx(put, rel=1e-9)
    assert custom["in_the_money_probability"] == pytest.approx(itm, rel=1e-9)
    # Monte Carlo vs closed form, within Z_TOL standard errors
    assert_mean_close(s["outputs"]["call"], call, "call price")
    assert_mean_close(s["outputs"]["put"], put, "put price")
    targets = {t["expr"]: t for t in s["targets"]}
    assert_proportion_close(targets["call>0"]["probability"], n, itm, "P(call in the money) = N(d2)")
    assert_proportion_close(targets["put>0"]["probability"], n, 1 - itm, "P(put in the money) = N(-d2)")
    assert abs(custom["call_error_in_standard_errors"]) <= Z_TOL
    # put-call parity holds path by path: call - put = exp(-rT) (S_T - K), whose mean is S0 - K exp(-rT)
    diff = res.frame.call - res.frame.put
    sem = diff.std() / math.sqrt(n)
    assert abs(diff.mean() - (p["S0"] - p["K"] * math.exp(-p["r"] * p["T"]))) <= Z_TOL * sem


@pytest.mark.parametrize(
    "params", [{}, {"s0": 90.0, "k": 110.0, "r": 0.02, "sigma": 0.35, "t": 2.0}], ids=["defaults", "out-of-the-money"]
)
def test_batch_option_matches_black_scholes(ancho_home, params):
    """The batch model BSCall (sequences(rng, n), examples/option.py:BSCall) prices the same call."""
    n = 200_000
    res = run_example("option.py:BSCall", ancho_home, params=params, sequences=n, seed=21, targets=["payoff>0"])
    s = res.summary
    p = {"s0": 100.0, "k": 105.0, "r": 0.05, "sigma": 0.2, "t": 1.0, **params}
    call, _, itm = black_scholes_scipy(p["s0"], p["k"], p["r"], p["sigma"], p["t"])
    assert s["custom"]["black_scholes_call"] == pytest.approx(call, rel=1e-9)
    assert_mean_close(s["outputs"]["payoff"], call, "batch call price")
    assert_proportion_close(s["targets"][0]["probability"], n, itm, "P(batch call in the money) = N(d2)")


def test_option_file_runs_its_default_model(ancho_home):
    """option.py defines two models; without a class name it runs EuropeanOption (its __ancho_default__)."""
    assert run_example("option.py", ancho_home, sequences=100, seed=1).record.model == "EuropeanOption"


def test_option_textbook_values():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from option import black_scholes
    finally:
        sys.path.remove(str(EXAMPLES))
    bs = black_scholes(100.0, 100.0, 0.05, 0.2, 1.0)
    assert bs["call"] == pytest.approx(10.4506, abs=1e-4)
    assert bs["put"] == pytest.approx(5.5735, abs=1e-4)
    assert bs["in_the_money"] == pytest.approx(0.5596, abs=1e-4)


# -- SIR epidemic -----------------------------------------------------------------------------------


def sir_final_size_distribution(N: int, beta: float, gamma: float, infected: int) -> np.ndarray:
    """Exact P(final_size = n), n = 0..N, for the stochastic SIR model of examples/sir.py.

    In the embedded jump chain, from (S, I) the next event is an infection with
    probability p_S = beta S / (beta S + gamma N), whatever I is. Sweep S from
    N - infected down to 0: the probability mass entering level S at I moves
    down by recoveries, so the chance of visiting (S, i) is
    visits[i] = m[i] + (1 - p_S) visits[i + 1]; from (S, 1) a recovery ends the
    epidemic with final size N - S, and from (S, i) an infection enters level
    S - 1 at i + 1.
    """
    from scipy.signal import lfilter

    dist = np.zeros(N + 1)
    m = np.zeros(N + 2)  # mass entering the current level S, by I
    m[infected] = 1.0
    for S in range(N - infected, -1, -1):
        p = beta * S / (beta * S + gamma * N)
        visits = lfilter([1.0], [1.0, -(1.0 - p)], m[::-1])[::-1]
        dist[N - S] = (1.0 - p) * visits[1]
        m = np.zeros(N + 2)
        m[2:] = p * visits[1:-1]
    return dist


def test_sir_exact_distribution_is_a_distribution():
    d = sir_final_size_distribution(10, 0.4, 0.2, 1)
    assert d.sum() == pytest.approx(1.0, abs=1e-12)
    assert d[1] == pytest.approx(0.2 * 10 / (0.4 * 9 + 0.2 * 10))  # first event is a recovery
    assert d[0] == 0.0


def test_sir_small_population_matches_exact_distribution(ancho_home):
    """With N = 10 the whole final-size distribution is checked (chi-square, p-value > 1e-4)."""
    from scipy.stats import chisquare

    N, n = 10, 5000
    res = run_example("sir.py", ancho_home, params={"N": N}, sequences=n, seed=31)
    counts = np.bincount(res.column("final_size").astype(int), minlength=N + 1)
    exact = sir_final_size_distribution(N, 0.4, 0.2, 1)
    assert counts[0] == 0 and exact[0] == 0
    stat, pvalue = chisquare(counts[1:], n * exact[1:] / exact[1:].sum())
    assert pvalue > 1e-4, f"chi-square {stat:.1f} on {N - 1} degrees of freedom, p = {pvalue:.2g}"


def test_sir_known_values(ancho_home):
    n = 2000
    res = run_example("sir.py", ancho_home, sequences=n, seed=41, targets=["final_size>=100", "major"])
    s, frame = res.summary, res.frame
    N, R0 = 1000, 0.4 / 0.2

    # outputs are consistent with each other
    assert (frame.final_size >= 1).all() and (frame.final_size <= N).all()
    assert (frame.peak_infected >= 1).all() and (frame.peak_infected <= frame.final_size).all()
    assert (frame.duration > 0).all()
    assert (frame.major == (frame.final_size >= 100)).all()
    targets = {t["expr"]: t["probability"] for t in s["targets"]}
    assert targets["final_size>=100"] == targets["major==1"] == s["outputs"]["major"]["mean"]

    # exact finite-N values
    dist = sir_final_size_distribution(N, 0.4, 0.2, 1)
    sizes = np.arange(N + 1)
    is_major = sizes >= 100
    p_major = dist[is_major].sum()
    major_fraction = (dist[is_major] * sizes[is_major]).sum() / p_major / N
    assert p_major == pytest.approx(0.4979, abs=1e-4)  # the values quoted in examples/sir.py
    assert major_fraction == pytest.approx(0.7954, abs=1e-4)

    # P(major): exact within Z_TOL standard errors; 1 - 1/R0 (large N) with 0.005 more for finite N
    p_hat = s["outputs"]["major"]["mean"]
    assert_proportion_close(p_hat, n, p_major, "P(major), exact N=1000")
    assert s["custom"]["p_major_theory"] == pytest.approx(1 - 1 / R0)
    assert_proportion_close(p_hat, n, 1 - 1 / R0, "P(major) = 1 - (1/R0)^I0", allowance=0.005)

    # mean final fraction among major outbreaks: exact within Z_TOL standard errors;
    # the final-size equation's root (large N) with 0.005 more for finite N (the exact gap is 0.0018)
    z = s["custom"]["final_fraction_theory"]
    assert z == pytest.approx(0.797154, abs=1e-6)
    assert z == pytest.approx(1 - (1 - 1 / N) * math.exp(-R0 * z), abs=1e-12)
    major_sizes = frame.loc[frame.major, "final_size"] / N
    stats = {"mean": major_sizes.mean(), "sem": major_sizes.std() / math.sqrt(len(major_sizes))}
    assert s["custom"]["major_final_fraction"] == pytest.approx(stats["mean"])
    assert_mean_close(stats, major_fraction, "major final fraction, exact N=1000")
    assert_mean_close(stats, z, "major final fraction vs z = 1 - s0 exp(-R0 z)", allowance=0.005)


def test_sir_final_size_equation():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from sir import final_size_fraction
    finally:
        sys.path.remove(str(EXAMPLES))
    for R0 in (1.2, 1.5, 2.0, 3.0, 5.0):
        z = final_size_fraction(R0)
        assert 0 < z < 1 and z == pytest.approx(1 - math.exp(-R0 * z), abs=1e-12)
    assert final_size_fraction(0.8) == 0.0 and final_size_fraction(1.0) == 0.0
    assert final_size_fraction(2.0) == pytest.approx(0.796812, abs=1e-6)


# -- the command line -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_gambler_matches_api(ancho_home):
    args = ["--param", "stake=3", "--param", "goal=10", "--param", "p=0.45"]
    s = run_cli(str(EXAMPLES / "gambler.py"), *args, "--sequences", "3000", "--seed", "3", "--target", "rounds>=30")
    assert s["params"] == {"stake": 3, "goal": 10, "p": 0.45}
    win, rounds = gambler_exact(3, 10, 0.45)
    assert_mean_close(s["outputs"]["won"], win, "P(win) via CLI")
    assert_mean_close(s["outputs"]["rounds"], rounds, "E[rounds] via CLI")
    # the same seed through the Python API gives the same sequences, hence the same statistics
    api = run_example(
        "gambler.py",
        ancho_home,
        params={"stake": 3, "goal": 10, "p": 0.45},
        sequences=3000,
        seed=3,
        targets=["rounds>=30"],
        workers=1,
    ).summary
    assert api["outputs"] == s["outputs"] and api["targets"] == s["targets"] and api["custom"] == s["custom"]


@pytest.mark.slow
def test_cli_option(ancho_home):
    n = 20_000
    s = run_cli(str(EXAMPLES / "option.py"), "--sequences", str(n), "--seed", "5", "--target", "call>0")
    call, put, itm = black_scholes_scipy(100.0, 100.0, 0.05, 0.2, 1.0)
    assert s["custom"]["black_scholes_call"] == pytest.approx(call, rel=1e-9)
    assert_mean_close(s["outputs"]["call"], call, "call price via CLI")
    assert_mean_close(s["outputs"]["put"], put, "put price via CLI")
    assert s["targets"][0]["expr"] == "call>0"
    assert_proportion_close(s["targets"][0]["probability"], n, itm, "P(call in the money) via CLI")
    lo, hi = s["targets"][0]["ci95"]
    assert lo < s["targets"][0]["probability"] < hi


@pytest.mark.slow
def test_cli_sir(ancho_home):
    n, N = 600, 1000
    s = run_cli(
        str(EXAMPLES / "sir.py"),
        "--sequences",
        str(n),
        "--seed",
        "7",
        "--param",
        "infected=2",
        "--target",
        "final_size>=100",
    )
    assert s["params"]["infected"] == 2
    assert s["outputs"]["final_size"]["min"] >= 2
    assert s["outputs"]["major"]["count"] == n
    p_hat = s["targets"][0]["probability"]
    assert p_hat == s["outputs"]["major"]["mean"]
    # exact finite-N values, and the large-N theory the example reports (+0.005 allowance for finite N)
    dist = sir_final_size_distribution(N, 0.4, 0.2, 2)
    sizes = np.arange(N + 1) / N
    is_major = sizes >= 0.1
    p_major = dist[is_major].sum()
    mean = (dist[is_major] * sizes[is_major]).sum() / p_major
    sd = math.sqrt((dist[is_major] * sizes[is_major] ** 2).sum() / p_major - mean**2)
    assert_proportion_close(p_hat, n, p_major, "P(major) via CLI, exact N=1000")
    assert s["custom"]["p_major_theory"] == pytest.approx(0.75)  # 1 - (1/2)**2
    assert_proportion_close(p_hat, n, 0.75, "P(major) via CLI vs 1 - (1/R0)^2", allowance=0.005)
    # the CLI reports no standard error for a custom summary: take the exact sd of the fraction
    stats = {"mean": s["custom"]["major_final_fraction"], "sem": sd / math.sqrt(p_hat * n)}
    assert_mean_close(stats, mean, "major final fraction via CLI, exact N=1000")
    assert_mean_close(stats, s["custom"]["final_fraction_theory"], "major final fraction via CLI vs z", allowance=0.005)
