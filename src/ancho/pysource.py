"""Python source parsed under one lock, so two threads of one process never parse at once.

Why: CPython 3.11 builds an ``ast`` tree with a recursion counter kept per
interpreter, not per thread. When a garbage collection inside one thread's
parse runs a finalizer that lets another thread parse too, the first ends
with ``SystemError: AST constructor recursion depth mismatch``. Two
``ancho.run`` calls in threads (a notebook, the server) each read their
model's source with :func:`inspect.getsource`, which parses the whole file,
and one of them failed that way. Every parse Ancho does goes through here.
"""

from __future__ import annotations

import ast
import inspect
import threading

# reentrant: a finalizer run inside a parse may itself come through here on the same thread
_PARSING = threading.RLock()


def parse_module(text: str) -> ast.Module:
    """``ast.parse(text)``, one thread at a time."""
    with _PARSING:
        return ast.parse(text)


def parse_expression(text: str) -> ast.Expression:
    """``ast.parse(text, mode="eval")``, one thread at a time."""
    with _PARSING:
        return ast.parse(text, mode="eval")


def class_source(cls: type) -> str:
    """The source of ``cls`` as :func:`inspect.getsource` finds it (it parses the class's file), ``""`` if none."""
    with _PARSING:
        try:
            return inspect.getsource(cls)
        except (OSError, TypeError):
            return ""
