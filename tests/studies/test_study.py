"""Studies run locally: points against closed forms, a point equal to its run alone, failures, cancel, the frame."""

import threading
from pathlib import Path

import numpy as np
import pytest

import ancho
from ancho.engine import RunHandle
from ancho.errors import FieldError, InputError, NotFound, RunCancelled

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GAMBLER = str(EXAMPLES / "gambler.py")


def ruin(p: float, stake: int, goal: int) -> float:
    r = (1 - p) / p
    return (r**stake - r**goal) / (1 - r**goal)


def test_gambler_points_match_the_closed_form_ruin_probability(store):
    study = ancho.study(
        GAMBLER, ancho.grid(p=[0.4, 0.45, 0.55]), params={"stake": 3, "goal": 10}, sequences=4000, seed=7,
        targets=["won<1"], workers=2, store=store,
    )  # fmt: skip
    assert study.status == "succeeded"
    frame = study.frame
    for _, row in frame.iterrows():
        expected = ruin(row["p"], 3, 10)
        sem = np.sqrt(expected * (1 - expected) / 4000)
        assert abs(row["p(won<1)"] - expected) < 4 * sem, (row["p"], row["p(won<1)"], expected)
    assert [r.record.spec["point"] for r in study.runs] == [0, 1, 2]
    assert {r.record.spec["study"] for r in study.runs} == {study.study_id}
    assert all(r.record.seed == 7 for r in study.runs)


def test_a_point_equals_the_same_run_made_alone(store):
    study = ancho.study(GAMBLER, ancho.grid(p=[0.45, 0.5]), params={"stake": 3}, sequences=500, seed=11,
                        workers=2, store=store)  # fmt: skip
    alone = ancho.run(GAMBLER, params={"stake": 3, "p": 0.5}, sequences=500, seed=11, workers=1, store=store)
    point = study.runs[1].frame
    assert point.equals(alone.frame)
    assert study.runs[1].record.params == alone.record.params


def test_frame_columns_exactly(store):
    study = ancho.study(GAMBLER, ancho.grid(p=[0.45], goal=[10, 12]), sequences=50, seed=1, targets=["rounds>=30"],
                        workers=1, store=store)  # fmt: skip
    assert list(study.frame.columns) == [
        "point", "p", "goal",
        "won.mean", "won.ci95_low", "won.ci95_high", "won.std",
        "rounds.mean", "rounds.ci95_low", "rounds.ci95_high", "rounds.std",
        "p(rounds>=30)", "p(rounds>=30).ci95_low", "p(rounds>=30).ci95_high",
    ]  # fmt: skip
    s = study.summary
    assert set(s) == {"study", "status", "model", "seed", "sequences", "design", "params", "points"}
    assert s["design"] == {"kind": "grid", "parameters": ["p", "goal"], "points": 2}
    assert set(s["points"][0]) == {
        "point", "run", "params", "status", "sequences", "outputs", "targets", "custom", "failures",
    }  # fmt: skip


def test_a_failing_point_does_not_fail_the_others(store, write_model):
    path = write_model(
        """
        class Picky(ancho.Model):
            x: float = 0.0
            def sequence(self, rng):
                if self.x > 1:
                    raise ValueError("x too big")
                return {"y": rng.random() + self.x}
        """
    )
    study = ancho.study(str(path), ancho.grid(x=[0.0, 2.0, 0.5]), sequences=40, seed=3, workers=1, store=store)
    assert study.status == "failed"
    assert [p["status"] for p in study.summary["points"]] == ["succeeded", "failed", "succeeded"]
    assert "point 1" in study.record.error and "x too big" in study.record.error
    assert study.record == store.get_study(study.study_id)  # the record returned is the one stored, as read back


#: a model slow enough to cancel or kill a study midway (``pause`` seconds per sequence)
SLOW = """
import time
class Slow(ancho.Model):
    x: float = 0.0
    pause: float = 0.01
    def sequence(self, rng):
        time.sleep(self.pause)
        return {"y": rng.random() + self.x}
"""


def test_cancel_stops_the_study(store, write_model):
    path = write_model(SLOW)
    handle = RunHandle()
    threading.Timer(1.0, handle.cancel).start()
    with pytest.raises(RunCancelled):
        ancho.study(str(path), ancho.grid(x=[0.0, 1.0, 2.0, 3.0]), sequences=400, seed=3, workers=1, store=store,
                    handle=handle)  # fmt: skip
    (record,) = store.list_studies()
    assert record.status == "cancelled"
    assert "succeeded" not in [p["status"] for p in record.points[1:]]


def test_resume_skips_succeeded_points_and_keeps_chunks(store):
    study = ancho.study(GAMBLER, ancho.grid(p=[0.45, 0.5]), sequences=300, seed=5, workers=1, store=store)
    first = [r.run_id for r in study.runs]
    # as if the driver died during point 1: its run back to running with part of its chunks gone
    store.update_study(study.study_id, status="running")
    store.update_run(first[1], status="running", summary=None)
    again = ancho.study(None, None, resume=study.study_id, workers=1, store=store)
    assert again.status == "succeeded"
    assert [r.run_id for r in again.runs] == first
    assert again.runs[0].record.finished == study.runs[0].record.finished  # not run again
    assert again.record == store.get_study(again.study_id)  # the record returned is the one stored, as read back


