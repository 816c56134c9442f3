"""A client generated from the server's OpenAPI document works: upload a model, submit a run, wait, read its summary.

An automated submitter generates its client from ``/api/v1/openapi.json``
rather than using Ancho's own. This test does the same with
openapi-python-client (fetched by uv into its own throwaway environment, at a
pinned version) against a real server, and drives every step with the
generated functions only. It proves the upload's file field is described so a
generator sends a file (``format: binary``), and that operations have short,
stable names (``upload_model``, ``submit_run``, ``get_run``, ``get_run_summary``).
"""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from ..conftest import need_service
from .conftest import API, GAMBLER, tar_gz

pytestmark = pytest.mark.slow

GENERATOR = "openapi-python-client==0.29.1"
PACKAGE = "ancho_generated_client"


@pytest.fixture(scope="module")
def generated(server, tmp_path_factory):
    """The client package generated from the running server's document, importable."""
    uv = shutil.which("uv")
    if uv is None:
        need_service("uv", "install uv (pip install uv) to fetch openapi-python-client")
    where = tmp_path_factory.mktemp("openapi")
    document = where / "openapi.json"
    document.write_bytes(httpx.get(server.url + API + "/openapi.json", timeout=30).raise_for_status().content)
    done = subprocess.run(
        [
            uv,
            "tool",
            "run",
            "--from",
            GENERATOR,
            "openapi-python-client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(where / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_operations_have_the_handlers_names(generated):
    runs = importlib.import_module(f"{PACKAGE}.api.runs")
    models = importlib.import_module(f"{PACKAGE}.api.models")
    for module, names in (
        (models, ("upload_model", "list_models", "get_model", "inspect_model")),
        (runs, ("submit_run", "list_runs", "get_run", "get_run_summary", "get_run_results", "cancel_run")),
    ):
        for name in names:
            importlib.import_module(f"{module.__name__}.{name}")


def test_upload_submit_wait_and_read_the_summary(server, generated):
    api = f"{PACKAGE}.api"
    upload_model = importlib.import_module(f"{api}.models.upload_model")
    submit_run = importlib.import_module(f"{api}.runs.submit_run")
    get_run = importlib.import_module(f"{api}.runs.get_run")
    get_run_summary = importlib.import_module(f"{api}.runs.get_run_summary")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")

    client = generated.AuthenticatedClient(
        base_url=server.url, token=server.tokens["alice"], raise_on_unexpected_status=True
    )
    archive = tar_gz({"model.py": GAMBLER})
    uploaded = upload_model.sync(
        client=client,
        body=models.BodyUploadModel(
            file=types.File(payload=io.BytesIO(archive), file_name="model.tar.gz", mime_type="application/gzip")
        ),
    )
    assert isinstance(uploaded, models.UploadView), uploaded
    assert uploaded.size == len(archive)

    created = submit_run.sync(
        client=client,
        body=models.RunRequest.from_dict(
            {"model": {"upload": uploaded.id}, "sequences": 300, "seed": 5, "targets": ["rounds>=30"]}
        ),
    )
    assert isinstance(created, models.Created), created

    deadline = time.monotonic() + 180
    while True:
        run = get_run.sync(client=client, run_id=created.id)
        assert isinstance(run, models.RunView), run
        if str(run.status.value if hasattr(run.status, "value") else run.status) in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            break
        assert time.monotonic() < deadline, f"run {created.id} still {run.status} after 180 s"
        time.sleep(0.2)
    assert run.progress.done == 300, run.to_dict()

    summary = get_run_summary.sync(client=client, run_id=created.id)
    assert isinstance(summary, models.Summary), summary
    assert summary.run == created.id and summary.sequences == 300 and summary.seed == 5
    assert summary.outputs.to_dict()["rounds"]["count"] == 300
    assert [t.expr for t in summary.targets] == ["rounds>=30"]
