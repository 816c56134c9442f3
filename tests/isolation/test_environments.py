"""Per-model environments: a requirements.txt is honoured without touching Ancho's environment."""

import importlib.util
import json
import os
import textwrap

import pytest

from ancho.isolation import EnvironmentFailed, Environments, InstallPolicy, parse_requirements

from ..conftest import run_cli
from ..server.test_requirements_security import PackageServer, evil_sdist, tiny_wheel

pytestmark = pytest.mark.usefixtures("discard_tmp_path")  # an environment built is ~570 MB

MODEL = textwrap.dedent(
    """
    import ancho
    import humanize

    class H(ancho.Model):
        n: int = 3

        def sequence(self, rng):
            return {"digits": len(humanize.intcomma(int(rng.integers(0, 10**self.n))))}

        @ancho.summary
        def humanized(self, results):
            return humanize.intcomma(len(results))
    """
)


@pytest.fixture
def req_model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL)
    (folder / "requirements.txt").write_text("humanize==4.9.0\n")
    return folder


@pytest.mark.slow
def test_ancho_itself_lacks_the_package():
    assert importlib.util.find_spec("humanize") is None


@pytest.mark.slow
def test_a_model_with_its_own_requirement_runs(home, req_model):
    p = run_cli("run", str(req_model), "-n", "3000", "--seed", "4", "-p", "n=7", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["custom"]["humanized"] == "3,000"
    assert 1 <= summary["outputs"]["digits"]["min"] and summary["outputs"]["digits"]["max"] <= 9
    assert "building the model's environment" in p.stderr
    assert importlib.util.find_spec("humanize") is None
    again = run_cli("run", str(req_model), "-n", "3000", "--seed", "4", "-p", "n=7", "--json")
    assert "building" not in again.stderr  # built once, reused
    assert json.loads(again.stdout)["outputs"] == summary["outputs"]


@pytest.mark.slow
def test_an_executor_object_without_the_environment_is_refused(req_model):
    """Workers started before the model was seen cannot have its requirements: one clear error, nothing run."""
    import ancho
    from ancho.errors import InputError
    from ancho.executors.local import LocalExecutor

    with LocalExecutor(1) as ex, pytest.raises(InputError, match="requirements.txt.*pass executor as a name"):
        ancho.run(str(req_model), {"n": 7}, sequences=10, executor=ex)


@pytest.mark.slow
def test_environment_is_keyed_and_reused(tmp_path):
    envs = Environments(tmp_path / "envs")
    a = envs.get("humanize==4.9.0\n")
    stamp = (a.path / ".ancho-ready").stat().st_mtime_ns
    b = envs.get("# same packages\nhumanize==4.9.0\n\n")
    assert a == b and (b.path / ".ancho-ready").stat().st_mtime_ns == stamp
    assert envs.get("humanize==4.8.0\n").key != a.key


@pytest.mark.slow
def test_install_failure_names_the_installer_output(tmp_path):
    envs = Environments(tmp_path / "envs")
    with pytest.raises(
        EnvironmentFailed, match="installing requirements.txt failed: .*no-such-package-for-ancho-tests"
    ):
        envs.get("no-such-package-for-ancho-tests==1.0\n")
    assert not any(
        p.is_dir() and not p.name.startswith(".") for p in (tmp_path / "envs").iterdir()
    )  # nothing half-built is kept (the download cache stays)


@pytest.mark.parametrize(
    "line",
    [
        "-e git+https://x/y.git",
        "--index-url https://evil.invalid/simple",
        "-r other.txt",
        "--extra-index-url http://x",
        "-ihttp://127.0.0.1:9/simple",
        "--constraint c.txt",
        "--no-binary :all:",
        "--find-links=/opt/wheels",
        "evil @ https://127.0.0.1:9/evil-0.1.tar.gz",
        "evil @ file:///tmp/evil-0.1.tar.gz",
        "https://127.0.0.1:9/evil-0.1.tar.gz",
        "./evil",
        "/tmp/evil-0.1.tar.gz",
        "humanize \\",
        "evil===${HOME}",
        "humanize --hash=sha256:00",
    ],
)
def test_requirements_may_only_name_packages(tmp_path, line):
    with pytest.raises(
        EnvironmentFailed, match=r"requirements.txt line 2: .* may list only one package per line"
    ) as caught:
        Environments(tmp_path / "envs").get(f"humanize\n{line}\n")
    assert "not allowed" in str(caught.value) or "not a package requirement" in str(caught.value)
    assert not any(p.is_dir() for p in (tmp_path / "envs").iterdir())  # nothing was installed


def test_plain_requirements_are_written_in_normal_form():
    text = "# packages\n\nNumPy >= 1.26 , <3  # arrays\nrequests[socks]; python_version >= '3.11'\nfoo_bar.baz==1.0\nx.whl\n"
    assert parse_requirements(text) == [
        "numpy<3,>=1.26",
        'requests[socks]; python_version >= "3.11"',
        "foo-bar-baz==1.0",
        "x-whl",
    ]


def test_errors_never_show_what_an_option_or_a_link_points_at(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("TOKEN-THAT-MUST-NOT-LEAK\n")
    model = tmp_path / "model"
    model.mkdir()
    envs = Environments(tmp_path / "envs")
    (model / "requirements.txt").write_text(f"-r {secret}\n")
    with pytest.raises(EnvironmentFailed) as caught:
        envs.for_source(model)
    assert "TOKEN" not in str(caught.value) and "requirements.txt line 1" in str(caught.value)
    (model / "requirements.txt").unlink()
    (model / "requirements.txt").symlink_to(secret)
    with pytest.raises(EnvironmentFailed, match="link to a file outside the model's source") as caught:
        envs.for_source(model)
    assert "TOKEN" not in str(caught.value)


def test_pip_requirements_txt_counts_and_both_files_are_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    envs = Environments(tmp_path / "envs")
    assert envs.for_source(model) is None
    (model / "pip-requirements.txt").write_text("numpy\n--no-binary :all:\n")
    with pytest.raises(EnvironmentFailed, match="pip-requirements.txt line 2"):
        envs.for_source(model)
    (model / "requirements.txt").write_text("numpy\n")
    with pytest.raises(EnvironmentFailed, match="both requirements.txt and pip-requirements.txt; keep one"):
        envs.for_source(model)


def test_the_key_includes_the_index_and_source_builds(tmp_path):
    plain = Environments(tmp_path / "envs")
    other_index = Environments(tmp_path / "envs", install=InstallPolicy(index_url="https://mirror.example/simple"))
    builds = Environments(tmp_path / "envs", install=InstallPolicy(source_builds=True, sandboxed=True))
    refused = Environments(tmp_path / "envs", install=InstallPolicy(source_builds=True, sandboxed=False))
    keys = {e.key("numpy\n") for e in (plain, other_index, builds)}
    assert len(keys) == 3
    assert refused.key("numpy\n") == plain.key("numpy\n")  # source builds refused without a sandbox: wheels only


@pytest.fixture
def index(tmp_path):
    name, wheel = tiny_wheel()
    paths = {"db": "", "token": "", "marker": str(tmp_path / "marker"), "home_write": ""}
    idx = PackageServer({"tinypkg": {name: wheel}, "evilpkg": {"evilpkg-0.1.tar.gz": evil_sdist(paths)}})
    yield idx
    idx.close()


@pytest.mark.slow
def test_the_installer_gets_nothing_of_the_callers_environment(tmp_path, index, monkeypatch):
    """Index, find-links and config variables of the server's environment do not reach uv: only the configured index counts."""
    name, wheel = tiny_wheel("extrapkg")
    extra = PackageServer({"extrapkg": {name: wheel}})
    try:
        for var in (
            "UV_INDEX_URL",
            "UV_EXTRA_INDEX_URL",
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "UV_DEFAULT_INDEX",
            "UV_INDEX",
        ):
            monkeypatch.setenv(var, extra.index)
        for var in ("UV_FIND_LINKS", "PIP_FIND_LINKS"):
            monkeypatch.setenv(var, f"{extra.url}/files/")
        (tmp_path / "uv.toml").write_text(f'extra-index-url = ["{extra.index}"]\n')
        monkeypatch.setenv("UV_CONFIG_FILE", str(tmp_path / "uv.toml"))
        monkeypatch.chdir(tmp_path)
        envs = Environments(tmp_path / "envs", install=InstallPolicy(index_url=index.index))
        assert envs.get("tinypkg\n").path.is_dir()  # from the configured index
        with pytest.raises(EnvironmentFailed, match="extrapkg"):
            envs.get("extrapkg\n")
        assert extra.requests == []
    finally:
        extra.close()


@pytest.mark.slow
def test_source_builds_without_a_sandbox_stay_wheels_only(tmp_path, index, caplog):
    envs = Environments(
        tmp_path / "envs", install=InstallPolicy(index_url=index.index, source_builds=True, sandboxed=False)
    )
    assert "refusing source builds" in caplog.text
    with pytest.raises(EnvironmentFailed, match="evilpkg.*only pre-built wheels are installed"):
        envs.get("evilpkg==0.1\n")
    assert index.asked_for("/simple/evilpkg/") and not index.asked_for("/files/evilpkg")
    assert not (tmp_path / "marker").exists()


@pytest.mark.slow
def test_cli_reports_install_failure_on_one_line(home, req_model):
    (req_model / "requirements.txt").write_text("no-such-package-for-ancho-tests==1.0\n")
    p = run_cli("run", str(req_model), "-n", "10")
    assert p.returncode == 2
    error_lines = [line for line in p.stderr.splitlines() if line.startswith("ancho: error:")]
    assert len(error_lines) == 1 and "no-such-package-for-ancho-tests" in error_lines[0]


def test_an_environment_s_interpreter_never_runs_its_packages_outside_the_sandbox(tmp_path):
    """A requirement's wheel may hold a ``.pth`` file (Python runs its ``import`` lines at start-up): the server,
    building a sandboxed worker's command line, must not start the environment's interpreter with its site. A venv of
    this process's own base is not run at all; any other only without site (``-S``)."""
    import subprocess
    import sys

    from ancho.isolation.command import interpreter_paths

    marker = tmp_path / "ran-outside"
    for name, home in (("ours", None), ("other", str(tmp_path))):
        venv = tmp_path / name
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (site,) = venv.glob("lib/python*/site-packages")
        (site / "zz_helper.pth").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n")
        assert subprocess.run([str(venv / "bin/python"), "-c", "pass"]).returncode == 0
        assert marker.exists()  # (the .pth does run when the interpreter starts with its site)
        marker.unlink()
        if home is not None:  # a venv whose pyvenv.cfg names another base: run, without site
            cfg = venv / "pyvenv.cfg"
            cfg.write_text("".join(f"home = {home}\n" if line.startswith("home") else line
                                   for line in cfg.read_text().splitlines(keepends=True)))  # fmt: skip
        interpreter_paths.cache_clear()
        paths = interpreter_paths(str(venv / "bin/python"))
        assert not marker.exists(), name
        assert str(venv) in paths and os.path.realpath(sys.base_prefix) in {os.path.realpath(p) for p in paths}
