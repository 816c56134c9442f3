"""The Cassandra store: run records in a catalog keyspace, each owner's results in a keyspace of their own.

``cassandra://USER:PASSWORD@HOST[,HOST…]:PORT[/KEYSPACE][?replication_factor=N&datacenter=DC&retry_seconds=S]``

The store logs in with the URL's (administrator) role. It keeps:

* ``KEYSPACE.runs`` — one row per run: ``id`` (partition key), ``owner``,
  ``status``, ``created`` and every other record field as JSON in a map, so an
  update writes only the fields it changes (no read-modify-write, no lost
  update when the dispatcher and the engine both write). Storage-attached
  indexes on ``owner`` and ``status`` serve ``list_runs``.
* ``KEYSPACE.owners`` — per owner: keyspace, role, that role's password.
* ``KEYSPACE_u_OWNER`` — the owner's results (:mod:`.cassandra_results`),
  readable and writable by the role of the same name and by nobody else
  but the administrator.

User code (summary functions, and Spark tasks writing results) gets a
*results source* holding only the owner's role and password, never the
administrator's; Cassandra's authorizer then keeps it inside that keyspace.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .. import jsontext
from ..chunk import ChunkResult, Failure
from ..errors import InputError, NotFound, StoreError
from .base import NotAtHand, RunRecord, Store, StudyRecord, arrow_schema, record_version
from .cassandra_conn import OPEN_PATIENCE, StoreURL, connect, redact, retrying
from .cassandra_results import TABLES, RunResults
from .embedded import check_run_id
from .results_sources import CassandraResults

if TYPE_CHECKING:
    import pyarrow as pa

T = TypeVar("T")

_COLUMNS = ("id", "owner", "status", "created")
_MAX_KEYSPACE = 48  # Cassandra's limit on keyspace (and table) names

CATALOG = (
    """CREATE TABLE IF NOT EXISTS {ks}.runs (
        id text PRIMARY KEY, owner text, status text, created double, fields map<text, text>)""",
    "CREATE INDEX IF NOT EXISTS runs_owner ON {ks}.runs (owner) USING 'sai'",
    "CREATE INDEX IF NOT EXISTS runs_status ON {ks}.runs (status) USING 'sai'",
    """CREATE TABLE IF NOT EXISTS {ks}.studies (
        id text PRIMARY KEY, owner text, created double, data text)""",
    "CREATE INDEX IF NOT EXISTS studies_owner ON {ks}.studies (owner) USING 'sai'",
    """CREATE TABLE IF NOT EXISTS {ks}.owners (
        owner text PRIMARY KEY, ks text, role text, password text, ready boolean)""",
)


def owner_keyspace(catalog: str, owner: str) -> str:
    """``CATALOG_u_OWNER``; owners whose names are not plain lowercase identifiers (or too long) get a hash suffix."""
    prefix = f"{catalog}_u_"
    plain = re.sub(r"[^a-z0-9_]", "_", owner.lower())
    if plain == owner and len(prefix) + len(plain) <= _MAX_KEYSPACE:
        return prefix + plain
    digest = hashlib.sha256(owner.encode()).hexdigest()[:10]
    return f"{prefix}{plain[: _MAX_KEYSPACE - len(prefix) - 11]}_{digest}"


class CassandraStore(Store):
    """See the module docstring; open with :meth:`from_url` (``open_store`` does)."""

    #: How long a status read (run_version, versioned_run) may reuse a record it read from Cassandra: a server
    #: polled thousands of times a second then reads each polled run a few times a second, not on every poll
    #: (bench_server.py --store, docs/benchmarks.md). Writes through this object show at once, other processes'
    #: within this time.
    STATUS_FRESH_SECONDS = 0.25
    #: Past that, while one reading of the run is on its way, ``wait=False`` still answers what was read
    #: before, for at most this much longer, rather than holding every poll until Cassandra answers.
    STATUS_STALE_SECONDS = 2.0

    def __init__(self, url: StoreURL, shown: str = ""):
        self.config = url
        self.endpoint = url.endpoint
        self.catalog = url.keyspace
        self.url = shown or f"cassandra://{self.endpoint.username}:***@{self.endpoint.where}/{self.catalog}"
        self.session = connect(self.endpoint, patience=OPEN_PATIENCE)
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[str, str, str]] = {}  # owner -> (keyspace, role, password)
        self._results: dict[str, RunResults] = {}  # keyspace -> its prepared statements
        self._run_owner: dict[str, str] = {}
        self._kept: dict[str, tuple[float, int, int, RunRecord]] = {}  # run -> (read at, write, version, record)
        self._writes = itertools.count(1)  # next() is atomic: each write through this object gets its own number
        self._last_write: dict[str, int] = {}  # run -> its latest write's number: a reading older than it is not kept
        self._reading: set[str] = set()  # runs being read now by versioned_run
        self._ensure_catalog()
        ks = self.catalog
        p = self.session.prepare
        self._insert = p(f"INSERT INTO {ks}.runs (id, owner, status, created, fields) VALUES (?, ?, ?, ?, ?)")
        self._get = p(f"SELECT id, owner, status, created, fields FROM {ks}.runs WHERE id = ?")
        self._owner_of = p(f"SELECT owner FROM {ks}.runs WHERE id = ?")
        self._schema_of = p(f"SELECT fields['schema'] AS kinds FROM {ks}.runs WHERE id = ?")
        self._delete = p(f"DELETE FROM {ks}.runs WHERE id = ?")
        self._owner_row = p(f"SELECT ks, role, password, ready FROM {ks}.owners WHERE owner = ?")
        self._claim_owner = p(
            f"INSERT INTO {ks}.owners (owner, ks, role, password, ready) VALUES (?, ?, ?, ?, false) IF NOT EXISTS"
        )
        self._owner_ready = p(f"UPDATE {ks}.owners SET ready = true WHERE owner = ?")
        for stmt in (self._insert, self._delete, self._owner_ready):
            stmt.is_idempotent = True

    @classmethod
    def from_url(cls, url: str) -> CassandraStore:
        return cls(StoreURL.parse(url), redact(url))

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        return retrying(what, self.endpoint, call)

    def _ddl(self, statement: str) -> None:
        from cassandra import Unauthorized

        try:
            self._retry("changing the schema", lambda: self.session.execute(statement, timeout=120))
        except Unauthorized:
            raise InputError(
                f"the Cassandra role '{self.endpoint.username}' in the store URL may not create keyspaces and roles; "
                "give the store a role with superuser rights (or CREATE/AUTHORIZE permissions on all keyspaces and roles)"
            ) from None

    def _ensure_catalog(self) -> None:
        rf = self.config.replication_factor
        self._ddl(
            f"CREATE KEYSPACE IF NOT EXISTS {self.catalog} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
        )
        for statement in CATALOG:
            self._ddl(statement.format(ks=self.catalog))

    # -- owners: keyspaces and roles --------------------------------------------
    def add_owner(self, owner: str) -> str:
        """Create ``owner``'s keyspace and role (if missing) and return the keyspace; safe to call again, from any process."""
        return self._owner(owner)[0]

    def _owner(self, owner: str) -> tuple[str, str, str]:
        found = self._owners.get(owner)
        if found:
            return found
        with self._lock:
            if owner in self._owners:
                return self._owners[owner]
            row = self._retry("reading the owners", lambda: self.session.execute(self._owner_row, (owner,)).one())
            if row is None:
                keyspace = owner_keyspace(self.catalog, owner)
                claim = (owner, keyspace, keyspace, secrets.token_urlsafe(24))
                # a lightweight transaction: two processes adding the same owner agree on one password
                self._retry("adding an owner", lambda: self.session.execute(self._claim_owner, claim))
                row = self._retry("reading the owners", lambda: self.session.execute(self._owner_row, (owner,)).one())
            if not row.ready:
                self._create_owner(row.ks, row.role, row.password)
                self._retry("adding an owner", lambda: self.session.execute(self._owner_ready, (owner,)))
            self._owners[owner] = (row.ks, row.role, row.password)
            return self._owners[owner]

    def _create_owner(self, keyspace: str, role: str, password: str) -> None:
        rf = self.config.replication_factor
        self._ddl(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
        )
        for statement in TABLES:
            self._ddl(statement.format(ks=keyspace))
        quoted = password.replace("'", "''")
        exists = self._retry(
            "reading roles",
            lambda: self.session.execute("SELECT role FROM system_auth.roles WHERE role = %s", (role,)).one(),
        )
        if exists:  # left by an earlier catalog of the same name: it gets the password recorded now
            self._ddl(f"ALTER ROLE {role} WITH PASSWORD = '{quoted}' AND LOGIN = true")
        else:
            self._ddl(f"CREATE ROLE IF NOT EXISTS {role} WITH PASSWORD = '{quoted}' AND LOGIN = true")
        self._ddl(f"GRANT SELECT ON KEYSPACE {keyspace} TO {role}")
        self._ddl(f"GRANT MODIFY ON KEYSPACE {keyspace} TO {role}")

    def drop_owner(self, owner: str) -> None:
        """Delete ``owner``'s keyspace (every result in it), role and catalog entry; their run records stay."""
        row = self._retry("reading the owners", lambda: self.session.execute(self._owner_row, (owner,)).one())
        if row is None:
            return
        self._ddl(f"DROP KEYSPACE IF EXISTS {row.ks}")
        self._ddl(f"DROP ROLE IF EXISTS {row.role}")
        self._retry(
            "removing an owner",
            lambda: self.session.execute(f"DELETE FROM {self.catalog}.owners WHERE owner = %s", (owner,)),
        )
        with self._lock:
            self._owners.pop(owner, None)
            self._results.pop(row.ks, None)

    def drop_catalog(self) -> None:
        """Delete everything this store made: every owner's keyspace and role, then the catalog keyspace."""
        for owner in self.owners():
            self.drop_owner(owner)
        self._ddl(f"DROP KEYSPACE IF EXISTS {self.catalog}")

    def owners(self) -> list[str]:
        rows = self._retry(
            "reading the owners", lambda: list(self.session.execute(f"SELECT owner FROM {self.catalog}.owners"))
        )
        return sorted(r.owner for r in rows)

    def _results_of(self, owner: str) -> RunResults:
        keyspace = self._owner(owner)[0]
        results = self._results.get(keyspace)
        if results is None:
            with self._lock:  # one per keyspace: its write pipeline is what reads flush
                results = self._results.get(keyspace)
                if results is None:
                    results = self._results[keyspace] = RunResults(self.session, keyspace, self.endpoint)
        return results

    def _results_for_run(self, run_id: str) -> RunResults:
        owner = self._run_owner.get(run_id)
        if owner is None:
            check_run_id(run_id)
            row = self._retry("reading a run", lambda: self.session.execute(self._owner_of, (run_id,)).one())
            if row is None:
                raise NotFound(f"no run '{run_id}'")
            owner = self._run_owner[run_id] = row.owner
        return self._results_of(owner)

    # -- run records ---------------------------------------------------------------
    def create_run(self, record: RunRecord) -> None:
        check_run_id(record.id)
        self._owner(record.owner)
        data = record.to_dict()
        fields = {k: jsontext.dumps(v) for k, v in data.items() if k not in _COLUMNS}
        row = (record.id, record.owner, record.status, float(record.created), fields)
        self._retry("creating a run", lambda: self.session.execute(self._insert, row))
        self._run_owner[record.id] = record.owner
        self._wrote(record.id)

    def _record(self, row: Any, summary: bool = True) -> RunRecord:
        """``summary=False``: the summary's field is not decoded (see ``Store.list_runs``)."""
        data: dict[str, Any] = {
            k: jsontext.loads(v) for k, v in (row.fields or {}).items() if summary or k != "summary"
        }
        data.update(id=row.id, owner=row.owner, status=row.status, created=row.created)
        return RunRecord.from_dict(data)

    def get_run(self, run_id: str, owner: str | None = None) -> RunRecord:
        check_run_id(run_id)
        row = self._retry("reading a run", lambda: self.session.execute(self._get, (run_id,)).one())
        if row is None or (owner is not None and row.owner != owner):
            raise NotFound(f"no run '{run_id}'")
        return self._record(row)

    def run_schema(self, run_id: str) -> dict[str, str]:
        """The record's ``schema`` entry alone (not its summary's megabytes, nor their way over the network)."""
        check_run_id(run_id)
        row = self._retry("reading a run", lambda: self.session.execute(self._schema_of, (run_id,)).one())
        if row is None:
            raise NotFound(f"no run '{run_id}'")
        return dict(jsontext.loads(row.kinds)) if row.kinds else {}

    def versioned_run(self, run_id: str, owner: str | None = None, *, wait: bool = True) -> tuple[int, RunRecord]:
        """Reads Cassandra at most once per STATUS_FRESH_SECONDS per run: the record read is kept that long (and
        forgotten at once when this object writes the run). Past that, ``wait=False`` answers the kept record
        while a read of the run is on its way (for STATUS_STALE_SECONDS more) and raises NotAtHand otherwise.
        The version is the record's hash (record_version). Callers must not change the record returned."""
        check_run_id(run_id)
        kept = self._kept.get(run_id)
        if kept is not None and kept[1] == self._last_write.get(run_id, 0):  # no write of ours since
            age = time.monotonic() - kept[0]
            if age < self.STATUS_FRESH_SECONDS or (
                not wait and run_id in self._reading and age < self.STATUS_FRESH_SECONDS + self.STATUS_STALE_SECONDS
            ):
                if owner is not None and kept[3].owner != owner:
                    raise NotFound(f"no run '{run_id}'")
                return kept[2], kept[3]
        if not wait:
            raise NotAtHand(run_id)
        write, started = self._last_write.get(run_id, 0), time.monotonic()
        self._reading.add(run_id)
        try:
            record = self.get_run(run_id)
        finally:
            self._reading.discard(run_id)
        version = record_version(record)
        if self._last_write.get(run_id, 0) == write:  # no write of ours landed while reading: it may be kept
            if len(self._kept) >= 1024:  # a bound, not an LRU: clients poll a few runs at a time
                self._kept.clear()
            self._kept[run_id] = (started, write, version, record)
        if owner is not None and record.owner != owner:
            raise NotFound(f"no run '{run_id}'")
        return version, record

    def _wrote(self, run_id: str) -> None:
        """Called after each write of a run's record: what versioned_run kept of it is stale."""
        if len(self._last_write) >= 100_000:
            self._kept.clear()  # kept readings are checked against these numbers: they go together
            self._last_write.clear()
        self._last_write[run_id] = next(self._writes)

    def update_run(self, run_id: str, **changes: Any) -> None:
        """Writes only the changed fields (each a map entry): concurrent updates of different fields never undo each other."""
        check_run_id(run_id)
        if self._retry("reading a run", lambda: self.session.execute(self._owner_of, (run_id,)).one()) is None:
            raise NotFound(f"no run '{run_id}'")
        sets, args = [], []
        for name in ("status", "owner", "created"):
            if name in changes:
                sets.append(f"{name} = %s")
                args.append(changes[name])
        fields = {k: jsontext.dumps(v) for k, v in changes.items() if k not in _COLUMNS}
        if fields:
            sets.append("fields = fields + %s")
            args.append(fields)
        if not sets:
            return
        cql = f"UPDATE {self.catalog}.runs SET {', '.join(sets)} WHERE id = %s"
        self._retry("updating a run", lambda: self.session.execute(cql, (*args, run_id)))
        self._wrote(run_id)

    def list_runs(
        self, owner: str | None = None, status: str | None = None, limit: int | None = None, *, summaries: bool = True
    ) -> list[RunRecord]:
        where, args = [], []
        if owner is not None:
            where.append("owner = %s")
            args.append(owner)
        if status is not None:
            where.append("status = %s")
            args.append(status)
        cql = f"SELECT id, owner, status, created, fields FROM {self.catalog}.runs"
        if where:
            cql += " WHERE " + " AND ".join(where)
        rows = self._retry("listing runs", lambda: list(self.session.execute(cql, args)))
        records = sorted((self._record(r, summaries) for r in rows), key=lambda r: r.created, reverse=True)
        return records[: int(limit)] if limit is not None else records

    def delete_run(self, run_id: str) -> None:
        try:
            results = self._results_for_run(run_id)
        except NotFound:
            return
        results.delete(run_id)
        self._retry("deleting a run", lambda: self.session.execute(self._delete, (run_id,)))
        self._run_owner.pop(run_id, None)
        self._wrote(run_id)

    # -- study records: one JSON document per study (written by its one driver) ------------------
    def create_study(self, record: StudyRecord) -> None:
        check_run_id(record.id)
        row = (record.id, record.owner, float(record.created), record.to_json())
        cql = f"INSERT INTO {self.catalog}.studies (id, owner, created, data) VALUES (%s, %s, %s, %s)"
        self._retry("creating a study", lambda: self.session.execute(cql, row))

    def _study_row(self, study_id: str) -> Any:
        if not isinstance(study_id, str) or not study_id.replace("-", "").replace("_", "").isalnum():
            return None
        cql = f"SELECT owner, data FROM {self.catalog}.studies WHERE id = %s"
        return self._retry("reading a study", lambda: self.session.execute(cql, (study_id,)).one())

    def get_study(self, study_id: str, owner: str | None = None) -> StudyRecord:
        row = self._study_row(study_id)
        if row is None or (owner is not None and row.owner != owner):
            raise NotFound(f"no study '{study_id}'")
        return StudyRecord.from_dict(jsontext.loads(row.data))

    def update_study(self, study_id: str, **changes: Any) -> None:
        """Compare-and-set on the record (a lightweight transaction): two writers changing different fields at
        once (a study's progress, its kept sensitivity, a resume) both land; neither undoes the other."""
        cql = f"UPDATE {self.catalog}.studies SET data = %s WHERE id = %s IF data = %s"
        for _ in range(100):
            row = self._study_row(study_id)
            if row is None:
                raise NotFound(f"no study '{study_id}'")
            data = jsontext.dumps({**jsontext.loads(row.data), **changes})
            if self._retry("updating a study", functools.partial(self._set_if, cql, (data, study_id, row.data))):
                return
        raise StoreError(f"study '{study_id}' changed 100 times while it was being updated; try again")

    def _set_if(self, cql: str, args: tuple[str, str, str]) -> bool:
        return bool(self.session.execute(cql, args).was_applied)

    def list_studies(self, owner: str | None = None, limit: int | None = None) -> list[StudyRecord]:
        cql, args = f"SELECT data FROM {self.catalog}.studies", []
        if owner is not None:
            cql += " WHERE owner = %s"
            args.append(owner)
        rows = self._retry("listing studies", lambda: list(self.session.execute(cql, args)))
        records = sorted((StudyRecord.from_dict(jsontext.loads(r.data)) for r in rows), key=lambda r: -r.created)
        return records[: int(limit)] if limit is not None else records

    # -- results -----------------------------------------------------------------
    def write_chunk(self, run_id: str, result: ChunkResult) -> None:
        self._results_for_run(run_id).write_chunk(run_id, result)

    def completed_ranges(self, run_id: str) -> list[tuple[int, int]]:
        return self._results_for_run(run_id).completed_ranges(run_id)

    def stored_kinds(self, run_id: str) -> list[tuple[int, int, dict[str, str]]]:
        """Each chunk's marker names its columns' kinds (written with the chunk)."""
        return [(m.start, m.stop, dict(m.kinds)) for m in self._results_for_run(run_id).markers(run_id)]

    def iter_batches(self, run_id: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        results = self._results_for_run(run_id)
        kinds = self.run_schema(run_id)
        schema = arrow_schema(kinds, columns)
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise InputError(
                    f"run '{run_id}' has no output '{unknown[0]}' (outputs: {', '.join(['sequence', *kinds])})"
                )
        return results.iter_batches(run_id, schema)

    def results_page(self, run_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Reads only the chunks the page falls in (page N costs what page 1 does)."""
        return self._results_for_run(run_id).page(run_id, self.arrow_schema(run_id), offset, limit)

    def failures(self, run_id: str, limit: int | None = None) -> list[Failure]:
        try:
            results = self._results_for_run(run_id)
        except NotFound:
            return []
        return results.failures(run_id, limit)

    def results(self, run_id: str) -> CassandraResults:
        """The owner's role and password (never the store's), the keyspace and the run: all user code gets."""
        self._results_for_run(run_id).flush()  # the reader is another process: everything written must be there
        record = self.get_run(run_id)
        keyspace, role, password = self._owner(record.owner)
        return CassandraResults(self.endpoint.as_role(role, password), keyspace, run_id, record.schema)

    def close(self) -> None:
        """Waits for chunk writes still in flight, then disconnects."""
        try:
            for results in list(self._results.values()):
                results.flush()
        finally:
            self.session.cluster.shutdown()

    @property
    def closed(self) -> bool:
        return bool(self.session.is_shutdown)


def wait_until_up(store: CassandraStore, seconds: float = 120.0) -> None:
    """Block until a query answers (after a node restart); for scripts and tests."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            store.session.execute("SELECT release_version FROM system.local")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
