import re

import numpy as np
import pytest

import ancho
from ancho.chunk import ChunkRunner, run_chunk
from ancho.errors import OutputError
from ancho.streams import StreamFactory


def make(fn, **params):
    cls = type("M", (ancho.Model,), {"sequence": lambda self, rng: fn(self, rng)})
    return cls(**params)


def chunk(fn, start=0, stop=10):
    return run_chunk(make(fn), StreamFactory(1), start, stop)


def test_columns_and_kinds():
    r = chunk(lambda s, rng: {"x": rng.random(), "n": 3, "b": True, "nb": np.bool_(False), "f": np.float32(1.5)})
    assert r.kinds() == {"x": "float", "n": "int", "b": "bool", "nb": "bool", "f": "float"}
    assert r.sequences.tolist() == list(range(10))
    assert r.columns["n"].dtype == np.int64 and r.columns["b"].dtype == bool


def test_ints_and_floats_mix_to_float():
    r = chunk(lambda s, rng: {"payoff": max(rng.random() - 0.5, 0)})
    assert r.kinds() == {"payoff": "float"}


def test_key_order_does_not_matter():
    r = chunk(lambda s, rng: {"a": 1, "b": 2} if rng.random() < 0.5 else {"b": 2, "a": 1})
    assert r.columns["a"].tolist() == [1] * 10


@pytest.mark.parametrize(
    "fn,needle",
    [
        (lambda s, rng: [1, 2], "sequence 0 of M returned list, not a mapping"),
        (lambda s, rng: 3.0, "returned float, not a mapping"),
        (lambda s, rng: {}, "returned an empty dict"),
        (lambda s, rng: {"x": "abc"}, "output 'x' of sequence 0 of M is str"),
        (lambda s, rng: {"x": None}, "output 'x' of sequence 0 of M is NoneType"),
        (lambda s, rng: {"x": [[1, 2]]}, "output 'x' of sequence 0 of M is a nested series"),
        (lambda s, rng: {1: 2}, "output name 1"),
        (lambda s, rng: {"sequence": 2}, "output name 'sequence'"),
        (lambda s, rng: {"x": 2**70}, "too large for 64 bits"),
    ],
)
def test_bad_outputs_name_the_sequence_and_output(fn, needle):
    with pytest.raises(OutputError) as err:
        chunk(fn)
    assert needle in str(err.value)


def test_changing_names_are_reported():
    state = {"n": 0}

    def fn(s, rng):
        state["n"] += 1
        return {"a": 1} if state["n"] < 4 else {"b": 1}

    with pytest.raises(
        OutputError,
        match="sequence 3 of M returned different outputs than earlier sequences: output 'b' is new; output 'a' is missing",
    ):
        chunk(fn)


def test_bool_then_number_is_a_type_change():
    state = {"n": 0}

    def fn(s, rng):
        state["n"] += 1
        return {"a": True if state["n"] < 3 else 1}

    with pytest.raises(OutputError, match="output 'a' of M changed type at sequence 2: int after bool"):
        chunk(fn)


def test_failures_are_recorded_not_raised():
    def fn(s, rng):
        if rng.random() < 0.3:
            raise ValueError("bad luck")
        return {"x": 1.0}

    r = chunk(fn, 0, 200)
    assert r.failures and all(f.error == "ValueError: bad luck" for f in r.failures)
    assert "raise ValueError" in r.failures[0].traceback
    assert len(r.failures) + len(r.sequences) == 200
    assert set(f.sequence for f in r.failures).isdisjoint(r.sequences.tolist())


def test_a_sequence_calling_sys_exit_is_a_failure_not_the_end_of_its_worker():
    import sys

    def fn(s, rng):
        if rng.random() < 0.3:
            sys.exit(3)
        return {"x": 1.0}

    r = chunk(fn, 0, 200)
    assert r.failures and {f.error for f in r.failures} == {"SystemExit: 3"}
    assert len(r.failures) + len(r.sequences) == 200


def test_same_outputs_for_any_split():
    class M(ancho.Model):
        def sequence(self, rng):
            return {"x": rng.normal(), "k": int(rng.integers(0, 100))}

    runner = ChunkRunner(M, {}, 42)
    whole = runner.run(0, 100).columns["x"]
    pieces = {r: runner.run(*r).columns["x"] for r in [(60, 100), (0, 7), (7, 60)]}  # out of order on purpose
    parts = np.concatenate([pieces[(0, 7)], pieces[(7, 60)], pieces[(60, 100)]])
    assert np.array_equal(whole, parts)


