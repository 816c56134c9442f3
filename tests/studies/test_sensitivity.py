"""Sensitivity of studies: Sobol indices of the G function against their closed forms, Morris screening,
the warning, noise_share, and the summary's fixed shape end to end."""

import numpy as np
import pandas as pd

import ancho
from ancho.studies.sensitivity import analyze

A = np.array([0, 1, 4.5, 9, 99, 99])
NAMES = [f"x{i}" for i in range(len(A))]


class Unit(ancho.Model):
    """Only its parameters matter here: the tests build the points table from ``Design.points`` directly."""

    x0: float = 0.0
    x1: float = 0.0
    x2: float = 0.0
    x3: float = 0.0
    x4: float = 0.0
    x5: float = 0.0

    def sequence(self, rng):
        return {}


def table_of(design, f, noise_sd=0.0, count=100, seed=1):
    """The points table a study of ``f`` would have: each point's mean is f(x) plus a mean of ``count`` draws of
    noise (sd ``noise_sd * sqrt(count)`` per sequence, so ``noise_sd`` per mean)."""
    x = pd.DataFrame(design.points(Unit))[list(design.ranges)].to_numpy()
    y = f(x) + np.random.default_rng(seed).normal(0.0, noise_sd, len(x)) if noise_sd else f(x)
    return pd.DataFrame({"y.mean": y, "y.std": noise_sd * np.sqrt(count), "y.count": count})


def g_function(x):
    return np.prod((np.abs(4 * x - 2) + A[: x.shape[1]]) / (1 + A[: x.shape[1]]), axis=1)


def test_sobol_indices_of_the_g_function_hold_the_exact_values():
    design = ancho.sobol(1024, seed=3, **{n: (0.0, 1.0) for n in NAMES})
    sd = 0.005
    result = analyze(design, table_of(design, g_function, noise_sd=sd), ["y"], [])["y"]
    v = 1 / (3 * (1 + A) ** 2)
    total = np.prod(1 + v) - 1
    s1 = v / total
    st = np.array([v[i] * np.prod(np.delete(1 + v, i)) / total for i in range(len(A))])
    # noise independent between points raises the total index by about sd²/V (Jansen's estimator squares the
    # difference of two noisy means): that is the stated tolerance beyond the interval
    tol = 2 * sd**2 / total
    assert result["method"] == "sobol"
    for i, name in enumerate(NAMES):
        for key, exact in (("S1", s1[i]), ("ST", st[i])):
            low, high = result[key][name]["ci95"]
            assert low - tol <= exact <= high + tol, (key, name, exact, result[key][name])
            assert low <= result[key][name]["value"] <= high
    ranking = sorted(NAMES, key=lambda n: -result["ST"][n]["value"])
    assert ranking[:4] == ["x0", "x1", "x2", "x3"]
    assert "S2" not in result and "warning" not in result
    assert result["noise_share"] < 0.01


def test_second_order_indices_only_when_the_design_asked_for_them():
    design = ancho.sobol(256, seed=5, calc_second_order=True, x0=(0.0, 1.0), x1=(0.0, 1.0), x2=(0.0, 1.0))

    def f(x):
        return 12 * (x[:, 0] - 0.5) * (x[:, 1] - 0.5) + x[:, -1]

    result = analyze(design, table_of(design, f), ["y"], [])["y"]
    assert set(result["S2"]) == {"x0", "x1"} and set(result["S2"]["x0"]) == {"x1", "x2"}
    # a pure x0·x1 interaction of variance 1, and x2 alone (variance 1/12): S2(x0, x1) = 12/13, the others 0
    exact = {("x0", "x1"): 12 / 13, ("x0", "x2"): 0.0, ("x1", "x2"): 0.0}
    for (a, b), value in exact.items():
        low, high = result["S2"][a][b]["ci95"]
        assert low <= value <= high, (a, b, result["S2"][a][b])
    first_order_only = ancho.sobol(256, seed=5, x0=(0.0, 1.0), x1=(0.0, 1.0))
    assert "S2" not in analyze(first_order_only, table_of(first_order_only, f), ["y"], [])["y"]


