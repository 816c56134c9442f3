"""Connecting to Cassandra: the store URL, sessions, and riding out an unavailable node.

Kept apart from the store so that any process (a summary worker, a Spark
task) can open a session from a plain, picklable description — hosts, port,
a role and its password — without the admin credentials the store holds.

Every statement Ancho sends is idempotent (plain INSERT/UPDATE/DELETE by
full primary key, never counters or list appends), so a statement that
failed because a node was down or restarting is simply sent again until
``retry_seconds`` have passed: a node restart in the middle of a run costs
a pause, not the run.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import AnchoError, InputError

log = logging.getLogger("ancho.stores.cassandra")

T = TypeVar("T")
N = TypeVar("N", int, float)

if TYPE_CHECKING:
    from cassandra.cluster import Session  # untyped library: Any to mypy

DEFAULT_PORT = 9042
DEFAULT_KEYSPACE = "ancho"
DEFAULT_RETRY_SECONDS = 120.0
_KEYSPACE = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
_OPTIONS = ("replication_factor", "datacenter", "retry_seconds", "request_timeout")


class StoreUnavailable(AnchoError):
    """The Cassandra cluster did not answer (after retrying for ``retry_seconds``)."""

    exit_code = 1


@dataclass(frozen=True)
class Endpoint:
    """Where a Cassandra cluster is and who logs in: picklable, JSON-able, secret-bearing (never log it)."""

    hosts: tuple[str, ...]
    port: int
    username: str
    password: str = field(repr=False)
    datacenter: str | None = None
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    request_timeout: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts),
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "datacenter": self.datacenter,
            "retry_seconds": self.retry_seconds,
            "request_timeout": self.request_timeout,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(
            tuple(data["hosts"]),
            int(data["port"]),
            data["username"],
            data["password"],
            data.get("datacenter"),
            float(data.get("retry_seconds", DEFAULT_RETRY_SECONDS)),
            float(data.get("request_timeout", 30.0)),
        )

    def as_role(self, username: str, password: str) -> Endpoint:
        return Endpoint(
            self.hosts, self.port, username, password, self.datacenter, self.retry_seconds, self.request_timeout
        )

    @property
    def where(self) -> str:
        return f"{','.join(self.hosts)}:{self.port}"


@dataclass(frozen=True)
class StoreURL:
    """``cassandra://USER:PASSWORD@HOST[,HOST…][:PORT][/KEYSPACE][?replication_factor=N&datacenter=DC&retry_seconds=S]``.

    KEYSPACE (default ``ancho``) holds the run catalog; each owner's results
    go to the keyspace ``KEYSPACE_u_OWNER``.
    """

    endpoint: Endpoint
    keyspace: str = DEFAULT_KEYSPACE
    replication_factor: int = 1

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        shown = redact(url)
        parts = urlsplit(url)
        if parts.scheme != "cassandra":
            raise InputError(f"store '{shown}' is not a cassandra:// URL")
        netloc = parts.netloc
        if "@" not in netloc:
            raise InputError(
                f"store '{shown}': give the login, as cassandra://USER:PASSWORD@HOST:PORT (Cassandra runs with authentication on)"
            )
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if not user or not sep:
            raise InputError(f"store '{shown}': give both user and password, as cassandra://USER:PASSWORD@HOST:PORT")
        hostpart, port = hostport, DEFAULT_PORT
        if ":" in hostport.rsplit(",", 1)[-1]:
            hostpart, _, port_text = hostport.rpartition(":")
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise InputError(f"store '{shown}': the port '{port_text}' is not a port number")
            port = int(port_text)
        hosts = tuple(h for h in hostpart.split(",") if h)
        if not hosts:
            raise InputError(f"store '{shown}': name at least one host, as cassandra://USER:PASSWORD@HOST:PORT")
        keyspace = parts.path.strip("/") or DEFAULT_KEYSPACE
        if not _KEYSPACE.match(keyspace):
            raise InputError(
                f"store '{shown}': the keyspace '{keyspace}' must be 1-30 lowercase letters, digits or '_', starting with a letter"
            )
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise InputError(f"store '{shown}': unknown option '{unknown[0]}' (options: {', '.join(_OPTIONS)})")
        rf = _number(options, "replication_factor", int, 1, shown)
        retry = _number(options, "retry_seconds", float, DEFAULT_RETRY_SECONDS, shown)
        timeout = _number(options, "request_timeout", float, 30.0, shown)
        endpoint = Endpoint(
            hosts, port, unquote(user), unquote(password), options.get("datacenter") or None, retry, timeout
        )
        return cls(endpoint, keyspace, rf)


def _number(options: dict[str, str], name: str, kind: Callable[[str], N], default: N, shown: str) -> N:
    if name not in options:
        return default
    try:
        value = kind(options[name])
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise InputError(f"store '{shown}': option {name} must be a positive number, got '{options[name]}'")
    return value


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


class _QuietConnectErrors(logging.Filter):
    """Drop the driver's own tracebacks for failed connection attempts: Ancho retries and then says what failed, once."""

    PHRASES = (
        "Control connection failed to connect",
        "[control connection] Error connecting",
        "Error attempting to reconnect",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(p in message for p in self.PHRASES)


logging.getLogger("cassandra.cluster").addFilter(_QuietConnectErrors())
logging.getLogger("cassandra.pool").addFilter(_QuietConnectErrors())

#: seconds opening a store keeps trying to reach the cluster: a wrong host or port fails soon
OPEN_PATIENCE = 10.0


def connect(endpoint: Endpoint, keyspace: str | None = None, patience: float | None = None) -> Session:
    """A driver ``Session`` (its ``.cluster`` to shut down) with Ancho's policies; StoreUnavailable/InputError if refused.

    Keeps trying for ``patience`` seconds (default ``retry_seconds``: a worker
    connecting while a node restarts waits for it).
    """
    from cassandra import AuthenticationFailed, ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=endpoint.datacenter)),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=endpoint.request_timeout,
    )

    def cluster() -> Cluster:
        return Cluster(
            list(endpoint.hosts),
            port=endpoint.port,
            auth_provider=PlainTextAuthProvider(endpoint.username, endpoint.password),
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            # a restarted node is found again within seconds (the default backs off to 10 minutes)
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 4.0),
            connect_timeout=10,
            protocol_version=5,  # Cassandra 4.0 and newer; saves the driver's noisy downgrade from its newest version
        )

    deadline = time.monotonic() + (
        endpoint.retry_seconds if patience is None else min(patience, endpoint.retry_seconds)
    )
    while True:
        attempt = cluster()  # a cluster that failed to connect is shut down for good: a new one per attempt
        try:
            return attempt.connect(keyspace)
        except NoHostAvailable as exc:
            attempt.shutdown()
            if any(isinstance(e, AuthenticationFailed) for e in exc.errors.values()):
                raise InputError(
                    f"Cassandra at {endpoint.where} refused the login of '{endpoint.username}': check the user and password in the store URL"
                ) from None
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"cannot reach Cassandra at {endpoint.where}: {_reason(exc)}; start it (scripts/services start cassandra) "
                    "or check the hosts and port in the store URL"
                ) from None
            time.sleep(1.0)


