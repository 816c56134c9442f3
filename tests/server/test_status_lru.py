"""The server's rendered statuses (server/status.py) over a real embedded store: rendered once per version and
rendering, re-rendered after every change, never handed to another user, bounded."""

from __future__ import annotations

import asyncio

import pytest

from ancho.errors import NotFound
from ancho.server.status import RenderedRuns
from ancho.stores.base import RunRecord
from ancho.stores.embedded import EmbeddedStore


def test_renders_once_per_version_and_follows_every_change(tmp_path):
    store = EmbeddedStore(tmp_path, fsync=False)
    store.create_run(RunRecord(id="r1", owner="alice", total=10))
    runs = RenderedRuns(store, size=4)
    calls = []

    def status(r):
        calls.append(("status", r.done))
        return f"{r.status}:{r.done}".encode()

    def progress(r):
        calls.append(("progress", r.done))
        return str(r.done).encode()

    async def polls():
        out = [await runs.get("alice", "r1", status) for _ in range(5)]
        out.append(await runs.get("alice", "r1", progress))
        store.update_run("r1", status="running", done=3)
        out.append(await runs.get("alice", "r1", status))
        out.append(await runs.get("alice", "r1", status))
        with pytest.raises(NotFound):
            await runs.get("bob", "r1", status)  # the version check is the owner check: kept bytes are never another's
        with pytest.raises(NotFound):
            await runs.get("alice", "../r1", status)
        return out

    out = asyncio.run(polls())
    assert out == [b"queued:0"] * 5 + [b"0", b"running:3", b"running:3"]
    assert calls == [("status", 0), ("progress", 0), ("status", 3)]
    for i in range(10):  # bounded: the oldest renderings go
        store.create_run(RunRecord(id=f"n{i}", owner="alice"))
        asyncio.run(runs.get("alice", f"n{i}", status))
    assert len(runs._kept) == 4
