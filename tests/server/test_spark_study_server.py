"""A study submitted to a real ``ancho serve`` whose runs go to the Spark cluster, sandboxed, with a model that has its
own ``requirements.txt``: the pieces are tested alone elsewhere (test_spark_server, test_studies,
executors/test_spark_study, executors/test_spark_sandbox_environment, executors/test_spark_environments); here
they meet, as a user of a server with a Spark master meets them.

Against the real standalone cluster (``ANCHO_TEST_SPARK_URL``: skipped without it, failed under CI) and real
bubblewrap (the same). A standalone application keeps every core it is given, so the test process first stops its
own Spark session. The server is started with secrets in its environment (``SECRETS``), and passes them to its
Spark executors' environment too (``spark.executorEnv``, as an operator might for a bucket's keys), for the hostile
study.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

import ancho
from ancho.isolation import sandbox_problem

from ..conftest import discard_if_passed, need_service
from ..sandbox_environ_dump import DUMP, SECRETS, check_dump
from .conftest import GAMBLER, Server, add_user, is_json_error, submit, tar_gz, upload_id, wait_run
from .test_spark_server import strip
from .test_studies import ruin, submit_study, wait_study

pytestmark = [pytest.mark.spark, pytest.mark.slow]

WAIT = 900  # seconds: the cluster is shared with other test sessions, whose applications may hold its cores a while

#: the gambler's ruin of examples/gambler.py (uploaded beside it) with its requirement used in every sequence and in a
#: summary function, and an output saying whether the sequence ran under bubblewrap (the sandbox's PID 1)
HUMANIZED_GAMBLER = """
import os

import ancho
import humanize  # not in Ancho's environment: only the model's own (requirements.txt) has it

from gambler import Gambler


def _in_sandbox() -> bool:
    with open("/proc/1/cmdline", "rb") as fh:
        return os.path.basename(fh.read().split(b"\\0")[0]) == b"bwrap"


class Humanized(Gambler):
    def sequence(self, rng):
        out = Gambler.sequence(self, rng)
        return {**out, "digits": len(humanize.intcomma(10 ** out["rounds"])), "sandboxed": _in_sandbox()}

    @ancho.summary
    def humanized(self, results):
        return humanize.intcomma(len(results))
"""

#: one model, four attacks chosen by ``what``; every sequence fails with a JSON report of what it got
HOSTILE = (
    DUMP
    + '''
import json
import os

import ancho


def _read(target):
    """Every file under ``target`` (a folder or a file) it can list, and the bytes it can read of them."""
    found, read, errors = [], 0, []
    paths = [target] if os.path.isfile(target) else [os.path.join(d, f) for d, _, fs in os.walk(target) for f in fs]
    for path in paths:
        found.append(path)
        try:
            with open(path, "rb") as fh:
                read += len(fh.read())
        except OSError as exc:
            errors.append(type(exc).__name__)
    try:
        os.listdir(target)
        listed = True
    except OSError as exc:
        listed = type(exc).__name__
    return {"found": found, "read": read, "errors": errors, "listed": listed}


def _write(targets):
    """Try to create each file of ``targets`` (``@source``: in the model's own folder, ``@ancho``: in Ancho's package,
    both visible to it); what each attempt gave."""
    places = {"@source": os.path.dirname(os.path.abspath(__file__)), "@ancho": os.path.dirname(ancho.__file__)}
    outcome = {}
    for target in targets:
        path = os.path.join(places[target], "pwned") if target in places else target
        try:
            with open(path, "w") as fh:
                fh.write("pwned")
            outcome[target] = "written"
        except OSError as exc:
            outcome[target] = type(exc).__name__
    return outcome


class Hostile(ancho.Model):
    what: str = "ok"
    target: str = ""

    def sequence(self, rng):
        if self.what == "ok":  # writing in its own scratch folder is allowed
            with open(os.path.join(os.environ["HOME"], "note.txt"), "w") as fh:
                fh.write("ok")
            return {"x": float(rng.random())}
        if self.what == "env":
            raise RuntimeError(environ_dump())
        if self.what == "read":
            raise RuntimeError("REPORT " + json.dumps(_read(self.target)) + " END")
        raise RuntimeError("REPORT " + json.dumps(_write(self.target.split("|"))) + " END")
'''
)


def executors_hold_the_secrets() -> bool:
    """Whether a Spark executor on this machine was started with ``SECRETS`` (this server's session's executors)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "CoarseGrainedExecutorBackend" in " ".join(proc.info["cmdline"] or ()):
                if all(proc.environ().get(k) == v for k, v in SECRETS.items()):
                    return True
        except psutil.Error:
            pass
    return False


def report(error: str) -> dict:
    """The JSON report a hostile sequence raised with."""
    assert "REPORT " in error and " END" in error, error
    return json.loads(error.split("REPORT ", 1)[1].rsplit(" END", 1)[0])


