"""The client verbs (`submit`, `status`, `watch`, `results`, `cancel`) against a real `ancho serve` on 127.0.0.1.

One server per module (its own ANCHO_HOME and free port); every command runs
as a real subprocess, as a user types it. The first tests need no server:
packing a model, reading the server's errors and its event stream.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ancho.client import Client, NoServer, _sse, describe_detail, normalize_url, pack
from ancho.errors import AnchoError

from ..conftest import ANCHO, EXAMPLES, run_cli

GAMBLER = str(EXAMPLES / "gambler.py")


def one_line_error(p, *needles, code=None):
    assert p.returncode != 0, p.stdout
    if code is not None:
        assert p.returncode == code, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("ancho: error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# -- no server needed -----------------------------------------------------------
def members(packed) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(packed.data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_pack_a_single_file_keeps_its_name_as_the_entry():
    packed = pack(GAMBLER)
    assert packed.entry == "gambler.py" and packed.filename == "gambler.tar.gz"
    assert members(packed) == {"gambler.py": Path(GAMBLER).read_bytes()}
    assert pack(GAMBLER + ":Gambler").entry == "gambler.py:Gambler"


def test_pack_a_folder_skips_caches_and_is_deterministic(tmp_path):
    folder = tmp_path / "proj"
    (folder / "lib").mkdir(parents=True)
    (folder / "model.py").write_text("import ancho\n")
    (folder / "lib" / "helper.py").write_text("X = 1\n")
    (folder / "requirements.txt").write_text("numpy\n")
    for junk in ("__pycache__/model.cpython-311.pyc", ".git/HEAD", ".venv/bin/python", "lib/old.pyc"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("junk")
    packed = pack(str(folder))
    assert sorted(members(packed)) == ["proj/lib/helper.py", "proj/model.py", "proj/requirements.txt"]
    assert packed.entry is None and packed.top == "proj"
    os.utime(folder / "model.py", (1, 1))
    assert pack(str(folder)).data == packed.data  # same source, same bytes, same upload id
    assert pack(f"{folder}:Cls").entry == "Cls"
    assert pack(f"{folder}:lib/helper.py:Cls").entry == "lib/helper.py:Cls"


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("/nonexistent/m.py", "model path '/nonexistent/m.py' does not exist"),
        (str(EXAMPLES / "README.md"), "is not a .py file"),
        (f"{EXAMPLES}:nothere.py", "'nothere.py' not found in model folder"),
        (f"{GAMBLER}:other.py:Cls", "a file takes only :Class"),
    ],
)
def test_pack_refuses_bad_paths(spec, needle):
    with pytest.raises(AnchoError) as exc:
        pack(spec)
    assert needle in str(exc.value)


def test_urls_details_and_events():
    assert normalize_url("127.0.0.1:8642/") == "http://127.0.0.1:8642"
    assert normalize_url("https://h/api/v1/") == "https://h"
    with pytest.raises(NoServer, match="ANCHO_URL"):
        normalize_url("")
    detail = [
        {"loc": ["body", "params"], "msg": "unknown parameter 'stak'", "type": "value_error"},
        {"loc": ["body", "model", "entry"], "msg": "bad"},
    ]
    assert describe_detail(detail) == "params: unknown parameter 'stak'; model.entry: bad"
    assert describe_detail("the  token\nis bad") == "the token is bad"
    lines = ["event: progress", 'data: {"done": 1}', "", ": comment", "event: end", "data: {", "data: }", ""]
    assert list(_sse(iter(lines))) == [("progress", '{"done": 1}'), ("end", "{\n}")]


def test_no_server_is_a_one_line_error_saying_how_to_set_it():
    env = {"ANCHO_URL": "", "ANCHO_TOKEN": "x"}
    for args in (["status"], ["submit", GAMBLER]):
        one_line_error(run_cli(*args, env=env), "ANCHO_URL", "--url", code=2)


def test_unreachable_server_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    url = f"http://127.0.0.1:{port}"
    one_line_error(
        run_cli("status", env={"ANCHO_URL": url, "ANCHO_TOKEN": "x"}), f"cannot reach the Ancho server at {url}", code=1
    )
    one_line_error(run_cli("submit", GAMBLER, "--url", url, "--token", "x"), url)


def test_a_failing_or_foreign_server_is_a_one_line_error():
    """A real HTTP server that is not Ancho: 500 on /api/v1/runs, an HTML 404 elsewhere."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/api/v1/runs?"):
                body, code, kind = b'{"detail": "database is locked"}', 500, "application/json"
            else:
                body, code, kind = b"<html>nothing here</html>", 404, "text/html"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        env = {"ANCHO_URL": url, "ANCHO_TOKEN": "x"}
        one_line_error(
            run_cli("status", env=env),
            f"the server at {url} failed on GET /runs",
            "HTTP 500: database is locked",
            code=1,
        )
        one_line_error(
            run_cli("cancel", "abc", env=env), "HTTP 404", "is ANCHO_URL the address of an Ancho server", code=1
        )
        with Client(url, "x") as c:
            with pytest.raises(AnchoError, match="is ANCHO_URL the address of an Ancho server"):
                c.health()
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- a real server -------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ancho serve` as a subprocess on 127.0.0.1 (its own process group), with a private ANCHO_HOME."""

    def __init__(self, home: Path, port: int | None = None):
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHO_")} | {"ANCHO_HOME": str(home)}
        self.proc = None

    def add_user(self, name: str) -> str:
        p = subprocess.run([ANCHO, "users", "add", name], capture_output=True, text=True, env=self.env, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip().splitlines()[-1]

    def start(self) -> Server:
        with open(self.home / "serve.log", "ab") as log:
            self.proc = subprocess.Popen(
                [ANCHO, "serve", "--port", str(self.port), "--concurrency", "2", "--workers", "2"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        with Client(self.url) as c:
            while True:
                try:
                    c.health()
                    return self
                except Exception:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"ancho serve did not start:\n{(self.home / 'serve.log').read_text()}"
                        ) from None
                    time.sleep(0.2)

    def stop(self) -> None:
        """Graceful stop (SIGTERM); the whole process group is killed if that does not end it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module; yields (url, token of alice, token of bob)."""
    srv = Server(tmp_path_factory.mktemp("server-home"))
    alice, bob = srv.add_user("alice"), srv.add_user("bob")
    srv.start()
    try:
        yield srv.url, alice, bob
    finally:
        srv.stop()


class Cli:
    """cli(*args, token=alice) runs `ancho …` against the server as a user would (a real subprocess)."""

    def __init__(self, url: str, token: str, home: Path):
        self.url, self.token, self.home = url, token, home

    def env(self, token: str | None) -> dict:
        return {"ANCHO_HOME": str(self.home), "ANCHO_URL": self.url, "ANCHO_TOKEN": token or ""}

    def __call__(self, *args, token: str | None = "alice"):
        return run_cli(*args, env=self.env(self.token if token == "alice" else token))


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    url, alice, _ = server
    return Cli(url, alice, tmp_path_factory.mktemp("client-home"))


#: the settings of the run ``finished`` submits, which a local run repeats to compare summaries
FINISHED = ("-n", "2000", "--seed", "3", "-p", "stake=3", "-p", "goal=10", "-p", "p=0.45", "-t", "rounds>=30")


@pytest.fixture(scope="module")
def finished(cli):
    """A succeeded run of examples/gambler.py (2,000 sequences), submitted with --watch --json: (run id, summary)."""
    p = cli("submit", GAMBLER, *FINISHED, "--watch", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") == 1  # exactly the summary object
    summary = json.loads(p.stdout)
    return summary["run"], summary


@pytest.mark.slow
def test_submit_a_file_and_watch_gives_the_same_summary_as_a_local_run(finished, cli, tmp_path):
    run_id, summary = finished
    assert summary["status"] == "succeeded" and summary["sequences"] == 2000 and summary["seed"] == 3
    assert summary["params"] == {"stake": 3, "goal": 10, "p": 0.45}
    assert summary["targets"][0]["expr"] == "rounds>=30"
    local = run_cli("run", GAMBLER, *FINISHED, "--json", env={"ANCHO_HOME": str(tmp_path / "local")})
    assert local.returncode == 0, local.stderr
    mine = json.loads(local.stdout)
    same_numbers(summary, {**mine, "run": run_id})


def same_numbers(a, b, where="summary"):
    """Equal structure and values; floats to rounding (the server and this machine may sum in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, a, b)
        for k in a:
            same_numbers(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            same_numbers(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_submit_prints_the_run_id_and_watch_prints_tables(cli):
    p = cli("submit", GAMBLER, "-n", "300", "--seed", "1")
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.strip().splitlines()[-1]
    w = cli("watch", run_id)
    assert w.returncode == 0, w.stderr
    assert w.stderr == ""  # no terminal: no progress bar
    assert f"run {run_id}" in w.stdout and "95% CI" in w.stdout and "median_rounds_when_won" in w.stdout
    created = json.loads(cli("submit", GAMBLER, "-n", "10", "--json").stdout)
    assert set(created) == {"id", "status"} and created["status"] in ("queued", "running", "succeeded")


@pytest.mark.slow
def test_submit_a_folder_with_siblings_and_a_class(cli, two_models):
    folder = two_models
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"\0not python")
    p = cli("submit", f"{folder}:A", "-n", "100", "-p", "scale=2", "--watch", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert list(summary["outputs"]) == ["a"] and 0 <= summary["outputs"]["a"]["max"] <= 2
    # several models and no class: the server's message, never naming the server's copy of the folder
    p = cli("submit", str(folder), "-n", "10")
    one_line_error(p, "several models", "A, B", code=2)
    assert "/sources/trees/" not in p.stderr


@pytest.mark.slow
def test_status_of_one_run_and_the_table(finished, cli):
    run_id, _ = finished
    p = cli("status", run_id)
    assert p.returncode == 0, p.stderr
    assert f"run {run_id}" in p.stdout and "succeeded" in p.stdout and "2,000/2,000" in p.stdout
    view = json.loads(cli("status", run_id, "--json").stdout)
    assert view["id"] == run_id and view["status"] == "succeeded" and view["progress"] == {"done": 2000, "total": 2000}
    runs = json.loads(cli("status", "--json").stdout)
    assert run_id in [r["id"] for r in runs]
    created = [r["created"] for r in runs]
    assert created == sorted(created, reverse=True)  # newest first
    table = cli("status")
    assert table.returncode == 0 and run_id in table.stdout and "Gambler" in table.stdout
    assert all(r["status"] == "succeeded" for r in json.loads(cli("status", "--status", "succeeded", "--json").stdout))
    one_line_error(cli("status", "--status", "done"), "status 'done'")


@pytest.mark.slow
def test_status_and_watch_of_a_batch_run_name_its_block(cli):
    """A batch model's results depend on its block: the server's run says it, and so do the client's headings."""
    p = cli("submit", f"{EXAMPLES / 'option.py'}:BSCall", "-n", "20000", "--seed", "4", "--watch")
    assert p.returncode == 0, p.stderr
    heading = next(line for line in p.stdout.splitlines() if line.startswith("run "))
    assert "block 4,096" in heading, p.stdout
    run_id = heading.split()[1]
    assert "block 4,096" in cli("status", run_id).stdout
    assert json.loads(cli("status", run_id, "--json").stdout)["block"] == 4096


@pytest.mark.slow
def test_results_in_every_format(finished, cli, tmp_path):
    run_id, summary = finished
    p = cli("results", run_id)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == summary
    assert json.loads(cli("results", run_id, "--format", "json").stdout) == summary
    out = tmp_path / "summary.json"
    assert cli("results", run_id, "-o", str(out)).returncode == 0 and json.loads(out.read_text()) == summary

    csv = cli("results", run_id, "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0] == "sequence,won,rounds" and len(lines) == 2001
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(2000))
    out_csv = tmp_path / "r.csv"
    assert cli("results", run_id, "-f", "csv", "-o", str(out_csv)).returncode == 0
    assert out_csv.read_text().splitlines() == lines

    out_pq = tmp_path / "r.parquet"
    p = cli("results", run_id, "--format", "parquet", "-o", str(out_pq))
    assert p.returncode == 0, p.stderr
    table = pq.read_table(out_pq)
    assert table.num_rows == 2000 and table.column_names == ["sequence", "won", "rounds"]
    assert table.column("rounds").to_pylist() == [int(line.split(",")[2]) for line in lines[1:]]
    piped = subprocess.run(
        [ANCHO, "results", run_id, "-f", "parquet"],
        capture_output=True,
        env={**os.environ, **cli.env(cli.token)},
        timeout=120,
    )  # stdout is a pipe: allowed
    assert piped.returncode == 0 and pq.read_table(io.BytesIO(piped.stdout)).num_rows == 2000
    assert not list(tmp_path.glob(".*.part"))
    one_line_error(cli("results", run_id, "--format", "xml"), "--format 'xml'")


SLOW_MODEL = """
import time

class Slow(ancho.Model):
    pause: float = 0.02

    def sequence(self, rng):
        time.sleep(self.pause)
        return {"x": rng.random()}
"""


@pytest.mark.slow
def test_cancel_a_slow_run(cli, write_model, server):
    url, alice, _ = server
    path = write_model(SLOW_MODEL, name="slow.py")
    p = cli("submit", str(path), "-n", "1000000")
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.strip().splitlines()[-1]
    with Client(url, alice) as c:  # wait until it is really running (chunks landing)
        deadline = time.monotonic() + 120
        while c.get_run(run_id)["progress"]["done"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    p = cli("cancel", run_id)
    assert p.returncode == 0, p.stderr
    assert f"run {run_id} cancelled after" in p.stdout
    assert json.loads(cli("status", run_id, "--json").stdout)["status"] == "cancelled"
    assert "had already been cancelled" in cli("cancel", run_id).stdout
    one_line_error(cli("watch", run_id), f"run {run_id} was cancelled", code=1)
    one_line_error(cli("results", run_id), f"run '{run_id}' was cancelled", "no summary", code=1)
    rows = cli("results", run_id, "-f", "csv")
    assert rows.returncode == 0 and "warning: run" in rows.stderr and rows.stdout.startswith("sequence,x\n")


@pytest.mark.slow
def test_a_failed_run_exits_1_with_its_reason(cli):
    p = cli("submit", GAMBLER, "-n", "50", "-t", "nope>=3", "--watch")
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("ancho: error: run ")
        and "failed: target 'nope>=3' names output 'nope'" in err[0]
    )
    run_id = p.stdout.strip().splitlines()[-1]
    status = cli("status", run_id)
    assert status.returncode == 0 and "failed" in status.stdout and "error: target 'nope>=3'" in status.stdout
    one_line_error(cli("results", run_id), f"run '{run_id}' failed: target 'nope>=3'", code=1)


@pytest.mark.slow
def test_server_errors_are_one_line(cli, finished):
    run_id, _ = finished
    one_line_error(cli("status", token="not-a-token"), "refused the token", "ancho users add", code=2)
    one_line_error(cli("status", run_id, token=None), "no token", "ANCHO_TOKEN", "ancho users add", code=2)
    for args in (
        ["status", "nope"],
        ["watch", "nope"],
        ["results", "nope"],
        ["results", "nope", "-f", "csv"],
        ["cancel", "nope"],
        ["status", "../../etc"],
    ):
        one_line_error(cli(*args), "no run '", code=2)
    one_line_error(
        cli("submit", GAMBLER, "-p", "stak=3"),
        "rejected the run",
        "params:",
        "unknown parameter 'stak'",
        "did you mean 'stake'",
        code=2,
    )
    one_line_error(cli("submit", GAMBLER, "-p", "stake=three"), "params:", "parameter 'stake' expects int")
    one_line_error(
        cli("submit", GAMBLER, "-n", "0"), "--sequences must be between 1"
    )  # checked here, before the upload
    one_line_error(cli("submit", GAMBLER + ":Nope"), "no ancho.Model subclass named 'Nope'")
    one_line_error(cli("submit", GAMBLER, "-p", "stake"), "--param 'stake' is not NAME=VALUE")
    one_line_error(cli("submit", "/nonexistent/m.py"), "model path '/nonexistent/m.py' does not exist")


@pytest.mark.slow
def test_another_user_sees_no_run(cli, finished, server):
    run_id, _ = finished
    _, _, bob = server
    one_line_error(cli("status", run_id, token=bob), f"no run '{run_id}'")
    one_line_error(cli("cancel", run_id, token=bob), f"no run '{run_id}'")
    assert run_id not in cli("status", "--json", token=bob).stdout


@pytest.mark.slow
def test_the_client_class(server, finished):
    url, alice, _ = server
    run_id, summary = finished
    with Client(url + "/api/v1/", alice) as c:
        assert c.health()["status"] == "ok"
        assert c.summary(run_id) == summary
        rows = list(c.rows(run_id, page=700))
        assert [r["sequence"] for r in rows] == list(range(2000))
        csv = b"".join(c.results(run_id, "csv")).decode().splitlines()
        assert [int(line.split(",")[2]) for line in csv[1:]] == [r["rounds"] for r in rows]
        states = list(c.events(run_id))
        assert states[-1]["end"] and states[-1]["status"] == "succeeded" and states[-1]["done"] == 2000


@pytest.mark.slow
def test_failed_sequences_are_listed(cli, write_model):
    path = write_model(
        """
        class Flaky(ancho.Model):
            def sequence(self, rng):
                if rng.random() < 0.2:
                    raise ValueError("unlucky draw")
                return {"x": rng.random()}
    """,
        name="flaky.py",
    )
    p = cli("submit", str(path), "-n", "100", "--seed", "5", "--max-failures", "100", "--watch")
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.splitlines()[0]
    assert f"sequences failed (ancho status {run_id} --failures)" in p.stdout
    listed = cli("status", run_id, "--failures")
    assert (
        listed.returncode == 0
        and "ValueError: unlucky draw" in listed.stdout
        and 'raise ValueError("unlucky draw")' in listed.stdout
    )
    found = json.loads(cli("status", run_id, "--failures", "--json").stdout)
    assert found and all(f["error"] == "ValueError: unlucky draw" for f in found)


@pytest.mark.slow
def test_watch_goes_on_across_a_server_restart(tmp_path, write_model):
    srv = Server(tmp_path / "home")
    token = srv.add_user("carol")
    srv.start()
    env = {"ANCHO_HOME": str(tmp_path / "client"), "ANCHO_URL": srv.url, "ANCHO_TOKEN": token}
    watcher = None
    try:
        path = write_model(SLOW_MODEL, name="slow.py")
        p = run_cli("submit", str(path), "-n", "4000", "-p", "pause=0.005", env=env)
        assert p.returncode == 0, p.stderr
        run_id = p.stdout.strip()
        watcher = subprocess.Popen(
            [ANCHO, "watch", run_id, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        deadline = time.monotonic() + 120  # restart once the watcher follows the events (the access log shows it)
        while f"/runs/{run_id}/events" not in (srv.home / "serve.log").read_text() and time.monotonic() < deadline:
            assert watcher.poll() is None, watcher.communicate()
            time.sleep(0.1)
        srv.stop()
        time.sleep(1.5)  # the watcher sees the server gone and keeps trying
        srv.start()
        out, err = watcher.communicate(timeout=300)
        assert watcher.returncode == 0, err
        summary = json.loads(out)
        assert (
            summary["run"] == run_id and summary["status"] == "succeeded" and summary["outputs"]["x"]["count"] == 4000
        )
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        srv.stop()
