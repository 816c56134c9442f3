import time
from dataclasses import replace

import numpy as np
import pytest

from ancho.chunk import ChunkResult, Failure
from ancho.errors import InputError, NotFound
from ancho.stores.base import NotAtHand, RunRecord


def record(run_id="r1", owner="alice", **kw):
    return RunRecord(id=run_id, owner=owner, model="M", params={"a": 1}, seed=3, total=100, **kw)


def chunk(start, stop, fail=(), kinds=("float", "int", "bool")):
    seqs = np.array([i for i in range(start, stop) if i not in fail], dtype=np.int64)
    cols = {}
    if "float" in kinds:
        cols["x"] = seqs * 0.5
    if "int" in kinds:
        cols["k"] = seqs * 2
    if "bool" in kinds:
        cols["b"] = seqs % 2 == 0
    return ChunkResult(start, stop, seqs, cols, [Failure(i, "ValueError: no", "tb") for i in fail], 0.01)


def test_create_get_update(any_store):
    any_store.create_run(record())
    r = any_store.get_run("r1")
    assert (r.owner, r.model, r.params, r.seed, r.status) == ("alice", "M", {"a": 1}, 3, "queued")
    any_store.update_run("r1", status="running", done=40, schema={"x": "float"})
    r = any_store.get_run("r1")
    assert (r.status, r.done, r.schema) == ("running", 40, {"x": "float"})


def test_missing_and_foreign_runs_are_not_found(any_store):
    any_store.create_run(record())
    with pytest.raises(NotFound):
        any_store.get_run("nope")
    with pytest.raises(NotFound):
        any_store.get_run("r1", owner="bob")
    assert any_store.get_run("r1", owner="alice").id == "r1"


def test_run_version_changes_with_every_update_and_only_for_the_owner(any_store):
    """run_version (what a server compares before reusing a rendered status) is stable while the record is, differs
    after each update (status, progress, anything), and is None for another owner's run or no run;
    versioned_run gives the record with the version it has."""
    any_store.create_run(record())
    first = any_store.run_version("r1", "alice")
    assert isinstance(first, int) and any_store.run_version("r1", "alice") == first == any_store.run_version("r1")
    seen = {first}
    for changes in (
        {"status": "running"},
        {"done": 40},
        {"done": 41, "total": 100},
        {"error": "note"},
        {"status": "succeeded"},
    ):
        any_store.update_run("r1", **changes)
        version, rec = any_store.versioned_run("r1", "alice")
        assert version not in seen, changes
        assert any_store.run_version("r1", "alice") == version
        assert all(getattr(rec, k) == v for k, v in changes.items())
        seen.add(version)
    assert any_store.run_version("r1", "bob") is None
    assert any_store.run_version("nope", "alice") is None
    assert any_store.run_version("../r1", "alice") is None
    with pytest.raises(NotFound):
        any_store.versioned_run("r1", "bob")
    try:
        assert any_store.run_version("r1", "alice", wait=False) == version  # at hand, or NotAtHand
    except NotAtHand:
        pass


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 65, "a b", "..", "r1\x00"])
def test_path_tricks_in_ids_are_not_found(any_store, bad):
    with pytest.raises(NotFound):
        any_store.get_run(bad)


def test_list_newest_first_by_owner_and_status(any_store):
    for i, owner in enumerate(["alice", "bob", "alice"]):
        any_store.create_run(record(f"r{i}", owner, created=time.time() + i))
    any_store.update_run("r2", status="succeeded")
    assert [r.id for r in any_store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.id for r in any_store.list_runs(owner="alice")] == ["r2", "r0"]
    assert [r.id for r in any_store.list_runs(owner="alice", status="queued")] == ["r0"]
    assert [r.id for r in any_store.list_runs(limit=1)] == ["r2"]


