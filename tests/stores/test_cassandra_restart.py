"""A Cassandra node restart in the middle of runs (restarts the shared node from ``scripts/services``).

Two runs write to the node while it is stopped and started again:

* one with the default patience (``retry_seconds``) rides out the restart and
  completes with results identical to the same run on the embedded store;
* one told to give up after one second fails, and what it left is clean:
  every chunk marked done reads back complete and correct, nothing else is
  done, and the run is not ``succeeded``.

Slow and disruptive (other users of the node see it go away for ~20 s), so
it is marked ``slow`` and ``cassandra``, runs only against the node that
``scripts/services`` manages, and always starts the node again.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import numpy as np
import pytest

import ancho
from ancho.errors import AnchoError

from ..conftest import ROOT, need_service
from ..models import Slow
from ..stores.conftest import cassandra_url

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

SERVICES = ROOT / "scripts" / "services"
PARAMS = {"seconds": 0.004}
SEQUENCES = 6000
SEED = 21


def services(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([str(SERVICES), *args], capture_output=True, text=True, timeout=timeout)


def test_runs_across_a_node_restart_complete_identically_or_fail_cleanly(home):
    from ancho.stores.cassandra import CassandraStore

    url = cassandra_url(f"trs{uuid.uuid4().hex[:8]}")
    if services("status", "cassandra").returncode != 0:
        need_service(
            "Cassandra (managed by scripts/services)",
            "the restart test stops and starts the node scripts/services runs",
        )
    admin = CassandraStore.from_url(url)
    admin.add_owner("local")  # keyspace and role made before the clock starts
    reference = ancho.run(Slow, params=PARAMS, sequences=SEQUENCES, seed=SEED, workers=1)

    outcome: dict = {}
    restart_began = threading.Event()
    node_back = threading.Event()

    def restart() -> None:
        try:
            outcome["stop"] = services("stop", "cassandra")
            time.sleep(2)
        finally:
            outcome["start"] = services("start", "cassandra")
            node_back.set()

    def progress(done: int, total: int) -> None:
        if done >= SEQUENCES // 6 and not restart_began.is_set():
            restart_began.set()
            threading.Thread(target=restart, daemon=True).start()

    def run(name: str, store_url: str, watch=None) -> None:
        try:
            outcome[name] = ancho.run(
                Slow, params=PARAMS, sequences=SEQUENCES, seed=SEED, workers=1, store=store_url, progress=watch
            )
        except Exception as exc:  # kept whatever it is, so an assertion below names it
            outcome[name] = exc

    patient = threading.Thread(target=run, args=("patient", url + "?retry_seconds=400", progress))
    impatient = threading.Thread(target=run, args=("impatient", url + "?retry_seconds=1"))
    try:
        patient.start()
        impatient.start()
        patient.join(900)
        impatient.join(900)
    finally:
        if restart_began.is_set():
            node_back.wait(600)
        if services("status", "cassandra").returncode != 0:  # whatever happened, the node is left running
            services("start", "cassandra")
    assert restart_began.is_set(), "the runs ended before the restart began"
    assert outcome["stop"].returncode == 0, outcome["stop"].stderr
    assert outcome["start"].returncode == 0, outcome["start"].stderr

    done = outcome["patient"]
    assert not isinstance(done, Exception), done
    assert done.status == "succeeded"
    assert done.frame.equals(reference.frame)
    assert done.summary["outputs"] == reference.summary["outputs"]
    done.store.close()

    failed = outcome["impatient"]
    assert isinstance(failed, AnchoError), f"the impatient run should have given up while the node was down: {failed!r}"
    from ancho.stores.cassandra import wait_until_up

    wait_until_up(admin)
    [record] = [r for r in admin.list_runs() if r.id != done.run_id]
    assert record.status != "succeeded"
    ranges = admin.completed_ranges(record.id)
    stored = admin.read_column(record.id, "sequence")
    expected = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.empty(0, dtype=np.int64)
    assert np.array_equal(stored, expected)  # each done chunk complete, nothing else
    assert np.array_equal(admin.read_column(record.id, "x"), reference.column("x")[expected])
    admin.drop_catalog()
    admin.close()
