"""Ancho's parses of Python source never overlap across threads.

CPython 3.11 keeps the AST builder's recursion counter per interpreter: two
threads parsing at once (one paused by a finalizer inside its parse) end
with ``SystemError: AST constructor recursion depth mismatch``. Two
``ancho.run`` calls in threads each read their model's source, and CI once
failed that way; so every parse goes through :mod:`ancho.pysource`.
"""

from __future__ import annotations

import ast
import threading
import time

import pytest

from ancho.loading import loaded_from_class
from ancho.pysource import class_source, parse_expression, parse_module

from .models import Mixed


@pytest.fixture
def overlap(monkeypatch):
    """Counts how many ``ast.parse`` calls ran at the same time; each lingers so that an overlap would be seen."""
    real = ast.parse
    state = {"now": 0, "most": 0, "calls": 0}
    guard = threading.Lock()

    def slow_parse(*args, **kwargs):
        with guard:
            state["now"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.02)  # a thread switch here is what a finalizer inside the real parse allows
            return real(*args, **kwargs)
        finally:
            with guard:
                state["now"] -= 1

    monkeypatch.setattr(ast, "parse", slow_parse)
    return state


def _in_threads(fn, n: int = 4) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body() -> None:
        start.wait()
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=body) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_models_given_as_classes_in_threads_read_their_source_one_at_a_time(overlap):
    assert _in_threads(lambda: loaded_from_class(Mixed)) == []
    assert overlap["calls"] >= 4  # inspect.getsource parsed the file each time
    assert overlap["most"] == 1


def test_every_parse_helper_takes_the_same_lock(overlap):
    helpers = [
        lambda: parse_module("x = 1"),
        lambda: parse_expression("list[float]"),
        lambda: class_source(Mixed),
        lambda: parse_module("def f():\n    return 2\n"),
    ]
    calls = iter(helpers)
    lock = threading.Lock()

    def one() -> None:
        with lock:
            fn = next(calls)
        fn()

    assert _in_threads(one) == []
    assert overlap["most"] == 1


def test_class_source_is_the_class_text_or_empty():
    assert class_source(Mixed).lstrip().startswith("class Mixed")
    assert class_source(type("Made", (), {})) == ""