def test_listings_can_leave_the_summaries_out(any_store):
    """What lists show holds no summary, and one of long trajectories is megabytes to decode: ``summaries=False``
    leaves it out (None), the rest of each record as it is — a record with a NaN or infinite parameter too."""
    steps = {"mean": [0.5] * 1000, "p50": [0.25] * 1000}
    summary = {"sequences": 10, "outputs": {"x": {"mean": 1.5}}, "trajectories": {"w": steps}}
    odd = {"a": float("inf"), "b": float("nan")}
    for i, params in enumerate([{"a": 1}, odd]):
        any_store.create_run(replace(record(f"r{i}", created=time.time() + i), params=params))
        any_store.update_run(f"r{i}", status="succeeded", done=10, summary=summary)
    whole = {r.id: r for r in any_store.list_runs(owner="alice")}
    light = {r.id: r for r in any_store.list_runs(owner="alice", summaries=False)}
    assert list(light) == list(whole) == ["r1", "r0"]
    for run_id, r in light.items():
        assert r.summary is None and whole[run_id].summary == summary
        assert (r.status, r.done, r.model, r.seed) == ("succeeded", 10, "M", 3)
    assert light["r1"].params["a"] == float("inf") and light["r1"].params["b"] != light["r1"].params["b"]
    assert any_store.get_run("r1").summary == summary  # nothing stored changed


