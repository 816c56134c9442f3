"""How a model's ``@ancho.summary`` functions get their results frame: each its own, so none can spoil another's."""

from __future__ import annotations

import pandas as pd

import ancho
from ancho.custom import apply_summaries, reads_results


class Spoiler(ancho.Model):
    def sequence(self, rng):
        return {"x": 1.0}

    @ancho.summary
    def first(self, results):
        results["x"] = -1.0  # spoils its own frame
        return float(results.x.sum())

    @ancho.summary
    def closed_form(self, results):
        return 0.5  # never reads its results

    @ancho.summary
    def total(self, results):
        return float(results.x.sum())

    @ancho.summary
    def last(self, results):
        results.drop(columns=["x"], inplace=True)
        return list(results.columns)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"sequence": [0, 1, 2], "x": [1.0, 2.0, 3.0]})


def test_every_summary_function_sees_the_frame_as_stored_whatever_the_others_did():
    made = []

    def fresh() -> pd.DataFrame:
        made.append(_frame())
        return made[-1]

    # a name twice (not from a model, which lists each once): its first call must not get the frame uncopied
    names = ("first", "total", "closed_form", "last", "total", "first", "total")
    out = apply_summaries(Spoiler(), fresh, names)
    assert out == {"first": -3.0, "total": 6.0, "closed_form": 0.5, "last": ["sequence"]}
    assert len(made) == 1  # built once, whoever reads it


def test_a_frame_the_caller_owns_is_never_handed_out_itself():
    frame = _frame()
    apply_summaries(Spoiler(), frame, ("first", "last"))
    assert frame.equals(_frame())


def test_each_call_sees_the_frame_as_stored_after_another_spoiled_its_copy():
    for names in (("first", "total"), ("first", "total", "first"), ("total", "first", "total"), ("last", "total")):
        out = apply_summaries(Spoiler(), _frame, names)
        assert out["total"] == 6.0, names


def test_whether_a_function_reads_its_results_is_known_per_function():
    assert reads_results(Spoiler().first) and reads_results(Spoiler().last)
    assert not reads_results(Spoiler().closed_form)
    assert reads_results(Spoiler().closed_form) is reads_results(Spoiler.closed_form)  # (the same answer, cached)
