"""A model with its own requirements.txt runs on Spark: its environment reaches the executors.

Against the real standalone cluster (``ANCHO_TEST_SPARK_URL``); skipped
without it, failed under CI. The model needs ``humanize``, which Ancho's own
environment (the executors' Python) does not have.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap

import pytest

import ancho
from ancho.engine import RunSpec, create_record, execute

from .conftest import need_service

pytestmark = [pytest.mark.spark, pytest.mark.slow]

URL = os.environ.get("ANCHO_TEST_SPARK_URL", "")

MODEL = textwrap.dedent(
    """
    import os
    import sys

    import ancho
    import humanize

    class H(ancho.Model):
        n: int = 3

        def sequence(self, rng):
            return {"digits": len(humanize.intcomma(int(rng.integers(0, 10**self.n)))),
                    "in_env": os.path.basename(os.path.dirname(sys.prefix)).endswith("envs")}

        @ancho.summary
        def humanized(self, results):
            return humanize.intcomma(len(results))
    """
)


@pytest.fixture(scope="module")
def spark_url():
    if not URL:
        need_service("Spark", "ANCHO_TEST_SPARK_URL is not set; run `scripts/services start spark` and export it")
    pytest.importorskip("pyspark")
    return URL


@pytest.fixture
def req_model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL)
    (folder / "requirements.txt").write_text("humanize==4.9.0\n")
    return folder


def test_ancho_itself_lacks_the_package():
    assert importlib.util.find_spec("humanize") is None


def test_runs_in_its_environment_on_spark(spark_url, store, req_model):
    """Executors on this machine share the driver's storage: they use the environment the driver built."""
    r = ancho.run(str(req_model), {"n": 7}, sequences=3000, seed=4, executor=spark_url, store=store)
    local = ancho.run(str(req_model), {"n": 7}, sequences=3000, seed=4, workers=2, store=store)
    assert r.frame.equals(local.frame) and r.frame.in_env.all()
    assert r.summary["custom"] == {"humanized": "3,000"}
    assert {k: v for k, v in r.summary.items() if k != "run"} == {k: v for k, v in local.summary.items() if k != "run"}


def test_executors_build_the_environment_themselves(spark_url, store, home, req_model, tmp_path):
    """Without shared storage each executor builds the same environment (same key) in its own folder, once."""
    from ancho.executors.spark import SparkExecutor
    from ancho.sources.environments import Environments
    from ancho.sources.prepare import prepare

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
    assert frame.equals(local.frame) and frame.in_env.all()
    assert final.summary["custom"] == {"humanized": "2,000"}
    ready = (executor_envs / driver_key / ".ancho-ready").stat().st_mtime
    assert run(10).status == "succeeded"
    assert (executor_envs / driver_key / ".ancho-ready").stat().st_mtime == ready  # built once, reused
