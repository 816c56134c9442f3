"""Rendered run statuses, kept by the server: what clients poll costs a version check, not a rendering.

``GET /api/v1/runs/{id}`` (the route and the status cache in front of it,
server/fastpath.py) and the event stream (``…/events``) poll a run hundreds
of times between two changes of its record. The store tells cheaply whether
the record changed (``Store.run_version``); the bytes rendered from it are
kept here, keyed by (run, version, rendering), in a small LRU. The store
knows nothing of renderings; the server knows nothing of how a store tells
versions apart.

Reads that must wait on a network (a remote store: ``NotAtHand``) go to a
thread, one per run and user at a time, so a slow node delays those polls
only, never the event loop, and 32 polls arriving at once make one read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

import anyio

from ..errors import NotFound
from ..stores.base import NotAtHand, RunRecord, Store

Render = Callable[[RunRecord], bytes]


class RenderedRuns:
    """The LRU of rendered statuses over ``store``; :meth:`get` is called on the event loop."""

    def __init__(self, store: Store, size: int = 1024):
        self.store = store
        self.size = size
        self._kept: OrderedDict[tuple, bytes] = OrderedDict()  # (run, version, render) -> bytes
        self._reads: dict[tuple[str, str], asyncio.Future] = {}  # (run, user) -> its read on a thread

    async def get(self, user: str, run_id: str, render: Render) -> bytes:
        """``render`` of the user's run as it is now (NotFound for a run that is not theirs)."""
        try:
            version = self.store.run_version(run_id, user, wait=False)
        except NotAtHand:
            version, record = await self._read(user, run_id)
        else:
            if version is None:
                raise NotFound(f"no run '{run_id}'")
            body = self._kept.get((run_id, version, render))
            if body is not None:
                self._kept.move_to_end((run_id, version, render))
                return body
            try:
                version, record = self.store.versioned_run(run_id, user, wait=False)
            except NotAtHand:
                version, record = await self._read(user, run_id)
        key = (run_id, version, render)
        body = self._kept.get(key)  # another poll waiting on the same read may have rendered it
        if body is None:
            body = self._kept[key] = render(record)
            if len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return body

    async def _read(self, user: str, run_id: str) -> tuple[int, RunRecord]:
        """``store.versioned_run`` on a thread, shared by every poll of the run that arrives while it is on its way."""
        key = (run_id, user)
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(anyio.to_thread.run_sync(self.store.versioned_run, run_id, user))
            self._reads[key] = read

            def finished(done: asyncio.Future) -> None:
                self._reads.pop(key, None)
                if not done.cancelled():
                    done.exception()  # retrieved: the waiters, if any are left, get it from await

            read.add_done_callback(finished)
        return await asyncio.shield(read)
