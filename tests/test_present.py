"""One spelling of numbers, intervals, times and durations for the terminal, the web site and reports."""

from __future__ import annotations

import math

from ancho.present import MISSING, duration, interval, number, run_duration, sparkline, timestamp


def test_numbers_read_the_same_everywhere():
    assert number(None) == MISSING
    assert number(True) == "true" and number(False) == "false"
    assert number(3000) == "3,000" and number(3000.0) == "3,000"
    assert number(17.3333) == "17.3333" and number(17.3333, 4) == "17.33"
    assert number(123456.789) == "123,457" and number(123456.789, 4) == "123,500"
    assert number(0.11666, 4) == "0.1167"
    assert number(1.5e-5, 4) == "1.500e-05"
    assert number(1.2e8 + 0.5) == "1.20000e+08"
    assert number(math.nan) == "nan" and number(math.inf) == "inf"
    assert number({"error": "x"}) == '{"error": "x"}'


def test_intervals():
    assert interval(None) == MISSING
    assert interval([0.25, 0.5]) == "[0.25, 0.5]"


def test_times_are_utc_and_labelled():
    assert timestamp(0) == MISSING
    assert timestamp(1_700_000_000) == "2023-11-14 22:13:20 UTC"


def test_durations():
    assert duration(None) == MISSING
    assert duration(0.421) == "0.42 s" and duration(12.34) == "12.3 s"
    assert duration(187) == "3m 07s" and duration(7500) == "2h 05m"
    assert run_duration(None, None) == MISSING
    assert run_duration(100.0, 101.5) == "1.50 s"
    assert run_duration(100.0, None, running=False) == MISSING


def test_sparklines_draw_a_series_lowest_to_highest():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([3.0, 1.0, 2.0]) == "█▁▅"  # (2 is half way up: 3.5 of the 7 steps, rounded to the fifth bar)
    assert sparkline([5, 5, 5]) == "▄▄▄"  # flat: mid height
    assert sparkline([None, 1.0, math.nan, 2.0]) == " ▁ █"  # no value at a step: a gap
    assert sparkline([None, None]) == "  " and sparkline([]) == ""
    # longer than the width: each character the mean of a run of steps (8 steps into 4: 0.5, 2.5, 4.5, 6.5)
    assert sparkline(list(range(8)), width=4) == "▁▃▆█"
    assert len(sparkline([math.sin(i / 10) for i in range(120)], width=24)) == 24
    assert sparkline([0.0, math.inf, 1.0]) == "▁ █"  # (±inf is no height: drawn as a gap, as null is)


def test_a_sparkline_does_not_stretch_differences_smaller_than_its_span():
    """Means that vary by less than their intervals' width (a flat walk's noise) stay near mid height; a trend wider
    than the span is drawn in full, as without one."""
    noise = [0.004, 0.02, -0.03, 0.01, -0.079]
    assert sparkline(noise) == "▇█▄▇▁"  # (stretched to the full height: looks like a fall)
    assert set(sparkline(noise, span=1.0)) <= set("▃▄▅")
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], span=2.0) == "▁▂▃▄▅▆▇█"
