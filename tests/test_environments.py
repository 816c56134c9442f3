"""Per-model environments: a requirements.txt is honoured without touching Ancho's environment."""

import importlib.util
import json
import textwrap

import pytest

from ancho.sources.environments import EnvironmentFailed, Environments

from .conftest import run_cli

pytestmark = pytest.mark.slow

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


def test_ancho_itself_lacks_the_package():
    assert importlib.util.find_spec("humanize") is None


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


def test_an_executor_object_without_the_environment_is_refused(req_model):
    """Workers started before the model was seen cannot have its requirements: one clear error, nothing run."""
    import ancho
    from ancho.errors import InputError
    from ancho.executors.local import LocalExecutor

    with LocalExecutor(1) as ex, pytest.raises(InputError, match="requirements.txt.*pass executor as a name"):
        ancho.run(str(req_model), {"n": 7}, sequences=10, executor=ex)


def test_environment_is_keyed_and_reused(tmp_path):
    envs = Environments(tmp_path / "envs")
    a = envs.get("humanize==4.9.0\n")
    stamp = (a.path / ".ancho-ready").stat().st_mtime_ns
    b = envs.get("# same packages\nhumanize==4.9.0\n\n")
    assert a == b and (b.path / ".ancho-ready").stat().st_mtime_ns == stamp
    assert envs.get("humanize==4.8.0\n").key != a.key


def test_install_failure_names_the_installer_output(tmp_path):
    envs = Environments(tmp_path / "envs")
    with pytest.raises(EnvironmentFailed, match="installing requirements.txt failed: .*no-such-package-for-ancho-tests"):
        envs.get("no-such-package-for-ancho-tests==1.0\n")
    assert not any(p.is_dir() for p in (tmp_path / "envs").iterdir())  # nothing half-built is kept


@pytest.mark.parametrize("line", ["-e git+https://x/y.git", "--index-url https://evil.invalid/simple", "-r other.txt", "--extra-index-url http://x"])
def test_requirements_may_only_name_packages(tmp_path, line):
    with pytest.raises(EnvironmentFailed, match="not allowed"):
        Environments(tmp_path / "envs").get(f"humanize\n{line}\n")


def test_cli_reports_install_failure_on_one_line(home, req_model):
    (req_model / "requirements.txt").write_text("no-such-package-for-ancho-tests==1.0\n")
    p = run_cli("run", str(req_model), "-n", "10")
    assert p.returncode == 2
    error_lines = [line for line in p.stderr.splitlines() if line.startswith("ancho: error:")]
    assert len(error_lines) == 1 and "no-such-package-for-ancho-tests" in error_lines[0]
