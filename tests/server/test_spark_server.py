"""Runs on Spark through ``ancho serve``: the server's Spark master as a run's ``executor``.

Against the real standalone cluster (``ANCHO_TEST_SPARK_URL``). A standalone
application keeps every core it is given, so the test process first stops
its own Spark session (other modules' tests start it again when they need it).
"""

from __future__ import annotations

import os

import pytest

from ancho.errors import InputError
from ancho.server.settings import Settings

from ..conftest import run_cli
from .conftest import GAMBLER, SLOW, Server, add_user, csv_text, detail_text, submit, tar_gz, upload_id, wait_run


def test_settings_take_only_a_spark_master(tmp_path):
    assert Settings.load(home=tmp_path).executors == ["local"]
    assert Settings.load(home=tmp_path, spark_master="local").executors == ["local"]
    s = Settings.load(home=tmp_path, spark_master="spark://127.0.0.1:7077")
    assert s.executors == ["local", "spark://127.0.0.1:7077"]
    with pytest.raises(InputError, match="spark_master.*not a Spark master URL"):
        Settings.load(home=tmp_path, spark_master="http://127.0.0.1:7077")


def test_spark_conf_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHO_SPARK_CONF", '{"spark.cores.max": "1"}')
    assert Settings.load(home=tmp_path).spark_conf == {"spark.cores.max": "1"}
    monkeypatch.setenv("ANCHO_SPARK_CONF", "{oops")
    with pytest.raises(InputError, match="ANCHO_SPARK_CONF is not valid JSON"):
        Settings.load(home=tmp_path)


@pytest.fixture(scope="module")
def spark_server(spark_url, tmp_path_factory):
    """A server offering the test cluster, with a short idle time so the session-release is seen."""
    from ancho.executors.spark import stop_session

    stop_session()  # this process's own session would hold the cluster's cores
    home = tmp_path_factory.mktemp("spark-server") / "home"
    home.mkdir()
    token = add_user(home, "alice")
    srv = Server(
        home,
        {"ANCHO_SPARK_MASTER": spark_url, "ANCHO_SPARK_IDLE_SECONDS": "20", "ANCHO_CONCURRENCY": "2"},
        name="spark-server",
    ).start()
    with srv.client(token) as client:
        srv.alice = client
        yield srv
    srv.kill()


def strip(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "run"}


