"""What a reused Spark Python worker keeps across tasks (executors/spark/tasks.py ``Kept``): no cluster needed.

A server runs two runs at a time by default and their tasks alternate on the
same Python workers; each must find its prepared model still there.
"""

from __future__ import annotations

from ancho.executors.base import Task
from ancho.executors.spark.isolation import Isolation
from ancho.executors.spark.tasks import KEEP
from ancho.executors.spark.tasks import RUNNERS as _RUNNERS
from ancho.executors.spark.tasks import Kept as _Kept
from ancho.executors.spark.tasks import runner as _runner
from ancho.loading import FileRef

from ..conftest import EXAMPLES


class Closing:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_the_least_recently_used_goes_closed():
    kept = _Kept(2)
    a, b, c = Closing(), Closing(), Closing()
    kept.put("a", a)
    kept.put("b", b)
    assert kept.get("a") is a  # a is now the most recent
    kept.put("c", c)
    assert kept.get("b") is None and b.closed and not a.closed
    kept.drop("a")
    assert a.closed and kept.get("a") is None and kept.get("c") is c
    kept.put("d", object())  # something with nothing to close
    kept.put("e", object())
    assert c.closed


def test_alternating_runs_keep_their_prepared_models():
    ref = FileRef(str(EXAMPLES), "gambler.py", "Gambler")
    tasks = {group: Task(ref, {"stake": 3}, seed, f"r{seed}", {}) for seed, group in enumerate(("run-a", "run-b"))}
    try:
        first = {group: _runner(group, task, None, Isolation()) for group, task in tasks.items()}
        for _ in range(3):  # their tasks alternate on this worker
            for group, task in tasks.items():
                assert _runner(group, task, None, Isolation()) is first[group]
        assert KEEP >= 2
    finally:
        for group in tasks:
            _RUNNERS.drop(group)
