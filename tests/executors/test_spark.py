"""The Spark executor against a real standalone cluster (``scripts/services start spark``).

The master comes from ``ANCHO_TEST_SPARK_URL`` (``scripts/test`` exports it);
without it these tests skip, but under CI they fail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest

import ancho
from ancho.engine import RunHandle, RunSpec, create_record, execute
from ancho.errors import OutputError, RunCancelled, RunFailed

from ..conftest import EXAMPLES, ROOT
from ..models import Flaky, Mixed, Slow

pytestmark = [pytest.mark.spark, pytest.mark.slow]

URL = os.environ.get("ANCHO_TEST_SPARK_URL", "")


@pytest.fixture(scope="module")
def spark(spark_url):
    """One executor (and so one Spark session) for the module: the session start-up is paid once."""
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(URL).start()
    yield ex
    ex.close()


def same_run(a, b):
    """Identical per-sequence outputs, failures and summaries (but for the run ids)."""
    fa, fb = a.frame, b.frame
    assert list(fa.columns) == list(fb.columns)
    assert all(fa[c].dtype == fb[c].dtype for c in fa.columns)
    assert fa.equals(fb)
    assert [(f.sequence, f.error) for f in a.failures] == [(f.sequence, f.error) for f in b.failures]
    sa = {k: v for k, v in a.summary.items() if k != "run"}
    sb = {k: v for k, v in b.summary.items() if k != "run"}
    assert sa == sb


@pytest.mark.parametrize(
    "model, params, sequences, max_failures",
    [
        (Mixed, {"n": 7}, 20_000, 0),
        (str(EXAMPLES / "gambler.py"), {"stake": 4, "goal": 12, "p": 0.48}, 5_000, 0),
        (Flaky, {"every": 50}, 10_000, 1_000),
    ],
    ids=["mixed", "gambler-file", "failures-allowed"],
)
def test_identical_to_local(spark, store, model, params, sequences, max_failures):
    calls = []
    r = ancho.run(
        model,
        params,
        sequences=sequences,
        seed=2024,
        executor=spark,
        store=store,
        targets=[],
        max_failures=max_failures,
        progress=lambda d, t: calls.append(d),
    )
    local = ancho.run(model, params, sequences=sequences, seed=2024, workers=2, store=store, max_failures=max_failures)
    assert r.status == "succeeded" and r.record.done == sequences
    same_run(r, local)
    if max_failures:
        assert 0 < r.summary["failures"] <= max_failures
    # progress per finished chunk: about TASKS_PER_CORE chunks per core, each reported
    assert calls[0] == 0 and calls[-1] == sequences and len(calls) >= 1 + 2 * spark.workers


def test_model_folder_is_shipped(spark, store, write_model):
    """A model given by path runs from the zipped copy Spark unpacked on the executors, not from our folder."""
    path = write_model(
        """
        import helper

        class Shipped(ancho.Model):
            def sequence(self, rng):
                return {"x": helper.draw(rng), "from_archive": ".zip" in __file__}
        """
    )
    (path.parent / "helper.py").write_text("def draw(rng):\n    return float(rng.random())\n")
    r = ancho.run(str(path), sequences=200, seed=3, executor=spark, store=store)
    assert r.frame.from_archive.all()
    local = ancho.run(str(path), sequences=200, seed=3, workers=2, store=store)
    assert r.frame.x.equals(local.frame.x) and not local.frame.from_archive.any()


def test_precision_goal_batches(spark, store):
    kw = dict(sequences=500, seed=8, until="mean(u)+-0.004", max_sequences=40_000, store=store)
    r = ancho.run(Mixed, executor=spark, **kw)
    local = ancho.run(Mixed, workers=2, **kw)
    assert r.record.done == local.record.done > 500
    # the goal's running half-width is summed chunk by chunk in arrival order: equal up to rounding
    hr, hl = r.summary.pop("until"), local.summary.pop("until")
    assert hr.pop("half_width") == pytest.approx(hl.pop("half_width"), rel=1e-12) and hr == hl
    same_run(r, local)


def _executor_jvms(app_id: str):
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or ())
        if "CoarseGrainedExecutorBackend" in cmd and app_id in cmd:
            found.append(p)
    return found


def failed_tasks(spark) -> int:
    """How many task attempts of the executor's latest run failed (and so were retried by Spark)."""
    tracker = spark.context.statusTracker()
    stages = [s for j in tracker.getJobIdsForGroup(spark.last_group) for s in tracker.getJobInfo(j).stageIds]
    return sum(tracker.getStageInfo(s).numFailedTasks for s in stages if tracker.getStageInfo(s))


def _running_tasks(sc) -> int:
    """Tasks running now on the application's executors (Spark's status tracker, through the JVM)."""
    return sum(info.numRunningTasks() for info in sc._jsc.sc().statusTracker().getExecutorInfos())


