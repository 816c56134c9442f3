"""Trajectory outputs: a sequence returns a series; stored, summarised step by step, reduced in targets and goals.

The statistics are checked against exact values: a simple ±1 random walk has Var(S_t) = t (σ² = 1), and by
the reflection principle P(max_{k≤n} S_k ≥ a) = P(S_n ≥ a) + P(S_n > a) for a > 0 (computed exactly from the
binomial law of S_n).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ancho
from ancho.batch import run_batch_chunk
from ancho.chunk import run_chunk
from ancho.errors import ExpressionError, InputError, OutputError
from ancho.expressions import Goal, Target
from ancho.streams import StreamFactory
from ancho.trajectories import trajectory_summary

from .conftest import run_cli


class Walk(ancho.Model):
    """A simple symmetric random walk: ``walk`` is S_1..S_n, ``end`` is S_n."""

    steps: int = 20

    def sequence(self, rng):
        s = np.cumsum(rng.integers(0, 2, self.steps) * 2 - 1)
        return {"walk": s, "end": int(s[-1])}


class BatchWalk(ancho.Model):
    """The same walk, ``n`` at a time: an n × steps array."""

    steps: int = 20
    block = 64

    def sequences(self, rng, n):
        return {"walk": np.cumsum(rng.integers(0, 2, (n, self.steps)) * 2 - 1, axis=1)}


def walk_run(home, n=4000, **kw):
    return ancho.run(Walk, sequences=n, seed=11, workers=2, store=str(home), **kw)


def first_passage(n: int, a: int) -> float:
    """P(max_{k≤n} S_k ≥ a) for the simple symmetric walk, exactly: P(S_n ≥ a) + P(S_n > a)."""
    law = {2 * up - n: math.comb(n, up) / 2**n for up in range(n + 1)}
    return sum(p for s, p in law.items() if s >= a) + sum(p for s, p in law.items() if s > a)


# -- statistics against exact values ------------------------------------------------------------------


def test_per_step_variance_is_t(home):
    """Var(S_t) = t·σ² with σ² = 1: each step's sample variance within 4 standard errors of t.

    The standard error of a sample variance is sqrt((μ4 − σ_t⁴·(N−3)/(N−1))/N), μ4 = E[S_t⁴] = 3t² − 2t."""
    res = walk_run(home, n=20_000)
    paths = res.trajectory("walk")
    assert paths.shape == (20_000, 20) and paths.dtype == np.float64
    t = np.arange(1, 21)
    n = len(paths)
    se = np.sqrt((3 * t**2 - 2 * t - t**2 * (n - 3) / (n - 1)) / n)
    assert np.all(np.abs(paths.var(axis=0, ddof=1) - t) <= 4 * se)
    # the summary's per-step mean and interval are the array's
    summ = res.summary["trajectories"]["walk"]
    assert summ["steps"] == 20 and summ["count"] == 20_000
    assert np.allclose(summ["mean"], paths.mean(axis=0))
    half = np.array(summ["ci95_high"]) - np.array(summ["mean"])
    assert np.allclose(half, 1.96 * paths.std(axis=0, ddof=1) / np.sqrt(20_000), rtol=1e-3)
    assert np.all(np.array(summ["ci95_low"]) <= 0.1) and np.all(np.array(summ["ci95_high"]) >= -0.1)
    for q in (5, 25, 50, 75, 95):
        assert summ[f"p{q}"] == np.percentile(paths, q, axis=0).tolist()
    assert set(res.summary["outputs"]) == {"end"}  # scalar outputs unchanged, trajectories apart


@pytest.mark.parametrize("n, a", [(20, 4), (20, 1)])
def test_first_passage_probability_by_the_reflection_principle(home, n, a):
    res = walk_run(home, n=20_000, params={"steps": n}, targets=[f"max(walk)>={a}"])
    (row,) = res.summary["targets"]
    exact = first_passage(n, a)
    assert row["expr"] == f"max(walk)>={a}"
    assert abs(row["probability"] - exact) <= 4 * math.sqrt(exact * (1 - exact) / 20_000)
    assert row["ci95"][0] <= row["probability"] <= row["ci95"][1]


def test_min_and_last_targets_match_the_array(home):
    res = walk_run(home, n=3000, targets=["min(walk)<=-3", "last(walk)>0"])
    paths = res.trajectory("walk")
    got = {r["expr"]: r["probability"] for r in res.summary["targets"]}
    assert got["min(walk)<=-3"] == np.mean(paths.min(axis=1) <= -3)
    assert got["last(walk)>0"] == np.mean(paths[:, -1] > 0)


def test_precision_goals_on_reductions(home):
    res = walk_run(home, n=500, until="mean(last(walk))+-0.3", max_sequences=50_000)
    until = res.summary["until"]
    assert until["met"] and until["half_width"] <= 0.3
    paths = res.trajectory("walk")
    half = 1.96 * paths[:, -1].std(ddof=1) / math.sqrt(len(paths))
    assert half <= 0.3 * 1.01
    res = walk_run(home, n=500, until="p(max(walk)>=4)+-0.02", max_sequences=50_000)
    assert res.summary["until"]["met"]


def test_streamed_percentiles_over_many_step_blocks_equal_in_memory():
    """A tiny memory budget splits the steps into blocks spilled to disk: the same numbers as one array."""
    rng = np.random.default_rng(5)
    chunks = [rng.normal(size=(n, 7)) for n in (5, 40, 1, 33)]
    chunks[1][3, 2] = np.nan  # a NaN step is left out of that step's statistics
    whole = np.concatenate(chunks)
    summ, hits = trajectory_summary(lambda: iter(chunks), [Target.parse("max(x)>=1")], budget=8)
    assert summ["count"] == 79 and summ["steps"] == 7
    assert np.allclose(summ["mean"], np.nanmean(whole, axis=0))
    for q in (5, 50, 95):
        assert np.allclose(summ[f"p{q}"], np.nanpercentile(whole, q, axis=0))
    assert hits["max(x)>=1"] == (int(np.sum(np.fmax.reduce(whole, axis=1) >= 1)), 79)


@pytest.mark.parametrize("budget", [8, 79 * 8 * 3, 79 * 8 * 7])  # a step a block; 3 steps a block; all at once
def test_percentiles_read_the_values_at_most_twice_and_leave_no_files(budget, tmp_path, monkeypatch):
    """Step blocks are spilled in one pass (not one pass per block); the numbers are exactly NumPy's."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    rng = np.random.default_rng(6)
    chunks = [rng.normal(size=(n, 7)) for n in (5, 40, 1, 33)]
    whole = np.concatenate(chunks)
    passes = []

    def blocks():
        passes.append(1)
        return iter(chunks)

    summ, _ = trajectory_summary(blocks, [], budget=budget)
    assert len(passes) == 2  # the mean's pass and the percentiles' pass, whatever the block count
    for q in (5, 25, 50, 75, 95):
        assert np.array_equal(summ[f"p{q}"], np.percentile(whole, q, axis=0))
    assert list(tmp_path.iterdir()) == []


