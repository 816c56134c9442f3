"""The engine through ancho.run: reproducibility, retries, resume, failures, goals, cancel."""

import os
import threading
import time

import numpy as np
import pytest

import ancho
from ancho import engine
from ancho.engine import Plan, RunHandle, RunSpec, create_record, execute, gaps
from ancho.errors import ExpressionError, InputError, OutputError, RunCancelled, RunFailed
from ancho.executors.local import LocalExecutor
from ancho.loading import loaded_from_class

from .models import Flaky, KillsWorkerOnce, Mixed, Slow, Trivial


def frame_of(results):
    return results.frame.drop(columns=[]).reset_index(drop=True)


def test_same_outputs_for_any_workers_and_chunking(store, monkeypatch):
    a = ancho.run(Mixed, sequences=3000, seed=11, workers=1, store=store)
    b = ancho.run(Mixed, sequences=3000, seed=11, workers=2, store=store)
    monkeypatch.setattr(engine, "INITIAL_CHUNK", 1)
    monkeypatch.setattr(engine, "MAX_CHUNK", 37)
    c = ancho.run(Mixed, sequences=3000, seed=11, workers=2, store=store)
    fa, fb, fc = frame_of(a), frame_of(b), frame_of(c)
    assert fa.equals(fb) and fa.equals(fc)
    assert len(store.completed_ranges(c.run_id)) > len(store.completed_ranges(a.run_id))
    assert a.summary["outputs"] == c.summary["outputs"]


def test_outputs_equal_the_documented_streams(store):
    from ancho.streams import reference_generator

    r = ancho.run(Trivial, sequences=50, seed=5, workers=2, store=store)
    assert r.frame.x.tolist() == [reference_generator(5, i).random() for i in range(50)]


def test_a_run_without_seed_records_one(store):
    r = ancho.run(Trivial, sequences=10, store=store)
    again = ancho.run(Trivial, sequences=10, seed=r.summary["seed"], store=store)
    assert r.frame.x.tolist() == again.frame.x.tolist()


def test_summary_shape(store):
    r = ancho.run(
        "examples/gambler.py",
        params={"stake": 3, "goal": 10, "p": 0.45},
        sequences=2000,
        seed=3,
        targets=["rounds>=30"],
        store=store,
    )
    s = r.summary
    assert list(s) == ["run", "status", "sequences", "seed", "params", "outputs", "targets", "custom", "failures"]
    assert (s["run"], s["status"], s["sequences"], s["seed"], s["failures"]) == (r.run_id, "succeeded", 2000, 3, 0)
    assert s["params"] == {"stake": 3, "goal": 10, "p": 0.45}
    assert list(s["outputs"]["rounds"]) == [
        "count",
        "mean",
        "std",
        "sem",
        "ci95",
        "min",
        "p5",
        "p25",
        "p50",
        "p75",
        "p95",
        "max",
    ]
    assert s["targets"][0]["expr"] == "rounds>=30"
    assert s["targets"][0]["probability"] == pytest.approx((r.frame.rounds >= 30).mean())
    assert set(s["custom"]) == {"median_rounds_when_won"}
    rec = store.get_run(r.run_id)
    assert rec.source_hash and rec.ancho_version == ancho.__version__ and rec.started <= rec.finished


def test_instance_params_are_the_starting_point(store):
    r = ancho.run(Mixed(n=2), sequences=100, seed=1, store=store)
    assert r.summary["params"] == {"n": 2} and set(r.frame.k) <= {0, 1}


def test_a_killed_worker_loses_nothing(store, tmp_path):
    marker = tmp_path / "killed"
    r = ancho.run(
        KillsWorkerOnce, params={"marker": str(marker), "at": 40}, sequences=2000, seed=2, workers=2, store=store
    )
    assert marker.exists()
    rec = store.get_run(r.run_id)
    assert rec.retries >= 1 and rec.status == "succeeded"
    assert r.frame.sequence.tolist() == list(range(2000))
    clean = ancho.run(KillsWorkerOnce, params={"marker": str(marker), "at": 40}, sequences=2000, seed=2, store=store)
    assert r.frame.equals(clean.frame)


