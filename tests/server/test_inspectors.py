"""Warm model-reading workers (server/inspectors.py): a user's next submission of the same model reuses the worker
that read it; nobody else's does; a worker that failed is never reused; idle ones go.

Driven through the real Service (sandboxed workers, uploads as the API stores them). Each model's docstring is
a token drawn when its code is imported, so equal tokens mean the same worker process read both requests.
"""

from __future__ import annotations

import time

import psutil
import pytest

from ancho.server.schemas import ModelSource
from ancho.server.service import FieldError, Service
from ancho.server.settings import Settings

from ..conftest import alive
from .conftest import tar_gz

TOKENED = """
import secrets
import ancho


class Tokened(ancho.Model):
    n: int = 1

    def sequence(self, rng):
        return {"x": rng.random()}


Tokened.__doc__ = secrets.token_hex(8)  # drawn once per process that imports this file
"""

BROKEN = """
import ancho
raise RuntimeError("this model does not import")
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = Service(Settings(home=tmp_path_factory.mktemp("inspectors") / "home"))
    yield service
    service.shutdown()


def source(svc: Service, user: str, text: str) -> ModelSource:
    return ModelSource(upload=svc.uploads.add(user, tar_gz({"model.py": text}), "m.tar.gz")["id"])


def token(svc: Service, user: str, src: ModelSource, params=None) -> str:
    return svc.inspect(user, src, params)["model"]["doc"]


def child_processes(svc: Service) -> set[psutil.Process]:
    return set(psutil.Process().children(recursive=True))


def test_the_same_users_next_submission_reuses_the_worker(svc):
    mine = source(svc, "alice", TOKENED)
    first = token(svc, "alice", mine, {"n": 2})
    assert token(svc, "alice", mine, {"n": 3}) == first
    with pytest.raises(FieldError, match="expects int"):  # a refused parameter is the model's answer, not a failure
        svc.inspect("alice", mine, {"n": "many"})
    assert token(svc, "alice", mine) == first


def test_another_user_never_shares_a_worker(svc):
    alices, bobs = source(svc, "alice", TOKENED), source(svc, "bob", TOKENED)
    assert token(svc, "bob", bobs) != token(svc, "alice", alices)


def test_a_worker_that_failed_is_closed(svc):
    broken = source(svc, "carol", BROKEN)
    before = child_processes(svc)
    for _ in range(2):
        with pytest.raises(FieldError, match="does not import"):
            svc.inspect("carol", broken, None)
    assert all(key[0] != "carol" for key in svc.inspectors._idle)
    assert not any(alive(p) for p in child_processes(svc) - before)  # nothing of carol's left running


def test_idle_workers_go_and_nothing_is_kept_at_zero(tmp_path):
    service = Service(Settings(home=tmp_path / "home", inspect_keep_seconds=0.5))
    try:
        src = source(service, "dora", TOKENED)
        before = child_processes(service)
        first = token(service, "dora", src)
        kept = child_processes(service) - before
        assert kept and service.inspectors.idle() == 1
        time.sleep(0.5)
        service.inspectors.reap()
        assert service.inspectors.idle() == 0
        assert token(service, "dora", src) != first  # a fresh worker
    finally:
        service.shutdown()
    assert not any(alive(p) for p in kept)
    never = Service(Settings(home=tmp_path / "home2", inspect_keep_seconds=0))
    try:
        src = source(never, "erin", TOKENED)
        assert token(never, "erin", src) != token(never, "erin", src)
        assert never.inspectors.idle() == 0
    finally:
        never.shutdown()


def test_a_kept_worker_outlives_the_request_thread_that_started_it(svc):
    """Workers die with the thread that started them (PR_SET_PDEATHSIG is per thread), and request threads come
    and go (the thread pool stops idle ones): a kept worker must not be one of theirs."""
    import threading

    mine = source(svc, "fay", TOKENED)
    got = []
    request = threading.Thread(target=lambda: got.append(token(svc, "fay", mine)))
    request.start()
    request.join()
    time.sleep(0.5)  # the thread is gone; a worker it had started would be killed by now
    assert token(svc, "fay", mine) == got[0]
