"""Per-model Python environments for a ``requirements.txt``, installed without running the user's code.

A model whose source has a ``requirements.txt`` (or ``pip-requirements.txt``)
at its root runs its workers in a virtual environment of its own, built with
uv (pip when uv is missing) and keyed by the requirements, the Python
version, Ancho's own worker dependencies, the package index and whether
source builds are allowed: built once, reused by every run with the same key,
and never touching Ancho's environment.

The file is untrusted input, so (docs/sandbox.md):

* it is read with an allow-list: one requirement per line (name, extras,
  version specifiers, marker) that :class:`packaging.requirements.Requirement`
  parses, with no URL; options (``-r``, ``-c``, ``-e``, ``-i…``,
  ``--no-binary``…), paths, URLs and line continuations are refused, naming
  the line. The installer never sees the user's file, only one written here
  from the parsed requirements;
* packages come only from the configured index (``--index-url``,
  ``--no-config``), and the installer gets a minimal environment: none of the
  server's variables (tokens, ``PIP_*``/``UV_*`` settings) reach it;
* only wheels are installed (``--no-build``), so no code of the user's runs
  while installing. With source builds allowed, the installer runs inside
  bubblewrap (network shared, only the environment being built, the cache and
  a scratch folder writable, the server's home hidden); a server that is not
  sandboxed stays wheels-only.

What goes in besides the model's requirements: the few packages an Ancho
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
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ancho

from ..errors import InputError
from .command import INSIDE_ANCHO

log = logging.getLogger(__name__)

REQUIREMENTS = "requirements.txt"
#: the name the original plan used, accepted the same way
REQUIREMENTS_FILES = (REQUIREMENTS, "pip-requirements.txt")
MAX_REQUIREMENTS_BYTES = 256 * 1024
#: distributions an Ancho worker imports
WORKER_PACKAGES = ("numpy", "cloudpickle", "pyarrow", "pandas", "pydantic")
INSTALL_TIMEOUT = 1800
#: the only variables of the server's environment the installer gets: what it needs to reach the index
PASSED_VARS = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
ALLOWED = (
    "one package per line: a name with optional [extras], version specifiers and '; marker' "
    "(e.g. 'numpy>=1.26,<3' or 'requests[socks]; python_version >= \"3.11\"'), and comments after '#'"
)
_COMMENT = re.compile(r"(^|\s)#.*$")
#: runs a program (uv, a venv's pip) in the sandbox, whose command line must start with a Python interpreter; first
#: it loads the sandbox's system-call filter as a worker does (the module by its path: ``-I`` leaves Ancho off
#: ``sys.path``, and the interpreter may have none of Ancho's dependencies), which the installer and any source build
#: it starts inherit
_EXEC = (
    "import os, sys, importlib.util as u; "
    f"s = u.spec_from_file_location('f', '{INSIDE_ANCHO}/ancho/syscall_filter.py'); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.apply(); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class EnvironmentFailed(InputError):
    """Installing a model's requirements failed; the message ends with the installer's last lines."""


@dataclass(frozen=True)
class InstallPolicy:
    """Where packages come from and where the installer runs (the server's settings; the defaults are safe)."""

    index_url: str = "https://pypi.org/simple"
    #: build packages that have no wheel (runs their setup code); honoured only when ``sandboxed``
    source_builds: bool = False
    #: run the installer inside bubblewrap
    sandboxed: bool = False
    #: host paths the installer must not see (the server's home...); empty: the sandbox's defaults
    hidden: tuple[str, ...] = ()


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
    others = [
        p for p in parent.iterdir() if p.name != "ancho" and not p.name.startswith(("ancho-", ".", "__pycache__"))
    ]
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


def parse_requirements(text: str, filename: str = REQUIREMENTS) -> list[str]:
    """The requirements of ``text`` in normal form (``str(Requirement)``), or EnvironmentFailed naming the line.

    An allow-list: whatever is not a plain requirement is refused, and the
    message quotes only the offending line (never what an option points at).
    """
    # imported here, not at the top: `ancho run` of a local model never parses requirements, and packaging's
    # parser is ~15% of the CLI's start-up (benchmarks/bench_latency.py)
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        shown = line if len(line) <= 120 else line[:117] + "…"

        def refuse(why: str, n: int = n, shown: str = shown) -> EnvironmentFailed:
            return EnvironmentFailed(f"{filename} line {n}: '{shown}' {why}; {filename} may list only {ALLOWED}")

        if line.startswith("-"):
            raise refuse(
                "is an option, and options are not allowed (no -r, -c, -e, -i, --index-url, --no-binary… "
                "of any kind: packages come only from the server's package index)"
            )
        if line.endswith("\\") or raw.rstrip().endswith("\\"):
            raise refuse(
                "continues on the next line (a trailing '\\'), which is not allowed: write each requirement on one line"
            )
        if "$" in line:
            raise refuse("contains '$', which is not allowed (no environment variables)")
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise refuse("is not a package requirement (URLs and file paths are not allowed)") from None
        if req.url:
            raise refuse(
                "is a direct reference ('name @ URL'), which is not allowed: packages come only from the package index"
            )
        req.name = canonicalize_name(req.name)  # dots and underscores become '-': never read as a file name
        out.append(str(req))
    return out


class Environments:
    """Environments under ``root`` (``$ANCHO_HOME/envs``), one folder per key, installed under ``install``."""

    def __init__(self, root: Path, python: str | None = None, announce=None, *, install: InstallPolicy | None = None):
        self.root = root
        self.python = python or sys.executable
        #: called with a message when a build starts (builds take seconds to minutes)
        self.announce = announce
        self.install = install or InstallPolicy()
        #: source builds run the package's code: only ever inside the sandbox
        self.source_builds = self.install.source_builds and self.install.sandboxed
        if self.install.source_builds and not self.install.sandboxed:
            log.warning(
                "source builds of requirements are allowed by the settings, but the server runs without a sandbox: "
                "refusing source builds, requirements are installed from wheels only"
            )
        self._version: str | None = None
        root.mkdir(parents=True, exist_ok=True)

    def requirements_file(self, source_root: Path) -> Path | None:
        """The source's requirements file, None when it has none; EnvironmentFailed when both names exist."""
        found = [source_root / name for name in REQUIREMENTS_FILES if os.path.lexists(source_root / name)]
        if len(found) > 1:
            raise EnvironmentFailed(f"the model's source has both {' and '.join(REQUIREMENTS_FILES)}; keep one of them")
        return found[0] if found else None

    def for_source(self, source_root: Path) -> Environment | None:
        """The environment for a source folder, or None when it has no requirements file (Ancho's own is used)."""
        path = self.requirements_file(source_root)
        if path is None:
            return None
        return self.get(_read(path, source_root), path.name)

    def key(self, requirements: str, filename: str = REQUIREMENTS) -> str:
        return self._key(parse_requirements(requirements, filename))

    def _key(self, lines: list[str]) -> str:
        if self._version is None:
            self._version = subprocess.run(
                [self.python, "-c", "import sys; print(sys.version)"],
                capture_output=True,
                text=True,
                env=self._env(Path(tempfile.gettempdir()), ""),
                timeout=60,
            ).stdout
        h = hashlib.sha256()
        for part in [
            "\n".join(sorted(lines)),
            self._version,
            "\n".join(worker_requirements()),
            self.install.index_url,
            f"source builds: {self.source_builds}",
        ]:
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:20]

    def get(self, requirements: str, filename: str = REQUIREMENTS) -> Environment:
        """Build (once) and return the environment for these requirements; concurrent callers wait for one build."""
        lines = parse_requirements(requirements, filename)
        key = self._key(lines)
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
                self.announce(
                    f"building the model's environment {env.key} from its {filename} (once; later runs reuse it)"
                )
            self._build(env, lines, filename)
            ready.write_text(f"built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        return env

    # -- installing ------------------------------------------------------------------------
    def cache(self) -> Path:
        """uv's cache, shared by builds that run no user code: the server's UV_CACHE_DIR, else ``root/.uv-cache``."""
        given = os.environ.get("UV_CACHE_DIR", "")
        path = Path(given) if os.path.isabs(given) else self.root / ".uv-cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _build(self, env: Environment, lines: list[str], filename: str) -> None:
        """Create the venv (no user code), then install: the worker packages, then everything, wheels only unless builds run sandboxed."""
        scratch = Path(tempfile.mkdtemp(prefix=f".build-{env.key}-", dir=self.root))
        inside = "/scratch" if self.install.sandboxed else str(scratch)  # where the installer sees the scratch folder
        (scratch / "tmp").mkdir()
        worker = worker_requirements()
        (scratch / "worker.txt").write_text("\n".join(worker) + "\n")
        (scratch / "requirements.txt").write_text("\n".join([*lines, *worker]) + "\n")
        what = f"installing {filename}"
        uv = _uv()
        index = ["--index-url", self.install.index_url]
        try:
            if uv:
                _run(
                    [
                        uv,
                        "venv",
                        "--quiet",
                        "--no-config",
                        "--no-python-downloads",
                        "--python",
                        self.python,
                        str(env.path),
                    ],
                    "creating the environment",
                    self._env(scratch, str(self.cache())),
                    scratch,
                )
                install = [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--no-config",
                    "--python",
                    env.python,
                    *index,
                    "--link-mode",
                    "copy",
                ]
                if self.source_builds:
                    # Ancho's own packages from the shared cache first; then the build, with a private cache it cannot poison
                    self._install(
                        [*install, "--no-build", "-r", f"{inside}/worker.txt"], what, scratch, env, self.cache()
                    )
                    self._install([*install, "-r", f"{inside}/requirements.txt"], what, scratch, env, None)
                else:
                    self._install(
                        [*install, "--no-build", "-r", f"{inside}/requirements.txt"], what, scratch, env, self.cache()
                    )
            else:
                _run(
                    [self.python, "-m", "venv", str(env.path)],
                    "creating the environment",
                    self._env(scratch, ""),
                    scratch,
                )
                binary = [] if self.source_builds else ["--only-binary", ":all:"]
                self._install(
                    [
                        env.python,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--isolated",
                        "--no-input",
                        "--disable-pip-version-check",
                        *index,
                        *binary,
                        "-r",
                        f"{inside}/requirements.txt",
                    ],
                    what,
                    scratch,
                    env,
                    None,
                )
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _env(self, scratch: Path, cache: str) -> dict[str, str]:
        """The installer's whole environment outside the sandbox: nothing of the server's but TLS and proxy settings."""
        env = {
            "PATH": f"{Path(self.python).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch),
            "TMPDIR": str(scratch / "tmp"),
            "LANG": "C.UTF-8",
            "PIP_NO_INPUT": "1",
        }
        if cache:
            env["UV_CACHE_DIR"] = cache
        env.update({var: os.environ[var] for var in PASSED_VARS if os.environ.get(var)})
        return env

    def _install(self, argv: list[str], what: str, scratch: Path, env: Environment, cache: Path | None) -> None:
        """Run one install, in the sandbox when the policy says so; ``cache`` None: a private one in the scratch folder."""
        private = scratch / "uv-cache"
        if cache is None:
            private.mkdir(exist_ok=True)
        if not self.install.sandboxed:
            _run(argv, what, self._env(scratch, str(cache or private)), scratch, self.source_builds)
            return
        from .policy import SandboxPolicy
        from .sandbox import INSIDE_SCRATCH, Sandbox

        variables = {k: v for k, v in self._env(scratch, "").items() if k not in ("PATH", "HOME", "TMPDIR")}
        variables["UV_CACHE_DIR"] = str(cache) if cache else f"{INSIDE_SCRATCH}/uv-cache"
        # certificates outside /etc/ssl and /usr (bound anyway) must be visible too
        certs = tuple(
            os.environ[v]
            for v in ("SSL_CERT_FILE", "SSL_CERT_DIR")
            if os.path.exists(os.environ.get(v, ""))
            and not os.path.realpath(os.environ[v]).startswith(("/etc/ssl/", "/usr/", "/etc/ca-certificates/"))
        )
        policy = SandboxPolicy(
            scratch=scratch,
            read_only=(os.path.realpath(argv[0]), *certs),
            writable=(str(env.path), *((str(cache),) if cache else ())),
            hidden=self.install.hidden or None,
            network=True,
            address_space=None,
            cpu_seconds=None,
            open_files=None,
            file_size=None,
            max_processes=512,
            sequence_timeout=None,
            env=variables,
        )
        with Sandbox(policy) as sandbox:
            _run(
                sandbox.wrap([self.python, "-I", "-c", _EXEC, *argv]),
                what,
                self._env(scratch, ""),
                scratch,
                self.source_builds,
            )


def _read(path: Path, source_root: Path) -> str:
    """The requirements file's text: a regular file inside the source (a link out of it could read any server file)."""
    real = path.resolve()
    if not real.is_relative_to(source_root.resolve()):
        raise EnvironmentFailed(f"{path.name} is a link to a file outside the model's source; make it a regular file")
    if not real.is_file():
        raise EnvironmentFailed(f"{path.name} is not a regular file; it must list the model's packages, one per line")
    if real.stat().st_size > MAX_REQUIREMENTS_BYTES:
        raise EnvironmentFailed(
            f"{path.name} is larger than {MAX_REQUIREMENTS_BYTES // 1024} KiB; list only the packages the model imports"
        )
    return real.read_text(errors="replace")


def _uv() -> str | None:
    try:
        import uv as uv_package

        return uv_package.find_uv_bin()
    except Exception:
        return shutil.which("uv")


def _run(argv: list[str], what: str, env: dict[str, str], cwd: Path, source_builds: bool = True) -> None:
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, cwd=cwd, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentFailed(f"{what} took longer than {INSTALL_TIMEOUT} s") from None
    if out.returncode != 0:
        # one line (the CLI prints errors on one line), ending with the installer's last lines
        lines = [line.strip() for line in (out.stderr or out.stdout).strip().splitlines() if line.strip()]
        tail = " | ".join(lines[-6:])
        hint = ""
        if not source_builds and re.search(r"wheel|build|binary", tail, re.I):
            hint = (
                "; only pre-built wheels are installed (building packages from source is off): "
                "use versions that publish a wheel for this platform"
            )
        raise EnvironmentFailed(f"{what} failed: {tail}{hint}")
