"""A model with its own requirements.txt runs on Spark: its environment reaches the executors.

Against the real standalone cluster (``ANCHO_TEST_SPARK_URL``); skipped
without it, failed under CI. The model needs ``humanize``, which Ancho's own
environment (the executors' Python) does not have: that it runs at all shows
that the tasks ran in its environment.
"""

from __future__ import annotations

import os

import pytest

import ancho
from ancho.engine import RunSpec, create_record, execute

from ..conftest import PYSPARK_HINT, need_module, need_service
from ..isolation.test_environments import req_model  # noqa: F401, F811 - the model folder that needs humanize (a fixture)

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.usefixtures("discard_tmp_path")]  # environments


def test_runs_in_its_environment_on_spark(spark_url, store, req_model):  # noqa: F811 - the fixture
    """Executors on this machine share the driver's storage: they use the environment the driver built."""
    r = ancho.run(str(req_model), {"n": 7}, sequences=3000, seed=4, executor=spark_url, store=store)
    local = ancho.run(str(req_model), {"n": 7}, sequences=3000, seed=4, workers=2, store=store)
    assert r.frame.equals(local.frame)
    assert r.summary["custom"] == {"humanized": "3,000"}
    assert {k: v for k, v in r.summary.items() if k != "run"} == {k: v for k, v in local.summary.items() if k != "run"}


def test_executors_build_the_environment_themselves(spark_url, store, home, req_model, tmp_path):  # noqa: F811
    """Without shared storage each executor builds the same environment (same key) in its own folder, once."""
    from ancho.executors.prepare import prepare
    from ancho.executors.spark import SparkExecutor
    from ancho.isolation import Environments

    envs = Environments(home / "envs")
    prepared = prepare(str(req_model), {"n": 5}, envs)
    executor_envs = tmp_path / "executor-envs"
    ex = SparkExecutor(spark_url, shared_storage=False, environments=str(executor_envs), **prepared.executor_options())

    def run(seed):
        spec = RunSpec.build(prepared.model, prepared.params, 2000, seed, resolved=True)
        record = create_record(prepared.model, spec, spark_url, ex.workers)
        store.create_run(record)
        return execute(prepared.model, spec, store, ex, record)

    final = run(9)
    assert final.status == "succeeded"
    driver_key = os.path.basename(os.path.dirname(os.path.dirname(prepared.python)))
    built = [p.name for p in executor_envs.iterdir() if (p / ".ancho-ready").exists()]
    assert built == [driver_key]  # keyed exactly as on the driver
    frame = store.read_frame(final.id)
    local = ancho.run(str(req_model), {"n": 5}, sequences=2000, seed=9, workers=2, store=store)
    assert frame.equals(local.frame)
    assert final.summary["custom"] == {"humanized": "2,000"}
    ready = (executor_envs / driver_key / ".ancho-ready").stat().st_mtime
    assert run(10).status == "succeeded"
    assert (executor_envs / driver_key / ".ancho-ready").stat().st_mtime == ready  # built once, reused


def test_tasks_run_in_the_sandbox(spark_url, store, write_model):
    """With a sandbox policy, each task's local worker runs in bubblewrap on the executor, as local workers do."""
    from ancho.executors.spark import SparkExecutor
    from ancho.isolation import SandboxPolicy, sandbox_problem

    if sandbox_problem():
        need_service("bubblewrap", sandbox_problem())
    path = write_model(
        """
        import os
        import socket

        def online():
            try:
                socket.create_connection(("127.0.0.1", 7077), timeout=1).close()
                return True
            except OSError:
                return False

        class Boxed(ancho.Model):
            def sequence(self, rng):
                return {"x": float(rng.random()), "uid": os.getuid(), "sees_repo": os.path.exists("/work/main/src"),
                        "online": online()}

            @ancho.summary
            def uids(self, results):
                return sorted(set(int(u) for u in results.uid))
        """,
        name="boxed.py",
    )
    ex = SparkExecutor(spark_url, sandbox=SandboxPolicy())
    r = ancho.run(str(path), sequences=400, seed=2, executor=ex, store=store)
    assert set(r.frame.uid) == {65534} and not r.frame.sees_repo.any() and not r.frame.online.any()
    assert r.summary["custom"] == {"uids": [65534]}  # summary functions: sandboxed too
    local = ancho.run(str(path), sequences=400, seed=2, workers=2, store=store)
    assert r.frame.x.equals(local.frame.x)


def test_a_sandbox_must_be_a_policy():
    need_module("pyspark", PYSPARK_HINT)
    from ancho.errors import InputError
    from ancho.executors.spark import SparkExecutor

    with pytest.raises(InputError, match="give it as sandbox=SandboxPolicy"):
        SparkExecutor("spark://127.0.0.1:7077", wrap=lambda argv: ["nice", *argv])