@pytest.fixture(scope="module")
def srv(request, spark_url, tmp_path_factory):
    """A server with the test cluster as its Spark master, its sandbox on, secrets in its environment; users alice
    and bob."""
    if sandbox_problem():
        need_service("bubblewrap", sandbox_problem())
    from ancho.executors.spark import stop_session

    stop_session()  # this process's own session would hold the cluster's cores
    home = tmp_path_factory.mktemp("spark-study-server") / "home"
    discard_if_passed(request, home.parent)  # the model's environment: ~570 MB
    home.mkdir()
    tokens = {name: add_user(home, name) for name in ("alice", "bob")}
    executor_env = json.dumps({f"spark.executorEnv.{k}": v for k, v in SECRETS.items()})  # the executors' too
    env = {**SECRETS, "ANCHO_SPARK_MASTER": spark_url, "ANCHO_SPARK_CONF": executor_env, "ANCHO_CONCURRENCY": "2"}
    s = Server(home, env, name="spark-study")
    s.start()
    assert all(s.process.environ().get(k) == v for k, v in SECRETS.items())  # the server itself has them
    with s.client(tokens["alice"]) as alice, s.client(tokens["bob"]) as bob, s.client() as anonymous:
        s.alice, s.bob, s.anonymous = alice, bob, anonymous
        yield s
    s.kill()


@pytest.fixture(scope="module")
def study(srv, spark_url) -> tuple[str, dict]:
    """Alice's grid study of the humanized gambler on Spark (p over two values, 2,000 sequences a point): its id and
    body."""
    model = upload_id(
        srv.alice,
        tar_gz({"model.py": HUMANIZED_GAMBLER, "gambler.py": GAMBLER, "requirements.txt": "humanize==4.9.0\n"}),
        "gambler.tar.gz",
    )
    body = {
        "model": {"upload": model, "entry": "model.py:Humanized"},
        "design": {"grid": {"p": [0.45, 0.55]}},
        "params": {"stake": 3, "goal": 6},
        "sequences": 2000,
        "seed": 11,
        "targets": ["rounds>=10"],
        "executor": spark_url,
    }
    study_id = submit_study(srv.alice, body)
    view = wait_study(srv.alice, study_id, WAIT)
    assert view["status"] == "succeeded", (view, srv.log(200))
    return study_id, body


def test_a_sandboxed_study_on_spark_with_its_requirements_equals_its_points_run_alone_locally(srv, spark_url, study):
    """Every point: the closed form within 4 standard errors, the requirement imported in the sandbox (its summary
    function and sequences used it, in bubblewrap), and the summary equal to the same point run alone on the
    server's local workers."""
    alice = srv.alice
    study_id, body = study
    view = alice.get(f"/studies/{study_id}").json()
    assert view["progress"] == {"done": 4000, "total": 4000}
    summary = alice.get(f"/studies/{study_id}/summary").json()
    assert [p["params"]["p"] for p in summary["points"]] == [0.45, 0.55]
    alone = {}
    for point in summary["points"]:
        run = alice.get(f"/runs/{point['run']}").json()
        assert run["executor"] == spark_url and run["status"] == "succeeded"
        local = {k: v for k, v in body.items() if k not in ("design", "executor")}
        local["params"] = point["params"]
        alone[point["run"]] = submit(alice, {**local, "executor": "local"})
    for point in summary["points"]:
        assert point["status"] == "succeeded" and point["sequences"] == 2000 and point["failures"] == 0
        won = point["outputs"]["won"]
        exact = 1 - ruin(3, 6, point["params"]["p"])
        assert abs(won["mean"] - exact) < 4 * won["sem"], (point["params"], won, exact)
        assert point["outputs"]["sandboxed"]["mean"] == 1.0  # every sequence ran under bubblewrap on an executor
        assert point["custom"]["humanized"] == "2,000"  # the summary function imported humanize too
        assert point["outputs"]["digits"]["min"] >= 1
        local_run = alone[point["run"]]
        assert wait_run(alice, local_run, timeout=WAIT)["status"] == "succeeded", srv.log(100)
        mine = alice.get(f"/runs/{point['run']}/summary").json()
        theirs = alice.get(f"/runs/{local_run}/summary").json()
        assert strip(mine) == strip(theirs), (point["params"], mine, theirs)
        assert point["outputs"] == theirs["outputs"] and point["targets"] == theirs["targets"]
    assert importlib.util.find_spec("humanize") is None  # nor did it reach Ancho's (and this test's) environment


def test_another_user_sees_nothing_of_the_study(srv, study):
    """Bob gets 404 for the study and its point runs, and his lists omit them; no token is 401."""
    alice, bob, anonymous = srv.alice, srv.bob, srv.anonymous
    study_id, _ = study
    runs = [p["run"] for p in alice.get(f"/studies/{study_id}/summary").json()["points"]]
    for path in (
        f"/studies/{study_id}",
        f"/studies/{study_id}/summary",
        f"/studies/{study_id}/points",
        f"/studies/{study_id}/events",
        *(f"/runs/{run}" for run in runs),
        *(f"/runs/{run}/summary" for run in runs),
    ):
        r = bob.get(path)
        assert r.status_code == 404 and is_json_error(r), (path, r.status_code, r.text)
        r = anonymous.get(path)
        assert r.status_code == 401 and is_json_error(r), (path, r.status_code, r.text)
    r = bob.post(f"/studies/{study_id}/cancel")
    assert r.status_code == 404 and is_json_error(r), r.text
    assert study_id not in {s["id"] for s in bob.get("/studies").json()}
    assert not set(runs) & {r["id"] for r in bob.get("/runs", params={"limit": 1000}).json()}
    assert study_id in {s["id"] for s in alice.get("/studies").json()}
    assert alice.get(f"/studies/{study_id}").json()["status"] == "succeeded"  # untouched