def test_morris_ranks_an_inert_parameter_last():
    design = ancho.morris(40, levels=4, seed=2, x0=(0.0, 1.0), x1=(0.0, 1.0), x2=(0.0, 1.0))
    result = analyze(design, table_of(design, lambda x: 3 * x[:, 0] + np.sin(3 * x[:, 1]) * 2), ["y"], [])["y"]
    assert result["method"] == "morris" and set(result) >= {"mu_star", "sigma", "noise_share"}
    order = sorted(result["mu_star"], key=lambda n: -result["mu_star"][n]["value"])
    assert order[-1] == "x2"
    assert result["mu_star"]["x2"]["value"] == 0 and result["sigma"]["x2"] == 0
    assert result["mu_star"]["x0"]["ci95"][0] > result["mu_star"]["x2"]["ci95"][1]
    assert abs(result["mu_star"]["x0"]["value"] - 3) < 1e-9  # linear: every elementary effect over the range is 3


def test_a_too_small_design_warns_and_says_what_to_do():
    design = ancho.sobol(8, seed=1, **{n: (0.0, 1.0) for n in NAMES[:4]})
    result = analyze(design, table_of(design, g_function, noise_sd=0.3), ["y"], [])["y"]
    assert "intervals too wide to rank the parameters" in result["warning"]
    assert "sobol n=32" in result["warning"]
    assert "more sequences per point" in result["warning"]


def test_noise_share_against_a_known_noise():
    design = ancho.sobol(1024, seed=9, x0=(0.0, 1.0), x1=(0.0, 1.0))
    # the means vary as x0 (variance 1/12) plus noise of variance 1/12: half the spread is noise
    result = analyze(design, table_of(design, lambda x: x[:, 0], noise_sd=np.sqrt(1 / 12)), ["y"], [])["y"]
    assert abs(result["noise_share"] - 0.5) < 0.03
    deterministic = analyze(design, table_of(design, lambda x: x[:, 0]), ["y"], [])["y"]
    assert deterministic["noise_share"] == 0


def test_incomplete_or_constant_outputs_are_left_out():
    design = ancho.sobol(16, seed=1, x0=(0.0, 1.0), x1=(0.0, 1.0))
    table = table_of(design, lambda x: x[:, 0])
    table.loc[3, "y.mean"] = np.nan
    assert analyze(design, table, ["y"], []) == {}
    assert analyze(design, table_of(design, lambda x: 0 * x[:, 0]), ["y"], []) == {}
    assert analyze(ancho.lhs(16, seed=1, x0=(0.0, 1.0)), table, ["y"], []) == {}


LINEAR = """
class Linear(ancho.Model):
    a: float = 0.0
    b: float = 0.0

    def sequence(self, rng):
        return {"y": 2 * self.a + 0.2 * self.b + rng.normal(0, 0.1)}
"""


def test_a_sobol_study_summary_carries_sensitivity_in_the_fixed_shape(store, write_model):
    path = write_model(LINEAR)
    design = ancho.sobol(64, a=(0.0, 1.0), b=(0.0, 1.0))
    study = ancho.study(str(path), design, sequences=4, seed=3, targets=["y>1"], workers=1, store=store)
    assert study.status == "succeeded"
    s = study.summary
    assert set(s["sensitivity"]) == {"y", "p(y>1)"}
    y = s["sensitivity"]["y"]
    assert y["method"] == "sobol" and set(y) <= {"method", "S1", "ST", "noise_share", "warning"}
    for key in ("S1", "ST"):
        assert set(y[key]) == {"a", "b"}
        for entry in y[key].values():
            assert set(entry) == {"value", "ci95"} and len(entry["ci95"]) == 2
            assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
    assert y["ST"]["a"]["ci95"][0] > y["ST"]["b"]["ci95"][1]
    assert 0 < y["noise_share"] < 0.1
    assert list(study.frame.columns)[:3] == ["point", "a", "b"]  # the public table keeps its columns
    assert not any(c.endswith(".count") for c in study.frame.columns)


