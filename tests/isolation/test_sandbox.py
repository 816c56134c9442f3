"""The sandbox around model code: real bubblewrap, hostile models run through the real engine.

Each hostile model runs with ``LocalExecutor(wrap=Sandbox(policy).wrap)`` and a
store of its own, and must fail its sequence (or its run) with a clear
reason while the host stays untouched. Without bwrap these tests skip
locally and fail under CI.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ancho
from ancho import isolation as sb
from ancho.engine import RunSpec, create_record, execute
from ancho.errors import InputError, RunFailed
from ancho.executors.local import LocalExecutor
from ancho.isolation import Sandbox, SandboxPolicy, SandboxUnavailable, make_wrap, wrap_command
from ancho.loading import load_model
from ancho.stores.embedded import EmbeddedStore

from ..conftest import EXAMPLES, ROOT, need_service
from ..conftest import alive as is_alive
from .conftest import write_model


@pytest.fixture(scope="module")
def bwrap():
    problem = sb.sandbox_problem()
    if problem:
        need_service("bubblewrap", problem)
    return sb.bwrap_path()


@pytest.fixture
def process_limit(bwrap):
    problem = sb.process_limit_problem()
    if problem:
        need_service("a writable pids cgroup", problem)


def model_file(folder: Path, code: str, name: str = "model.py") -> Path:
    return write_model(
        folder, name, "import os, socket, time\nimport ancho\nimport numpy as np\n\n" + textwrap.dedent(code)
    )


class Env:
    """A model folder, a store, a scratch folder, and a way to run a model sandboxed or not."""

    def __init__(self, tmp_path: Path, home: Path):
        self.tmp = tmp_path
        self.home = home
        self.models = tmp_path / "models"
        self.scratch = tmp_path / "scratch"
        self.store = EmbeddedStore(home)
        self.sandboxes: list[Sandbox] = []

    def sandbox(self, **policy) -> Sandbox:
        policy.setdefault("read_only", (str(self.models),))
        policy.setdefault("scratch", str(self.scratch))
        s = Sandbox(SandboxPolicy(**policy))
        self.sandboxes.append(s)
        return s

    def run(self, path: Path, sandboxed: bool = True, workers: int = 1, policy: dict | None = None, **kw):
        wrap = self.sandbox(**(policy or {})).wrap if sandboxed else None
        with LocalExecutor(workers, wrap=wrap) as ex:
            return ancho.run(str(path), executor=ex, store=self.store, **kw)

    def close(self):
        for s in self.sandboxes:
            s.close()
        self.store.close()


@pytest.fixture
def env(tmp_path, home, bwrap):
    e = Env(tmp_path, home)
    yield e
    e.close()


def failed_run(env: Env, path: Path, **kw) -> tuple[str, list]:
    """Run a model that must fail; return the run's error and its recorded failures."""
    with pytest.raises(RunFailed) as info:
        env.run(path, **kw)
    run = env.store.list_runs(limit=1)[0]
    assert run.status == "failed" and run.error == str(info.value)
    return str(info.value), env.store.failures(run.id)


# -- availability, command line, policy --------------------------------------------------------


def test_missing_bwrap_refuses_with_install_hint(monkeypatch, caplog):
    monkeypatch.setenv("ANCHO_BWRAP", "/nonexistent/bwrap")
    assert not sb.sandbox_available()
    with pytest.raises(SandboxUnavailable) as info:
        make_wrap(SandboxPolicy(), allow_unsandboxed=False)
    assert "bubblewrap" in str(info.value) and "apt-get install bubblewrap" in str(info.value)
    assert "allow_unsandboxed" in str(info.value)
    with pytest.raises(SandboxUnavailable):
        Sandbox(SandboxPolicy())
    with caplog.at_level(logging.WARNING, logger="ancho.isolation.sandbox"):
        assert make_wrap(SandboxPolicy(), allow_unsandboxed=True) is None
    assert "WITHOUT a sandbox" in caplog.text


