"""While points run together the young generation is collected less often; the process's setting comes back."""

from __future__ import annotations

import gc
import threading

import pytest

import ancho
from ancho.studies.execute import YOUNG_THRESHOLD, fewer_collections

from .test_study import GAMBLER


def test_the_threshold_is_raised_inside_and_restored_by_the_last_to_leave_even_on_an_error():
    before = gc.get_threshold()
    inside, both = threading.Event(), threading.Event()
    seen: list[tuple[int, ...]] = []

    def other() -> None:
        with fewer_collections():
            inside.set()
            both.wait(5)
            seen.append(gc.get_threshold())

    thread = threading.Thread(target=other)
    with pytest.raises(RuntimeError), fewer_collections():
        thread.start()
        assert inside.wait(5)
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
        raise RuntimeError("a study failing while another runs")
    assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)  # the other study still runs
    both.set()
    thread.join(5)
    assert seen == [(max(before[0], YOUNG_THRESHOLD), *before[1:])]
    assert gc.get_threshold() == before


def test_a_study_leaves_the_processs_collector_as_it_found_it(tmp_path):
    before = gc.get_threshold()
    study = ancho.study(GAMBLER, ancho.points([{"p": 0.4}, {"p": 0.6}]), {"stake": 2, "goal": 4}, 20, seed=1,
                        store=str(tmp_path), workers=1)  # fmt: skip
    assert study.status == "succeeded"
    assert gc.get_threshold() == before
