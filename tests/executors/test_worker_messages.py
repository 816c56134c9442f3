"""Typed messages between the driver and its local workers (ancho.executors.messages), and the typed record parts.

Real worker processes (forked and fresh), a real embedded store; no mocks.
"""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest

from ancho.errors import Field, ModelError, OutputError, ParameterError, RunFailed, StoreError
from ancho.executors.base import Chunk, ChunkSource, Task
from ancho.executors.local import LocalExecutor
from ancho.executors.messages import WORKER_ERRORS, ChunkDone, RunChunk, WorkerFailed
from ancho.loading import FileRef
from ancho.stores.base import RunRecord, Submission
from ancho.stores.embedded import EmbeddedStore
from ancho.stores.results_sources import ChunkFiles

MODEL = '''
import ancho
from ancho.errors import ParameterError


class Refused(ParameterError):
    """A user's own subclass: the driver must not import this module to raise it."""


class Picky(ancho.Model):
    n: int = 1
    refuse: bool = False

    def setup(self):
        if self.refuse:
            raise Refused("{PARAMS} is refused by this model", "refuse")

    def sequence(self, rng):
        return {"x": rng.random() * self.n}
'''


class _Chunks(ChunkSource):
    def __init__(self, *chunks: Chunk):
        self.chunks = list(chunks)

    def next(self) -> Chunk | None:
        return self.chunks.pop(0) if self.chunks else None


@pytest.fixture
def picky(tmp_path):
    (tmp_path / "picky_model_msgs.py").write_text(textwrap.dedent(MODEL))
    return FileRef(str(tmp_path), "picky_model_msgs.py", "Picky")


def _run(ref, params, how, monkeypatch):
    monkeypatch.setenv("ANCHO_WORKER_START", how)
    with LocalExecutor(1) as ex:
        return list(ex.map_chunks(Task(ref, params, 1), _Chunks(Chunk(0, 10))))


@pytest.mark.parametrize("how", ["auto", "exec"])
def test_a_parameter_error_in_a_worker_keeps_its_field_and_name(picky, how, monkeypatch):
    with pytest.raises(ParameterError) as raised:
        _run(picky, {"nope": 3}, how, monkeypatch)
    err = raised.value
    assert type(err) is ParameterError and err.field is Field.PARAMS and err.name == "nope"
    assert err.loc == ("body", "params") and "unknown parameter 'nope'" in str(err)


@pytest.mark.parametrize("how", ["auto", "exec"])
def test_a_user_subclass_of_an_ancho_error_arrives_as_its_ancho_class_and_the_driver_imports_no_user_code(
    picky, how, monkeypatch
):
    with pytest.raises(ParameterError) as raised:
        _run(picky, {"refuse": True}, how, monkeypatch)
    assert type(raised.value) is ParameterError  # the table's class, not the user's Refused
    assert "parameter 'refuse' is refused by this model" == str(raised.value)
    assert not any("picky_model_msgs" in name for name in sys.modules)  # never imported in the driver


def test_results_come_back_whole_and_columnar(picky, monkeypatch):
    (result,) = _run(picky, {"n": 2}, "exec", monkeypatch)
    assert result.start == 0 and result.stop == 10 and list(result.sequences) == list(range(10))
    assert result.columns["x"].dtype.kind == "f" and len(result.columns["x"]) == 10  # one array, not 10 objects


def test_errors_without_an_object_go_through_the_one_table():
    assert type(WorkerFailed(None, "ModelError", "m").exception()) is ModelError
    assert type(WorkerFailed(None, "OutputError", "o").exception()) is OutputError
    for kind in ("setup", "worker", "ZeroDivisionError", "StoreError"):
        err = WorkerFailed(None, kind, "text").exception()
        assert type(err) is RunFailed and str(err) == "text"
    assert set(WORKER_ERRORS) == {"ModelError", "OutputError", "ParameterError"}


def test_an_ancho_error_crosses_as_a_clean_copy_that_pickles():
    original = StoreError("disk full")
    original.secret = object()  # what user code attached to it does not cross
    failed = pickle.loads(pickle.dumps(WorkerFailed.of(original)))
    assert type(failed.error) is StoreError and str(failed.error) == "disk full" and not hasattr(failed.error, "secret")
    param = pickle.loads(pickle.dumps(WorkerFailed.of(ParameterError("{PARAMS} must be positive", "n"))))
    assert param.error.name == "n" and str(param.exception()) == "parameter 'n' must be positive"


def test_the_spark_codec_decodes_errors_through_the_same_table():
    from ancho.executors.spark.codec import decode, encode_error

    with pytest.raises(ParameterError, match="bad n"):
        decode(encode_error("ParameterError", "bad n"))
    with pytest.raises(RunFailed, match="model setup failed"):
        decode(encode_error("setup", "model setup failed in a worker: boom"))


def test_messages_are_small_and_typed():
    assert pickle.loads(pickle.dumps(RunChunk(5, 9))) == RunChunk(5, 9)
    assert len(pickle.dumps(RunChunk(5, 9), protocol=pickle.HIGHEST_PROTOCOL)) < 100
    with pytest.raises(AttributeError):
        RunChunk(1, 2).start = 3  # frozen
    assert not hasattr(ChunkDone(None), "__dict__")  # slots: no per-message dict


# -- typed record parts -----------------------------------------------------------------------------------