def test_policy_validation_names_the_setting():
    with pytest.raises(InputError, match="address_space"):
        SandboxPolicy(address_space=0)
    with pytest.raises(InputError, match="sequence_timeout"):
        SandboxPolicy(sequence_timeout=-1)
    for bad in (0, -1, True, "60"):
        with pytest.raises(InputError, match="'summary_timeout' must be a number of seconds > 0 or None"):
            SandboxPolicy(summary_timeout=bad)
    with pytest.raises(InputError, match="open_files"):
        SandboxPolicy(open_files=3)
    assert (
        sb.limits_env(SandboxPolicy(address_space=None, open_files=None, file_size=None, sequence_timeout=None)) == {}
    )
    limits = json.loads(sb.limits_env(SandboxPolicy(cpu_seconds=7, sequence_timeout=3))["ANCHO_LIMITS"])
    assert limits["cpu"] == 7 and limits["timeout"] == 3


def test_command_line(bwrap, tmp_path):
    argv = [sys.executable, "-m", "ancho.executors.worker"]
    cmd = wrap_command(argv, SandboxPolicy(scratch=tmp_path / "s", read_only=(str(tmp_path),)))
    assert cmd[-3:] == argv and "/bin/sh" in cmd[:4]
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop"):
        assert flag in cmd
    assert "--share-net" not in cmd
    assert "--share-net" in wrap_command(argv, SandboxPolicy(scratch=tmp_path / "s", network=True))
    with pytest.raises(InputError, match="does not exist"):
        wrap_command(argv, SandboxPolicy(scratch=tmp_path / "s", read_only=("/nonexistent/model",)))


def test_the_trajectory_cap_reaches_sandboxed_workers(bwrap, tmp_path, monkeypatch):
    """``ANCHO_MAX_STEPS`` is a server's setting that its workers check where sequences run: passed in (a number
    only), while the rest of the server's environment stays out."""
    argv = [sys.executable, "-m", "ancho.executors.worker"]

    def setenv(cmd):
        return {cmd[i + 1]: cmd[i + 2] for i, arg in enumerate(cmd) if arg == "--setenv"}

    monkeypatch.setenv("ANCHO_MAX_STEPS", "250000")
    assert setenv(wrap_command(argv, SandboxPolicy(scratch=tmp_path / "s")))["ANCHO_MAX_STEPS"] == "250000"
    monkeypatch.setenv("ANCHO_MAX_STEPS", "1; echo")
    assert "ANCHO_MAX_STEPS" not in setenv(wrap_command(argv, SandboxPolicy(scratch=tmp_path / "s")))


# -- what a sandboxed worker sees ------------------------------------------------------------


def test_clean_environment_and_identity(env, monkeypatch):
    monkeypatch.setenv("ANCHO_TEST_SECRET", "s3cr3t")
    path = model_file(
        env.models,
        """
        class Look(ancho.Model):
            def sequence(self, rng):
                import ancho as a
                return {
                    "secret_seen": "s3cr3t" in "".join(os.environ.values()) or "s3cr3t" in open("/proc/self/environ").read(),
                    "n_env": len(os.environ),
                    "uid": os.getuid(),
                    "named_ancho": __import__("pwd").getpwuid(os.getuid()).pw_name == "ancho",
                    "home_is_scratch": os.environ["HOME"] == "/scratch",
                    "ancho_from_sandbox": a.__file__.startswith("/opt/ancho/"),
                    "pid1_is_sandbox": "bwrap" in open("/proc/1/cmdline").read(),
                    "processes_visible": len([p for p in os.listdir("/proc") if p.isdigit()]),
                }
    """,
    )
    res = env.run(path, sequences=3, seed=1)
    f = res.frame
    assert not f.secret_seen.any()
    assert (f.uid == 65534).all() and f.named_ancho.all()
    assert f.home_is_scratch.all() and f.ancho_from_sandbox.all() and f.pid1_is_sandbox.all()
    assert (f.processes_visible <= 3).all()  # bwrap's init, the worker (and maybe a reader): no host process
    assert (f.n_env < 25).all()


# 1 -- network ---------------------------------------------------------------------------------


