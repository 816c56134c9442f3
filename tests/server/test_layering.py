"""Imports run one way: the web site and the REST routes are front ends over the service; only the app assembles both.

Read from the source (``ast``), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ancho

PACKAGE = Path(ancho.__file__).parent


def imported(path: Path) -> set[str]:
    """The absolute names of the ``ancho`` modules a module imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names |= {f"{target}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("ancho")}


def test_server_modules_import_no_web_module_but_the_app():
    offenders = {
        p.name: sorted(n for n in imported(p) if n.startswith("ancho.web"))
        for p in (PACKAGE / "server").glob("*.py")
        if p.name != "app.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_web_calls_the_service_not_the_rest_routes():
    offenders = {
        p.name: sorted(n for n in imported(p) if n.startswith(("ancho.server.routes", "ancho.server.app")))
        for p in (PACKAGE / "web").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_imports():
    """The checks above would notice an offence: the app does import the web site, and the routes the auth resolver."""
    assert "ancho.web" in imported(PACKAGE / "server" / "app.py")
    assert "ancho.server.auth" in imported(PACKAGE / "server" / "routes.py")
    assert "ancho.server.service" in imported(PACKAGE / "web" / "site.py")