# -- bad input ------------------------------------------------------------------------------------------


def chunk_of(body):
    cls = type("Bad", (ancho.Model,), {"sequence": body})
    return run_chunk(cls(), StreamFactory(1), 0, 10, "Bad")


@pytest.mark.parametrize(
    "body, message",
    [
        (lambda s, rng: {"x": [1.0] * (3 if rng.random() < 0.5 else 4)}, "steps but earlier sequences returned"),
        (lambda s, rng: {"x": [[1, 2], [3, 4]]}, "is a nested series of shape (2, 2)"),
        (lambda s, rng: {"x": [1, "2"]}, "holds str"),
        (lambda s, rng: {"x": [1, None]}, "non-numbers or nested lists"),
        (lambda s, rng: {"x": []}, "empty series"),
        (lambda s, rng: {"x": [1.0] if rng.random() < 0.5 else 1.0}, "returned a series for it"),
    ],
    ids=["ragged", "nested", "strings", "none", "empty", "scalar-and-series"],
)
def test_bad_series_name_the_output(body, message):
    with pytest.raises(OutputError) as err:
        chunk_of(body)
    assert message in str(err.value) and "output 'x'" in str(err.value) and "\n" not in str(err.value)


def test_ragged_lengths_name_the_sequence():
    class Ragged(ancho.Model):
        calls = 0

        def sequence(self, rng):
            self.calls += 1
            return {"x": [0.0] * (5 if self.calls == 4 else 4)}

    with pytest.raises(
        OutputError, match=r"output 'x' of sequence 3 of Ragged has 5 steps but earlier sequences returned 4"
    ):
        run_chunk(Ragged(), StreamFactory(1), 0, 10, "Ragged")


