"""The Spark executor package's driver-side pieces that need no cluster: options, bounded caches, the wire format.

Proves: the former keywords still build the same executor (``sandbox=``/``wrap=`` become one typed
``sandbox``); every process-wide cache has a bound; a task's error comes back as the class the local
executor raises for the same report.
"""

from __future__ import annotations

import numpy as np
import pytest

from ancho.chunk import ChunkResult
from ancho.errors import InputError, ModelError, ParameterError, RunFailed
from ancho.executors.messages import WORKER_ERRORS, WorkerFailed
from ancho.executors.spark import SparkExecutor, SparkOptions, decode, encode, encode_error
from ancho.executors.spark.cost import CostModel, cost_key
from ancho.executors.spark.session import Session
from ancho.executors.spark.sinks import Probes
from ancho.isolation import Sandbox, SandboxPolicy


def test_former_keywords_and_options_build_the_same_executor():
    old = SparkExecutor("local[2]", 3, conf={"spark.x": "1"}, summary="driver", writes="driver", shared_storage=False)
    new = SparkExecutor(
        "local[2]",
        SparkOptions(workers=3, conf={"spark.x": "1"}, summary="driver", writes="driver", shared_storage=False),
    )
    assert old.options == new.options
    for ex in (old, new):
        assert (ex.workers, ex.conf, ex.summary_mode, ex.writes, ex.shared_storage) == (
            3,
            {"spark.x": "1"},
            "driver",
            "driver",
            False,
        )
    with pytest.raises(TypeError, match="not both"):
        SparkExecutor("local[1]", SparkOptions(), summary="spark")
    with pytest.raises(TypeError):
        SparkExecutor("local[1]", colour="blue")  # an unknown keyword is still refused


def test_sandbox_and_wrap_become_one_typed_sandbox(tmp_path):
    assert SparkExecutor("local[1]", sandbox=True).isolation.sandbox == SandboxPolicy()
    policy = SandboxPolicy(scratch=str(tmp_path / "scratch"))
    built = Sandbox(policy)
    try:
        ex = SparkExecutor("local[1]", wrap=built.wrap)  # as the server passes it
        assert ex.options.sandbox is built and ex.isolation.sandbox is built.policy
        assert ex._local_options["wrap"] == built.wrap  # the driver's own summary worker runs in the run's sandbox
        assert SparkExecutor("local[1]", sandbox=policy, wrap=built.wrap).options.sandbox is built
        with pytest.raises(InputError, match="give the sandbox once"):
            SparkExecutor("local[1]", sandbox=SandboxPolicy(), wrap=built.wrap)
    finally:
        built.close()
    with pytest.raises(InputError, match="sandbox must be a SandboxPolicy"):
        SparkOptions(sandbox="yes")
    with pytest.raises(ParameterError, match="workers must be a whole number"):
        SparkOptions(workers=0)


def test_the_cost_model_keeps_a_bounded_number_of_models():
    costs = CostModel(size=3)
    chunk = ChunkResult(0, 1000, np.arange(1000), {}, seconds=0.5)
    for key in "abcd":
        costs.learn(key, chunk)
    assert len(costs) == 3 and costs.per_sequence("a") is None  # the least recently run went
    assert costs.per_sequence("b") == 0.5 / 1000
    costs.learn("e", chunk)  # b was just used: c goes
    assert costs.per_sequence("c") is None and costs.per_sequence("b") is not None
    quick = ChunkResult(0, 20, np.arange(20), {}, seconds=0.001)
    costs.learn("f", quick)  # a chunk's own fixed cost says nothing about the model's
    assert costs.per_sequence("f") is None
    # ... but a batch model's quick chunk of many sequences measures them: learnt, so its chunks share tasks
    batch = ChunkResult(0, 1 << 20, np.arange(1 << 20), {"x": np.zeros(1 << 20)}, seconds=0.02)
    costs.learn("g", batch)
    assert costs.per_sequence("g") == 0.02 / (1 << 20)
    # and what a chunk's results weigh, for any chunk: 8 bytes of id and 8 of each float output a sequence
    assert costs.bytes_per_sequence("h") is None
    costs.learn_bytes("h", quick)
    costs.learn_bytes("h", batch)
    assert costs.bytes_per_sequence("h") == 16.0


def test_the_cost_of_a_model_decays_as_before():
    costs = CostModel()
    costs.learn("k", ChunkResult(0, 100, np.arange(100), {}, seconds=1.0))
    costs.learn("k", ChunkResult(0, 300, np.arange(300), {}, seconds=1.5))
    assert costs.per_sequence("k") == (0.5 * 1.0 + 1.5) / (0.5 * 100 + 300)


def test_cost_keys_tell_parameters_apart():
    from ancho.executors.base import Task

    assert cost_key(Task("ref", {"a": 1}, 0)) != cost_key(Task("ref", {"a": 2}, 0))
    assert cost_key(Task("ref", {"a": 1, "b": 2}, 0)) == cost_key(Task("ref", {"b": 2, "a": 1}, 0))


def test_probe_answers_are_bounded():
    probes = Probes(size=2)
    probes.put(("s", 1), None)
    probes.put(("s", 2), "no route")
    assert probes.get(("s", 1)) == (True, None)  # (1 is now the most recent)
    probes.put(("s", 3), None)
    assert probes.get(("s", 2)) == (False, None) and probes.get(("s", 3)) == (True, None)


def test_a_stopped_session_forgets_what_was_shipped_to_it(tmp_path):
    session = Session()
    folder = tmp_path / "zips"
    folder.mkdir()
    session._shipped["abc"] = "ancho-src-abc.zip"
    session._temp_dirs.append(str(folder))
    session._warmed = "app-1"
    session._forget()
    assert not session._shipped and not session._temp_dirs and session._warmed is None and not folder.exists()


@pytest.mark.parametrize("kind, cls", [*WORKER_ERRORS.items(), ("setup", RunFailed), ("worker", RunFailed)])
def test_a_task_error_comes_back_as_the_local_executor_raises_it(kind, cls):
    with pytest.raises(cls, match="^one line$") as raised:
        decode(encode_error(kind, "one line"))
    assert type(raised.value) is type(WorkerFailed(None, kind, "x").exception()) is cls
    assert issubclass(WORKER_ERRORS.get("ModelError", RunFailed), ModelError)


def test_a_chunk_crosses_the_wire_unchanged():
    seqs = np.array([0, 1, 3], dtype=np.int64)
    result = ChunkResult(
        0, 4, seqs, {"x": np.array([0.1, np.nan, 2.5]), "b": np.array([True, False, True])}, seconds=0.2
    )
    back = decode(encode(result))
    assert (back.start, back.stop, back.seconds) == (0, 4, 0.2)
    np.testing.assert_array_equal(back.sequences, seqs)
    for name, col in result.columns.items():
        assert back.columns[name].dtype == col.dtype and back.columns[name].tobytes() == col.tobytes()
