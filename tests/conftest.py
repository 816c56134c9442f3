"""Shared fixtures: a private ANCHO_HOME per test, and model files written on the fly."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ANCHO = str(Path(sys.executable).parent / "ancho")

#: under CI a test that needs a service fails instead of skipping
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: how to get the packages that tests require (``need_module``)
PYSPARK_HINT = "pip install 'ancho[spark]' (pyspark)"
CASSANDRA_HINT = "pip install 'ancho[cassandra]' (cassandra-driver)"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private ANCHO_HOME, also seen by subprocesses."""
    h = tmp_path / "home"
    monkeypatch.setenv("ANCHO_HOME", str(h))
    return h


def discard_if_passed(request: pytest.FixtureRequest, path: Path) -> None:
    """Delete ``path`` when the fixture of ``request`` is torn down (after the rest of its teardown), unless a test
    failed meanwhile: for fixtures whose folders hold hundreds of megabytes (a model's environment, with numpy, pandas
    and pyarrow, is ~570 MB), which pytest would otherwise keep for its last three sessions. A failure's folder, its
    server's log included, is kept as pytest keeps any other."""
    failed = request.session.testsfailed

    def discard() -> None:
        if request.session.testsfailed == failed:
            shutil.rmtree(path, ignore_errors=True)

    request.addfinalizer(discard)


@pytest.fixture
def discard_tmp_path(request, tmp_path):
    """The test's ``tmp_path``, deleted when the test has passed (:func:`discard_if_passed`). Name it before the
    fixtures that write there (``pytestmark = pytest.mark.usefixtures("discard_tmp_path")``): it is torn down after
    them."""
    discard_if_passed(request, tmp_path)
    return tmp_path


@pytest.fixture
def store(home):
    from ancho.stores.embedded import EmbeddedStore

    s = EmbeddedStore(home)
    yield s
    s.close()


@pytest.fixture
def write_model(tmp_path):
    """write_model(code, name="model.py") -> path of a model file with ``import ancho`` prepended."""

    def write(code: str, name: str = "model.py", folder: Path | None = None) -> Path:
        folder = folder or tmp_path / "models"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text("import ancho\nimport numpy as np\n\n" + textwrap.dedent(code))
        return path

    return write


def run_cli(*args: str, env: dict | None = None, timeout: float = 300):
    import subprocess

    return subprocess.run(
        [ANCHO, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )


def alive(proc) -> bool:
    """Running and not a zombie (a container's PID 1 may never reap the orphans it inherits); a ``psutil.Process``
    that ends while asked is not alive, so callers need no check-then-look race on its pid."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def need_service(name: str, reason: str):
    """Skip locally when a service is missing, but fail under CI (CI must start it)."""
    if CI:
        pytest.fail(f"{name} is required under CI: {reason}")
    pytest.skip(f"{name} not available: {reason}")


@contextlib.contextmanager
def root_only(command: list[str], undo: list[str], needs: str):
    """Run ``command`` (one only root can, such as a mount), then ``undo`` after the block. When ``command`` fails:
    a skip locally, a failure under CI (which runs as root and must be able to; ``needs`` says what it needs)."""
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        if CI:
            pytest.fail(f"CI runs as root and {needs}: {done.stderr.strip()}")
        pytest.skip(f"cannot do this here ({needs}): {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(undo, check=False)


def need_module(name: str, hint: str):
    """The module ``name``, imported; when it is not installed, skip locally but fail under CI (CI installs every extra).

    ``pytest.importorskip`` would skip under CI too, so a missing package there
    would pass silently. Only the module itself (or a parent package) being
    absent counts as missing: an import error inside an installed package is
    raised, not skipped. ``hint`` says how to install it. Works at module level.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise
        if CI:
            pytest.fail(f"the Python package {name!r} is required under CI: {hint}", pytrace=False)
        pytest.skip(f"the Python package {name!r} is not installed: {hint}", allow_module_level=True)


@pytest.fixture(scope="session")
def spark_url() -> str:
    """The Spark master from ``scripts/services`` (``ANCHO_TEST_SPARK_URL``): a skip locally without it, a failure under CI."""
    url = os.environ.get("ANCHO_TEST_SPARK_URL", "")
    if not url:
        need_service("Spark", "ANCHO_TEST_SPARK_URL is not set; run `scripts/services start spark` and export it")
    need_module("pyspark", PYSPARK_HINT)
    return url