def test_a_length_that_changes_fails_the_run_and_names_sequence_and_output(home):
    class Grows(ancho.Model):
        def sequence(self, rng):
            return {"x": rng.random(3 if rng.random() < 0.9 else 4)}

    with pytest.raises(OutputError, match=r"output 'x' of sequence \d+ of Grows has \d steps"):
        ancho.run(Grows, sequences=200, seed=2, workers=1, store=str(home))
    (record,) = ancho.stores.open_store(str(home)).list_runs()
    assert record.status == "failed" and "output 'x'" in record.error


def test_the_step_cap_is_configurable(monkeypatch):
    monkeypatch.setenv("ANCHO_MAX_STEPS", "50")
    with pytest.raises(OutputError, match="output 'x' of sequence 0 of Bad has 51 steps, more than the cap of 50"):
        chunk_of(lambda s, rng: {"x": [0.0] * 51})
    model = BatchWalk(steps=51)
    with pytest.raises(OutputError, match="output 'walk' of BatchWalk.*51 steps, more than the cap of 50"):
        run_batch_chunk(model, StreamFactory(1), 0, 64, 64, "BatchWalk")


def test_a_runs_trajectories_together_are_capped_too(monkeypatch, home):
    """Each under the cap, together over it: the run fails at its first chunk, before any summary (eight numbers a
    step: a thousand long trajectories would make a summary no driver or server can hold), naming the model."""
    monkeypatch.setenv("ANCHO_MAX_STEPS", "50")

    class Two(ancho.Model):
        block = 8

        def sequences(self, rng, n):
            return {"a": rng.random((n, 30)), "b": rng.random((n, 21)), "x": rng.random(n)}

    with pytest.raises(
        OutputError,
        match=r"^sequences 0\.\.\d+ of Two came back with 2 trajectories of 51 steps together; a run's trajectories "
        r"may hold at most 50 steps together \(ANCHO_MAX_STEPS\)",
    ):
        ancho.run(Two, sequences=100, seed=2, workers=1, store=str(home))
    (record,) = ancho.stores.open_store(str(home)).list_runs()
    assert record.status == "failed" and record.summary is None and "51 steps together" in record.error
    monkeypatch.setenv("ANCHO_MAX_STEPS", "51")
    assert ancho.run(Two, sequences=100, seed=2, workers=1, store=str(home)).summary["trajectories"]["b"]["steps"] == 21


def test_batch_models_return_n_by_steps():
    res = run_batch_chunk(BatchWalk(), StreamFactory(1), 10, 100, 64, "BatchWalk")
    assert res.columns["walk"].shape == (90, 20) and res.kinds() == {"walk": "float[20]"}
    with pytest.raises(OutputError, match=r"output 'walk' of BatchWalk.*shape \(63, 20\)"):
        run_batch_chunk(
            type("B", (BatchWalk,), {"sequences": lambda s, rng, n: {"walk": np.zeros((n - 1, 20))}})(),
            StreamFactory(1),
            0,
            64,
            64,
            "BatchWalk",
        )


