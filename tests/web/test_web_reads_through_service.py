"""The web site reads stored results only through the service (``svc.results``, ``svc.study_results``), which checks
the reader owns what is read: no page module touches the store or the studies' store functions itself.

Read from the source (``ast``), so a lazy import or an attribute read inside a function counts too.
"""

from __future__ import annotations

import ast

from tests.server.test_layering import PACKAGE, imported

STORE_READS = ("ancho.studies.service", "ancho.stores.embedded", "ancho.stores.cassandra", "ancho.exports")


def store_attributes(source: str) -> list[int]:
    """Lines that read an attribute named ``store`` (``svc.store``, ``self.store``…)."""
    return [n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute) and n.attr == "store"]


def test_web_modules_never_read_the_store():
    offenders = {p.name: store_attributes(p.read_text()) for p in (PACKAGE / "web").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_web_modules_import_no_store_reading_function():
    offenders = {
        p.name: sorted(n for n in imported(p) if n.startswith(STORE_READS)) for p in (PACKAGE / "web").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checks_see_a_store_read():
    assert store_attributes("def f(svc):\n    return point_runs(svc.store, 1)\n") == [2]
    assert "ancho.studies.service" in imported(PACKAGE / "server" / "study_results.py")
