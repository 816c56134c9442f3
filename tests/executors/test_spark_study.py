"""A study's points packed into shared Spark tasks, and a Spark task's errors as typed as a local worker's.

Against the real standalone cluster (and the real Cassandra node where the
tasks write the store themselves). Every point is compared with the same
study on the local executor and with the same point run alone: per-sequence
outputs, failures and summaries (the model's summary functions included)
identical.
"""

from __future__ import annotations

import textwrap

import pytest

import ancho
from ancho.errors import Field, ParameterError

from ..conftest import EXAMPLES
from ..stores.conftest import cassandra_catalog, cassandra_store  # noqa: F401 (fixtures)
from .test_spark import same_run

pytestmark = [pytest.mark.spark, pytest.mark.slow]

GAMBLER = str(EXAMPLES / "gambler.py")
GRID = ancho.grid(p=[0.42, 0.46, 0.5, 0.54, 0.58], goal=[8, 9, 10, 11])  # 20 points


@pytest.fixture(scope="module")
def spark(spark_url):
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(spark_url).start()
    yield ex
    ex.close()


def jobs_of(spark) -> int:
    """How many Spark jobs the executor's latest map_chunks call ran (each runs one Spark task)."""
    return len(spark.context.statusTracker().getJobIdsForGroup(spark.last_group))


def same_study(a, b) -> None:
    """Each point: identical per-sequence outputs, failures and summary (a goal's half-width up to rounding)."""
    assert a.status == b.status == "succeeded"
    assert len(a.runs) == len(b.runs)
    for ra, rb in zip(a.runs, b.runs):
        assert ra.frame.equals(rb.frame) and list(ra.frame.dtypes) == list(rb.frame.dtypes)
        assert [(f.sequence, f.error) for f in ra.failures] == [(f.sequence, f.error) for f in rb.failures]
        sa = {k: v for k, v in ra.summary.items() if k != "run"}
        sb = {k: v for k, v in rb.summary.items() if k != "run"}
        if "until" in sa:  # a goal's running half-width is summed chunk by chunk in arrival order
            ua, ub = dict(sa.pop("until")), dict(sb.pop("until"))
            assert ua.pop("half_width") == pytest.approx(ub.pop("half_width"), rel=1e-12) and ua == ub
        assert sa == sb
    assert a.frame.equals(b.frame) or "until" in a.runs[0].summary


def test_a_study_packs_its_points_into_few_spark_tasks_each_point_as_alone_and_as_locally(spark, store,
                                                                                          monkeypatch):  # fmt: skip
    from ancho.studies import execute

    one_by_one: list[str] = []  # points left to the point-by-point pass (a run, and a Spark job, each)
    real = execute.execute
    monkeypatch.setattr(execute, "execute", lambda *a, **k: one_by_one.append(a[4].id) or real(*a, **k))
    kw = dict(params={"stake": 4}, sequences=60, seed=31, targets=["won<1"], store=store)
    on_spark = ancho.study(GAMBLER, GRID, executor=spark, **kw)
    assert spark.mixed_tasks and jobs_of(spark) < 20  # fewer Spark tasks than points: points share tasks
    assert one_by_one == []  # every point ran in the packed pass
    local = ancho.study(GAMBLER, GRID, workers=2, **kw)
    same_study(on_spark, local)
    assert all("median_rounds_when_won" in r.summary["custom"] for r in on_spark.runs)
    point = on_spark.runs[7]
    alone = ancho.run(GAMBLER, point.record.params, sequences=60, seed=31, targets=["won<1"], executor=spark,
                      store=store)  # fmt: skip
    same_run(point, alone)


def test_a_study_with_a_precision_goal_on_spark_is_the_local_one(spark, store):
    kw = dict(params={"stake": 3, "goal": 8}, sequences=200, seed=5, until="mean(won)+-0.05", max_sequences=3000,
              store=store)  # fmt: skip
    design = ancho.grid(p=[0.4, 0.5, 0.6])
    on_spark = ancho.study(GAMBLER, design, executor=spark, **kw)
    local = ancho.study(GAMBLER, design, workers=2, **kw)
    same_study(on_spark, local)
    assert len({r.record.done for r in on_spark.runs}) > 1  # each point stopped at its own precision


@pytest.mark.cassandra
def test_a_study_on_spark_writing_cassandra_itself_is_the_local_one(spark, cassandra_store, store):  # noqa: F811
    kw = dict(params={"stake": 4}, sequences=40, seed=8, targets=["won<1"])
    design = ancho.grid(p=[0.44, 0.5, 0.56], goal=[8, 10])
    on_spark = ancho.study(GAMBLER, design, executor=spark, store=cassandra_store, **kw)
    assert spark.last_writes == "tasks"  # each point's chunks written by the Spark tasks, not the driver
    local = ancho.study(GAMBLER, design, workers=2, store=store, **kw)
    same_study(on_spark, local)


PICKY = """
import ancho
from ancho.errors import ParameterError


class Picky(ancho.Model):
    n: int = 1

    def setup(self):
        if self.n > 3:
            raise ParameterError("{PARAMS} must be at most 3 for this model", "n")

    def sequence(self, rng):
        return {"x": rng.random() * self.n}
"""


def test_a_parameter_error_in_a_spark_task_is_the_local_one_field_and_all(spark, store, tmp_path):
    path = tmp_path / "picky_spark_model.py"
    path.write_text(textwrap.dedent(PICKY))
    raised = {}
    for where, how in (("spark", {"executor": spark}), ("local", {"workers": 1})):
        with pytest.raises(ParameterError) as caught:
            ancho.run(str(path), {"n": 5}, sequences=20, seed=1, store=store, **how)
        raised[where] = caught.value
    spark_err, local_err = raised["spark"], raised["local"]
    assert type(spark_err) is type(local_err) is ParameterError
    assert spark_err.field is local_err.field is Field.PARAMS
    assert spark_err.name == local_err.name == "n" and spark_err.loc == local_err.loc
    assert str(spark_err) == str(local_err) == "parameter 'n' must be at most 3 for this model"
    assert any("setup" in note for note in getattr(spark_err, "__notes__", []))  # the task's traceback came along


#: a model slow enough (~1 ms a sequence) that a run's chunks measure its cost (a chunk under 0.05 s does not)
SLEEPER = """
import time


class Sleeper(ancho.Model):
    p: float = 0.5

    def sequence(self, rng):
        time.sleep(0.001)
        return {"won": bool(rng.random() < self.p)}
"""


def test_a_study_of_a_model_run_before_needs_no_jobs_to_measure_it(spark, store, write_model):
    """An unknown model's study first runs a small chunk a core, each a Spark job, to learn what a sequence costs;
    once a run of the model has measured it in this process, the study's points go into one task a core from the
    start. The points are the same either way, and the same as locally."""
    model = str(write_model(SLEEPER, "sleeper.py"))
    design = ancho.points([{"p": 0.04 * k} for k in range(1, 21)])
    kw = dict(sequences=10, seed=8, store=store)
    unknown = ancho.study(model, design, executor=spark, **kw)
    assert jobs_of(spark) > spark.workers  # the measuring jobs, then the rest
    ancho.run(model, sequences=1000, seed=1, executor=spark, store=store)
    known = ancho.study(model, design, executor=spark, **kw)
    assert jobs_of(spark) == spark.workers  # one task a core, nothing before them
    same_study(known, unknown)
    same_study(known, ancho.study(model, design, workers=2, **kw))
