"""A model that writes to its worker's connection cannot make the driver run anything.

The driver reads a worker's replies as pickles; a sandboxed model runs in the worker process and can reach its
connection. Before the reply unpickler (``executors/wire.py``), a model that sent ``os.system`` as a pickle ran a
command in the driver, outside its sandbox: the first test fails on that code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure, StoredChunk
from ancho.errors import ModelError, OutputError, ParameterError, RunFailed
from ancho.executors.local import LocalExecutor
from ancho.executors.messages import ChunkDone, ChunksDone, Inspected, SummariesDone, WorkerFailed
from ancho.executors.wire import ForgedReply, ReplyUnpickler, receive, send
from ancho.isolation import sandbox as sb
from ancho.loading import FileRef
from ancho.stats import Tally
from ancho.stores.embedded import EmbeddedStore

from ..conftest import EXAMPLES
from .conftest import sandboxed, write_model

FORGER = '''
import ancho


def forge(payload: bytes) -> None:
    """Write ``payload`` as a reply frame on every connection this process has (the worker's)."""
    import gc
    import struct
    from multiprocessing.connection import Connection

    for conn in [o for o in gc.get_objects() if isinstance(o, Connection)]:
        try:
            conn.send_bytes(struct.pack("!I", 0) + payload)
        except Exception:
            pass


def command(target: str) -> bytes:
    return b"cos\\nsystem\\n(S'touch " + target.encode() + b"'\\ntR."


class Forger(ancho.Model):
    """Sends a pickle that calls os.system with a command, in place of its chunk's reply."""

    target: str = ""

    def sequence(self, rng):
        forge(command(self.target))
        return {"x": 1.0}
'''


def reply_sender(result: str) -> str:
    """A model that sends ``result`` (a ChunkResult expression) as its worker's reply, made of Ancho's own classes
    (so the reply unpickler takes it), then returns as usual."""
    return textwrap.dedent(
        """
        import gc
        from multiprocessing.connection import Connection

        import numpy as np

        import ancho
        from ancho.chunk import ChunkResult
        from ancho.executors.messages import ChunkDone
        from ancho.executors.wire import send

        class Sender(ancho.Model):
            def sequence(self, rng):
                for conn in [o for o in gc.get_objects() if isinstance(o, Connection)]:
                    send(conn, ChunkDone(RESULT))
                return {"x": 1.0}
        """
    ).replace("RESULT", result)


def forged_frame(payload: bytes) -> bytes:
    return struct.pack("!I", 0) + payload


def command_pickle(target: Path) -> bytes:
    return b"cos\nsystem\n(S'touch " + str(target).encode() + b"'\ntR."


def pair() -> tuple[Connection, Connection]:
    a, b = socket.socketpair()
    return Connection(a.detach()), Connection(b.detach())


def test_a_sandboxed_model_cannot_run_a_command_in_the_driver(tmp_path, home):
    forger = write_model(tmp_path / "models", "forger.py", FORGER)
    target = tmp_path / "pwned"  # on the host, outside anything the sandbox may write
    with sandboxed(forger.parent) as executor, pytest.raises(ForgedReply, match="os.system"):
        ancho.run(str(forger), {"target": str(target)}, sequences=1, seed=1, store=str(home), executor=executor)
    assert not target.exists()
    run = EmbeddedStore(home).list_runs(limit=1)[0]
    assert run.status == "failed" and "not a reply" in run.error


def test_nor_can_an_unsandboxed_one_or_one_inspected_at_submission(tmp_path, home):
    """The refusal is the driver's, whatever runs the worker: a plain local worker, and the worker a server asks
    to describe a model (``inspect``: the model's module runs there at import), which is replaced after it."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "forger.py").write_text(FORGER)
    target = tmp_path / "pwned"
    (models / "at_import.py").write_text(
        FORGER.replace("class Forger", "forge(command(" + repr(str(target)) + "))\n\n\nclass Forger")
    )
    with LocalExecutor(1) as executor:
        with pytest.raises(ForgedReply):
            ancho.run(str(models / "forger.py"), {"target": str(target)}, sequences=3, seed=1, store=str(home),
                      executor=executor)  # fmt: skip
        with pytest.raises(ForgedReply):
            executor.inspect(FileRef(str(models), "at_import.py", "Forger"))
        assert executor.inspect(FileRef(str(models), "forger.py", "Forger"))["model"]["name"] == "Forger"
    assert not target.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"cos\nsystem\n(S'true'\ntR.", id="os.system"),
        pytest.param(pickle.dumps(eval), id="builtins.eval"),
        pytest.param(pickle.dumps(subprocess.Popen), id="subprocess.Popen"),
        pytest.param(pickle.dumps(np.load), id="numpy.load"),
        pytest.param(pickle.dumps(ancho.run), id="ancho.run"),
        pytest.param(pickle.dumps(textwrap.dedent), id="a module function"),
        pytest.param(b"\x80\x05garbage", id="not a pickle"),
    ],
)
def test_anything_but_a_reply_is_refused_and_named(payload):
    driver, worker = pair()
    worker.send_bytes(forged_frame(payload))
    with pytest.raises(ForgedReply, match="not a reply"):
        receive(driver)


def test_a_frame_asking_for_an_absurd_buffer_is_refused():
    driver, worker = pair()
    worker.send_bytes(struct.pack("!IQ", 1, 1 << 62) + pickle.dumps(None))
    with pytest.raises(ForgedReply):
        receive(driver)


def test_a_reply_over_the_limit_is_refused_before_anything_of_it_is_allocated():
    """A sandboxed worker's replies are bounded by its address space: a forged frame may not make the driver
    allocate (and then fill, as the worker sends) more than a reply the worker built could hold."""
    driver, worker = pair()
    worker.send_bytes(struct.pack("!IQ", 1, 6 << 30) + pickle.dumps(None))  # 6 GiB: NumPy would allocate it lazily
    with pytest.raises(ForgedReply, match="over the worker's 4,294,967,296"):
        receive(driver, 4 << 30)
    driver, worker = pair()
    worker.send_bytes(b"x" * 5000)
    with pytest.raises(ForgedReply, match="frame is longer than the worker's 4,096 bytes"):
        receive(driver, 4096)


def test_a_real_reply_exactly_at_the_limit_reads_back_and_one_byte_less_is_refused():
    rows = 100_000  # (its columns go beside the pickle: the limit counts them with the frame)
    reply = ChunkDone(ChunkResult(0, rows, np.arange(rows), {"x": np.linspace(0, 1, rows)}, [], 0.5))

    def sent() -> Connection:
        driver, worker = pair()

        def sender() -> None:
            with contextlib.suppress(OSError), worker:  # (a refused reply's reader closes its end)
                send(worker, reply)

        threading.Thread(target=sender, daemon=True).start()
        return driver

    raw, on_the_wire = sent(), b""
    while piece := os.read(raw.fileno(), 1 << 20):  # (to the sender's close)
        on_the_wire += piece
    size = len(on_the_wire) - 4  # (less the connection's own length prefix)
    assert np.array_equal(receive(sent(), size).result.columns["x"], reply.result.columns["x"])
    refused = sent()
    with pytest.raises(ForgedReply, match="over the worker's"):
        receive(refused, size - 1)
    refused.close()


def test_a_sandboxed_model_claiming_a_huge_reply_fails_its_run_at_once(tmp_path, home):
    huge = FORGER.replace('struct.pack("!I", 0) + payload', 'struct.pack("!IQ", 1, 6 << 30) + payload')
    path = write_model(tmp_path / "models", "huge.py", huge.replace("forge(command(self.target))", "forge(b'N.')"))
    with sandboxed(path.parent) as executor:
        assert executor.reply_limit == sb.SandboxPolicy().address_space
        with pytest.raises(ForgedReply, match="over the worker's"):
            ancho.run(str(path), sequences=1, seed=1, store=str(home), executor=executor)
    assert LocalExecutor(1).reply_limit is None  # (a worker that is not sandboxed runs the user's own code)


def test_every_reply_a_worker_sends_reads_back():
    rows = 100_000  # large columns go beside the pickle, small ones inside it
    big = ChunkResult(0, rows, np.arange(rows), {"x": np.random.default_rng(1).random(rows)}, [], 0.5)
    small = ChunkResult(0, 3, np.arange(3), {"won": np.array([True, False, True]), "path": np.ones((3, 4))},
                        [Failure(1, "ValueError: no", "Traceback ...")], 0.1)  # fmt: skip
    stored = StoredChunk(0, 10, 10, {"x": "float"}, 0, [], 0.1, {"x": Tally()}, np.ones(10))
    replies = [
        ChunksDone((ChunkDone(small, {"m": 1.5, "l": [1, None, "s"]}), WorkerFailed.of(ModelError("bad model")))),
        ChunkDone(big),
        ChunkDone(stored),
        WorkerFailed.of(ParameterError("{PARAMS} says no", name="p")),
        WorkerFailed(None, "ValueError", "text", "Traceback ..."),
        SummariesDone({"x": [1, 2.5, None, "s", {"k": True}]}),
        Inspected({"name": "M", "parameters": [{"name": "p", "default": float("inf")}]}),
    ]
    for reply in replies:
        assert type(back_of(reply)) is type(reply)
    assert np.array_equal(back_of(ChunkDone(big)).result.columns["x"], big.columns["x"])
    error = back_of(WorkerFailed.of(ParameterError("{PARAMS} says no", name="p"))).exception()
    assert isinstance(error, ParameterError) and error.name == "p"


def back_of(reply):
    """``reply`` sent by a worker and received by the driver (sent by a thread: a large one fills the socket)."""
    driver, worker = pair()
    sending = threading.Thread(target=send, args=(worker, reply))
    sending.start()
    try:
        return receive(driver)
    finally:
        sending.join()


def test_the_unpickler_takes_ancho_errors_but_not_their_module(tmp_path):
    assert ReplyUnpickler.find_class(ReplyUnpickler(open(os.devnull, "rb")), "ancho.errors", "RunFailed") is RunFailed
    with pytest.raises(pickle.UnpicklingError):
        ReplyUnpickler(open(os.devnull, "rb")).find_class("ancho.errors", "re")  # a module the errors module imports


def test_a_summary_function_returning_an_object_says_so_in_its_slot(tmp_path, home):
    """Only plain values cross to the driver: a summary function returning anything else fails in its slot, with
    what it returned named, instead of a class of the user's being unpickled in the driver."""
    path = tmp_path / "odd.py"
    path.write_text(
        textwrap.dedent(
            """
            import datetime
            import ancho

            class Odd(ancho.Model):
                def sequence(self, rng):
                    return {"x": rng.random()}

                @ancho.summary
                def when(self, results):
                    return datetime.date(2026, 12, 7)

                @ancho.summary
                def nested(self, results):
                    return {"fine": 1, "odd": [1, object()]}

                @ancho.summary
                def deep(self, results):
                    value = []
                    for _ in range(150):
                        value = [value]
                    return value

                @ancho.summary
                def fine(self, results):
                    return {"mean": results.x.mean(), "tag": results.x.dtype.name}
            """
        )
    )
    results = ancho.run(str(path), sequences=20, seed=1, store=str(home), workers=1)
    custom = results.summary["custom"]
    assert custom["deep"]["error"] == (
        "TypeError: it returned a list or dict nested more than 100 deep; return a number, string, bool, None, list or "
        "dict"
    )
    assert custom["when"] == {"error": "TypeError: it returned a datetime.date; return a number, string, bool, None, "
                                       "list or dict"}  # fmt: skip
    assert custom["nested"]["error"].startswith("TypeError: it returned a object;")
    assert custom["fine"]["tag"] == "float64" and 0 < custom["fine"]["mean"] < 1
    assert sys.modules.get("odd") is None  # (the user's module never imported in the driver)


def _forged_object_array() -> bytes:
    """An array whose dtype's flags come from the pickle, with an object field filled from the sender's bytes: a
    pointer of the sender's choosing in the driver (NULL here, so that a regression fails instead of crashing)."""
    import io

    dtype, array = object(), object()
    state = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 61)

    class Forger(pickle.Pickler):
        def reducer_override(self, obj):
            if obj is dtype:
                return (np.dtype, ("V8", False, True), state)
            if obj is array:
                return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                        (1, (1,), dtype, False, struct.pack("<Q", 0)))  # fmt: skip
            return NotImplemented

    body = io.BytesIO()
    Forger(body, protocol=4).dump(array)
    return body.getvalue()


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(("|O", (1,), b"\0" * 8), id="an object dtype"),
        pytest.param(("V8,O", (1,), b"\0" * 16), id="an object field"),
        pytest.param(("<f8", (2,), b"\0" * 8), id="too few bytes"),
        pytest.param(("<f8", (-1,), b"\0" * 8), id="a negative dimension"),
        pytest.param(("<f8", (1,), 10**12), id="a count for bytes"),
        pytest.param(np.zeros(1), id="no column at all"),
    ],
)
def test_a_chunk_column_that_is_not_numbers_filling_its_shape_is_refused(column):
    from ancho.chunk import _chunk_result

    class Forger(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, ChunkResult):
                return (_chunk_result, (0, 1, ("<i8", (1,), b"\0" * 8), {"x": column}, [], 0.0))
            return NotImplemented

    import io

    body = io.BytesIO()
    Forger(body, protocol=5).dump(ChunkDone(ChunkResult(0, 1, np.arange(1), {})))
    driver, worker = pair()
    worker.send_bytes(forged_frame(body.getvalue()))
    with pytest.raises(ForgedReply):
        receive(driver)


def test_numpy_s_own_constructors_are_not_taken():
    """NumPy's dtype took its flags from the pickle (an object array of raw pointers); no NumPy global is named."""
    driver, worker = pair()
    worker.send_bytes(forged_frame(_forged_object_array()))
    with pytest.raises(ForgedReply, match="numpy"):
        receive(driver)


def test_output_names_are_checked_again_where_the_results_land(tmp_path, home):
    """A model that sends its own reply (Ancho's classes, so the unpickler takes it) cannot get a name out that
    breaks a CSV or a notebook's string (a report notebook embeds the results as text): the driver checks the first
    chunk's names and kinds itself, as the worker does."""
    path = write_model(
        tmp_path,
        "names.py",
        reply_sender("""ChunkResult(0, 5, np.arange(5), {'x\"\"\"\\nimport os\\n\"\"\"': np.zeros(5)})"""),
    )
    with LocalExecutor(1) as executor, pytest.raises(OutputError, match="output names are identifiers"):
        ancho.run(str(path), sequences=5, seed=1, store=str(home), executor=executor)
    run = EmbeddedStore(home).list_runs(limit=1)[0]
    assert run.status == "failed" and run.schema == {}


def test_a_reply_naming_another_chunk_s_range_is_refused(tmp_path, home):
    """A model that sends its own reply for sequences it was not asked for (another worker's chunk, or past the
    run's end) fails the run: the driver checks each reply against the request it answers."""
    path = write_model(
        tmp_path, "ranges.py", reply_sender('ChunkResult(1000, 1008, np.arange(1000, 1008), {"x": np.full(8, 99.0)})')
    )
    with LocalExecutor(1) as executor, pytest.raises(ForgedReply, match="not the 0..8 .exclusive. asked for"):
        ancho.run(str(path), sequences=2000, seed=1, store=str(home), executor=executor)
    run = EmbeddedStore(home).list_runs(limit=1)[0]
    assert run.status == "failed" and run.done == 0


def _stored(start: int, stop: int, rows: int, first: np.ndarray | None = None) -> StoredChunk:
    return StoredChunk(start, stop, rows, {"x": "float"}, 0, [], 0.1, {}, first)


def _failed(failures) -> ChunkResult:
    """A chunk of 0..7 with rows for 1..7 and ``failures``."""
    return ChunkResult(0, 8, np.arange(1, 8), {"x": np.zeros(7)}, failures)


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        pytest.param(ChunkResult(8, 16, np.arange(8, 16), {"x": np.zeros(8)}), "names sequences 8..16", id="range"),
        pytest.param(ChunkResult(0, 8, np.arange(9), {"x": np.zeros(9)}), "not within 0..8", id="too many rows"),
        pytest.param(ChunkResult(0, 8, np.arange(5, 13), {"x": np.zeros(8)}), "not within", id="rows past the end"),
        pytest.param(ChunkResult(0, 8, np.arange(-1, 7), {"x": np.zeros(8)}), "not within", id="rows before"),
        pytest.param(ChunkResult(0, 8, np.arange(8), {"x": np.zeros(3)}), "output 'x' has (3,) rows", id="short"),
        pytest.param(ChunkResult(0, 8, np.arange(8.0), {"x": np.zeros(8)}), "not within", id="float numbers"),
        pytest.param(_stored(0, 8, 9), "claims 9 rows", id="stored: rows"),
        pytest.param(_stored(0, 8, 8, np.zeros(2)), "claims 8 rows", id="stored: first values"),
        pytest.param(_stored(0, 16, 8), "names sequences 0..16", id="stored: range"),
        pytest.param(_failed([Failure(0, 5, None)]), "a failure that is not", id="failure of other types"),
        pytest.param(_failed([Failure(99, "E", "")]), "a failure that is not a sequence of 0..8", id="failure outside"),
        pytest.param(_failed([Failure(3, "E", "")]), "claim some of its 8 sequences twice", id="failure and row"),
        pytest.param(_failed([Failure(0, "E", "")] * 2), "twice", id="a failure twice"),
        pytest.param(_failed([Failure(0, "E", ""), Failure(1, "E", "")]), "twice", id="failures and rows too many"),
        pytest.param(_failed(7), "not a list but 'int'", id="failures not a list"),
        pytest.param(_failed([(0, "E", "")]), "a failure that is not", id="failure not a Failure"),
        pytest.param(
            ChunkResult(0, 8, np.array([1, 3, 2, 4, 5, 6, 7]), {"x": np.zeros(7)}, [Failure(0, "E", "")]),
            "do not ascend",
            id="stored ids out of order",
        ),  # fmt: skip
        pytest.param(ChunkResult(0, 8, np.arange(8), {"x": np.zeros(8)}, [], "slow"), "compute time", id="seconds"),
        pytest.param(ChunkResult(0, 8, np.arange(8), {"x": np.zeros(8)}, [], float("nan")), "compute", id="nan s"),
        pytest.param(ChunkResult(0, 8, np.arange(8), {"x": np.zeros(8)}, [], -1.0), "compute", id="negative s"),
        pytest.param(StoredChunk(0, 8, 6, {"x": "float"}, 3), "claims 3 failed sequences", id="stored: failed"),
        pytest.param(StoredChunk(0, 8, 8, {"x": "float"}, 0, 7), "not a list", id="stored: failures"),
        pytest.param(StoredChunk(0, 8, 8, {"x": "float"}, 0, [], 0.1, {"x": Tally(9)}), "tallies", id="tally n"),
        pytest.param(StoredChunk(0, 8, 8, {"x": "float"}, 0, [], 0.1, {"x": Tally(8, "m")}), "tallies", id="mean"),
        pytest.param(
            StoredChunk(0, 8, 8, {"x": "float"}, 0, [], 0.1, {"x": Tally(8, 0.0, 0.0, {"x>1": 9})}),
            "tallies",
            id="hits",
        ),  # fmt: skip
        pytest.param(StoredChunk(0, 8, 8, {"x": "float"}, 0, [], 0.1, {"x": (8, 0.0)}), "tallies", id="not a tally"),
    ],
)
def test_what_a_reply_may_claim_of_its_range(result, problem):
    from ancho.claims import misfit

    assert problem in misfit(result, 0, 8)
    assert misfit(ChunkResult(0, 8, np.arange(1, 8), {"x": np.zeros(7)}, [Failure(0, "E", "")]), 0, 8) is None
    assert misfit(ChunkResult(0, 8, np.array([0, 2, 5]), {"x": np.zeros(3)}, [Failure(1, "E", "")], 2), 0, 8) is None
    assert misfit(_stored(0, 8, 8, np.zeros(8)), 0, 8) is None
    tally = {"x": Tally(6, 0.5, 2.0, {"x>1": 3}), "walk": Tally(6, 0.0, 0.0, {})}
    assert misfit(StoredChunk(0, 8, 6, {"x": "float"}, 2, [Failure(4, "E", "tb")], 0.1, tally), 0, 8) is None


def test_a_sandboxed_model_forging_its_failures_fails_its_run_and_stores_none(tmp_path, home):
    """Failures of sequences the chunk did not run, or with numbers for text, were stored as claimed or failed deep
    in the store (a NOT NULL constraint); now the run fails with a one-line ForgedReply and keeps no such failure."""
    sender = reply_sender("ChunkResult(0, 5, np.arange(1, 5), {'x': np.zeros(4)}, [Failure(99, 5, None)])")
    path = write_model(tmp_path, "failures.py", sender.replace("import ChunkResult", "import ChunkResult, Failure"))
    with sandboxed(path.parent) as executor, pytest.raises(ForgedReply, match="a failure that is not a sequence"):
        ancho.run(str(path), sequences=5, seed=1, store=str(home), executor=executor, max_failures=10)
    store = EmbeddedStore(home)
    run = store.list_runs(limit=1)[0]
    assert run.status == "failed" and run.done == 0 and run.failures == 0 and store.failures(run.id) == []


@pytest.mark.parametrize("block", [-1, 0, True, 2.5, "8", 10**12])
def test_a_block_size_from_a_worker_s_description_is_checked_where_chunks_are_planned(block):
    """A batch model's description comes from its worker (a model can rewrite it); a block of -1 had the plan hand
    out chunks (0, -1), (-1, -2)… without end."""
    from ancho.engine import Plan
    from ancho.studies.plan import StudyPlan

    with pytest.raises(ModelError, match="block"):
        Plan([(0, 100)], 2, None, block)
    with pytest.raises(ModelError, match="block"):
        StudyPlan([], 2, block, (), lambda batch: None)


# -- a model's description, as its worker reports it (ancho.descriptions) ------------------------------------------


def _described(**changes):
    from ancho.model import describe_model

    sys.path.insert(0, str(EXAMPLES))
    from option import BSCall

    return {**describe_model(BSCall), **changes}


DEEP: list = []
for _ in range(200):
    DEEP = [DEEP]


@pytest.mark.parametrize(
    "info",
    [
        pytest.param(None, id="not a dict"),
        pytest.param({"name": "X"}, id="fields missing"),
        pytest.param(_described(extra=1), id="a field too many"),
        pytest.param(_described(name=5), id="name a number"),
        pytest.param(_described(name="os.system"), id="name not a class name"),
        pytest.param(_described(doc=None), id="doc not text"),
        pytest.param(_described(parameters="x"), id="parameters not a list"),
        pytest.param(_described(parameters=[{"name": "a"}]), id="parameter fields missing"),
        pytest.param(
            _described(parameters=[{"name": "a", "type": "float", "default": 1.0, "required": "no"}]),
            id="required not a bool",
        ),  # fmt: skip
        pytest.param(
            _described(parameters=[{"name": "a", "type": "float", "default": DEEP, "required": False}]),
            id="default nested without end",
        ),  # fmt: skip
        pytest.param(
            _described(parameters=[{"name": "a", "type": "float", "default": {1: 2}, "required": False}]),
            id="default with a number as key",
        ),  # fmt: skip
        pytest.param(
            _described(parameters=[{"name": "a", "type": "int", "default": 1, "required": False}] * 2),
            id="a parameter twice",
        ),  # fmt: skip
        pytest.param(_described(summaries=7), id="summaries not a list"),
        pytest.param(_described(kind="evil"), id="kind unknown"),
        pytest.param(_described(kind="sequence", block=8), id="one-at-a-time with a block"),
        pytest.param(_described(block=None), id="batch without a block"),
        pytest.param(_described(block=True), id="block a bool"),
        pytest.param(_described(block=-1), id="block negative"),
        pytest.param(_described(block="8"), id="block text"),
    ],
)
def test_a_forged_model_description_is_a_one_line_model_error(info):
    from ancho.descriptions import checked_description, checked_inspection

    with pytest.raises(ModelError, match="model option.py:BSCall") as err:
        checked_description(info, "option.py:BSCall")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="option.py:BSCall"):
        checked_inspection({"entry": "option.py:BSCall", "source_hash": "0" * 64, "model": info}, "option.py:BSCall")


@pytest.mark.parametrize(
    "found",
    [
        pytest.param([], id="not a dict"),
        pytest.param({"entry": 1, "source_hash": "h", "model": _described()}, id="entry a number"),
        pytest.param({"entry": "m.py:X", "source_hash": None, "model": _described()}, id="hash missing"),
        pytest.param({"entry": "m.py:X", "source_hash": "h", "model": _described(), "params": [1]}, id="params a list"),
        pytest.param({"entry": "m.py:X", "source_hash": "h", "model": _described(), "error": 3}, id="error a number"),
    ],
)
def test_a_forged_inspection_is_a_model_error(found):
    from ancho.descriptions import checked_inspection

    with pytest.raises(ModelError, match="model m.py:X"):
        checked_inspection(found, "m.py:X")


def test_every_real_description_is_taken_as_it_is():
    """What describe_model gives for every example model and a model with every kind of parameter passes unchanged."""
    from ancho.descriptions import checked_description, checked_inspection
    from ancho.model import describe_model

    sys.path.insert(0, str(EXAMPLES))
    import gambler
    import option
    import sir

    class Kinds(ancho.Model):
        a: int = 1
        b: float
        c: tuple[int, int] = (1, 2)
        d: list[float] = [0.5]
        e: dict[str, float] = {"x": 1.0}
        f: str | None = None

        def sequence(self, rng):
            return {}

    for cls in (gambler.Gambler, option.EuropeanOption, option.BSCall, sir.SIR, Kinds):
        info = describe_model(cls)
        assert checked_description(info, cls.__name__) is info
    with LocalExecutor(1) as executor:
        found = executor.inspect(FileRef(str(EXAMPLES), "option.py", "BSCall"), {"k": 90})
    assert found["model"]["kind"] == "batch" and found["model"]["block"] == 4096 and found["params"]["k"] == 90.0
    assert checked_inspection(found, "option.py:BSCall") is found


DEEP_SUMMARY = """
import gc, pickle, struct
from multiprocessing.connection import Connection
import ancho
from ancho.executors.messages import SummariesDone


def reply(values):
    \"\"\"A SummariesDone frame of ``values``, its "MARK" string replaced by a list nested 200,000 deep (written as
    opcodes: pickling such a list would exhaust the sender's own stack).\"\"\"
    raw = pickle.dumps(SummariesDone(values), protocol=4)
    return struct.pack("!I", 0) + raw.replace(b"\\x8c\\x04MARK\\x94", b"]" * 200_000 + b"a" * 199_999)


class Sender(ancho.Model):
    def sequence(self, rng):
        return {"x": 1.0}

    @ancho.summary
    def s(self, results):
        for conn in [o for o in gc.get_objects() if isinstance(o, Connection)]:
            conn.send_bytes(reply(VALUES))
        return 1.0
"""


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        pytest.param({"s": "MARK"}, "not plain JSON", id="nested 200,000 deep"),
        pytest.param({"s": 1.0, "other": 2.0}, "not ['s']", id="another summary's value"),
        pytest.param({5: 1.0}, "not ['s']", id="a number for a name"),
        pytest.param([1.0], "not ['s']", id="not a dict"),
    ],
)
def test_forged_summary_values_fail_the_run_with_one_line(tmp_path, home, values, problem):
    """A model's summary function writing its own SummariesDone: the run fails with a one-line ForgedReply (before,
    a RecursionError in the driver for the deep one, and another summary's value kept as given)."""
    path = write_model(tmp_path, "deep.py", DEEP_SUMMARY.replace("VALUES", repr(values)))
    with sandboxed(path.parent) as executor, pytest.raises(ForgedReply, match=re.escape(problem)) as err:
        ancho.run(str(path), sequences=5, seed=1, store=str(home), executor=executor)
    assert "\n" not in str(err.value)
    run = EmbeddedStore(home).list_runs(limit=1)[0]
    assert run.status == "failed" and "summary values" in run.error and run.summary is None


def test_a_study_chunk_s_summary_values_are_checked_with_it():
    """A study's tiny point runs its summary functions with its chunk; a forged reply's values for them are refused
    as the run's summary values are (they reached the study's record unchecked)."""
    from ancho.claims import misfit

    ok = ChunkResult(0, 8, np.arange(8), {"x": np.zeros(8)})
    assert misfit(ok, 0, 8) is None and misfit(ok, 0, 8, {"s": {"error": "E"}}, ("s",)) is None
    assert "not ['s']" in misfit(ok, 0, 8, None, ("s",))
    assert "not []" in misfit(ok, 0, 8, {"s": 1.0})
    assert "not plain JSON" in misfit(ok, 0, 8, {"s": DEEP}, ("s",))
    assert "names sequences" in misfit(ChunkResult(8, 16, np.arange(8, 16), {}), 0, 8, {"s": 1.0}, ("s",))