def test_chunks_round_trip_in_sequence_order(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    for a, b in [(50, 100), (0, 10), (10, 50)]:
        any_store.write_chunk("r1", chunk(a, b))
    assert any_store.completed_ranges("r1") == [(0, 10), (10, 50), (50, 100)]
    frame = any_store.read_frame("r1")
    assert list(frame.columns) == ["sequence", "x", "k", "b"]
    assert frame.sequence.tolist() == list(range(100))
    assert frame.k.tolist() == [2 * i for i in range(100)]
    assert frame.b.dtype == bool
    col = any_store.read_column("r1", "x")
    assert col.dtype == np.float64 and col.tolist() == [i * 0.5 for i in range(100)]


def test_rewriting_a_chunk_never_duplicates(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    for _ in range(3):
        any_store.write_chunk("r1", chunk(0, 10, fail=(3,)))
    assert len(any_store.read_column("r1", "sequence")) == 9
    assert [f.sequence for f in any_store.failures("r1")] == [3]


def test_failures_are_kept_with_tracebacks(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    any_store.write_chunk("r1", chunk(0, 10, fail=(2, 7)))
    f = any_store.failures("r1")
    assert [(x.sequence, x.error, x.traceback) for x in f] == [(2, "ValueError: no", "tb"), (7, "ValueError: no", "tb")]
    assert len(any_store.failures("r1", limit=1)) == 1
    assert 2 not in any_store.read_column("r1", "sequence").tolist()


def test_a_chunk_where_every_sequence_failed(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float"})
    any_store.write_chunk(
        "r1", ChunkResult(0, 3, np.array([], dtype=np.int64), {}, [Failure(i, "E: e") for i in range(3)])
    )
    any_store.write_chunk("r1", chunk(3, 5, kinds=("float",)))
    assert any_store.completed_ranges("r1") == [(0, 3), (3, 5)]
    assert any_store.read_column("r1", "x").tolist() == [1.5, 2.0]


def test_stored_chunks_name_their_kinds_without_a_recorded_schema(any_store):
    """What a resume rebuilds a schema from when the pass that stored the chunks died before recording it."""
    any_store.create_run(record())
    any_store.write_chunk("r1", series_chunk(10, 14, 4))
    any_store.write_chunk("r1", chunk(0, 4))
    any_store.write_chunk("r1", ChunkResult(4, 6, np.array([4, 5]), {"k": np.array([0.5, 1.5])}))
    any_store.write_chunk("r1", ChunkResult(6, 8, np.array([], dtype=np.int64), {}, [Failure(6, "E"), Failure(7, "E")]))
    assert any_store.get_run("r1").schema == {}
    assert any_store.stored_kinds("r1") == [
        (0, 4, {"x": "float", "k": "int", "b": "bool"}),
        (4, 6, {"k": "float"}),
        (6, 8, {}),
        (10, 14, {"walk": "float[4]", "end": "float"}),
    ]


def test_int_chunks_read_as_float_when_the_schema_widened(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"k": "int"})
    any_store.write_chunk("r1", ChunkResult(0, 2, np.array([0, 1]), {"k": np.array([1, 2])}))
    any_store.write_chunk("r1", ChunkResult(2, 4, np.array([2, 3]), {"k": np.array([0.5, 1.5])}))
    any_store.update_run("r1", schema={"k": "float"})
    assert any_store.read_column("r1", "k").tolist() == [1.0, 2.0, 0.5, 1.5]
    assert any_store.read_frame("r1").k.dtype == np.float64


def test_columns_can_be_read_alone_and_unknown_ones_are_named(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    any_store.write_chunk("r1", chunk(0, 5))
    t = any_store.read_table("r1", ["sequence", "k"])
    assert t.column_names == ["sequence", "k"]
    with pytest.raises(InputError, match="no output 'nope'"):
        any_store.read_column("r1", "nope")


def test_empty_run_reads_empty(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float"})
    assert any_store.read_column("r1", "x").tolist() == []
    assert len(any_store.read_frame("r1")) == 0
    assert any_store.completed_ranges("r1") == []


def test_delete(any_store):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    any_store.write_chunk("r1", chunk(0, 5, fail=(1,)))
    any_store.delete_run("r1")
    with pytest.raises(NotFound):
        any_store.get_run("r1")
    assert any_store.failures("r1") == []


def test_leftovers_of_a_dead_writer_are_cleared(any_store):
    import os

    from ancho.stores.embedded import EmbeddedStore

    if not isinstance(any_store, EmbeddedStore):
        pytest.skip("temporary files are the embedded store's")
    from ancho.stores.chunk_writer import temp_path

    any_store.create_run(record())
    folder = any_store._chunks_dir("r1")
    dead = folder / ".000000000000-000000000010.parquet.999999999.1.0a1b2c3d4e5f.tmp"
    older = folder / ".000000000020-000000000030.parquet.999999999.1.tmp"  # (named before the token)
    live = temp_path(folder / "000000000010-000000000020.parquet")
    assert live.name.startswith(f".000000000010-000000000020.parquet.{os.getpid()}.")
    for path in (dead, older, live):
        path.write_bytes(b"x")
    assert any_store.completed_ranges("r1") == []
    assert not dead.exists() and not older.exists() and live.exists()


def test_two_writers_with_the_same_ids_get_different_temporary_files(tmp_path):
    """On a shared file system two containers' writers can have the same pid and thread id: a random token a
    process (a forked child makes its own) keeps their temporary files apart."""
    import os

    from ancho.stores.chunk_writer import temp_path

    final = tmp_path / "000000000000-000000000010.parquet"
    here = temp_path(final)
    assert temp_path(final) == here  # one name a process and thread: a dead writer's leftovers are known by pid
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own pid, its own token
        os.write(write, temp_path(final).name.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read), os.close(write)
    assert child.split(".")[-2] != here.name.split(".")[-2] and len(here.name.split(".")[-2]) == 12


def test_large_chunks_with_failures_round_trip(any_store):
    """Chunks bigger than any internal block size, with gaps, keep every value and the order."""
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    fail = set(range(70_001, 150_000, 997))
    any_store.write_chunk("r1", chunk(70_000, 150_000, fail=fail))
    any_store.write_chunk("r1", chunk(0, 70_000))
    seqs = [i for i in range(150_000) if i not in fail]
    t = any_store.read_table("r1")
    assert t.column("sequence").to_pylist() == seqs
    assert t.column("k").to_pylist() == [2 * i for i in seqs]
    assert t.column("b").to_pylist() == [i % 2 == 0 for i in seqs]
    assert any_store.read_column("r1", "x").tolist() == [i * 0.5 for i in seqs]
    assert [f.sequence for f in any_store.failures("r1")] == sorted(fail)


def test_results_source_reads_the_run_and_nothing_else(any_store):
    from ancho.stores import read_results_source
    from ancho.stores.results_sources import CassandraResults, ChunkFiles

    for run_id in ("r1", "r2"):
        any_store.create_run(record(run_id))
        any_store.update_run(run_id, schema={"x": "float", "k": "int", "b": "bool"})
    any_store.write_chunk("r1", chunk(0, 20, fail=(4,)))
    any_store.write_chunk("r2", chunk(20, 30))
    source = any_store.results("r1")
    assert isinstance(source, (ChunkFiles, CassandraResults)) and dict(source.schema) == {
        "x": "float",
        "k": "int",
        "b": "bool",
    }
    table = read_results_source(source)
    assert table.equals(any_store.read_table("r1"))
    assert table.column("sequence").to_pylist() == [i for i in range(20) if i != 4]
    assert read_results_source(any_store.results_source("r1")).equals(table)  # its JSON form reads the same


@pytest.mark.parametrize(
    "offset,limit", [(0, 5), (0, 1000), (7, 10), (9, 2), (10, 40), (45, 30), (94, 10), (95, 1), (200, 10)]
)
def test_results_pages_match_the_whole_frame(any_store, offset, limit):
    any_store.create_run(record())
    any_store.update_run("r1", schema={"x": "float", "k": "int", "b": "bool"})
    for a, b, fail in [(50, 100, (60,)), (0, 10, (3, 4)), (10, 50, ())]:
        any_store.write_chunk("r1", chunk(a, b, fail=fail))
    whole = any_store.read_frame("r1").to_dict("records")
    rows, total = any_store.results_page("r1", offset, limit)
    assert total == len(whole) == 97
    assert [r["sequence"] for r in rows] == [r["sequence"] for r in whole[offset : offset + limit]]
    assert rows == [{k: (bool(v) if k == "b" else v) for k, v in r.items()} for r in whole[offset : offset + limit]]


def series_chunk(start, stop, steps, fail=()):
    """A trajectory ``walk`` (each value says where it is, a few NaN and -0.0) and a scalar ``end``."""
    seqs = np.array([i for i in range(start, stop) if i not in fail], dtype=np.int64)
    walk = seqs[:, None] * 1000.0 + np.arange(steps)
    walk[::7, 3] = np.nan
    walk[::5, 0] = -0.0
    cols = {"walk": walk, "end": walk[:, -1].copy()}
    return ChunkResult(start, stop, seqs, cols, [Failure(i, "E: e") for i in fail])


def test_trajectories_round_trip_bit_for_bit(any_store):
    """Chunks of 600-step series (over 16 blocks of 16,384 values in Cassandra) read back as written, every way."""
    import pyarrow as pa

    from ancho.stores import read_results_source

    any_store.create_run(record())
    any_store.update_run("r1", schema={"walk": "float[600]", "end": "float"})
    chunks = [series_chunk(500, 520, 600), series_chunk(0, 500, 600, fail=(7, 499))]
    for c in chunks * 2:  # written twice: kept once
        any_store.write_chunk("r1", c)
    assert any_store.completed_ranges("r1") == [(0, 500), (500, 520)]
    expected = np.concatenate([chunks[1].columns["walk"], chunks[0].columns["walk"]])
    parts = list(any_store.iter_column("r1", "walk"))
    assert [p.shape for p in parts] == [(498, 600), (20, 600)]
    whole = any_store.read_column("r1", "walk")
    for got in (np.concatenate(parts), whole):
        assert got.dtype == np.float64 and np.array_equal(got.view(np.int64), expected.view(np.int64))
    table = any_store.read_table("r1")
    assert table.schema.field("walk").type == pa.list_(pa.float64(), 600)
    source = read_results_source(any_store.results("r1"))  # (Table.equals: NaN differs from NaN, so by the bits)
    assert source.schema == table.schema and source.column("sequence").equals(table.column("sequence"))
    flat = source.column("walk").combine_chunks().flatten().to_numpy()
    assert np.array_equal(flat.view(np.int64), expected.reshape(-1).view(np.int64))
    rows, total = any_store.results_page("r1", 496, 4)
    assert total == 518 and [r["sequence"] for r in rows] == [497, 498, 500, 501]
    assert np.array_equal(np.array(rows[2]["walk"]).view(np.int64), chunks[0].columns["walk"][0].view(np.int64))
    assert any_store.read_column("r1", "end").tolist() == expected[:, -1].tolist()
    any_store.delete_run("r1")
    with pytest.raises(NotFound):
        any_store.get_run("r1")


# -- study records -------------------------------------------------------------------------------------------


def _study(study_id, owner="alice", **kw):
    from ancho.stores.base import StudyRecord

    return StudyRecord(
        id=study_id,
        owner=owner,
        model="Gambler",
        design={"kind": "grid", "parameters": ["p"], "points": 2},
        design_spec={"grid": {"p": [0.4, 0.5]}},
        params={"stake": 3},
        seed=7,
        sequences=100,
        targets=["rounds>=30"],
        points=[{"point": 0, "params": {"p": 0.4}, "run": None, "status": "queued"}],
        **kw,
    )


def test_studies_create_get_update_and_owner_isolation(any_store):
    import uuid

    sid = "s" + uuid.uuid4().hex[:10]
    any_store.create_study(_study(sid))
    s = any_store.get_study(sid, owner="alice")
    assert (s.model, s.seed, s.params, s.targets, s.design_spec) == (
        "Gambler",
        7,
        {"stake": 3},
        ["rounds>=30"],
        {"grid": {"p": [0.4, 0.5]}},
    )
    points = [{"point": 0, "params": {"p": 0.4}, "run": "r9", "status": "succeeded"}]
    any_store.update_study(sid, status="running", points=points, done=100, total=200)
    s = any_store.get_study(sid)
    assert (s.status, s.points, s.done, s.total) == ("running", points, 100, 200)
    for bad in [("nope", None), (sid, "bob"), ("../x", None)]:
        with pytest.raises(NotFound):
            any_store.get_study(*bad)
    with pytest.raises(NotFound):
        any_store.update_study("nope" + sid, status="running")


@pytest.fixture(params=["json_set", "rewrite"])
def update_way(request, monkeypatch):
    """The embedded store's two ways to update a study: in place (SQLite 3.38 on) and read-change-write (older)."""
    from ancho.stores import embedded

    monkeypatch.setattr(embedded, "JSON_SET", request.param == "json_set" and embedded.JSON_SET)
    return request.param


def test_a_study_update_keeps_every_value_exactly_non_finite_numbers_too(any_store, update_way):
    """Numbers come back as written (17 digits, big ints, tiny floats), strings with quotes, nested lists; a point's
    parameter of ±inf or NaN (JSON has none: the embedded store then rewrites the record whole) too."""
    import math
    import uuid

    sid = "s" + uuid.uuid4().hex[:10]
    any_store.create_study(_study(sid))
    points = [
        {"point": 0, "params": {"p": 0.45035017508754377, "n": 12345678901234567890, "tiny": 1e-300}, "run": "r1",
         "status": "succeeded", "error": 'a "quoted" \\ name'},
    ]  # fmt: skip
    any_store.update_study(sid, points=points, done=7, total=9, finished=1733520000.1234567, error=None)
    s = any_store.get_study(sid)
    assert (s.points, s.done, s.total, s.finished, s.error, s.seed) == (points, 7, 9, 1733520000.1234567, None, 7)
    odd = [{"point": 0, "params": {"p": math.inf, "q": -math.inf, "r": math.nan}, "run": "r1", "status": "queued"}]
    any_store.update_study(sid, points=odd, done=8)
    s = any_store.get_study(sid)
    params = s.points[0]["params"]
    assert s.done == 8 and params["p"] == math.inf and params["q"] == -math.inf and math.isnan(params["r"])
    any_store.update_study(sid, status="failed")  # a record holding them takes an update as well
    assert any_store.get_study(sid).status == "failed" and any_store.get_study(sid).points[0]["params"]["p"] == math.inf


def test_studies_list_newest_first_by_owner(any_store):
    import uuid

    tag = uuid.uuid4().hex[:8]
    ids = [f"s{tag}{i}" for i in range(3)]
    owners = [f"alice{tag}", f"bob{tag}", f"alice{tag}"]
    for i, (sid, owner) in enumerate(zip(ids, owners)):
        any_store.create_study(_study(sid, owner, created=time.time() + i))
    assert [s.id for s in any_store.list_studies(owner=f"alice{tag}")] == [ids[2], ids[0]]
    assert [s.id for s in any_store.list_studies(owner=f"bob{tag}")] == [ids[1]]
    assert [s.id for s in any_store.list_studies(owner=f"alice{tag}", limit=1)] == [ids[2]]
    assert ids[1] in [s.id for s in any_store.list_studies()]


def test_the_schema_alone_is_read_as_the_record_holds_it(any_store):
    """``run_schema`` (what every reader of results asks first) reads no summary, and says what the record says."""
    any_store.create_run(record())
    assert any_store.run_schema("r1") == {}
    schema = {"x": "float", "k": "int", "b": "bool", "w": "float[3]"}
    any_store.update_run("r1", schema=schema, status="succeeded", summary={"trajectories": {"w": {"mean": [1.0] * 3}}})
    assert any_store.run_schema("r1") == any_store.get_run("r1").schema == schema
    with pytest.raises(NotFound):
        any_store.run_schema("nope")