def _wait_for_executors(sc, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sc._jsc.sc().getExecutorMemoryStatus().size() < n + 1:  # + the driver
        assert time.monotonic() < deadline, "the cluster did not get its executors back"
        time.sleep(0.5)


def test_executor_killed_mid_run(spark, store):
    if "127.0.0.1" not in URL and "localhost" not in URL:
        pytest.skip("kills an executor JVM: needs the cluster on this machine")
    sc = spark.context
    jvms = _executor_jvms(sc.applicationId)
    assert jvms, "no executor JVM of this application found"
    params = {"seconds": 0.002}
    n = 3000  # ~6 s of sleeping over 2 cores
    box: dict = {}

    def run():
        try:
            box["r"] = ancho.run(Slow, params, sequences=n, seed=77, executor=spark, store=store)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while _running_tasks(sc) < 2 and time.monotonic() < deadline:  # both executors run a task: the kill hits one
        time.sleep(0.02)
    victim = jvms[0]
    os.kill(victim.pid, signal.SIGKILL)
    t.join(timeout=300)
    assert not t.is_alive()
    assert "error" not in box, box.get("error")
    local = ancho.run(Slow, params, sequences=n, seed=77, workers=2, store=store)
    same_run(box["r"], local)
    assert victim.pid not in [p.pid for p in _executor_jvms(sc.applicationId)]
    # Spark did retry tasks of this run (the kill hit running tasks), and no chunk was lost or doubled
    assert failed_tasks(spark) >= 1
    # leave the cluster as the other tests expect it: the worker daemons up (idempotent) and 2 executors
    if os.environ.get("ANCHO_PYTHON") or os.path.exists(ROOT / ".venv/bin/python"):
        env = {**os.environ, "ANCHO_PYTHON": os.environ.get("ANCHO_PYTHON", str(ROOT / ".venv/bin/python"))}
        subprocess.run(
            [str(ROOT / "scripts/services"), "start", "spark"], env=env, check=True, capture_output=True, timeout=300
        )
    _wait_for_executors(sc, 2)


def test_cancel_frees_the_cluster(spark, store):
    """A cancel stops the run's Spark job and kills its tasks on the executors, so nothing is left in front of the
    next run (how long that takes is measured in benchmarks/bench_cancel.py --spark)."""
    loaded = ancho.loading.loaded_from_class(Slow)
    spec = RunSpec.build(loaded, {"seconds": 0.01}, 100_000, 1)
    rec = create_record(loaded, spec, URL, spark.workers)
    store.create_run(rec)
    handle = RunHandle()
    sc = spark.context

    def cancel_once_running():
        deadline = time.monotonic() + 60
        while not sc.statusTracker().getActiveJobsIds() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        handle.cancel()

    threading.Thread(target=cancel_once_running, daemon=True).start()
    with pytest.raises(RunCancelled):
        execute(loaded, spec, store, spark, rec, handle=handle)
    final = store.get_run(rec.id)
    assert final.status == "cancelled" and final.done < 100_000
    deadline = time.monotonic() + 30  # a guard against hanging, not a measurement
    while (sc.statusTracker().getActiveJobsIds() or _running_tasks(sc)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sc.statusTracker().getActiveJobsIds()
    assert _running_tasks(sc) == 0  # the cancelled run's tasks were killed, not left to finish their sleeps
    # the cluster is free: a next run works, all of it
    r = ancho.run(Mixed, sequences=1000, seed=1, executor=spark, store=store)
    assert r.status == "succeeded" and len(r.frame) == 1000


def test_failing_sequence_reported_as_locally(spark, store):
    with pytest.raises(RunFailed) as spark_err:
        ancho.run(Flaky, {"every": 50}, sequences=5000, seed=4, executor=spark, store=store)
    with pytest.raises(RunFailed) as local_err:
        ancho.run(Flaky, {"every": 50}, sequences=5000, seed=4, workers=2, store=store)
    pattern = (
        r"^sequence (\d+) failed: ZeroDivisionError: unlucky draw \(\d+ failures?; allow some with --max-failures N\)$"
    )
    m, ml = re.match(pattern, str(spark_err.value)), re.match(pattern, str(local_err.value))
    assert m and ml, (str(spark_err.value), str(local_err.value))
    # the sequence named really fails (chunks finish in another order than locally, so it may be another one)
    every = ancho.run(Flaky, {"every": 50}, sequences=5000, seed=4, workers=2, store=store, max_failures=5000)
    assert int(m.group(1)) in {f.sequence for f in every.failures}


def test_bad_outputs_are_one_line_errors(spark, store, write_model):
    path = write_model(
        """
        class Bad(ancho.Model):
            def sequence(self, rng):
                return {"x": "text"}
        """
    )
    with pytest.raises(OutputError) as err:
        ancho.run(str(path), sequences=400, seed=1, executor=spark, store=store)
    with pytest.raises(OutputError) as local_err:
        ancho.run(str(path), sequences=400, seed=1, workers=2, store=store)
    pattern = r"^output 'x' of sequence (\d+) of Bad is str \('text'\); outputs must be numbers or bools$"
    assert re.match(pattern, str(err.value)) and re.match(pattern, str(local_err.value))
    assert "\n" not in str(err.value) and "java" not in str(err.value).lower()


def test_setup_error_is_one_line(spark, store, write_model):
    path = write_model(
        """
        class BadSetup(ancho.Model):
            def setup(self):
                raise KeyError("no such table")

            def sequence(self, rng):
                return {"x": 1.0}
        """,
        name="badsetup.py",
    )
    with pytest.raises(RunFailed) as err:
        ancho.run(str(path), sequences=100, seed=1, executor=spark, store=store)
    assert str(err.value) == "model setup failed in a worker: KeyError: 'no such table'"
