"""Schemathesis against the live server's OpenAPI document: no 5xx, every response conforms to the document.

Run through its CLI (``st run``), as CI would. Once with real ids of
alice's (so summary, results, events and cancel are exercised on a real
run), once with generated ids (the 404 paths). ``positive_data_acceptance``
is left out: a schema-valid body can still name an upload that does not
exist or carry bytes that are not an archive, and those are rightly 422.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ST = str(Path(sys.executable).parent / "st")


def schemathesis(server, tmp_path, parameters: dict[str, str], seed: int, examples: int = 25) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text("[parameters]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in parameters.items()))
    done = subprocess.run(
        [
            ST,
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{server.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {server.tokens['alice']}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            str(examples),
            "--seed",
            str(seed),
            "--workers",
            "2",
            "--request-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:] + "\n--- server log ---\n" + server.log(30)


def test_schemathesis_with_real_ids(server, alice, finished_run, gambler_upload, tmp_path):
    schemathesis(server, tmp_path, {"path.run_id": finished_run, "path.model_id": gambler_upload}, seed=1)
    assert alice.get(f"/runs/{finished_run}").json()["status"] == "succeeded"


def test_schemathesis_with_generated_ids(server, tmp_path):
    schemathesis(server, tmp_path, {}, seed=2)
