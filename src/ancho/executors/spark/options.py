"""How a :class:`~ancho.executors.spark.SparkExecutor` is set up: one typed, validated value.

Why: the executor took twelve keyword arguments, two of them (``sandbox=``,
``wrap=``) different spellings of one thing. :class:`SparkOptions` holds
them with their types and checks them once; :meth:`SparkOptions.of` still
takes the old keywords (``make_executor(master, workers, **options)``
passes the local executor's ``wrap``, ``python``, ``env`` and ``results``),
so every existing caller keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import InputError, ParameterError

if TYPE_CHECKING:
    from ...isolation import Sandbox, SandboxPolicy
    from ...stores.results_sources import ResultsSource

SUMMARY_MODES = ("auto", "spark", "driver")
WRITE_MODES = ("auto", "tasks", "driver")


@dataclass(frozen=True)
class SparkOptions:
    """Everything but the master; see :class:`~ancho.executors.spark.SparkExecutor` for what each does."""

    #: cores the chunk plan assumes (None: the cluster's default parallelism)
    workers: int | None = None
    #: Spark properties added to the session
    conf: Mapping[str, str] = field(default_factory=dict)
    #: a model environment's interpreter (built on the driver by ancho.isolation.environments as ROOT/KEY/bin/python)
    python: str | None = None
    #: environment variables for the tasks (and the driver's local workers)
    env: Mapping[str, str] = field(default_factory=dict)
    #: run user code in bubblewrap: a ``SandboxPolicy`` (each executor builds its sandbox from it), or a ``Sandbox``
    #: already built for this run (its policy travels to the executors; the driver runs summary code in it itself)
    sandbox: SandboxPolicy | Sandbox | None = None
    #: where the summary is computed: "auto", "spark" or "driver"
    summary: str = "auto"
    #: whether the executors see the driver's store folder at the same path (None: when the master is on this machine)
    shared_storage: bool | None = None
    #: where executors keep model environments (None: the driver's folder when storage is shared, else their own)
    environments: str | None = None
    #: as the local executor's option: turns a results source into one a sandboxed summary worker can read
    results: Callable[[ResultsSource], ResultsSource] | None = None
    #: who writes a run's results: "auto", "tasks", "driver" (None: $ANCHO_SPARK_WRITES, else "auto"; see sinks.py)
    writes: str | None = None

    def __post_init__(self) -> None:
        if self.summary not in SUMMARY_MODES:
            raise InputError(f"summary must be one of {', '.join(SUMMARY_MODES)}, got {self.summary!r}")
        workers = self.workers
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ParameterError(f"workers must be a whole number ≥ 1, got {workers!r}")
        from ...isolation import Sandbox, SandboxPolicy

        if self.sandbox is not None and not isinstance(self.sandbox, (SandboxPolicy, Sandbox)):
            raise InputError(f"sandbox must be a SandboxPolicy, True or None, got {self.sandbox!r}")
        self.writes_mode()

    @classmethod
    def of(
        cls,
        workers: int | None = None,
        *,
        sandbox: SandboxPolicy | bool | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
        conf: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> SparkOptions:
        """The options from the executor's former keywords: ``sandbox`` (a SandboxPolicy, or True for the default
        one) or ``wrap`` (a ``Sandbox``'s, as the local executor takes it) become :attr:`sandbox`."""
        return cls(workers, dict(conf or {}), env=dict(env or {}), sandbox=_sandbox(sandbox, wrap), **options)

    def writes_mode(self) -> str:
        """Who writes a run's results, with ``$ANCHO_SPARK_WRITES`` read now."""
        writes = self.writes or os.environ.get("ANCHO_SPARK_WRITES") or "auto"
        if writes not in WRITE_MODES:
            raise InputError(f"writes (or ANCHO_SPARK_WRITES) must be one of {', '.join(WRITE_MODES)}, got {writes!r}")
        return writes

    @property
    def policy(self) -> SandboxPolicy | None:
        """The sandbox policy tasks apply on the executors, or None."""
        from ...isolation import Sandbox

        return self.sandbox.policy if isinstance(self.sandbox, Sandbox) else self.sandbox

    @property
    def wrap(self) -> Callable[[list[str]], list[str]] | None:
        """The command wrapper of a sandbox built for this run (the driver's own local workers use it), or None."""
        from ...isolation import Sandbox

        return self.sandbox.wrap if isinstance(self.sandbox, Sandbox) else None


def _sandbox(
    sandbox: SandboxPolicy | bool | None, wrap: Callable[[list[str]], list[str]] | None
) -> SandboxPolicy | Sandbox | None:
    """``sandbox=`` (a SandboxPolicy, or True for the default one), else a ``wrap=`` that is a
    :class:`~ancho.isolation.Sandbox`'s: the policy travels, each executor builds its own sandbox from it with
    its own paths; the Sandbox itself is kept for what the driver runs."""
    from ...isolation import Sandbox, SandboxPolicy

    owner = getattr(wrap, "__self__", None) if wrap is not None else None
    if wrap is not None and not isinstance(owner, Sandbox):
        raise InputError(
            "wrap: Spark tasks rebuild the sandbox on each executor, so give it as sandbox=SandboxPolicy(...) "
            "(or a Sandbox's wrap), not another command wrapper"
        )
    if sandbox is True:
        sandbox = SandboxPolicy()
    if sandbox in (None, False):
        return owner
    if not isinstance(sandbox, SandboxPolicy):
        raise InputError(f"sandbox must be a SandboxPolicy, True or None, got {sandbox!r}")
    if owner is not None and owner.policy != sandbox:
        raise InputError(
            "give the sandbox once: sandbox=SandboxPolicy(...) or a Sandbox's wrap, not two different ones"
        )
    return owner if owner is not None else sandbox
