"""One contract suite for every store: each store behaviour is tested once, on every implementation.

A new store adds a factory to ``STORES``: ``factory(request, tmp_path)`` returns a fresh, empty store.
The Cassandra store comes from ``ANCHO_TEST_CASSANDRA_URL`` (``scripts/services start cassandra``
prints it); without it the Cassandra cases skip, or fail under CI.
"""

from __future__ import annotations

import os
import uuid

import pytest

from ..conftest import CASSANDRA_HINT, need_module, need_service

CASSANDRA_URL = os.environ.get("ANCHO_TEST_CASSANDRA_URL", "")


def cassandra_url(keyspace: str) -> str:
    """The test node's URL with its own catalog keyspace (so tests never see each other's runs)."""
    if not CASSANDRA_URL:
        need_service(
            "Cassandra",
            "ANCHO_TEST_CASSANDRA_URL is not set; run `scripts/services start cassandra` and export the URL it prints",
        )
    need_module("cassandra", CASSANDRA_HINT)
    base = CASSANDRA_URL.split("?", 1)[0].rstrip("/")
    if base.count("/") > 2:  # a keyspace in the URL: ours replaces it
        base = base.rsplit("/", 1)[0]
    return f"{base}/{keyspace}"


@pytest.fixture(scope="session")
def cassandra_catalog():
    """One Cassandra store (catalog keyspace) for the session: creating keyspaces takes seconds each."""
    from ancho.stores.cassandra import CassandraStore

    store = CassandraStore.from_url(cassandra_url(f"t{uuid.uuid4().hex[:10]}"))
    yield store
    store.drop_catalog()
    store.close()


@pytest.fixture
def cassandra_store(cassandra_catalog):
    """The session's Cassandra store with every run deleted first."""
    for record in cassandra_catalog.list_runs():
        cassandra_catalog.delete_run(record.id)
    return cassandra_catalog


def _embedded(request, tmp_path):
    from ancho.stores.embedded import EmbeddedStore

    return EmbeddedStore(tmp_path / "embedded")


class _Borrowed:
    """The session's Cassandra store, emptied for this test; closing it leaves the shared connection open."""

    def __init__(self, store):
        for record in store.list_runs():
            store.delete_run(record.id)
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def close(self) -> None:
        pass


def _cassandra(request, tmp_path):
    return _Borrowed(request.getfixturevalue("cassandra_catalog"))


STORES = {"embedded": _embedded, "cassandra": _cassandra}
#: marks per store, so ``-m 'not cassandra'`` leaves those cases out
MARKS = {"cassandra": [pytest.mark.cassandra]}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, [])) for name in sorted(STORES)])
def any_store(request, tmp_path):
    s = STORES[request.param](request, tmp_path)
    yield s
    s.close()
