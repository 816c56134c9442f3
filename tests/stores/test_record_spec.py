"""A record's spec is typed (``RecordSpec``), and every record already stored still loads: those written in
today's JSON form (read into the same fields and written back unchanged) and those written before a server's
submission was typed (its parts flat beside ``ref``). Checked on every store, with the spec written as raw JSON
the way an older server wrote it."""

from __future__ import annotations

import json

import pytest

from ancho.stores.base import RunRecord, StudyRecord
from ancho.stores.record_spec import RecordSpec, Submission

from ..stores.conftest import cassandra_catalog, cassandra_url  # noqa: F401 (fixtures)

INFO = {"name": "Gambler", "doc": "Bets.", "parameters": [{"name": "p", "type": "float"}], "kind": "sequence"}
REF = {
    "root": "/srv/home/uploads/u1/tree",
    "file": "model.py",
    "class_name": "Gambler",
    "params": {"p": 0.45, "big": 1e400},
    "server": "9f1c",
    "model_source": {"upload": "u1", "entry": "model.py:Gambler"},
}
#: the spec of each kind of record, exactly as stores hold it today (keys and nesting as written by the server,
#: ancho.run and a study's points before the type)
TODAY = {
    "server run": {"ref": REF, "info": INFO},
    "local run": {"info": INFO},
    "point run": {"info": INFO, "study": "s0123456789a", "point": 4},
    "server point run": {"ref": REF, "info": INFO, "study": "s0123456789a", "point": 4},
    "server study": {"ref": REF, "info": INFO, "source_hash": "ab12", "base_params": {"p": 0.5, "goal": 10}},
    "run before descriptions": {},
}
#: a server's run as servers wrote it before Submission: the model's place under ``ref``, the rest flat
BEFORE = {
    "ref": {"root": "/srv/m", "file": "model.py", "class_name": "M"},
    "params": {"n": 3},
    "server": "s1",
    "model": {"upload": "abc"},
    "info": INFO,
}


@pytest.mark.parametrize("kind", sorted(TODAY))
def test_todays_specs_read_typed_and_write_back_unchanged(kind):
    stored = json.loads(json.dumps(TODAY[kind]))  # (what a store decodes)
    spec = RecordSpec.from_dict(stored)
    assert json.dumps(spec.to_dict(), sort_keys=True) == json.dumps(TODAY[kind], sort_keys=True)
    assert spec.info == TODAY[kind].get("info", {}) and spec.other == {}
    assert (spec.study, spec.point) == ((None, None) if "study" not in stored else ("s0123456789a", 4))
    if "ref" in stored:
        assert spec.submission == Submission(
            REF["root"], "model.py", "Gambler", REF["params"], "9f1c", REF["model_source"]
        )
    else:
        assert spec.submission is None
    # the JSON form reads as a mapping too, for readers written against it
    assert dict(spec) == TODAY[kind] and spec.get("point") == stored.get("point")


def test_specs_written_before_the_submission_type_are_read():
    record = RunRecord(id="r", params={"n": None}, spec=BEFORE)
    assert record.submission == Submission("/srv/m", "model.py", "M", {"n": 3}, "s1", {"upload": "abc"})
    assert record.model_info == INFO
    # older still: no params kept beside ``ref``; the record's own are the submission's
    older = RunRecord(id="r", params={"n": 2}, spec={"ref": BEFORE["ref"]})
    assert older.submission == Submission("/srv/m", "model.py", "M", {"n": 2})
    # written back, the record holds today's form (what the dispatcher reads)
    assert record.to_dict()["spec"] == {"ref": Submission("/srv/m", "model.py", "M", {"n": 3}, "s1", {"upload": "abc"}).to_dict(), "info": INFO}  # fmt: skip


def test_what_this_version_does_not_know_is_kept():
    stored = {"info": INFO, "future": {"x": [1, 2]}, "ref": "not a place"}
    spec = RecordSpec.from_dict(stored)
    assert spec.submission is None and spec.other == {"future": {"x": [1, 2]}, "ref": "not a place"}
    assert spec.to_dict() == stored


def test_a_record_built_with_the_typed_spec_or_its_json_is_the_same():
    typed = RecordSpec(INFO, Submission.from_dict(REF))
    a, b = RunRecord(id="r", spec=typed, created=1.0), RunRecord(id="r", spec=TODAY["server run"], created=1.0)
    assert a.spec == b.spec and a == b and a.to_dict() == b.to_dict()
    assert a.to_dict()["spec"] == TODAY["server run"]
    assert RunRecord(id="r").spec == RecordSpec() and RunRecord(id="r").submission is None


def _embedded(request, tmp_path):
    from ancho.stores.embedded import EmbeddedStore

    return EmbeddedStore(tmp_path / "store")


def _cassandra(request, tmp_path):
    return request.getfixturevalue("cassandra_catalog")


@pytest.fixture(params=["embedded", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def store(request, tmp_path):
    return {"embedded": _embedded, "cassandra": _cassandra}[request.param](request, tmp_path)


@pytest.mark.parametrize("kind", [*sorted(TODAY), "before"])
def test_every_stored_spec_loads_from_each_store(store, kind):
    """The spec is written as the raw JSON an older version wrote (an update of the field), then read back."""
    import uuid

    raw = BEFORE if kind == "before" else TODAY[kind]
    run_id = uuid.uuid4().hex[:12]
    store.create_run(RunRecord(id=run_id, owner="ann", params={"n": 3}))
    store.update_run(run_id, spec=raw)
    record = store.get_run(run_id, owner="ann")
    assert record.spec == RecordSpec.from_dict(raw, {"n": 3})
    assert record.submission == (None if "ref" not in raw else RecordSpec.from_dict(raw, {"n": 3}).submission)
    assert [r.spec for r in store.list_runs(owner="ann") if r.id == run_id] == [record.spec]
    store.delete_run(run_id)


def test_a_study_records_spec_is_typed_in_the_embedded_store(tmp_path):
    from ancho.stores.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "store")
    store.create_study(StudyRecord(id="s1", owner="ann", spec=TODAY["server study"]))
    study = store.get_study("s1", owner="ann")
    assert study.spec.source_hash == "ab12" and study.spec.base_params == {"p": 0.5, "goal": 10}
    assert study.spec.submission == Submission.from_dict(REF) and study.spec.info == INFO
    assert study.to_dict()["spec"] == TODAY["server study"]