def test_setup_runs_once_per_runner():
    class M(ancho.Model):
        calls = []

        def setup(self):
            self.table = [1, 2, 3]
            M.calls.append(1)

        def sequence(self, rng):
            return {"x": self.table[int(rng.integers(0, 3))]}

    runner = ChunkRunner(M, {}, 1)
    runner.run(0, 5)
    runner.run(5, 10)
    assert M.calls == [1]


def test_runners_of_one_seed_share_streams_and_interleaved_give_what_each_gives_alone():
    """A study's worker interleaves its points' chunks, and runners of one seed share one stream factory: each
    sequence still gets its own stream, so interleaving changes nothing (nor does a substream drawn meanwhile)."""

    class Walk(ancho.Model):
        p: float = 0.5

        def sequence(self, rng):
            side = ancho.stream(rng, "side").random()
            return {"x": float((rng.random(5) < self.p).sum()) + side}

    a, b = ChunkRunner(Walk, {"p": 0.3}, 7), ChunkRunner(Walk, {"p": 0.7}, 7)
    assert a.streams is b.streams
    interleaved = [a.run(0, 10), b.run(0, 10), a.run(10, 20), b.run(10, 20)]
    alone_a = ChunkRunner(Walk, {"p": 0.3}, 7).run(0, 20).columns["x"]
    alone_b = ChunkRunner(Walk, {"p": 0.7}, 7).run(0, 20).columns["x"]
    assert list(interleaved[0].columns["x"]) + list(interleaved[2].columns["x"]) == list(alone_a)
    assert list(interleaved[1].columns["x"]) + list(interleaved[3].columns["x"]) == list(alone_b)
    assert ChunkRunner(Walk, {"p": 0.3}, 8).streams is not a.streams


def test_the_driver_refuses_outputs_a_worker_could_not_have_checked():
    """What a worker reports is checked again in the driver (model code runs where the worker's check did)."""
    from ancho.kinds import merge_kinds

    assert merge_kinds({}, {"x": "float", "walk": "float[3]"}, 0, 10, "M")
    assert merge_kinds({}, {"a": "float[60000]", "b": "float[40000]"}, 0, 10, "M")  # 100,000 together: kept
    for kinds, needle in [
        ({f"o{i}": "float" for i in range(1_001)}, "came back with 1,001 outputs; at most 1,000 are kept"),
        ({"a" * 101: "float"}, "identifiers of at most 100 characters"),
        ({"sequence": "int"}, "an output 'sequence'"),
        ({"x": "complex"}, "of kind 'complex'"),
        (
            {"a": "float[60000]", "b": "float[40001]", "x": "float"},
            "2 trajectories of 100,001 steps together; a run's trajectories may hold at most 100,000 steps together "
            "(ANCHO_MAX_STEPS): return fewer or shorter trajectories",
        ),
    ]:
        with pytest.raises(OutputError, match=re.escape(needle)):
            merge_kinds({}, kinds, 0, 10, "M")


def test_chunks_that_disagree_are_refused_naming_the_model_and_sequences():
    """Two workers' chunks can disagree where neither worker's own check could see it: the driver's error says
    which model and which sequences, in one line."""
    from ancho.kinds import merge_kinds

    schema = {"x": "int", "walk": "float[3]"}
    assert merge_kinds(schema, {"x": "float", "walk": "float[3]"}, 10, 20, "Walk")  # int meets float: float
    assert schema == {"x": "float", "walk": "float[3]"}
    for kinds, message in [
        (
            {"x": "float", "walk": "float[3]", "y": "int"},
            "sequences 20..29 of Walk returned different outputs than earlier sequences: output 'y' is new",
        ),
        ({"x": "float"}, "sequences 20..29 of Walk returned different outputs than earlier sequences: output 'walk'"),
        (
            {"x": "bool", "walk": "float[3]"},
            "output 'x' of Walk changed type: bool in sequences 20..29, float earlier; return the same type every time",
        ),
        ({"x": "float", "walk": "float[4]"}, "output 'walk' of Walk changed type: float[4] in sequences 20..29"),
    ]:
        with pytest.raises(OutputError) as caught:
            merge_kinds(dict(schema), kinds, 20, 30, "Walk")
        assert message in str(caught.value) and "\n" not in str(caught.value)