def test_resume_of_a_packed_point_killed_before_its_record_named_its_outputs(store):
    """Packed points write their chunks first and their records in batches: a kill -9 between the two leaves stored
    chunks and a record with no schema. The resume reads the schema from the chunks and recomputes nothing."""
    study = ancho.study(GAMBLER, ancho.grid(p=[0.45, 0.5]), sequences=300, seed=5, workers=1, store=store)
    first = study.runs[1].record
    store.update_study(study.study_id, status="running")
    store.update_run(first.id, status="running", summary=None, schema={})
    ranges = store.completed_ranges(first.id)
    again = ancho.study(None, None, resume=study.study_id, workers=1, store=store)
    assert again.status == "succeeded"
    assert again.runs[1].record.schema == first.schema and store.completed_ranges(first.id) == ranges
    assert again.runs[1].summary["outputs"] == study.runs[1].summary["outputs"]


def test_bad_designs_are_one_line_errors(store):
    with pytest.raises(FieldError, match="not a power of two"):
        ancho.study(GAMBLER, ancho.sobol(100, p=(0.4, 0.6)), store=store)
    with pytest.raises(FieldError, match="'q' is not a parameter"):
        ancho.study(GAMBLER, ancho.grid(q=[1]), store=store)
    assert store.list_studies() == []


def test_compare_refuses_runs_of_different_models(store, write_model):
    path = write_model("class Other(ancho.Model):\n    def sequence(self, rng):\n        return {'won': 1.0}\n")
    a = ancho.run(GAMBLER, sequences=20, seed=1, workers=1, store=store)
    b = ancho.run(str(path), sequences=20, seed=1, workers=1, store=store)
    with pytest.raises(InputError, match=f"runs {a.run_id} and {b.run_id} are of different models"):
        ancho.compare(a, b)
    with pytest.raises(NotFound):
        ancho.compare(a.run_id, "nope", store=store)


def test_two_hundred_tiny_points_run_together_each_equal_to_its_run_alone(store):
    ps = [0.4 + 0.2 * k / 199 for k in range(200)]
    study = ancho.study(GAMBLER, ancho.points([{"p": p} for p in ps]), params={"stake": 3}, sequences=20, seed=3,
                        targets=["won<1"], workers=2, store=store)  # fmt: skip
    assert study.status == "succeeded"
    assert study.record.done == study.record.total == 4000
    assert study.record == store.get_study(study.study_id)  # the record returned is the one stored, as read back
    assert [p["status"] for p in study.summary["points"]] == ["succeeded"] * 200
    for k in (0, 57, 199):
        point = study.runs[k]
        alone = ancho.run(GAMBLER, params={"stake": 3, "p": ps[k]}, sequences=20, seed=3, targets=["won<1"],
                          workers=1, store=store)  # fmt: skip
        assert point.frame.equals(alone.frame)
        mine, theirs = point.record.summary, alone.record.summary
        assert mine["outputs"] == theirs["outputs"] and mine["targets"] == theirs["targets"]
        assert mine["custom"] == theirs["custom"]  # the summary function, run in the worker over the one chunk
        assert point.record.done == 20 and point.record.status == "succeeded"


FRAME_SEEN = """
import numpy as np

class Seen(ancho.Model):
    p: float = 0.5

    def sequence(self, rng):
        u = rng.random()
        return {"hit": u < self.p, "k": int(u * 10), "u": u}

    @ancho.summary
    def frame_seen(self, results):
        seen = {
            "columns": list(results.columns),
            "dtypes": [str(t) for t in results.dtypes],
            "index": [type(results.index).__name__, int(results.index.start), int(results.index.stop)],
            "sum": [int(results.hit.sum()), int(results.k.sum()), float(results.u.sum()), int(results.sequence.sum())],
        }
        results["u"] = -1.0  # the frame is the summary's own: what is stored never changes
        results.loc[:, "k"] = 0
        return seen
"""


def test_a_summary_function_sees_the_stores_frame_in_a_study_and_cannot_change_what_is_stored(store, write_model):
    """A tiny point's summary runs in the worker over its one chunk (a frame made from its arrays): the same frame,
    dtypes and index as the store gives a run alone, and a copy."""
    path = write_model(FRAME_SEEN)
    study = ancho.study(str(path), ancho.grid(p=[0.3, 0.7]), sequences=40, seed=9, workers=2, store=store)
    assert study.status == "succeeded"
    for k, p in enumerate((0.3, 0.7)):
        point = study.runs[k]
        alone = ancho.run(str(path), params={"p": p}, sequences=40, seed=9, workers=1, store=store)
        seen = point.record.summary["custom"]["frame_seen"]
        assert seen == alone.record.summary["custom"]["frame_seen"]
        assert seen["columns"] == ["sequence", "hit", "k", "u"] and seen["dtypes"] == [
            "int64",
            "bool",
            "int64",
            "float64",
        ]
        assert seen["index"] == ["RangeIndex", 0, 40]
        frame = point.frame
        assert frame.equals(alone.frame) and (frame.u >= 0).all() and frame.k.sum() == seen["sum"][1]