def test_failures_fail_the_run_unless_allowed(store):
    with pytest.raises(RunFailed, match=r"sequence \d+ failed: ZeroDivisionError: unlucky draw .*--max-failures"):
        ancho.run(Flaky, sequences=500, seed=1, store=store)
    failed = store.list_runs()[0]
    assert failed.status == "failed" and "ZeroDivisionError" in failed.error and failed.summary is None
    r = ancho.run(Flaky, sequences=500, seed=1, max_failures=500, store=store)
    n_failed = r.summary["failures"]
    assert 0 < n_failed < 500 and r.summary["outputs"]["x"]["count"] == 500 - n_failed
    assert len(r.failures) == n_failed and "unlucky draw" in r.failures[0].traceback


def test_bad_outputs_fail_the_run_with_the_reason(store, write_model):
    path = write_model("""
        class M(ancho.Model):
            def sequence(self, rng):
                return {"x": "text"}
    """)
    with pytest.raises(OutputError, match="output 'x' of sequence 0 of M is str"):
        ancho.run(str(path), sequences=10, store=store)
    rec = store.list_runs()[0]
    assert rec.status == "failed" and "output 'x'" in rec.error


def test_target_naming_no_output_fails_at_once(store):
    with pytest.raises(ExpressionError, match="target 'nope>=1' names output 'nope'"):
        ancho.run(Trivial, sequences=10**6, targets=["nope>=1"], store=store)
    assert store.list_runs()[0].done < 10**6


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"sequences": 0}, "sequences must be between 1"),
        ({"sequences": -5}, "sequences must be between 1"),
        ({"sequences": "many"}, "sequences must be a whole number"),
        ({"sequences": 10**13}, "sequences must be between"),
        ({"seed": -1}, "seed must be between 0"),
        ({"max_sequences": 10}, "max_sequences caps a precision goal: give it with until"),
        ({"until": "mean(x)+-0.1", "sequences": 100, "max_sequences": 10}, "below sequences"),
        ({"workers": 0}, "workers must be a whole number"),
        ({"executor": "mesos://x"}, "unknown executor"),
        ({"params": {"nope": 1}}, "unknown parameter 'nope'"),
    ],
)
def test_bad_input_is_rejected_before_anything_runs(store, kwargs, needle):
    with pytest.raises(InputError, match=needle):
        ancho.run(Trivial, store=store, **kwargs)
    assert store.list_runs() == []


def test_precision_goal_runs_until_met(store):
    r = ancho.run(Trivial, sequences=1000, seed=4, until="mean(x)+-0.002", store=store)
    u = r.summary["until"]
    assert u["met"] and u["half_width"] <= 0.002
    n = r.summary["sequences"]
    # sd of U(0,1) is 0.2887: about (1.96*0.2887/0.002)^2 = 80,000 are needed; the engine must not overshoot wildly
    assert 60_000 < n < 160_000
    assert r.summary["outputs"]["x"]["ci95"][1] - r.summary["outputs"]["x"]["mean"] <= 0.002


def test_precision_goal_on_a_probability_and_relative(store):
    r = ancho.run(Trivial, sequences=500, seed=4, until="p(x>=0.9)+-0.01", store=store)
    assert r.summary["until"]["met"]
    r2 = ancho.run(Trivial, sequences=500, seed=4, until="mean(x)+-1%", store=store)
    s = r2.summary
    assert s["until"]["met"] and s["until"]["goal"] == pytest.approx(0.01 * s["outputs"]["x"]["mean"], rel=1e-6)


def test_precision_goal_stops_at_the_cap(store):
    r = ancho.run(Trivial, sequences=100, seed=4, until="mean(x)+-0.0001", max_sequences=5000, store=store)
    assert r.summary["sequences"] == 5000 and r.summary["until"]["met"] is False


def test_resume_keeps_completed_chunks_and_matches(store, monkeypatch):
    loaded = loaded_from_class(Mixed)
    spec = RunSpec.build(loaded, {}, 4000, 9)
    rec = create_record(loaded, spec, "local", 2)
    store.create_run(rec)
    reference = ancho.run(Mixed, sequences=4000, seed=9, store=store)
    # a first, interrupted attempt: only the first chunks
    calls = {"n": 0}
    original = store.write_chunk

    def crash_after_three(run_id, result):
        original(run_id, result)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_chunk", crash_after_three)
    with LocalExecutor(2) as ex, pytest.raises(KeyboardInterrupt):
        execute(loaded, spec, store, ex, rec)
    monkeypatch.setattr(store, "write_chunk", original)
    kept = store.completed_ranges(rec.id)
    assert len(kept) == 3
    computed = []
    monkeypatch.setattr(
        store, "write_chunk", lambda run_id, r: (computed.append((r.start, r.stop)), original(run_id, r))
    )
    with LocalExecutor(2) as ex:
        final = execute(loaded, spec, store, ex, store.get_run(rec.id))
    assert final.status == "succeeded"
    assert not set(computed) & set(kept)
    assert store.read_frame(rec.id).equals(reference.frame)