class CountingServer:
    """A TCP server on the host's 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_network_host_loopback_unreachable(env):
    server = CountingServer()
    try:
        path = model_file(
            env.models,
            f"""
            class Phone(ancho.Model):
                port: int = {server.port}
                def sequence(self, rng):
                    with socket.create_connection(("127.0.0.1", self.port), timeout=5):
                        pass
                    return {{"connected": True}}
        """,
        )
        # the control: unsandboxed, the same model reaches the server
        assert env.run(path, sandboxed=False, sequences=2, seed=1).frame.connected.all()
        seen_unsandboxed = server.accepted
        assert seen_unsandboxed == 2
        error, failures = failed_run(env, path, sequences=4, seed=1)
        assert "ConnectionRefusedError" in error or "Network is unreachable" in error
        assert failures and failures[0].sequence in range(4)
        assert server.accepted == seen_unsandboxed  # nothing got through
    finally:
        server.close()


# 2 -- writes ----------------------------------------------------------------------------------

WRITER = """
    import errno

    class Writer(ancho.Model):
        targets: str = ""   # paths separated by '|'
        def sequence(self, rng):
            out = {}
            for i, target in enumerate(self.targets.split("|")):
                try:
                    with open(target, "w") as fh:
                        fh.write("written by a model")
                    out[f"w{i}"] = 0
                except OSError as exc:
                    out[f"w{i}"] = exc.errno
            return out