@pytest.mark.spark
@pytest.mark.slow
def test_spark_run_through_the_server_equals_local(spark_server, spark_url):
    """The same run on the server's Spark master and on its local workers: identical results, summary, targets,
    and the model's code ran in the sandbox on the executors (bubblewrap is on this machine)."""
    alice = spark_server.alice
    model = upload_id(alice, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")
    body = {
        "model": {"upload": model, "entry": "model.py:Gambler"},
        "params": {"stake": 3, "goal": 9},
        "sequences": 4000,
        "seed": 21,
        "targets": ["rounds>=10"],
    }
    spark_run = submit(alice, {**body, "executor": spark_url})
    local_run = submit(alice, {**body, "executor": "local"})
    views = {run: wait_run(alice, run, timeout=600) for run in (spark_run, local_run)}
    for view in views.values():
        assert view["status"] == "succeeded", (view, spark_server.log())
        assert view["progress"]["done"] == 4000
    assert views[spark_run]["executor"] == spark_url
    assert csv_text(alice, spark_run) == csv_text(alice, local_run)
    summaries = [alice.get(f"/runs/{run}/summary").json() for run in (spark_run, local_run)]
    assert strip(summaries[0]) == strip(summaries[1])
    # the web site's run page says where it ran
    from ..web.conftest import Page

    page = Page(spark_server)
    try:
        assert page.sign_in(alice.headers["Authorization"].split()[1]).status_code == 303
        assert f"Spark: <code>{spark_url}</code>" in page.http.get(f"/runs/{spark_run}").text
        assert "Ran on" not in page.http.get(f"/runs/{local_run}").text
    finally:
        page.close()


@pytest.mark.spark
@pytest.mark.slow
def test_other_masters_are_refused(spark_server):
    alice = spark_server.alice
    model = upload_id(alice, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")
    r = alice.post(
        "/runs", json={"model": {"upload": model, "entry": "model.py:Gambler"}, "executor": "spark://127.0.0.1:1"}
    )
    assert r.status_code == 422, r.text
    text = detail_text(r)
    assert "executor" in text and "spark://127.0.0.1:1" in text and "local" in text


@pytest.mark.spark
@pytest.mark.slow
def test_cancel_a_spark_run_then_the_cluster_runs_the_next(spark_server, spark_url):
    alice = spark_server.alice
    slow = upload_id(alice, tar_gz({"model.py": SLOW}), "slow.tar.gz")
    run = submit(
        alice,
        {
            "model": {"upload": slow, "entry": "model.py:Slow"},
            "params": {"seconds": 0.05},
            "sequences": 2000,
            "seed": 1,
            "executor": spark_url,
        },
    )  # tasks of 250 sequences, 12.5 s
    wait_run(alice, run, timeout=600, until=lambda v: v["progress"]["done"] > 0)
    r = alice.post(f"/runs/{run}/cancel")
    assert r.status_code == 200, r.text
    view = wait_run(alice, run, timeout=120)
    assert view["status"] == "cancelled"
    # the cancelled run's tasks are gone: a small run gets the cluster's cores and completes
    model = upload_id(alice, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")
    after = submit(
        alice,
        {"model": {"upload": model, "entry": "model.py:Gambler"}, "sequences": 200, "seed": 2, "executor": spark_url},
    )
    assert wait_run(alice, after, timeout=300)["status"] == "succeeded", spark_server.log()


@pytest.mark.spark
@pytest.mark.slow
def test_cli_submit_to_spark_and_idle_session_released(spark_server, spark_url):
    """``ancho submit --executor URL``; then, with no Spark run for spark_idle_seconds, the server stops its session."""
    import time

    token = spark_server.alice.headers["Authorization"].split()[1]
    env = {"ANCHO_URL": spark_server.url, "ANCHO_TOKEN": token}
    folder = spark_server.home.parent / "gambler"
    folder.mkdir(exist_ok=True)
    (folder / "model.py").write_text(GAMBLER)
    out = run_cli(
        "submit",
        f"{folder}/model.py:Gambler",
        "-n",
        "300",
        "--seed",
        "5",
        "--executor",
        spark_url,
        "--watch",
        "--json",
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr + spark_server.log()
    import json

    assert json.loads(out.stdout)["sequences"] == 300
    deadline = time.monotonic() + 120
    while "stopping the Spark session" not in spark_server.log(400) and time.monotonic() < deadline:
        time.sleep(1)
    assert "stopping the Spark session" in spark_server.log(400)
    # and a Spark run after that starts a new session
    out = run_cli(
        "submit",
        f"{folder}/model.py:Gambler",
        "-n",
        "100",
        "--executor",
        spark_url,
        "--watch",
        "--json",
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr + spark_server.log()


def test_a_server_without_spark_names_what_it_offers(alice, gambler_upload):
    r = alice.post(
        "/runs",
        json={
            "model": {"upload": gambler_upload, "entry": "model.py:Gambler"},
            "executor": os.environ.get("ANCHO_TEST_SPARK_URL") or "spark://127.0.0.1:7077",
        },
    )
    assert r.status_code == 422, r.text
    assert "this server executes runs on 'local'" in detail_text(r)


@pytest.mark.spark
@pytest.mark.slow
def test_the_web_form_offers_the_spark_master(spark_server, spark_url, server):
    """The new-run page lists 'Run on' choices only where there is a choice (this server: local or its master)."""
    from ..web.conftest import Page

    token = spark_server.alice.headers["Authorization"].split()[1]
    for srv, tok, offered in ((spark_server, token, True), (server, server.tokens["alice"], False)):
        page = Page(srv)
        try:
            assert page.sign_in(tok).status_code == 303
            html = page.http.get("/runs/new").text
        finally:
            page.close()
        assert ('<select id="executor"' in html) is offered
        assert (f'value="{spark_url}"' in html) is offered


@pytest.mark.spark
@pytest.mark.slow
def test_a_spark_run_resumes_after_kill_9(spark_server, spark_url):
    """kill -9 of the server (and its Spark driver) mid-run; on restart the run resumes from its stored chunks and
    ends with the results of the same run executed locally. (Last in the module: it restarts the server.)"""
    alice = spark_server.alice
    token = alice.headers["Authorization"].split()[1]
    slow = upload_id(alice, tar_gz({"model.py": SLOW}), "slow.tar.gz")
    body = {
        "model": {"upload": slow, "entry": "model.py:Slow"},
        "params": {"seconds": 0.01},
        "sequences": 2000,
        "seed": 8,
    }
    run = submit(alice, {**body, "executor": spark_url})
    wait_run(alice, run, timeout=600, until=lambda v: v["progress"]["done"] >= 250)
    spark_server.kill()
    spark_server.start()
    with spark_server.client(token) as client:
        spark_server.alice = client
        view = wait_run(client, run, timeout=600)
        assert view["status"] == "succeeded", spark_server.log()
        assert "resuming it from its stored chunks" in spark_server.log(10**6)  # (its whole log: polls fill the tail)
        local = submit(client, {**body, "executor": "local"})
        assert wait_run(client, local, timeout=300)["status"] == "succeeded"
        assert csv_text(client, run) == csv_text(client, local)
