"""Server settings: defaults, then a TOML config file, then ``ANCHO_*`` environment variables, then flags.

# ancho.toml
host = "127.0.0.1"
port = 8642
concurrency = 2
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from ..errors import InputError
from ..executors import is_spark_master
from ..executors.local import default_workers
from ..home import default_home
from ..sources.extract import MAX_FILES, MAX_TOTAL_BYTES


def offered_executors(spark_master: str | None) -> list[str]:
    """What a run's ``executor`` may be on a server with this Spark master (None: none)."""
    return ["local", *([spark_master] if spark_master else [])]


def quoted_choices(names: list[str]) -> str:
    return " or ".join(f"'{n}'" for n in names)


class Settings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8642, ge=0, le=65535)
    home: Path = Field(default_factory=default_home)
    #: result store URL; default: the embedded store under ``home``
    store: str | None = None
    #: runs executing at the same time
    concurrency: int = Field(2, ge=1, le=256)
    #: worker processes per run
    workers: int = Field(default_factory=default_workers, ge=1, le=1024)
    #: niceness of run workers: the API and the web site stay responsive while runs use every core
    worker_nice: int = Field(10, ge=0, le=19)
    #: run workers under SCHED_IDLE (Linux): they use only CPU time nothing else wants, and requests preempt them at
    #: once; their niceness then matters only among themselves (benchmarks/bench_server.py measures both)
    worker_idle: bool = False
    #: largest request body accepted (bytes); larger ones get 413
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    #: most members an uploaded model archive may hold
    max_archive_files: int = Field(MAX_FILES, ge=1)
    #: most bytes an uploaded model archive may unpack to
    max_archive_bytes: int = Field(MAX_TOTAL_BYTES, ge=1)
    #: seconds a worker may take to load a model's code when a run is submitted
    inspect_timeout: float = Field(60.0, gt=0)
    #: seconds the worker that read a user's model for a submission stays for their next one (0: never kept)
    inspect_keep_seconds: float = Field(60.0, ge=0)
    #: largest number of sequences one run may ask for
    max_sequences: int = Field(10**10, ge=1)
    #: most points one study's design may have (each point is a run: its record, its summary)
    max_study_points: int = Field(10_000, ge=1)
    # -- the sandbox model code runs in (docs/sandbox.md) --
    #: run model code without bubblewrap where it is missing (a warning is logged); otherwise the server refuses to start
    allow_unsandboxed: bool = False
    #: address space of a worker process (bytes); larger allocations raise MemoryError
    sandbox_memory_bytes: int | None = Field(4 * 1024**3, ge=64 * 1024**2)
    #: CPU seconds a worker process may use in its life (off by default: workers live for a whole run)
    sandbox_cpu_seconds: int | None = Field(None, ge=1)
    sandbox_open_files: int = Field(1024, ge=16)
    #: processes and threads per worker (a pids cgroup)
    sandbox_max_processes: int = Field(128, ge=8)
    #: wall-clock seconds one sequence may take before it fails with TimeoutError
    sequence_timeout: float | None = Field(600.0, gt=0)
    #: wall-clock seconds a run's @ancho.summary functions may take, all together, before its worker is killed
    summary_timeout: float | None = Field(600.0, gt=0)
    #: workers load a system-call filter (io_uring, bpf, ptrace, keyctl, namespaces… answer EPERM); off only for
    #: trusted models whose libraries need one of those calls
    sandbox_seccomp: bool = True
    # -- where model code may come from --
    #: folders a file:// model URL may point into (none: file:// is refused)
    source_file_roots: list[Path] = Field(default_factory=list)
    #: allow http:// (not https) model URLs on 127.0.0.1 (for tests and local mirrors)
    allow_loopback_http: bool = False
    #: seconds a URL or git fetch may take
    fetch_timeout: float = Field(300.0, gt=0)
    #: let model URLs and git repositories point at loopback, private, link-local or otherwise internal addresses
    #: (checked after DNS resolution and after every redirect); off, a user cannot probe the server's own network
    source_private_hosts: bool = False
    #: accept git:// (unauthenticated, unencrypted) repositories besides https://
    source_git_protocol: bool = False
    #: buckets an s3:// model URL may name; the server's own AWS credentials read them (empty: s3:// is refused)
    source_s3_buckets: list[str] = Field(default_factory=list)
    # -- a model's requirements.txt (docs/sandbox.md) --
    #: the package index requirements are installed from (a PEP 503 "simple" URL); nothing else is consulted
    package_index: str = "https://pypi.org/simple"
    #: let requirements without a wheel be built from source; the build then runs inside the sandbox
    #: (off: wheels only, so no code of the user's runs while their environment is installed)
    allow_source_builds: bool = False
    # -- behind a reverse proxy --
    #: addresses of proxies whose X-Forwarded-For/-Proto headers are believed (a TLS-terminating proxy makes
    #: cookies Secure this way); empty: forwarded headers are ignored
    trusted_proxies: list[str] = Field(default_factory=list)
    # -- Spark (docs/spark.md) --
    #: the Spark master runs may name as their executor besides 'local'; none: the server runs only local runs.
    #: One master per server: a process holds one SparkContext.
    spark_master: str | None = None
    #: Spark properties for the server's Spark session (a TOML table, or a JSON object in ANCHO_SPARK_CONF)
    spark_conf: dict[str, str] = Field(default_factory=dict)
    #: seconds the Spark session stays up with no Spark run, then is stopped (its cores go back to the cluster)
    spark_idle_seconds: float = Field(300.0, ge=0)
    log_level: str = "info"

    @field_validator("spark_master")
    @classmethod
    def _spark_master(cls, value: str | None) -> str | None:
        if value in (None, "", "local"):
            return None
        if not is_spark_master(value):
            raise ValueError(f"'{value}' is not a Spark master URL (spark://host:7077, k8s://…, yarn, local[N])")
        return value

    @property
    def executors(self) -> list[str]:
        """What a run's ``executor`` may be on this server."""
        return offered_executors(self.spark_master)

    @classmethod
    def load(cls, config: str | os.PathLike | None = None, **overrides: Any) -> Settings:
        data: dict[str, Any] = {}
        path = config or os.environ.get("ANCHO_CONFIG")
        if path:
            try:
                data.update(tomllib.loads(Path(path).read_text()))
            except FileNotFoundError:
                raise InputError(f"config file '{path}' does not exist") from None
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"config file '{path}' is not valid TOML: {exc}") from None
        for name in cls.model_fields:
            value: Any = os.environ.get(f"ANCHO_{name.upper()}")
            if value is not None and value != "":
                if value.lstrip().startswith(
                    ("[", "{")
                ):  # JSON: ANCHO_SOURCE_FILE_ROOTS='["/srv/models"]', ANCHO_SPARK_CONF='{…}'
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        raise InputError(f"ANCHO_{name.upper()} is not valid JSON: {value}") from None
                elif (sep := cls._list_separator(name)) is not None:
                    # folders as a PATH-style list (ANCHO_SOURCE_FILE_ROOTS=/srv/a:/srv/b), other lists with commas
                    value = [part.strip() for part in value.split(sep) if part.strip()]
                data[name] = value
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InputError(f"setting '{'.'.join(map(str, first['loc']))}': {first['msg']}") from None

    @classmethod
    def _list_separator(cls, name: str) -> str | None:
        """How a list setting's items are separated in an environment variable (None: not a list)."""
        annotation = cls.model_fields[name].annotation
        if typing.get_origin(annotation) is not list:
            return None
        return os.pathsep if typing.get_args(annotation) == (Path,) else ","

    @property
    def db_path(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home / "server.db"
