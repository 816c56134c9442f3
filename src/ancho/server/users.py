"""Users and their API tokens.

A token is 32 random bytes (URL-safe base64) shown once; only its SHA-256
is stored. Tokens carry 256 bits of entropy, so a fast hash is enough (slow
password hashes protect guessable secrets); lookups stay constant-time
through the index on the hash.

Every API request authenticates, so answers are cached in memory, per
thread, and thrown away as soon as the users table may have changed:
SQLite's ``PRAGMA data_version`` changes when another connection (``ancho
users revoke`` in another process, for one) commits, and this process's own
writes clear the caches directly. A revoked token is refused by the next
request, as without a cache.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from pathlib import Path

from ..errors import InputError, NotFound
from ..sqlite import Database

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TOKEN_PREFIX = "anc_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    revoked REAL
);
"""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: owners that are not server users: runs made by ``ancho run`` / ``ancho.run`` belong to "local",
#: and a server user of that name would see (and cancel) them
RESERVED = frozenset({"local"})


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"user name '{name}' is not allowed: use 1-32 lowercase letters, digits or '_', starting with a letter"
        )
    if name in RESERVED:
        raise InputError(
            f"user name '{name}' is reserved (runs made on this machine without a server belong to it); choose another"
        )
    return name


def users_for(settings) -> Users:
    """The users of the server ``settings`` describe; with a Cassandra store, adding one also creates their keyspace and role."""
    on_add = None
    if settings.store and settings.store.startswith("cassandra://"):

        def on_add(name: str) -> None:
            from ..stores import open_store

            store = open_store(settings.store)
            try:
                add_owner = getattr(store, "add_owner", None)  # stores with a role per owner (Cassandra)
                if add_owner is not None:
                    add_owner(name)
            finally:
                store.close()

    return Users(settings.db_path, on_add=on_add)


class Users:
    def __init__(self, db: Path, on_add=None):
        """``on_add(name)`` prepares what a new user needs in the store (a Cassandra keyspace and role) before the user exists."""
        self.db = Database(db, _SCHEMA)
        self.on_add = on_add
        self._cache = threading.local()  # .version (data_version when filled) and .users (token hash -> name)
        self._generation = 0  # bumped by this object's own writes, which data_version does not report

    def add(self, name: str) -> str:
        """Create a user (or give a revoked one a new token); return the token, which is not stored."""
        check_name(name)
        if self.on_add is not None:  # idempotent: a user whose store part exists already is fine
            self.on_add(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as d:
            row = d.execute("SELECT revoked FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise InputError(f"user '{name}' exists; revoke the old token first (ancho users revoke {name})")
            d.execute(
                "INSERT OR REPLACE INTO users (name, token_hash, created, revoked) VALUES (?, ?, ?, NULL)",
                (name, _hash(token), time.time()),
            )
        self._generation += 1
        return token

    def revoke(self, name: str) -> None:
        with self.db.write() as d:
            cur = d.execute("UPDATE users SET revoked = ? WHERE name = ? AND revoked IS NULL", (time.time(), name))
        self._generation += 1
        if cur.rowcount == 0:
            raise NotFound(f"no active user '{name}'")

    def list(self) -> list[dict]:
        rows = self.db.conn().execute("SELECT name, created, revoked FROM users ORDER BY name").fetchall()
        return [{"name": r[0], "created": r[1], "revoked": r[2]} for r in rows]

    def authenticate(self, token: str) -> str | None:
        """The user name for a valid, unrevoked token; None otherwise."""
        if not token or len(token) > 200:
            return None
        conn = self.db.conn()
        version = (conn.execute("PRAGMA data_version").fetchone()[0], self._generation)
        cache = self._cache
        if getattr(cache, "version", None) != version:
            cache.version, cache.users = version, {}
        key = _hash(token)
        if key in cache.users:
            return cache.users[key]
        row = conn.execute("SELECT name FROM users WHERE token_hash = ? AND revoked IS NULL", (key,)).fetchone()
        if len(cache.users) >= 10_000:  # a flood of wrong tokens must not grow the cache without bound
            cache.users.clear()
        cache.users[key] = row[0] if row else None
        return cache.users[key]
