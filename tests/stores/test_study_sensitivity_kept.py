"""A study record keeps the summary's sensitivity and the end time it was computed for, on every store."""

from __future__ import annotations

import uuid

from ancho.stores.base import StudyRecord

SENSITIVITY = {
    "y": {
        "method": "sobol",
        "S1": {"a": {"value": 0.61, "ci95": [0.55, 0.67]}, "b": {"value": -0.01, "ci95": [-0.04, 0.02]}},
        "ST": {"a": {"value": 0.66, "ci95": [0.6, 0.72]}, "b": {"value": 0.02, "ci95": [0.0, 0.05]}},
        "noise_share": 0.04,
        "warning": None,
    }
}


def test_the_kept_sensitivity_reads_back_as_written_and_is_cleared(any_store):
    sid = "s" + uuid.uuid4().hex[:11]  # the Cassandra catalog is shared by the session's tests
    any_store.create_study(StudyRecord(id=sid, design={"kind": "sobol"}, status="succeeded", finished=1234.5))
    assert any_store.get_study(sid).sensitivity is None and any_store.get_study(sid).sensitivity_finished is None
    any_store.update_study(sid, sensitivity=SENSITIVITY, sensitivity_finished=1234.5)
    kept = any_store.get_study(sid)
    assert kept.sensitivity == SENSITIVITY and kept.sensitivity_finished == kept.finished == 1234.5
    assert [r.sensitivity for r in any_store.list_studies() if r.id == sid] == [SENSITIVITY]
    any_store.update_study(sid, status="running", sensitivity=None)  # what a resume writes
    assert any_store.get_study(sid).sensitivity is None


def test_concurrent_updates_of_different_fields_all_land(any_store):
    """A summary read keeping the sensitivity while the runner writes progress: neither write undoes the other."""
    import threading

    sid = "s" + uuid.uuid4().hex[:11]
    any_store.create_study(StudyRecord(id=sid, design={"kind": "grid"}, status="running"))
    fields = ["started", "sensitivity_finished", "finished", "error"]
    barrier = threading.Barrier(len(fields))

    def write(field: str) -> None:
        barrier.wait()
        for i in range(15):
            any_store.update_study(sid, **{field: f"{field}-{i}" if field == "error" else float(i)})

    threads = [threading.Thread(target=write, args=(f,)) for f in fields]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = any_store.get_study(sid)
    assert (got.started, got.sensitivity_finished, got.finished, got.error) == (14.0, 14.0, 14.0, "error-14")
