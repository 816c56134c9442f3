"""Spark tasks rebuild the sandbox on each executor: with the driver's hidden paths, and no executor variable inside.

The first two tests need no Spark: a task's :class:`NestedRunner` is what an
executor's Python worker builds, so they run it here, in a process whose
environment holds secrets as an executor's may (``spark.executorEnv.*``,
a store's password). The last one runs against the real standalone cluster
(``ANCHO_TEST_SPARK_URL``): skipped without it, failed under CI.
"""

from __future__ import annotations

import textwrap

import pytest

import ancho
from ancho import isolation as sb
from ancho.executors.base import Task
from ancho.executors.spark.isolation import Isolation, NestedRunner
from ancho.loading import load_model

from ..conftest import need_service
from ..sandbox_environ_dump import DUMP, SECRETS, check_dump

STEAL = DUMP + textwrap.dedent("""
    import ancho


    class Steal(ancho.Model):
        def sequence(self, rng):
            raise RuntimeError(environ_dump())
""")


@pytest.fixture
def bwrap():
    if sb.sandbox_problem():
        need_service("bubblewrap", sb.sandbox_problem())


def nested(tmp_path, policy: sb.SandboxPolicy) -> NestedRunner:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "steal.py").write_text(STEAL)
    ref = load_model(str(tmp_path / "models" / "steal.py")).ref
    return NestedRunner(Task(ref, {}, 1), str(tmp_path / "models"), Isolation(sandbox=policy))


def test_a_task_keeps_the_drivers_hidden_paths(bwrap, tmp_path, home):
    """The policy travels; the executor's own ANCHO_HOME (``home`` here) must not replace the server's home."""
    server_home = tmp_path / "server-home"
    policy = sb.SandboxPolicy(hidden=sb.hidden_paths(server_home))
    runner = nested(tmp_path, policy)
    try:
        assert runner.sandbox.policy.hidden == sb.hidden_paths(server_home)
        assert str(home.resolve()) not in runner.sandbox.policy.hidden
    finally:
        runner.close()


def test_a_tasks_worker_sees_none_of_the_executors_variables(bwrap, tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    runner = nested(tmp_path, sb.SandboxPolicy(hidden=()))
    try:
        result = runner.run(0, 2)
    finally:
        runner.close()
    assert len(result.failures) == 2
    for f in result.failures:
        check_dump(f.error)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_tasks_send_back_no_executor_variable(spark_url, bwrap, store, tmp_path):
    """Executors started with secrets (``spark.executorEnv``): every sandboxed task's failure is clean."""
    from ancho.errors import RunFailed
    from ancho.executors.spark import SparkExecutor, stop_session

    stop_session()  # a session made by an earlier test would keep its executors' environment: start one with ours
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "steal.py"
    path.write_text(STEAL)
    conf = {f"spark.executorEnv.{k}": v for k, v in SECRETS.items()}
    try:
        with sb.Sandbox(sb.SandboxPolicy(hidden=sb.hidden_paths(tmp_path / "server-home"))) as sandbox:
            ex = SparkExecutor(spark_url, conf=conf, wrap=sandbox.wrap)
            try:
                ancho.run(str(path), sequences=40, seed=1, executor=ex, store=store, max_failures=40)
            except RunFailed:
                pass
    finally:
        stop_session()  # later tests get a session without these variables
    run = store.list_runs(limit=1)[0]
    failures = store.failures(run.id)
    assert len(failures) == 40
    for f in failures:
        check_dump(f.error)
