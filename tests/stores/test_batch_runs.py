"""The batch run-record methods (create_runs, update_runs) against every store, as the contract suite."""

from ancho.stores.base import Store
from ancho.stores.results_sources import ChunkFiles

from .test_contract import chunk, record


def test_create_runs_and_update_runs_keep_every_record(any_store):
    any_store.create_runs([record(f"b{k}", created=1000.0 + k) for k in range(5)])
    assert [r.id for r in any_store.list_runs("alice")] == [f"b{k}" for k in reversed(range(5))]
    for k in range(5):  # a run whose folder no chunk has made yet reads as a run with no chunks
        assert any_store.completed_ranges(f"b{k}") == []
        assert any_store.read_frame(f"b{k}").empty
        results = any_store.results(f"b{k}")
        if isinstance(results, ChunkFiles):  # the embedded store's folder is made lazily
            assert results.sequences == 0
    any_store.update_runs([(f"b{k}", {"status": "succeeded", "done": k}) for k in range(5)])
    assert [(r.status, r.done) for r in map(any_store.get_run, [f"b{k}" for k in range(5)])] == [
        ("succeeded", k) for k in range(5)
    ]
    any_store.write_chunk("b3", chunk(0, 10))  # the first chunk makes the folder
    assert any_store.completed_ranges("b3") == [(0, 10)]
    any_store.delete_run("b2")  # never had a folder
    assert [r.id for r in any_store.list_runs("alice")] == ["b4", "b3", "b1", "b0"]


def test_the_default_batch_methods_loop_over_the_single_ones(any_store):
    """What a store without its own batch methods (Cassandra) does: the same records."""
    Store.create_runs(any_store, [record("d0"), record("d1")])
    Store.update_runs(any_store, [("d0", {"status": "running"}), ("d1", {"done": 7})])
    assert (any_store.get_run("d0").status, any_store.get_run("d1").done) == ("running", 7)


def test_replace_runs_writes_whole_records_and_a_missing_run_changes_none(any_store):
    import dataclasses

    import pytest

    from ancho.errors import NotFound

    any_store.create_runs([record(f"w{k}", created=2000.0 + k) for k in range(3)])
    made = [any_store.get_run(f"w{k}") for k in range(3)]
    final = [
        dataclasses.replace(r, status="succeeded", done=10 + k, total=10 + k, schema={"x": "float"},
                            summary={"run": r.id, "outputs": {"x": {"count": 10 + k}}}, finished=3000.0 + k)
        for k, r in enumerate(made)
    ]  # fmt: skip
    any_store.replace_runs(final)
    assert [any_store.get_run(f"w{k}") for k in range(3)] == final
    assert [r.id for r in any_store.list_runs("alice", status="succeeded")] == ["w2", "w1", "w0"]
    for replace_runs in (any_store.replace_runs, lambda records: Store.replace_runs(any_store, records)):
        with pytest.raises(NotFound, match="nope"):
            replace_runs([dataclasses.replace(final[0], status="failed"), record("nope")])
        if replace_runs is any_store.replace_runs:  # one transaction: the run before the missing one is unchanged
            assert any_store.get_run("w0") == final[0]
