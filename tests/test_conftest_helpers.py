"""The test suite's own honesty: under CI a missing package or service fails a test instead of skipping it.

Each case runs pytest in a subprocess on a tiny test file that needs something
absent, with and without ``CI=true``, and reads the outcome from its summary line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT

MISSING = "ancho_no_such_module_7f3a"

NEEDS_MISSING_MODULE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import need_module


def test_needs_it():
    need_module({MISSING!r}, "pip install {MISSING}")
"""

NEEDS_MISSING_MODULE_AT_IMPORT = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import need_module

need_module({MISSING!r}, "pip install {MISSING}")


def test_never_collected_without_it():
    pass
"""

BROKEN_PACKAGE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import need_module


def test_broken(tmp_path):
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import {MISSING}\\n")
    sys.path.insert(0, str(tmp_path))
    need_module("brokenpkg", "installed, but broken inside")
"""


def run_pytest(tmp_path, code: str, ci: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_tiny.py"
    test.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(test),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


@pytest.mark.parametrize("code", [NEEDS_MISSING_MODULE, NEEDS_MISSING_MODULE_AT_IMPORT], ids=["in-test", "at-import"])
def test_a_missing_module_fails_under_ci(tmp_path, code):
    r = run_pytest(tmp_path, code, ci=True)
    out = r.stdout + r.stderr
    assert r.returncode in (1, 2), out  # 1: a test failed, 2: collection failed (a skip would give 0)
    assert "skipped" not in out.splitlines()[-1] and ("1 failed" in out or "1 error" in out), out
    assert f"the Python package '{MISSING}' is required under CI: pip install {MISSING}" in out


@pytest.mark.parametrize("code", [NEEDS_MISSING_MODULE, NEEDS_MISSING_MODULE_AT_IMPORT], ids=["in-test", "at-import"])
def test_a_missing_module_skips_locally(tmp_path, code):
    r = run_pytest(tmp_path, code, ci=False)
    out = r.stdout + r.stderr
    assert r.returncode in (0, 5), out  # 5: the module skipped whole, so no test was collected
    assert "1 skipped" in out.splitlines()[-1], out
    assert f"the Python package '{MISSING}' is not installed: pip install {MISSING}" in out


def test_an_installed_but_broken_package_is_an_error_not_a_skip(tmp_path):
    """A package that is there but fails to import is a bug to see, locally too."""
    r = run_pytest(tmp_path, BROKEN_PACKAGE, ci=False)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "1 failed" in out.splitlines()[-1], out
    assert f"No module named '{MISSING}'" in out


def test_a_present_module_is_returned():
    import json

    from .conftest import need_module

    assert need_module("json", "the standard library") is json