def test_a_morris_study_summary_and_a_failed_study_without_sensitivity(store, write_model):
    path = write_model(
        """
        class Picky(ancho.Model):
            a: float = 0.0
            b: float = 0.0

            def sequence(self, rng):
                if self.b > 2:
                    raise ValueError("b above 2")
                return {"y": 3 * self.a + rng.normal(0, 0.1)}
        """
    )
    study = ancho.study(str(path), ancho.morris(6, a=(0.0, 1.0), b=(0.0, 1.0)), sequences=3, seed=1, workers=1,
                        store=store)  # fmt: skip
    y = study.summary["sensitivity"]["y"]
    assert y["method"] == "morris" and set(y["mu_star"]) == set(y["sigma"]) == {"a", "b"}
    assert y["mu_star"]["a"]["ci95"][0] > y["mu_star"]["b"]["ci95"][1]
    failed = ancho.study(str(path), ancho.sobol(4, a=(0.0, 1.0), b=(0.0, 3.0)), sequences=3, seed=1, workers=1,
                         store=store)  # fmt: skip
    assert failed.status == "failed"
    assert "sensitivity" not in failed.summary


def test_the_sensitivity_is_kept_once_read_and_computed_again_after_a_resume(store, write_model):
    from ancho.studies.service import study_sensitivity

    path = write_model(LINEAR)
    study = ancho.study(str(path), ancho.sobol(16, a=(0.0, 1.0), b=(0.0, 1.0)), sequences=4, seed=3, workers=1,
                        store=store)  # fmt: skip
    assert store.get_study(study.study_id).sensitivity is None  # nothing is computed before a read
    first = study.summary["sensitivity"]
    kept = store.get_study(study.study_id)
    assert kept.sensitivity == first and kept.sensitivity_finished == kept.finished
    without = {k: v for k, v in study.summary.items() if k != "sensitivity"}
    assert study_sensitivity(kept, without) == first  # what is kept is what a fresh computation gives
    # a read takes the kept value as it is (a marker shows that it was not recomputed) ...
    marker = {"y": {"method": "sobol", "kept": True}}
    store.update_study(study.study_id, sensitivity=marker)
    assert study.summary["sensitivity"] == marker
    # ... until the study is resumed: it ends again, and its next read computes the sensitivity afresh
    resumed = ancho.study(str(path), None, resume=study.study_id, workers=1, store=store)
    again = store.get_study(study.study_id)
    assert resumed.status == "succeeded" and again.finished != kept.finished and again.sensitivity is None
    assert resumed.summary["sensitivity"] == first
    # a value kept for an earlier end (a read racing the resume) is never read back
    store.update_study(study.study_id, sensitivity=marker, sensitivity_finished=kept.finished)
    assert resumed.summary["sensitivity"] == first


BATCH_LINEAR = """
class BatchLinear(ancho.Model):
    a: float = 0.0
    b: float = 0.0
    block = 64

    def sequences(self, rng, n):
        return {"y": 2 * self.a + 0.2 * self.b + rng.normal(0, 0.1, n)}
"""


def test_a_sobol_study_of_a_batch_model_holds_the_exact_indices(store, write_model):
    """y = 2a + 0.2b + noise with a, b uniform on [0, 1]: the means vary as 4/12 from a and 0.04/12 from b, so
    S1 = ST = 4/4.04 for a and 0.04/4.04 for b, whichever kind of model computes them."""
    path = write_model(BATCH_LINEAR)
    design = ancho.sobol(256, seed=4, a=(0.0, 1.0), b=(0.0, 1.0))
    study = ancho.study(str(path), design, sequences=100, seed=3, workers=2, store=store)
    assert study.status == "succeeded"
    y = study.summary["sensitivity"]["y"]
    # each point's mean carries noise of sd 0.01 (0.1 over 100 sequences): Jansen's total index gains ~2·sd²/V
    tol = 2 * 0.01**2 / (4.04 / 12)
    for name, exact in (("a", 4 / 4.04), ("b", 0.04 / 4.04)):
        for key in ("S1", "ST"):
            low, high = y[key][name]["ci95"]
            assert low - tol <= exact <= high + tol, (key, name, exact, y[key][name])
    assert y["noise_share"] < 0.01