def test_a_submission_round_trips_through_a_store(tmp_path):
    store = EmbeddedStore(tmp_path / "home")
    sub = Submission("/srv/m", "model.py", "M", {"n": float("inf")}, "server-1", {"kind": "upload"})
    store.create_run(RunRecord(id="r1", spec={Submission.KEY: sub.to_dict(), "info": {"doc": "d"}}))
    record = store.get_run("r1")
    assert record.submission == sub and record.model_info == {"doc": "d"}
    assert record.spec["ref"]["root"] == "/srv/m"  # where readers of failures find the folder to hide


def test_records_written_before_the_type_are_read():
    old = RunRecord(
        id="r",
        params={"n": None},
        spec={
            "params": {"n": 1e400},
            "ref": {"root": "/srv/m", "file": "model.py", "class_name": "M"},
            "server": "s1",
            "info": {},
            "model": {"upload": "abc"},
        },
    )
    assert old.submission == Submission("/srv/m", "model.py", "M", {"n": 1e400}, "s1", {"upload": "abc"})
    older = RunRecord(id="r", params={"n": 2}, spec={"ref": {"root": "/srv/m", "file": "model.py", "class_name": "M"}})
    assert older.submission.params == {"n": 2} and older.submission.server is None
    assert RunRecord(id="cli", spec={"info": {}}).submission is None  # an `ancho run` of the CLI
    assert RunRecord(id="odd", spec={"ref": "text"}).submission is None


def test_the_embedded_store_describes_its_results_typed(tmp_path):
    import numpy as np

    from ancho.chunk import ChunkResult

    store = EmbeddedStore(tmp_path / "home")
    store.create_run(RunRecord(id="r1", schema={"x": "float"}))
    store.write_chunk("r1", ChunkResult(0, 4, np.arange(4), {"x": np.ones(4)}, [], 0.0))
    results = store.results("r1")
    assert isinstance(results, ChunkFiles) and results.sequences == 4
    assert [p.rsplit("/", 1)[1] for p in results.paths] == ["000000000000-000000000004.parquet"]
    assert store.results_source("r1") == results.to_dict()


class _Bundled(_Chunks):
    """A study-like source: its chunks go several to a message (``RunChunks``), each with its own task."""

    inflight_per_worker = 8
    bundle = 4


def _interleaved(ref, tasks: list[Task], sizes: int, n: int) -> list[Chunk]:
    return [Chunk(k * sizes, (k + 1) * sizes, task=tasks[k % len(tasks)]) for k in range(n)]


@pytest.mark.parametrize("how", ["auto", "exec"])
def test_chunks_sent_several_to_a_message_come_back_as_sent_one_by_one(picky, how, monkeypatch):
    monkeypatch.setenv("ANCHO_WORKER_START", how)
    tasks = [Task(picky, {"n": n}, 5, f"r{n}") for n in (1, 2, 3)]
    got = {}
    for source in (_Chunks(*_interleaved(picky, tasks, 7, 30)), _Bundled(*_interleaved(picky, tasks, 7, 30))):
        with LocalExecutor(2) as ex:
            results = list(ex.map_chunks(tasks[0], source))
        got[type(source)] = {(r.chunk.task.run_id, r.start): r.columns["x"].tolist() for r in results}
        assert len(results) == 30
    assert got[_Chunks] == got[_Bundled]


def test_an_error_inside_a_bundle_is_raised_as_itself(picky):
    good, bad = Task(picky, {"n": 1}, 5, "good"), Task(picky, {"nope": 3}, 5, "bad")
    chunks = _interleaved(picky, [good, good, bad, good], 5, 8)
    with LocalExecutor(1) as ex, pytest.raises(ParameterError, match="unknown parameter 'nope'"):
        list(ex.map_chunks(good, _Bundled(*chunks)))


def test_every_message_pickles_to_an_equal_message_field_by_field(tmp_path):
    """Messages pickle as their class and field values (not dataclasses' slotted state): each comes back equal."""
    import dataclasses

    from ancho.executors import messages

    task = Task(FileRef(str(tmp_path / "m.py"), "M", 1.0), {"p": 0.5}, 3, "r1")
    samples = {
        "SetTask": messages.SetTask(task),
        "RunChunk": messages.RunChunk(0, 50, ("f",), True),
        "RunChunks": messages.RunChunks((messages.SetTask(task), messages.RunChunk(0, 5))),
        "Summaries": messages.Summaries(task, ChunkFiles.of_folder(tmp_path, {"x": "float"}), ("f",)),
        "Inspect": messages.Inspect("m.py", {"p": 1}),
        "Shutdown": messages.Shutdown(),
        "ChunkDone": messages.ChunkDone(None, {"f": 1.0}),  # type: ignore[arg-type]
        "ChunksDone": messages.ChunksDone((messages.WorkerFailed(None, "setup", "no"),)),
        "SummariesDone": messages.SummariesDone({"f": 2}),
        "Inspected": messages.Inspected({"name": "M"}),
        "WorkerFailed": messages.WorkerFailed(ParameterError("p must be > 0"), "ParameterError", "p", "tb"),
    }
    slotted = {
        name
        for name, cls in vars(messages).items()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == messages.__name__
    }
    assert slotted == samples.keys()  # (a new message gets a sample here)
    for name, msg in samples.items():
        back = pickle.loads(pickle.dumps(msg, protocol=5))
        assert type(back) is type(msg), name
        for f in dataclasses.fields(msg):
            mine, theirs = getattr(msg, f.name), getattr(back, f.name)
            assert repr(mine) == repr(theirs), (name, f.name)
