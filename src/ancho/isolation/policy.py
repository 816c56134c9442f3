"""What a sandboxed worker may see and use: :class:`SandboxPolicy`, its limits, the paths it hides.

Plain data that travels (to Spark executors too) and is turned into a
bubblewrap command line by :mod:`ancho.isolation.sandbox`; nothing here
starts a process, so the server's settings and the executors can build and
check a policy where bubblewrap is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AnchoError, InputError
from ..home import default_home

INSTALL_HINT = "install the Debian package 'bubblewrap' (apt-get install bubblewrap)"


class SandboxUnavailable(AnchoError):
    """Model code must run sandboxed but bubblewrap is missing or does not work here."""

    exit_code = 3


@dataclass
class SandboxPolicy:
    """What a sandboxed worker may see and use. ``None`` switches a limit off.

    ``scratch``: the per-run writable folder (created if missing); None: a
    private temporary folder made by :class:`Sandbox` and removed when it
    closes. ``read_only``: host paths the workers need (the model's source
    tree, its environment, a results folder), bound read-only at the same
    path. ``hidden``: host paths that must stay invisible even where they lie
    inside a bound path; a server passes :func:`hidden_paths` of its settings'
    home (the default, :func:`default_hidden`, is for the command line's own
    runs: ``ANCHO_HOME`` and the development services' folder). It travels
    with the policy (to Spark executors too), so it is never recomputed where
    another environment would give another home. ``max_processes`` counts the worker's processes *and threads*.
    ``env``: extra variables for the workers (the executor's own ``env=`` does
    not get through: the sandbox's environment is built here, from nothing).
    """

    scratch: str | os.PathLike | None = None
    read_only: tuple[str, ...] = ()
    #: host paths bound writable at the same path (an environment being installed, the installer's cache);
    #: they stay visible even inside a hidden path
    writable: tuple[str, ...] = ()
    hidden: tuple[str, ...] | None = None
    network: bool = False
    address_space: int | None = 4 * 1024**3  # bytes, RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU, for the worker process's whole life
    open_files: int | None = 1024  # RLIMIT_NOFILE
    file_size: int | None = 4 * 1024**3  # bytes, RLIMIT_FSIZE (largest file it may write)
    max_processes: int | None = 128  # pids cgroup: processes + threads per worker
    sequence_timeout: float | None = 600.0  # seconds of wall-clock time per sequence
    #: seconds a sequence that swallowed its TimeoutError may go on before its worker is killed (SIGALRM)
    timeout_grace: float = 5.0
    #: seconds of wall-clock time the model's summary functions may take for one run, all together (enforced by the
    #: driver, which kills the worker: ``LocalExecutor.summaries``)
    summary_timeout: float | None = 600.0
    env: dict[str, str] = field(default_factory=dict)
    #: extra PYTHONPATH entries (bound read-only); Ancho itself is always there
    pythonpath: tuple[str, ...] = ()
    #: the worker loads a system-call filter into itself: io_uring, bpf, ptrace, keyctl, new namespaces and the
    #: like answer EPERM (:mod:`ancho.isolation.seccomp`)
    seccomp: bool = True

    def __post_init__(self) -> None:
        for name in ("address_space", "cpu_seconds", "open_files", "file_size", "max_processes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(
                    f"sandbox setting '{name}' must be a whole number ≥ 1 or None (no limit), got {value!r}"
                )
        for name in ("sequence_timeout", "summary_timeout"):
            t = getattr(self, name)
            if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0):
                raise InputError(f"sandbox setting '{name}' must be a number of seconds > 0 or None, got {t!r}")
        g = self.timeout_grace
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not g > 0:
            raise InputError(f"sandbox setting 'timeout_grace' must be a number of seconds > 0, got {g!r}")
        if self.open_files is not None and self.open_files < 16:
            raise InputError(
                f"sandbox setting 'open_files' must be at least 16 (Python itself needs some), got {self.open_files}"
            )
        self.read_only = tuple(str(p) for p in self.read_only)
        self.writable = tuple(str(p) for p in self.writable)
        self.pythonpath = tuple(str(p) for p in self.pythonpath)
        if self.hidden is None:
            self.hidden = default_hidden()
        else:
            self.hidden = tuple(str(p) for p in self.hidden)

    def limits(self) -> dict:
        """The limits a worker applies to itself (``ANCHO_LIMITS``, see ``ancho.executors.worker.apply_limits``)."""
        out = {
            "as": self.address_space,
            "cpu": self.cpu_seconds,
            "nofile": self.open_files,
            "fsize": self.file_size,
            "timeout": self.sequence_timeout,
            "grace": self.timeout_grace if self.sequence_timeout is not None else None,
        }
        return {k: v for k, v in out.items() if v is not None}


def hidden_paths(home: str | os.PathLike) -> tuple[str, ...]:
    """What a sandbox hides for a server whose data live in ``home``: the home and the development services' folder.

    A server passes its *settings'* home, which need not be ``$ANCHO_HOME``.
    """
    services = os.environ.get("ANCHO_SERVICES_DIR") or str(Path(__file__).resolve().parents[3] / ".services")
    return (str(Path(home).expanduser().resolve()), services)


def default_hidden() -> tuple[str, ...]:
    """:func:`hidden_paths` of ``$ANCHO_HOME`` (or ~/.ancho): for the command line, never a server (see ``hidden``)."""
    return hidden_paths(default_home())


def limits_env(policy: SandboxPolicy) -> dict[str, str]:
    """``env=`` for an executor whose workers run *unsandboxed* but should still apply the policy's limits."""
    limits = policy.limits()
    return {"ANCHO_LIMITS": json.dumps(limits)} if limits else {}


def describe(policy: SandboxPolicy) -> dict:
    """The policy as plain data, for a run record or a status page."""
    return {
        "network": policy.network,
        "scratch": os.fspath(policy.scratch) if policy.scratch is not None else None,
        "read_only": list(policy.read_only),
        "limits": policy.limits() | ({"processes": policy.max_processes} if policy.max_processes else {}),
        "seccomp": policy.seccomp,
    }


__all__ = [
    "INSTALL_HINT",
    "SandboxPolicy",
    "SandboxUnavailable",
    "default_hidden",
    "describe",
    "hidden_paths",
    "limits_env",
]