def test_batch_trajectories_equal_whatever_the_chunking(home):
    a = ancho.run(BatchWalk, sequences=1000, seed=4, workers=1, store=str(home)).trajectory("walk")
    b = ancho.run(BatchWalk, sequences=1000, seed=4, workers=2, store=str(home)).trajectory("walk")
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "target, message",
    [
        ("walk>=3", "output 'walk' is a trajectory; use max(walk), min(walk) or last(walk)"),
        ("max(end)>=3", "max() takes a trajectory, but output 'end' is a single number per sequence"),
    ],
)
def test_expressions_must_reduce_trajectories_and_only_them(home, target, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        walk_run(home, n=50, targets=[target])


def test_goals_on_a_bare_trajectory_or_a_reduced_scalar_are_errors(home):
    """Errors of the precision goal's field (not the targets', as when a worker's tally met it first), each with an
    example of its own kind."""
    from ancho.errors import Field

    for until, example in [
        ("mean(walk)+-1", "e.g. 'mean(last(walk))+-0.1'"),
        ("p(walk>3)+-0.01", "e.g. 'p(max(walk)>=100)+-0.01'"),
    ]:
        with pytest.raises(ExpressionError, match="output 'walk' is a trajectory") as caught:
            walk_run(home, n=50, until=until, max_sequences=100)
        assert caught.value.field is Field.UNTIL and str(caught.value).endswith(example), str(caught.value)
    with pytest.raises(ExpressionError, match="last\\(\\) takes a trajectory, but output 'end'"):
        walk_run(home, n=50, until="mean(last(end))+-1", max_sequences=100)


def test_expressions_parse():
    t = Target.parse(" max( infected ) >= 100")
    assert (t.expr, t.output, t.reduce, t.value) == ("max(infected)>=100", "infected", "max", 100.0)
    g = Goal.parse("mean(last(wealth))+-1")
    assert (g.output, g.source, g.reduce) == ("last(wealth)", "wealth", "last")
    assert Goal.parse("p(max(x)>=2)+-0.01").source == "x"


# -- storage, the API, exports --------------------------------------------------------------------------


def test_store_round_trip_and_results_trajectory(home):
    res = walk_run(home, n=300)
    store = res.store
    assert store.get_run(res.run_id).schema == {"walk": "float[20]", "end": "int"}
    schema = store.arrow_schema(res.run_id)
    assert schema.field("walk").type == pa.list_(pa.float64(), 20)
    paths = res.trajectory("walk")
    blocks = list(store.iter_column(res.run_id, "walk"))
    assert np.array_equal(np.concatenate(blocks), paths)
    assert np.array_equal(paths[:, -1], res.column("end"))
    assert len(res.frame["walk"][0]) == 20
    with pytest.raises(InputError, match="'end' is a single number per sequence"):
        res.trajectory("end")
    with pytest.raises(InputError, match="'nope' is not an output of this run; trajectories: walk"):
        res.trajectory("nope")


def test_exports(home, tmp_path):
    res = walk_run(home, n=50)
    env = {"ANCHO_HOME": str(home)}
    plain = run_cli("export", res.run_id, env=env)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0] == "sequence,end" and len(lines) == 51
    assert "trajectory outputs left out of the CSV (walk)" in plain.stderr and "--trajectory walk" in plain.stderr
    long = run_cli("export", res.run_id, "--trajectory", "walk", env=env)
    assert long.returncode == 0, long.stderr
    rows = long.stdout.splitlines()
    paths = res.trajectory("walk")
    assert rows[0] == "sequence,step,value" and len(rows) == 1 + 50 * 20
    seq, step, value = rows[1 + 7 * 20 + 5].split(",")
    assert (int(seq), int(step), float(value)) == (7, 5, paths[7, 5])
    bad = run_cli("export", res.run_id, "--trajectory", "end", env=env)
    assert bad.returncode != 0 and "no trajectory output 'end'" in bad.stderr
    bad = run_cli("export", res.run_id, "--trajectory", "walk", "--format", "parquet", env=env)
    assert bad.returncode == 2 and "--format parquet without --trajectory writes every output" in bad.stderr
    out = tmp_path / "r.parquet"
    pq_run = run_cli("export", res.run_id, "--format", "parquet", "-o", str(out), env=env)
    assert pq_run.returncode == 0, pq_run.stderr
    table = pq.read_table(out)
    assert table.schema.field("walk").type == pa.list_(pa.float64(), 20)
    assert np.array_equal(np.array(table.column("walk").to_pylist()), paths)