def test_cancel_from_another_thread(store, monkeypatch):
    """A cancel kills the workers mid-chunk instead of letting them drain: at most the chunk the driver already
    holds is stored after it, and every worker process is gone when execute() returns (the latency is measured in
    benchmarks/bench_cancel.py)."""
    import psutil

    loaded = loaded_from_class(Slow)
    spec = RunSpec.build(loaded, {"seconds": 0.01}, 100_000, 1)
    rec = create_record(loaded, spec, "local", 2)
    store.create_run(rec)
    handle = RunHandle()
    workers: list[psutil.Process] = []
    # processes of earlier tests in this session (a session's server, a Spark driver) are not this run's workers
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    writes_after_cancel = []
    original = store.write_chunk
    monkeypatch.setattr(
        store,
        "write_chunk",
        lambda run_id, r: (handle.cancelled and writes_after_cancel.append(r.start), original(run_id, r)),
    )

    def cancel_once_started():
        from ancho.stores.embedded import EmbeddedStore

        watcher = EmbeddedStore(store.home)
        while watcher.get_run(rec.id).done == 0:
            time.sleep(0.05)
        # (with this thread alive the workers come from a zygote, which stays for the next run: not a worker)
        zygote = lambda p: p.ppid() == os.getpid() and "ancho.executors.zygote" in p.cmdline()  # noqa: E731
        workers.extend(p for p in psutil.Process().children(recursive=True) if p.pid not in before and not zygote(p))
        handle.cancel()

    threading.Thread(target=cancel_once_started, daemon=True).start()
    with LocalExecutor(2) as ex, pytest.raises(RunCancelled):
        execute(loaded, spec, store, ex, rec, handle=handle)
    final = store.get_run(rec.id)
    assert final.status == "cancelled" and 0 < final.done < 100_000
    assert len(writes_after_cancel) <= 1, writes_after_cancel
    assert sum(stop - start for start, stop in store.completed_ranges(rec.id)) == final.done  # counted = stored
    assert len(workers) >= 2, workers
    alive = [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"workers {alive} outlived the cancel"


def test_a_cancel_during_the_summary_stops_it_within_one_output(store, monkeypatch):
    """The summary phase of a run with many outputs took minutes; a cancel then (a server's POST .../cancel) was
    answered but the run went on describing every output and ended "succeeded". Cancelled from the summary's first
    output, it describes no other and ends "cancelled"."""
    from ancho import stats

    loaded = loaded_from_class(Mixed)  # (four outputs)
    spec = RunSpec.build(loaded, {}, 200, 1)
    rec = create_record(loaded, spec, "local", 1)
    store.create_run(rec)
    handle = RunHandle()
    described = []
    original = stats.describe

    def describe_then_cancel(column, kind):
        described.append(kind)
        handle.cancel()
        return original(column, kind)

    monkeypatch.setattr(stats, "describe", describe_then_cancel)
    with LocalExecutor(1) as ex, pytest.raises(RunCancelled):
        execute(loaded, spec, store, ex, rec, handle=handle)
    assert len(described) == 1, described
    final = store.get_run(rec.id)
    assert final.status == "cancelled" and final.summary is None and final.done == 200


def test_gaps():
    assert gaps([], 10) == [(0, 10)]
    assert gaps([(0, 3), (5, 7)], 10) == [(3, 5), (7, 10)]
    assert gaps([(0, 10)], 10) == []
    assert gaps([(2, 4)], 3) == [(0, 2)]


def test_plan_sizes_grow_then_share_the_tail():
    p = Plan([(0, 1_000_000)], workers=2)
    from ancho.chunk import ChunkResult

    sizes = []
    while True:
        c = p.next()
        if c is None:
            break
        sizes.append(c.size)
        p.measure(ChunkResult(c.start, c.stop, np.arange(c.start, c.stop), {}, [], c.size * 1e-6))
    assert sizes[0] == engine.INITIAL_CHUNK
    assert max(sizes) <= engine.MAX_CHUNK
    assert sum(sizes) == 1_000_000
    assert sizes[-1] < max(sizes)  # the tail is split


def test_plan_keeps_a_chunks_results_under_the_byte_cap():
    """Fast sequences with 1,000-step trajectories: chunks stop at MAX_CHUNK_BYTES, not at MAX_CHUNK rows."""
    from ancho.chunk import ChunkResult

    p = Plan([(0, 1_000_000)], workers=2)
    sizes = []
    while (c := p.next()) is not None:
        sizes.append(c.size)
        walk = np.zeros((c.size, 1000))
        p.measure(ChunkResult(c.start, c.stop, np.arange(c.start, c.stop), {"walk": walk}, [], c.size * 1e-7))
    assert sum(sizes) == 1_000_000
    assert max(sizes) * 1000 * 8 <= engine.MAX_CHUNK_BYTES < (max(sizes) + 1) * 1000 * 8


def test_a_plain_run_imports_neither_pandas_nor_scipy(home):
    """Start-up budget: pandas and SciPy cost over a second to import; a run without custom summaries needs neither."""
    import subprocess
    import sys

    code = (
        "import sys, ancho\n"
        "from tests.models import Trivial\n"
        "ancho.run(Trivial, sequences=100, seed=1)\n"
        "print('pandas' in sys.modules, 'scipy' in sys.modules)\n"
    )
    from .conftest import ROOT

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_inspect_in_a_worker(write_model):
    path = write_model("""
        class M(ancho.Model):
            '''Doc.'''
            n: int = 3

            def sequence(self, rng):
                return {"x": self.n}
    """)
    with LocalExecutor(1) as ex:
        out = ex.inspect(str(path), {"n": "5"})
        assert out["entry"] == "model.py:M" and out["params"] == {"n": 5} and len(out["source_hash"]) == 64
        assert out["model"]["parameters"][0]["name"] == "n" and out["model"]["doc"] == "Doc."
        assert "parameter 'n' expects int" in ex.inspect(str(path), {"n": "x"})["error"]
        with pytest.raises(Exception, match="no ancho.Model subclass named 'Nope'"):
            ex.inspect(f"{path}:Nope", None)


def test_a_summary_phase_that_kills_its_worker_fails_the_run(store, write_model):
    path = write_model("""
        import os

        class M(ancho.Model):
            def sequence(self, rng):
                return {"x": rng.random()}

            @ancho.summary
            def dies(self, results):
                os._exit(9)
    """)
    with pytest.raises(RunFailed, match="died"):
        ancho.run(str(path), sequences=50, store=store)
    rec = store.list_runs()[0]
    assert rec.status == "failed" and rec.finished and "died" in rec.error


def test_an_absurd_precision_goal_stops_at_the_cap(store):
    r = ancho.run(Trivial, sequences=10, seed=1, until="mean(x)+-1e-300%", max_sequences=2000, store=store)
    assert r.summary["sequences"] == 2000 and r.summary["until"]["met"] is False


def test_stored_chunks_without_a_recorded_schema_are_resumed_not_redone(store):
    """A pass that stored every chunk but was killed before recording their outputs (a study's packed point, a
    cluster task writing the store): the resume reads the outputs' kinds from the chunks and recomputes nothing."""
    loaded = loaded_from_class(Trivial)
    spec = RunSpec.build(loaded, {}, 500, 4)
    rec = create_record(loaded, spec, "local", 1)
    store.create_run(rec)
    with LocalExecutor(1) as ex:
        first = execute(loaded, spec, store, ex, rec)
    chunks = sorted(p.stat().st_mtime_ns for p in (store.home / "runs" / rec.id).rglob("*.parquet"))
    store.update_run(rec.id, schema={}, status="running", summary=None)
    with LocalExecutor(1) as ex:
        again = execute(loaded, spec, store, ex, store.get_run(rec.id))
    assert again.status == "succeeded" and again.schema == first.schema
    assert again.summary["outputs"] == first.summary["outputs"] and again.summary["sequences"] == 500
    assert sorted(p.stat().st_mtime_ns for p in (store.home / "runs" / rec.id).rglob("*.parquet")) == chunks


def test_a_store_given_as_a_path_or_a_folder_string_is_the_same_store(tmp_path):
    """``store=`` takes a path object as it takes the folder's name; anything else is a one-line error."""
    from .conftest import EXAMPLES

    results = ancho.run(f"{EXAMPLES}/gambler.py", {"stake": 2, "goal": 4}, sequences=20, seed=1, store=tmp_path)
    assert ancho.stores.open_store(str(tmp_path)).get_run(results.run_id).status == "succeeded"
    with pytest.raises(InputError, match="store must be a URL or folder, got 3"):
        ancho.stores.open_store(3)  # type: ignore[arg-type]
