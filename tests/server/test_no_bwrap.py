"""A server without bubblewrap refuses to start with one line that says once what to install."""

from __future__ import annotations

import os
import subprocess

from .conftest import ANCHO, free_port


def test_a_server_without_bubblewrap_says_once_what_to_install(tmp_path):
    env = {**os.environ, "ANCHO_HOME": str(tmp_path / "home"), "ANCHO_BWRAP": str(tmp_path / "no-bwrap")}
    env.pop("ANCHO_ALLOW_UNSANDBOXED", None)
    p = subprocess.run(
        [ANCHO, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.startswith("ancho: error:")]
    assert len(lines) == 1, p.stderr
    assert lines[0].count("install the Debian package 'bubblewrap'") == 1, lines[0]
    assert "ANCHO_ALLOW_UNSANDBOXED=true" in lines[0]