def test_cli_json_summary_has_trajectories(home, tmp_path):
    model = tmp_path / "walk.py"
    model.write_text(
        "import ancho, numpy as np\n\nclass W(ancho.Model):\n    def sequence(self, rng):\n"
        "        return {'w': np.cumsum(rng.normal(size=5)).tolist()}\n"
    )
    out = run_cli("run", str(model), "-n", "100", "--json", "--target", "max(w)>=1", env={"ANCHO_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["trajectories"]["w"]["steps"] == 5 and len(summary["trajectories"]["w"]["p95"]) == 5
    assert summary["targets"][0]["expr"] == "max(w)>=1"


# -- Spark ---------------------------------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow
def test_trajectory_on_spark_equals_local(home, spark_url):
    local = walk_run(home, n=2000, targets=["max(walk)>=4"])
    spark = ancho.run(Walk, sequences=2000, seed=11, executor=spark_url, store=str(home), targets=["max(walk)>=4"])
    assert np.array_equal(spark.trajectory("walk"), local.trajectory("walk"))
    assert spark.summary["trajectories"] == local.summary["trajectories"]
    assert spark.summary["targets"] == local.summary["targets"]


def test_the_sir_example_returns_its_infected_curve(home):
    from .conftest import EXAMPLES

    # by path: a class imported from a folder on sys.path would not import in a fresh worker
    res = ancho.run(
        str(EXAMPLES / "sir.py"), sequences=300, seed=3, workers=1, store=str(home), targets=["max(infected)>=50"]
    )
    curves = res.trajectory("infected")
    assert curves.shape == (300, 120) and np.all(curves[:, 0] == 1)
    assert np.all(curves.max(axis=1) <= res.column("peak_infected"))  # a day's count never exceeds the peak
    assert res.summary["trajectories"]["infected"]["steps"] == 120
    assert res.summary["targets"][0]["probability"] == np.mean(curves.max(axis=1) >= 50)


@pytest.mark.parametrize("budget", [79 * 8 * 3, 79 * 8 * 7])
def test_steps_on_two_threads_give_numpys_percentiles_bit_for_bit(budget, monkeypatch):
    """Half the steps' percentiles on a helper thread (threshold lowered): np.percentile's numbers, to the bit."""
    import ancho.trajectories as tr

    monkeypatch.setattr(tr, "TWO_THREADS_FROM", 1)
    rng = np.random.default_rng(8)
    chunks = [np.cumsum(rng.normal(size=(n, 7)), axis=1) for n in (5, 40, 1, 33)]
    whole = np.concatenate(chunks)
    summ, _ = trajectory_summary(lambda: iter(chunks), [], budget=budget)
    expected = np.percentile(whole, (5, 25, 50, 75, 95), axis=0)
    got = np.array([summ[f"p{q}"] for q in (5, 25, 50, 75, 95)])
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("budget", [8, 79 * 8 * 3, 79 * 8 * 7])
def test_rows_known_ahead_are_read_once_and_a_wrong_count_reads_again(budget, tmp_path, monkeypatch):
    """With the run's row count the mean's pass gathers the percentiles' values too: one pass, the same numbers, no
    file left; a count that is not the column's (too few, too many) falls back to a pass of their own."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    rng = np.random.default_rng(9)
    chunks = [rng.normal(size=(n, 7)) for n in (5, 40, 1, 33)]
    chunks[2][0, 4] = np.nan
    whole = np.concatenate(chunks)
    for expected, reads in [(79, 1), (78, 2), (80, 2), (None, 2)]:
        passes: list[int] = []

        def blocks(passes=passes):
            passes.append(1)
            return iter(chunks)

        summ, _ = trajectory_summary(blocks, [], budget=budget, expected_rows=expected)
        assert len(passes) == reads, expected
        for q in (5, 25, 50, 75, 95):
            assert np.array_equal(summ[f"p{q}"], np.nanpercentile(whole, q, axis=0))
        assert list(tmp_path.iterdir()) == []


def test_a_wrong_row_count_lets_go_of_what_was_gathered_before_reading_again(tmp_path, monkeypatch):
    """The fallback pass gathers anew: the first gathering's spill files are gone by then (one budget at a time)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    import ancho.trajectories as tr

    monkeypatch.setattr(tempfile, "tempdir", None)
    chunks = [np.arange(70.0).reshape(10, 7), np.arange(70.0, 140.0).reshape(10, 7)]
    seen = []
    real = tr._percentiles

    def spying(*args):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real(*args)

    monkeypatch.setattr(tr, "_percentiles", spying)
    summ, _ = trajectory_summary(lambda: iter(chunks), [], budget=8 * 20 * 2, expected_rows=21)
    assert seen == [[]]  # (the expected 21 rows' spill folder was removed before the second pass)
    assert np.array_equal(summ["p50"], np.percentile(np.concatenate(chunks), 50, axis=0))
