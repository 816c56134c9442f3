"""Shared fixtures: a private ANCHO_HOME per test, and model files written on the fly."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ANCHO = str(Path(sys.executable).parent / "ancho")

#: under CI a test that needs a service fails instead of skipping
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private ANCHO_HOME, also seen by subprocesses."""
    h = tmp_path / "home"
    monkeypatch.setenv("ANCHO_HOME", str(h))
    return h


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

    return subprocess.run([ANCHO, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def need_service(name: str, reason: str):
    """Skip locally when a service is missing, but fail under CI (CI must start it)."""
    if CI:
        pytest.fail(f"{name} is required under CI: {reason}")
    pytest.skip(f"{name} not available: {reason}")


@pytest.fixture(scope="session")
def spark_url() -> str:
    """The Spark master from ``scripts/services`` (``ANCHO_TEST_SPARK_URL``): a skip locally without it, a failure under CI."""
    url = os.environ.get("ANCHO_TEST_SPARK_URL", "")
    if not url:
        need_service("Spark", "ANCHO_TEST_SPARK_URL is not set; run `scripts/services start spark` and export it")
    pytest.importorskip("pyspark")
    return url
