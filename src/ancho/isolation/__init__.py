"""Where untrusted code runs: the bubblewrap sandbox and a model's own ``requirements.txt`` environment.

Model code never runs in the driver or the server: in worker processes,
inside :class:`Sandbox` where bubblewrap works (``sandbox.py``: the command
line; ``policy.py``: what the worker may see and use; ``cgroups.py``: its
process limit), with the interpreter of its own :class:`Environments` venv
when it brings requirements. Below the executors, which take ``wrap=`` and
``python=`` from here; nothing here fetches model code (that is ``ancho.sources``).
See docs/sandbox.md.
"""

from __future__ import annotations

from .cgroups import HELPER_PROCESSES, process_limit_problem
from .environments import (
    EnvironmentFailed,
    Environments,
    InstallPolicy,
    ancho_pythonpath,
    parse_requirements,
)
from .policy import (
    INSTALL_HINT,
    SandboxPolicy,
    SandboxUnavailable,
    default_hidden,
    describe,
    hidden_paths,
    limits_env,
)
from .sandbox import (
    INSIDE_SCRATCH,
    LAUNCHER_ENV,
    Sandbox,
    bwrap_path,
    make_wrap,
    sandbox_available,
    sandbox_problem,
    wrap_command,
)

__all__ = [
    "HELPER_PROCESSES",
    "INSIDE_SCRATCH",
    "INSTALL_HINT",
    "LAUNCHER_ENV",
    "EnvironmentFailed",
    "Environments",
    "InstallPolicy",
    "Sandbox",
    "SandboxPolicy",
    "SandboxUnavailable",
    "ancho_pythonpath",
    "bwrap_path",
    "default_hidden",
    "describe",
    "hidden_paths",
    "limits_env",
    "make_wrap",
    "parse_requirements",
    "process_limit_problem",
    "sandbox_available",
    "sandbox_problem",
    "wrap_command",
]