def test_a_hostile_study_on_spark_gets_nothing_and_the_server_keeps_serving(srv, spark_url, tmp_path):
    """Points that read the server's environment, another user's run folder and the store's files, and write outside
    their folder: each fails with its reason, nothing came back or was written; the harmless point succeeds."""
    alice, bob = srv.alice, srv.bob
    # bob's run, whose chunk files alice's model will look for
    bob_model = upload_id(bob, tar_gz({"model.py": HOSTILE}), "bob.tar.gz")
    bob_run = submit(bob, {"model": {"upload": bob_model, "entry": "model.py:Hostile"}, "sequences": 50, "seed": 1})
    assert wait_run(bob, bob_run, timeout=WAIT)["status"] == "succeeded", srv.log(100)
    bob_folder = srv.home / "runs" / bob_run
    bob_chunks = sorted(bob_folder.rglob("*.parquet"))
    assert bob_chunks, list(srv.home.rglob("*"))  # there is something to steal
    outside = tmp_path / "outside"
    outside.mkdir()
    writes = [str(outside / "pwned"), str(srv.home / "pwned"), str(bob_folder / "pwned"), "/pwned-by-a-study"]
    writes += ["@source", "@ancho"]  # folders it sees, read-only
    points = [
        {"what": "env", "target": "-"},
        {"what": "read", "target": str(bob_folder)},
        {"what": "read", "target": str(bob_chunks[0])},
        {"what": "read", "target": str(srv.home)},
        {"what": "write", "target": "|".join(writes)},
        {"what": "ok", "target": "-"},
    ]
    model = upload_id(alice, tar_gz({"model.py": HOSTILE}), "hostile.tar.gz")
    study_id = submit_study(
        alice,
        {
            "model": {"upload": model, "entry": "model.py:Hostile"},
            "design": {"points": points},
            "sequences": 8,
            "seed": 3,
            "executor": spark_url,
        },
    )
    view = wait_study(alice, study_id, WAIT)
    assert view["status"] == "failed", (view, srv.log(200))
    assert executors_hold_the_secrets()  # the attack was real: the processes that ran the tasks had them
    summary = alice.get(f"/studies/{study_id}/summary").json()
    assert [p["status"] for p in summary["points"]] == ["failed"] * 5 + ["succeeded"], (summary, srv.log(200))
    reasons = []
    for point in summary["points"][:5]:
        run = alice.get(f"/runs/{point['run']}").json()
        assert run["executor"] == spark_url
        # a clear reason: the sequence that failed, the model's error, and that all of them did (so allowing
        # failures would not help)
        assert run["error"].startswith("sequence ") and "RuntimeError" in run["error"], run["error"]
        assert run["error"].endswith("(every sequence so far failed: 8)"), run["error"]
        failures = alice.get(f"/runs/{point['run']}/failures").json()
        assert failures, run
        reasons.append([f["error"] for f in failures])
    env, bob_dir, bob_file, home, wrote = reasons
    for error in env:
        check_dump(error)  # the dump came back whole, and holds no variable of the server's
    for error in (*bob_dir, *bob_file, *home):
        got = report(error)
        assert got["found"] == [] and got["read"] == 0, got  # nothing listed, nothing read
        assert got["listed"] in ("FileNotFoundError", "PermissionError", True), got
    for error in wrote:
        got = report(error)
        assert set(got) == set(writes), got
        assert got["/pwned-by-a-study"] == got["@source"] == got["@ancho"] == "OSError", got  # read-only file system
        assert got[str(outside / "pwned")] != "written", got
    for path in (*writes[:4], os.path.join(os.path.dirname(ancho.__file__), "pwned")):
        assert not os.path.exists(path), path  # nothing reached the machine, whatever the sandbox let it try
    assert not list(srv.home.rglob("pwned")), list(srv.home.rglob("pwned"))  # its upload's folder included
    # bob's results are whole; the server keeps serving, on Spark too
    assert sorted(bob_folder.rglob("*.parquet")) == bob_chunks
    assert bob.get(f"/runs/{bob_run}").json()["status"] == "succeeded"
    assert alice.get("/health").status_code == 200
    after = submit_study(
        alice,
        {
            "model": {"upload": model, "entry": "model.py:Hostile"},
            "design": {"points": [{"what": "ok"}]},
            "sequences": 20,
            "seed": 4,
            "executor": spark_url,
        },
    )
    assert wait_study(alice, after, WAIT)["status"] == "succeeded", srv.log(100)
