"""The service's reads of a study's results (server/study_results.py): another user's study is a NotFound at every
call, before anything of it is read, and the owner gets the study's own points, runs and comparisons (checked
against the gambler's closed form)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import ancho
from ancho.errors import InputError, NotFound
from ancho.server.study_results import StudyResults
from ancho.stores.embedded import EmbeddedStore

GAMBLER = str(Path(__file__).resolve().parents[2] / "examples" / "gambler.py")
P = (0.45, 0.55)
SEQUENCES = 3000


def won(p: float, stake: int = 3, goal: int = 10) -> float:
    """The closed-form probability of reaching ``goal`` from ``stake`` (examples/gambler.py)."""
    r = (1 - p) / p
    return (1 - r**stake) / (1 - r**goal)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished two-point grid study of the owner ``local`` (the Python API's), and its store's reads."""
    store = EmbeddedStore(tmp_path_factory.mktemp("study-results"))
    made = ancho.study(
        GAMBLER, ancho.grid(p=list(P)), params={"stake": 3, "goal": 10}, sequences=SEQUENCES, seed=5, workers=1,
        store=store,
    )  # fmt: skip
    assert made.status == "succeeded"
    yield made.study_id, StudyResults(store)
    store.close()


def test_another_users_study_is_not_found_at_every_call(study):
    study_id, results = study
    calls = [
        lambda user, sid: results.summary(user, sid),
        lambda user, sid: results.points(user, sid),
        lambda user, sid: results.compare_points(user, sid, 0),
        lambda user, sid: results.point_runs(user, sid),
        lambda user, sid: results.report_pdf(user, sid),
        lambda user, sid: results.report_notebook(user, sid, "http://127.0.0.1:1"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call("bob", study_id)
        with pytest.raises(NotFound):
            call("local", "s-none")


def test_point_runs_are_the_points_own_runs_in_order(study):
    study_id, results = study
    summary = results.summary("local", study_id)
    runs = results.point_runs("local", study_id)
    assert [r.id if r else None for r in runs] == [p["run"] for p in summary["points"]]
    assert [r.params["p"] if r else None for r in runs] == list(P)
    for run in runs:
        assert run is not None and run.owner == "local" and run.status == "succeeded"
        mean = run.summary["outputs"]["won"]["mean"]
        sem = math.sqrt(won(run.params["p"]) * (1 - won(run.params["p"])) / SEQUENCES)
        assert abs(mean - won(run.params["p"])) < 4 * sem, (run.params, mean)


def test_compare_points_against_the_closed_form_difference(study):
    study_id, results = study
    found = results.compare_points("local", study_id, 0)
    assert found["study"] == study_id and found["baseline"] == 0
    [row] = found["comparisons"]
    assert row["point"] == 1
    d = row["outputs"]["won"]
    exact = won(P[1]) - won(P[0])
    low, high = d["ci95"]
    se = (high - low) / (2 * 1.96)
    assert abs(d["difference"] - exact) < 4 * se, (d, exact)


def test_a_bad_baseline_is_an_input_error_naming_it(study):
    study_id, results = study
    with pytest.raises(InputError, match=r"baseline 7 is not a point of study .*\(points 0\.\.1\)"):
        results.compare_points("local", study_id, 7)


def test_the_points_table_has_a_row_per_point(study):
    study_id, results = study
    frame = results.points("local", study_id)
    assert list(frame["point"]) == [0, 1] and list(frame["p"]) == list(P)