"""


def test_writes_only_into_scratch(env):
    import errno

    path = model_file(env.models, WRITER)
    env.home.mkdir(parents=True, exist_ok=True)
    outside = env.tmp / "outside"
    outside.mkdir()
    original = path.read_text()
    targets = [
        str(path),  # 0: the model's own source (bound read-only)
        str(env.models / "new.py"),  # 1: a new file in the source tree
        str(outside / "x.txt"),  # 2: elsewhere under the host's /tmp (not visible)
        "/tmp/ancho-sandbox-escape.txt",  # 3: the host's /tmp itself
        str(env.home / "stolen.txt"),  # 4: ANCHO_HOME
        "/etc/ancho-sandbox-escape",  # 5: system folders
        "/usr/ancho-sandbox-escape",  # 6
        "/ancho-root-file",  # 7: the sandbox's own root (read-only tmpfs)
        "/scratch/in-scratch.txt",  # 8: scratch: works
        "/scratch/tmp/in-tmpdir.txt",  # 9: $TMPDIR: works
    ]
    res = env.run(path, sequences=2, seed=1, params={"targets": "|".join(targets)})
    row = res.frame.iloc[0]
    for i in range(8):
        assert row[f"w{i}"] in (errno.EROFS, errno.ENOENT, errno.EACCES), (targets[i], row[f"w{i}"])
    assert row["w8"] == 0 and row["w9"] == 0
    # the host is untouched; scratch got the files
    assert path.read_text() == original
    assert not (env.models / "new.py").exists()
    assert list(outside.iterdir()) == []
    assert not Path("/tmp/ancho-sandbox-escape.txt").exists()
    assert not (env.home / "stolen.txt").exists()
    assert not Path("/etc/ancho-sandbox-escape").exists() and not Path("/usr/ancho-sandbox-escape").exists()
    assert (env.scratch / "in-scratch.txt").read_text() == "written by a model"
    assert (env.scratch / "tmp" / "in-tmpdir.txt").exists()


# 3 -- fork bomb -------------------------------------------------------------------------------


@pytest.mark.slow
def test_fork_bomb_is_contained(env, process_limit):
    import psutil

    path = model_file(
        env.models,
        """
        class Bomb(ancho.Model):
            def sequence(self, rng):
                while True:
                    os.fork()
    """,
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    sandbox = env.sandbox(max_processes=32)
    with LocalExecutor(2, wrap=sandbox.wrap) as ex:
        with pytest.raises(RunFailed) as info:
            ancho.run(str(path), executor=ex, store=env.store, sequences=20, seed=1)
        peaks = [int(Path(c, "pids.peak").read_text()) for c in sandbox._cgroups if Path(c).exists()]
        # the same executor still runs a normal model afterwards
        ok = model_file(
            env.models,
            "class Fine(ancho.Model):\n    def sequence(self, rng):\n        return {'x': rng.random()}\n",
            "fine.py",
        )
        assert len(ancho.run(str(ok), executor=ex, store=env.store, sequences=50, seed=2).frame) == 50
    assert "BlockingIOError" in str(info.value) and "Resource temporarily unavailable" in str(info.value)
    assert peaks and max(peaks) <= 32 + sb.HELPER_PROCESSES
    cgroups = list(sandbox._cgroups)
    sandbox.close()
    # nothing is left: no child of ours, and every worker cgroup is empty and gone
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert left == set()
    for c in cgroups:
        assert not Path(c).exists() or Path(c, "cgroup.procs").read_text().strip() == ""


# 4 -- memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bytearray(10**10)", "np.ones(10**10 // 8)"])
def test_ten_gigabytes_is_a_memory_error(env, how):
    path = model_file(
        env.models,
        f"""
        class Hog(ancho.Model):
            def sequence(self, rng):
                block = {how}
                return {{"n": len(block)}}
    """,
    )
    error, failures = failed_run(env, path, sequences=3, seed=1, policy={"address_space": 2 * 1024**3})
    assert "MemoryError" in error
    assert failures and "MemoryError" in failures[0].error


# 5 -- time ------------------------------------------------------------------------------------


def test_sleep_forever_times_out(env):
    path = model_file(
        env.models,
        """
        class Sleeper(ancho.Model):
            def sequence(self, rng):
                time.sleep(10**9)
                return {"x": 1}
    """,
    )
    error, failures = failed_run(env, path, sequences=2, seed=1, policy={"sequence_timeout": 1.5})
    assert "TimeoutError: timed out after 1.5 s" in error
    assert failures[0].error.startswith("TimeoutError: timed out after 1.5 s")


def test_timeout_leaves_normal_sequences_alone(env):
    path = model_file(
        env.models,
        """
        class Sometimes(ancho.Model):
            def sequence(self, rng):
                return {"x": rng.random()}
    """,
    )
    res = env.run(path, sequences=500, seed=3, policy={"sequence_timeout": 30})
    assert len(res.frame) == 500 and res.summary["failures"] == 0


@pytest.mark.slow
def test_swallowed_timeout_kills_the_worker(env):
    path = model_file(
        env.models,
        """
        class Stubborn(ancho.Model):
            def sequence(self, rng):
                while True:
                    try:
                        time.sleep(10**9)
                    except BaseException:
                        pass
    """,
    )
    error, _ = failed_run(env, path, sequences=2, seed=1, policy={"sequence_timeout": 0.5, "timeout_grace": 0.5})
    assert "were lost 4 times" in error and "killed by SIGALRM" in error


@pytest.mark.slow
def test_ignored_alarm_signal_gets_the_worker_killed(env):
    path = model_file(
        env.models,
        """
        import signal

        class Deaf(ancho.Model):
            def sequence(self, rng):
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
                time.sleep(10**9)
    """,
    )
    error, _ = failed_run(env, path, sequences=1, seed=1, policy={"sequence_timeout": 0.5, "timeout_grace": 0.5})
    assert "were lost 4 times" in error and "killed by SIGKILL" in error


@pytest.mark.slow
def test_a_sequence_holding_the_gil_is_stopped_by_the_driver(env):
    """C code that holds the GIL and never returns (here the regular expression engine backtracking) starves the
    worker's own watchdog thread and its alarm handler; the driver, outside the sandbox, kills a worker whose reply
    is overdue by the per-sequence limit (each chunk's sequences, and its set-up, at ``sequence_timeout`` each)."""
    path = model_file(
        env.models,
        """
        import re

        class Backtrack(ancho.Model):
            def sequence(self, rng):
                re.match(r"(a+)+$", "a" * 64 + "b")
                return {"x": 1}
    """,
    )
    began = time.monotonic()
    error, _ = failed_run(env, path, sequences=1, seed=1, policy={"sequence_timeout": 0.5, "timeout_grace": 0.5})
    assert "were lost 4 times" in error
    assert "gave no answer within 2 s (1 sequence and its set-up at the sandbox's sequence_timeout of 0.5 s" in error
    assert time.monotonic() - began < 60  # (four workers, each stopped after ~2 s)


@pytest.mark.slow
def test_a_batch_model_looping_outside_its_call_is_stopped_after_its_block(env):
    """The worker's watchdog times each call of ``sequences``; a dict of outputs whose iteration never ends loops
    in the worker's checks, after the call. The driver's deadline counts a batch model's blocks, not its sequences
    (it waited 1,000 × the limit here: for ever with 4,096-sequence blocks and the default limit)."""
    path = model_file(
        env.models,
        """
        import itertools

        class Endless(dict):
            def __iter__(self):
                return (f"k{i}" for i in itertools.count())

        class Looping(ancho.Model):
            block = 1000

            def sequences(self, rng, n):
                return Endless(x=np.zeros(n))
    """,
    )
    error, _ = failed_run(env, path, sequences=1000, seed=1, policy={"sequence_timeout": 0.5, "timeout_grace": 0.5})
    assert "were lost 4 times" in error
    assert "gave no answer within 2 s (1 block and its set-up at the sandbox's sequence_timeout of 0.5 s" in error


def test_summary_functions_that_never_end_are_stopped_by_the_driver(env):
    """A summary function runs once a run in the sandbox, with no per-sequence limit; one that never returns (here
    holding the GIL, so nothing in its own process could stop it) is stopped by the driver at ``summary_timeout``."""
    path = model_file(
        env.models,
        """
        import re

        class Endless(ancho.Model):
            def sequence(self, rng):
                return {"x": rng.random()}

            @ancho.summary
            def forever(self, results):
                re.match(r"(a+)+$", "a" * 64 + "b")
                return 1.0
    """,
    )
    began = time.monotonic()
    error, _ = failed_run(env, path, sequences=20, seed=1, policy={"summary_timeout": 1})
    assert error == (
        "the model's summary functions ran longer than 1 s (the sandbox's summary_timeout) and were stopped; "
        "make them quicker, or raise the limit"
    )
    assert time.monotonic() - began < 30


def test_summary_functions_within_their_time_give_their_values(env):
    path = model_file(
        env.models,
        """
        class Quick(ancho.Model):
            def sequence(self, rng):
                return {"x": rng.random()}

            @ancho.summary
            def mean_x(self, results):
                return float(results.x.mean())
    """,
    )
    runs = env.home / "runs"  # (what a summary function reads: the run's results, bound read-only as a server does)
    runs.mkdir(parents=True, exist_ok=True)
    res = env.run(
        path, sequences=200, seed=4, policy={"summary_timeout": 30, "read_only": (str(env.models), str(runs))}
    )
    assert res.summary["custom"]["mean_x"] == pytest.approx(float(res.frame.x.mean()), rel=1e-12)


@pytest.mark.slow
def test_cpu_limit_kills_the_worker_with_sigxcpu(env):
    path = model_file(
        env.models,
        """
        class Spin(ancho.Model):
            def sequence(self, rng):
                while True:
                    pass
    """,
    )
    error, _ = failed_run(env, path, sequences=2, seed=1, policy={"cpu_seconds": 1, "sequence_timeout": None})
    assert "were lost 4 times" in error and "killed by SIGXCPU" in error


def test_open_files_limit(env):
    path = model_file(
        env.models,
        """
        class Hoarder(ancho.Model):
            def sequence(self, rng):
                files = [open("/dev/null") for _ in range(10_000)]
                return {"n": len(files)}
    """,
    )
    error, _ = failed_run(env, path, sequences=1, seed=1, policy={"open_files": 64})
    assert "Too many open files" in error


# 6 -- other runs' results and ANCHO_HOME --------------------------------------------------------


def test_other_runs_and_ancho_home_are_invisible(env):
    secret = model_file(
        env.models,
        "class Secret(ancho.Model):\n    def sequence(self, rng):\n        return {'secret': 42.0}\n",
        "secret.py",
    )
    other = env.run(secret, sandboxed=False, sequences=5, seed=1)
    runs_dir = env.home / "runs"
    assert any(runs_dir.rglob("*")), "the unsandboxed run stored results under ANCHO_HOME"
    path = model_file(
        env.models,
        """
        class Snoop(ancho.Model):
            where: str = ""
            def sequence(self, rng):
                seen = 0
                for root, dirs, files in os.walk(self.where):
                    seen += len(files)
                return {"exists": os.path.exists(self.where), "files": seen}
    """,
    )
    for where in (str(env.home), str(runs_dir), str(env.home / "runs" / other.run_id)):
        # bound parent (tmp_path) read-only: ANCHO_HOME inside it is hidden by an empty tmpfs
        row = env.run(
            path, sequences=1, seed=1, params={"where": where}, policy={"read_only": (str(env.tmp),)}
        ).frame.iloc[0]
        assert row.files == 0, where
        # only the model folder bound: ANCHO_HOME does not exist at all
        row = env.run(path, sequences=1, seed=1, params={"where": where}).frame.iloc[0]
        assert not row.exists and row.files == 0, where


def test_model_environment_under_hidden_ancho_home(env):
    """A model's own environment lives in ANCHO_HOME/envs: its interpreter is bound, the rest of ANCHO_HOME stays hidden."""
    import numpy

    venv = env.home / "envs" / "k1"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # a real model environment has NumPy installed; this one borrows Ancho's through a .pth
    deps = str(Path(numpy.__file__).resolve().parents[1])
    next((venv / "lib").glob("python3*/site-packages")).joinpath("deps.pth").write_text(deps + "\n")
    path = model_file(
        env.models,
        """
        import sys

        class InEnv(ancho.Model):
            home: str = ""
            def sequence(self, rng):
                return {"prefix_ok": sys.prefix.endswith("/envs/k1"), "home_entries": len(os.listdir(self.home)),
                        "envs_entries": len(os.listdir(os.path.join(self.home, "envs")))}
    """,
    )
    sandbox = env.sandbox(read_only=(str(env.models), deps))
    python = str(venv / "bin" / "python")
    # the executor's env= (a PYTHONPATH shim for unsandboxed model environments) does not get in, and is not needed
    with LocalExecutor(1, python=python, wrap=sandbox.wrap, env={"PYTHONPATH": "/nonexistent"}) as ex:
        row = ancho.run(
            str(path), executor=ex, store=env.store, sequences=2, seed=1, params={"home": str(env.home)}
        ).frame.iloc[0]
    assert row.prefix_ok
    assert sorted(os.listdir(env.home)) != ["envs"]  # outside: server.db, runs, envs…
    assert row.home_entries == 1 and row.envs_entries == 1  # inside: only the path down to the environment


def run_with_results_bound(
    env: Env,
    path: Path,
    sequences: int,
    seed: int,
    sandboxed: bool = True,
    workers: int = 1,
    read_only: tuple[str, ...] | None = None,
):
    """The integration a server does: create the run, then bind its results folder for the summary functions."""
    loaded = load_model(str(path))
    spec = RunSpec.build(loaded, {}, sequences, seed)
    record = create_record(loaded, spec, "local", workers)
    env.store.create_run(record)
    results = env.store.results_source(record.id)["path"]
    wrap = None
    if sandboxed:
        wrap = env.sandbox(read_only=(*(read_only or (str(path.parent),)), results)).wrap
    with LocalExecutor(workers, wrap=wrap) as ex:
        final = execute(loaded, spec, env.store, ex, record)
    return final, env.store.read_frame(final.id)


def test_summary_functions_run_sandboxed_and_see_their_run(env):
    path = model_file(
        env.models,
        """
        class WithSummary(ancho.Model):
            def sequence(self, rng):
                return {"x": rng.random()}

            @ancho.summary
            def where_am_i(self, results):
                return {"rows": len(results), "sandboxed": os.environ.get("ANCHO_SANDBOX") == "1",
                        "home_visible": os.path.exists(SERVER_DB)}
    """.replace("SERVER_DB", repr(str(env.home / "server.db"))),
    )
    final, _ = run_with_results_bound(env, path, 40, 5)
    assert final.summary["custom"]["where_am_i"] == {"rows": 40, "sandboxed": True, "home_visible": False}


# 7 -- same results -----------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["gambler.py", "sir.py", "option.py"])
def test_sandboxed_results_equal_unsandboxed(env, example):
    path = EXAMPLES / example
    plain, plain_frame = run_with_results_bound(env, path, 300, 11, sandboxed=False, workers=2)
    boxed, boxed_frame = run_with_results_bound(env, path, 300, 11, sandboxed=True, workers=2)
    assert plain_frame.equals(boxed_frame)
    drop = ("run",)
    assert {k: v for k, v in plain.summary.items() if k not in drop} == {
        k: v for k, v in boxed.summary.items() if k not in drop
    }


def test_a_sandboxed_worker_imports_no_pyarrow_or_pandas(env):
    """A server starts fresh sandboxed workers for every run, so what they import is a fixed cost of each run:
    pyarrow was ~40 ms of it, imported only to ask whether a worker writes chunk files (a sandboxed one never
    does). Neither it nor pandas is imported by a worker whose model needs neither (docs/benchmarks.md, "Batch
    models", sandboxed start-up)."""
    path = model_file(
        env.models,
        """
        import sys

        class Imports(ancho.Model):
            def sequences(self, rng, n):
                loaded = [float(name in sys.modules) for name in ("pyarrow", "pandas")]
                return {"pyarrow": np.full(n, loaded[0]), "pandas": np.full(n, loaded[1])}
        """,
    )
    res = env.run(path, sequences=20_000, seed=1)  # (the first chunk is one block of 4,096: later ones follow replies)
    for name in ("pyarrow", "pandas"):
        assert res.summary["outputs"][name]["max"] == 0.0, name


# plumbing: the socket reaches the worker; a killed driver takes its sandboxed workers along -----

DRIVER = """
import json, sys, threading, time
import ancho
from ancho.executors.local import LocalExecutor
from ancho.isolation import Sandbox, SandboxPolicy
sandbox = Sandbox(SandboxPolicy(scratch=sys.argv[1], read_only=(sys.argv[2],)))
ex = LocalExecutor(2, wrap=sandbox.wrap).start()
print(json.dumps({"workers": [w.proc.pid for w in ex._pool], "cgroups": sandbox._cgroups}), flush=True)
print(ex.inspect(sys.argv[3])["entry"], flush=True)  # a request answered over the socket through bwrap
ancho.run(sys.argv[3], executor=ex, store=sys.argv[4], sequences=100)  # sequences that never end, on both workers
"""


def test_killed_driver_takes_busy_sandboxed_workers_along(env):
    import psutil

    path = model_file(
        env.models,
        """
        class Hang(ancho.Model):
            def sequence(self, rng):
                open(f"/scratch/started-{os.getpid()}-{rng.random()}", "w").close()
                time.sleep(10**6)
                return {"x": 1.0}
    """,
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(env.scratch), str(env.models), str(path), str(env.tmp / "driver-home")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        info = json.loads(driver.stdout.readline())
        assert driver.stdout.readline().strip() == "model.py:Hang"
        deadline = time.monotonic() + 120  # a guard against hanging, not a measurement
        while len(list(env.scratch.glob("started-*"))) < 2:  # both workers are inside a sequence
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        # Process objects taken before the kill: a process that exits between a later pid check and its lookup is
        # gone, not an error, and a pid reused meanwhile is not mistaken for one of the tree's.
        tree: list[psutil.Process] = []
        for pid in info["workers"]:
            worker = psutil.Process(pid)
            tree += [worker, *worker.children(recursive=True)]
        assert len(tree) >= 2 * 4  # setpriv'd shell, bwrap, bwrap's init, the worker — for each worker
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        gone, alive = psutil.wait_procs(tree, timeout=30)
        assert [p for p in alive if is_alive(p)] == []
        for c in info["cgroups"]:
            assert not Path(c).exists() or Path(c, "cgroup.procs").read_text().strip() == ""
            if Path(c).exists():
                Path(c).rmdir()  # the killed driver could not remove them (a later Sandbox would)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


# 7 -- the host's environment, and hidden paths from a server's settings ------------------------


def test_no_process_inside_sees_the_drivers_environment(env, monkeypatch):
    """PID 1 inside is bubblewrap's own process: it was started with PATH and LANG only, and every other process's
    environment is the sandbox's own, however many processes the model reads."""
    from ..sandbox_environ_dump import DUMP, SECRETS, check_dump

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = model_file(
        env.models,
        DUMP
        + textwrap.dedent("""
        class Steal(ancho.Model):
            def sequence(self, rng):
                raise RuntimeError(environ_dump())
    """),
    )
    _, failures = failed_run(env, path, sequences=2, seed=1, max_failures=0)
    assert failures
    pid1 = "".join(f"{k}={v}\0" for k, v in sb.LAUNCHER_ENV.items())
    for f in failures:
        check_dump(f.error)
        assert f"/proc/1/environ={pid1!r}" in f.error


def test_bubblewrap_starts_clean_whatever_its_caller_passes(bwrap, tmp_path, monkeypatch):
    """A caller that runs a wrapped command line with its own full environment still leaks nothing into PID 1."""
    monkeypatch.setenv("ANCHO_TEST_SECRET", "caller-secret-51aa")
    with Sandbox(SandboxPolicy(scratch=tmp_path / "s")) as sandbox:
        argv = sandbox.wrap([sys.executable, "-c", "print(open('/proc/1/environ').read().split('\\0'))"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)  # inherits os.environ
    assert out.returncode == 0, out.stderr
    assert "caller-secret-51aa" not in out.stdout
    assert sorted(x for x in eval(out.stdout) if x) == sorted(f"{k}={v}" for k, v in sb.LAUNCHER_ENV.items())
    assert Sandbox.launch_env() == sb.LAUNCHER_ENV


def test_hidden_paths_come_from_the_given_home_not_ancho_home(env):
    """A server hides its settings' home (hidden_paths(home)), which need not be $ANCHO_HOME (here env.home)."""
    server_home = env.tmp / "server-home"
    (server_home / "runs").mkdir(parents=True)
    (server_home / "server.db").write_text("token hashes")
    path = model_file(
        env.models,
        """
        class Snoop(ancho.Model):
            where: str = ""
            def sequence(self, rng):
                files = sum(len(f) for _, _, f in os.walk(self.where))
                return {"files": files, "parent": os.path.isdir(os.path.dirname(self.where))}
    """,
    )
    bound = {"read_only": (str(env.tmp),)}  # the home's parent is bound: only hiding keeps the home out
    row = env.run(
        path,
        sequences=1,
        seed=1,
        params={"where": str(server_home)},
        policy={**bound, "hidden": sb.hidden_paths(server_home)},
    ).frame.iloc[0]
    assert row.parent and row.files == 0
    row = env.run(path, sequences=1, seed=1, params={"where": str(server_home)}, policy=bound).frame.iloc[0]
    assert row.files == 1  # the default hides $ANCHO_HOME only: what a server must not rely on


def test_a_private_scratch_is_locked_outside_the_sandbox_and_removed_on_close(bwrap, tmp_path, monkeypatch):
    """Without a scratch folder of its policy's a sandbox makes a private one, locked by a file beside it that the
    sandboxed model cannot see (so it cannot free it for a sweep); closing removes both (isolation/scratch.py)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sandbox = Sandbox(SandboxPolicy())
    lock = Path(sandbox.scratch + ".lock")
    assert Path(sandbox.scratch).parent == tmp_path and lock.is_file()
    argv = sandbox.wrap([sys.executable, "-c", "import os; print(sorted(os.listdir('/scratch')), os.getcwd())"])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=Sandbox.launch_env())
    assert out.returncode == 0, out.stderr
    assert lock.name not in out.stdout
    sandbox.close()
    assert not Path(sandbox.scratch).exists() and not lock.exists()


def test_a_scratch_folder_is_its_owner_s_alone(bwrap, tmp_path):
    """A model may leave a setuid file of the server's user in its scratch folder (bubblewrap lets it chmod): no
    other user of the host may reach into the folder."""
    given = tmp_path / "runs-scratch" / "r1"
    given.parent.mkdir()
    given.mkdir(mode=0o755)  # (made earlier, more open)
    with Sandbox(SandboxPolicy(scratch=given)) as sandbox:
        assert os.stat(sandbox.scratch).st_mode & 0o777 == 0o700
    with Sandbox(SandboxPolicy()) as private:
        assert os.stat(private.scratch).st_mode & 0o777 == 0o700
