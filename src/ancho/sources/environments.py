"""Per-model Python environments for a ``requirements.txt``.

A model whose source has a ``requirements.txt`` at its root runs its
workers in a virtual environment of its own, built with uv (pip when uv is
missing) and keyed by the hash of the requirements, the Python version and
Ancho's own worker dependencies: built once, reused by every run with the
same requirements, and never touching Ancho's environment.

What goes in: the model's requirements plus the few packages an Ancho
worker imports (NumPy for streams, cloudpickle, pyarrow and pandas for
summary functions, pydantic for complex parameter types), with the version
ranges Ancho itself declares, resolved together so a model pinning NumPy
gets a consistent set. Ancho's own code reaches the workers through
``PYTHONPATH`` pointing at a folder holding only the ``ancho`` package.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ancho

from ..errors import InputError

REQUIREMENTS = "requirements.txt"
#: distributions an Ancho worker imports
WORKER_PACKAGES = ("numpy", "cloudpickle", "pyarrow", "pandas", "pydantic")
INSTALL_TIMEOUT = 1800


class EnvironmentFailed(InputError):
    """Installing a model's requirements failed; the message ends with the installer's last lines."""


@dataclass(frozen=True)
class Environment:
    key: str
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")


def worker_requirements() -> list[str]:
    """Ancho's declared ranges for the packages a worker imports (``numpy<3,>=1.26``…)."""
    declared = {}
    for req in importlib.metadata.requires("ancho") or []:
        if ";" in req:
            continue
        name = re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].strip().lower()
        declared[name] = req
    out = []
    for name in WORKER_PACKAGES:
        if name in declared:
            out.append(declared[name])
        else:
            try:
                out.append(f"{name}=={importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                out.append(name)
    return out


def ancho_pythonpath(cache: Path) -> str:
    """A folder that holds only the ``ancho`` package, for a foreign interpreter's PYTHONPATH.

    In a source checkout that is ``src/`` itself; in an installed Ancho, the
    site-packages folder holds everything else too, so a folder with one
    symbolic link is made instead.
    """
    package = Path(ancho.__file__).resolve().parent
    parent = package.parent
    others = [p for p in parent.iterdir() if p.name != "ancho" and not p.name.startswith(("ancho-", ".", "__pycache__"))]
    if not others:
        return str(parent)
    shim = cache / "ancho-path"
    link = shim / "ancho"
    if not (link.is_symlink() and link.resolve() == package):
        shim.mkdir(parents=True, exist_ok=True)
        tmp = shim / f".ancho.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(package, target_is_directory=True)
        os.replace(tmp, link)
    return str(shim)


class Environments:
    """Environments under ``root`` (``$ANCHO_HOME/envs``), one folder per key."""

    def __init__(self, root: Path, python: str | None = None, announce=None):
        self.root = root
        self.python = python or sys.executable
        #: called with a message when a build starts (builds take seconds to minutes)
        self.announce = announce
        root.mkdir(parents=True, exist_ok=True)

    def for_source(self, source_root: Path) -> Environment | None:
        """The environment for a source folder, or None when it has no requirements.txt (Ancho's own is used)."""
        req = source_root / REQUIREMENTS
        if not req.is_file():
            return None
        return self.get(req.read_text(errors="replace"))

    def key(self, requirements: str) -> str:
        lines = sorted(line.strip() for line in requirements.splitlines() if line.strip() and not line.strip().startswith("#"))
        version = subprocess.run([self.python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True).stdout
        h = hashlib.sha256()
        for part in ["\n".join(lines), version, "\n".join(worker_requirements())]:
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:20]

    def get(self, requirements: str) -> Environment:
        """Build (once) and return the environment for these requirements; concurrent callers wait for one build."""
        _check_requirements(requirements)
        key = self.key(requirements)
        env = Environment(key, self.root / key)
        ready = env.path / ".ancho-ready"
        if ready.exists():
            return env
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if ready.exists():
                return env
            shutil.rmtree(env.path, ignore_errors=True)
            if self.announce:
                self.announce(f"building the model's environment {env.key} from its requirements.txt (once; later runs reuse it)")
            self._build(env, requirements)
            ready.write_text(f"built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        return env

    def _build(self, env: Environment, requirements: str) -> None:
        req_file = self.root / f"{env.key}.requirements.txt"
        req_file.write_text(requirements)
        uv = _uv()
        try:
            if uv:
                _run([uv, "venv", "--quiet", "--python", self.python, str(env.path)], "creating the environment")
                _run([uv, "pip", "install", "--quiet", "--python", env.python, "-r", str(req_file), *worker_requirements()],
                     "installing requirements.txt")
            else:
                _run([self.python, "-m", "venv", str(env.path)], "creating the environment")
                _run([env.python, "-m", "pip", "install", "--quiet", "-r", str(req_file), *worker_requirements()],
                     "installing requirements.txt")
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise


_UNSAFE_LINE = re.compile(r"^\s*(-e|--editable|-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host|-c|-r)\b")


def _check_requirements(text: str) -> None:
    """Only package requirements: options that point pip/uv at other indexes or files are refused."""
    for n, line in enumerate(text.splitlines(), 1):
        if _UNSAFE_LINE.match(line):
            raise EnvironmentFailed(
                f"requirements.txt line {n}: '{line.strip()}' is not allowed; list packages only (name and version)"
            )


def _uv() -> str | None:
    try:
        import uv as uv_package

        return uv_package.find_uv_bin()
    except Exception:
        return shutil.which("uv")


def _run(argv: list[str], what: str) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise EnvironmentFailed(f"{what} took longer than {INSTALL_TIMEOUT} s") from None
    if out.returncode != 0:
        # one line (the CLI prints errors on one line), ending with the installer's last lines
        tail = " | ".join(line.strip() for line in (out.stderr or out.stdout).strip().splitlines()[-4:])
        raise EnvironmentFailed(f"{what} failed: {tail}")