def _reason(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        first = next(iter(errors.values()))
        return f"{type(first).__name__}: {first}"[:200]
    return f"{type(exc).__name__}: {exc}"[:200]


def transient_errors() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException

    return (NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout, WriteTimeout, ConnectionException)


def unavailable(endpoint: Endpoint, what: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"Cassandra at {endpoint.where} did not answer for {endpoint.retry_seconds:g} s while {what} ({_reason(exc)}); "
        "check that the cluster is up, or raise retry_seconds in the store URL"
    )


def retrying(what: str, endpoint: Endpoint, call: Callable[[], T]) -> T:
    """``call()`` again while the cluster is unreachable, up to ``retry_seconds``; then StoreUnavailable naming ``what``.

    Only for idempotent work (everything Ancho sends is).
    """
    transient = transient_errors()
    deadline = time.monotonic() + endpoint.retry_seconds
    delay = 0.25
    while True:
        try:
            return call()
        except transient as exc:
            if time.monotonic() >= deadline:
                raise unavailable(endpoint, what, exc) from None
            log.warning("Cassandra unavailable while %s (%s); retrying", what, _reason(exc))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def run_concurrent(session: Session, statement: Any, rows: list[tuple[Any, ...]], concurrency: int = 16) -> None:
    """Execute one prepared statement for every row, ``concurrency`` requests in flight; raise the first failure."""
    from cassandra.concurrent import execute_concurrent_with_args

    if rows:
        execute_concurrent_with_args(session, statement, rows, concurrency=concurrency, raise_on_first_error=True)
