"""The Cassandra store beyond the shared contract (tests/stores): per-owner security, half-written chunks,
writers in other processes, whole runs, and errors.

Store behaviour common to every store is in tests/stores/test_contract.py; this file
tests what only Cassandra has. The node comes from ``ANCHO_TEST_CASSANDRA_URL``.
"""

from __future__ import annotations

import json
import multiprocessing
import time

import numpy as np
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure
from ancho.errors import InputError, NotFound
from ancho.stores.base import RunRecord

from ..conftest import CASSANDRA_HINT, EXAMPLES, need_module, run_cli
from ..stores.conftest import cassandra_catalog, cassandra_store, cassandra_url  # noqa: F401 (fixtures)

GAMBLER = str(EXAMPLES / "gambler.py")


@pytest.fixture
def store(cassandra_store):  # noqa: F811
    return cassandra_store


def new_run(store, run_id: str, owner: str, schema=None) -> str:
    store.create_run(RunRecord(id=run_id, owner=owner, model="M"))
    store.update_run(run_id, schema=schema or {"x": "float"})
    return run_id


def floats(start: int, stop: int) -> ChunkResult:
    seqs = np.arange(start, stop, dtype=np.int64)
    return ChunkResult(start, stop, seqs, {"x": seqs * 0.25})


# -- no service needed ------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, needle",
    [
        ("cassandra://127.0.0.1:9042", "give the login"),
        ("cassandra://bob@127.0.0.1:9042", "give both user and password"),
        ("cassandra://bob:pw@127.0.0.1:port", "'port' is not a port number"),
        ("cassandra://bob:pw@127.0.0.1:9042/Bad-Name", "keyspace 'Bad-Name'"),
        ("cassandra://bob:pw@127.0.0.1:9042/ks?replicas=3", "unknown option 'replicas'"),
        ("cassandra://bob:pw@127.0.0.1:9042/ks?retry_seconds=-1", "retry_seconds must be a positive number"),
    ],
)
def test_bad_store_urls_name_what_is_wrong_and_hide_the_password(url, needle):
    from ancho.stores import open_store

    with pytest.raises(InputError, match=needle) as info:
        open_store(url)
    assert ":pw@" not in str(info.value)


def test_urls_parse_hosts_port_keyspace_and_options():
    from ancho.stores.cassandra_conn import StoreURL

    u = StoreURL.parse("cassandra://ad%40min:p%3Aw@h1,h2:9999/runs?replication_factor=3&datacenter=dc1&retry_seconds=5")
    assert (u.endpoint.hosts, u.endpoint.port, u.keyspace, u.replication_factor) == (("h1", "h2"), 9999, "runs", 3)
    assert (u.endpoint.username, u.endpoint.password, u.endpoint.datacenter, u.endpoint.retry_seconds) == (
        "ad@min",
        "p:w",
        "dc1",
        5.0,
    )
    d = StoreURL.parse("cassandra://a:b@localhost")
    assert (d.endpoint.port, d.keyspace) == (9042, "ancho")
    assert "b" not in repr(d.endpoint).replace("ancho", "")


def test_owner_keyspace_names_are_valid_and_distinct():
    from ancho.stores.cassandra import owner_keyspace

    assert owner_keyspace("ancho", "alice") == "ancho_u_alice"
    odd = [owner_keyspace("ancho", o) for o in ("Alice", "a-b", "a_b", "x" * 60)]
    assert len(set(odd)) == 4 and odd[2] == "ancho_u_a_b"
    assert all(len(k) <= 48 and k.replace("_", "").isalnum() and k == k.lower() for k in odd)


def test_an_unreachable_node_is_a_clear_error():
    from ancho.stores import open_store
    from ancho.stores.cassandra_conn import StoreUnavailable

    need_module("cassandra", CASSANDRA_HINT)
    with pytest.raises(
        StoreUnavailable, match="cannot reach Cassandra at 127.0.0.1:1.*scripts/services start cassandra"
    ):
        open_store("cassandra://u:p@127.0.0.1:1/ks?retry_seconds=0.5")


# -- against the node -------------------------------------------------------------------
@pytest.mark.cassandra
def test_a_wrong_password_is_named():
    from ancho.stores import open_store

    url = cassandra_url("ancho").replace("://cassandra:cassandra@", "://cassandra:wrong@")
    with pytest.raises(InputError, match="refused the login of 'cassandra'"):
        open_store(url)


@pytest.mark.cassandra
def test_an_owners_role_reads_its_own_keyspace_only(store):
    from cassandra import Unauthorized

    from ancho.stores.cassandra_conn import Endpoint, connect

    new_run(store, "ra", "alice")
    new_run(store, "rb", "bob")
    store.write_chunk("ra", floats(0, 10))
    store.write_chunk("rb", floats(0, 10))
    source = store.results_source("ra")
    json.dumps(source)  # crosses process boundaries as it is
    endpoint = Endpoint.from_dict(source["endpoint"])
    assert endpoint.username != store.endpoint.username and endpoint.password != store.endpoint.password
    alice_ks, bob_ks = store.add_owner("alice"), store.add_owner("bob")
    assert source["keyspace"] == alice_ks and alice_ks != bob_ks
    session = connect(endpoint)
    try:
        assert session.execute(f"SELECT count(*) FROM {alice_ks}.chunks WHERE run_id = 'ra'").one()[0] == 1
        for cql in (
            f"SELECT * FROM {bob_ks}.chunks",
            f"SELECT * FROM {bob_ks}.blocks",
            f"SELECT * FROM {store.catalog}.runs",
            f"SELECT * FROM {store.catalog}.owners",  # the other roles' passwords
            f"INSERT INTO {bob_ks}.failures (run_id, bucket, sequence, error) VALUES ('rb', 0, 1, 'x')",
            f"DROP KEYSPACE {alice_ks}",
            "CREATE KEYSPACE evil WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            f"GRANT SELECT ON KEYSPACE {bob_ks} TO {endpoint.username}",
        ):
            with pytest.raises(Unauthorized):
                session.execute(cql)
    finally:
        session.cluster.shutdown()


@pytest.mark.cassandra
def test_a_half_written_chunk_is_never_done_and_a_rewrite_replaces_it(store):
    from cassandra.concurrent import execute_concurrent

    new_run(store, "r1", "alice")
    results = store._results_for_run("r1")
    # an attempt that died after writing its data (a node restart, a killed driver): no done marker
    big = floats(0, 100_000)
    big.failures = [Failure(50_000, "E: e"), Failure(99_999, "E: e")]
    work, _marker = results.chunk_writes("r1", big)
    execute_concurrent(results.session, work, raise_on_first_error=True)
    assert store.completed_ranges("r1") == []
    assert store.read_column("r1", "x").tolist() == []
    assert store.failures("r1") == []
    # the engine recomputes the range, cut differently: the stale blocks past the new chunk are never read
    store.write_chunk("r1", floats(0, 40))
    store.write_chunk("r1", floats(40, 100_000))
    assert store.completed_ranges("r1") == [(0, 40), (40, 100_000)]
    x = store.read_column("r1", "x")
    assert len(x) == 100_000 and np.array_equal(x, np.arange(100_000) * 0.25)
    ks = results.ks

    def left():
        blocks = store.session.execute(
            f"SELECT count(*) FROM {ks}.blocks WHERE run_id = 'r1' AND chunk_start = 0 AND name = 'x'"
        )
        failures = store.session.execute(f"SELECT count(*) FROM {ks}.failures WHERE run_id = 'r1' AND bucket = 97")
        return blocks.one()[0], failures.one()[0]

    assert left() == (7, 1)  # the unfinished attempt's 7 blocks at chunk 0 (the rewrite's one among them) and failure
    store.delete_run("r1")  # also finds the partitions of the unfinished attempt
    assert results.markers("r1", done_only=False) == []
    assert left() == (0, 0)


def _write_in_child(source: dict, start: int, stop: int) -> None:
    from ancho.stores.cassandra_results import open_writer

    with open_writer(source) as writer:
        writer.write(floats(start, stop))


@pytest.mark.cassandra
def test_another_process_writes_chunks_with_the_owners_role(store):
    """What a Spark task does: open a writer from a plain description and write its chunk directly."""
    new_run(store, "r1", "alice")
    source = store.results_source("r1")
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_write_in_child, args=(json.loads(json.dumps(source)), 0, 5000))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert store.completed_ranges("r1") == [(0, 5000)]
    assert np.array_equal(store.read_column("r1", "x"), np.arange(5000) * 0.25)


@pytest.mark.cassandra
@pytest.mark.slow
def test_a_run_with_a_summary_function_on_cassandra_matches_the_embedded_store(cassandra_catalog, home):  # noqa: F811
    url = cassandra_url(cassandra_catalog.catalog)
    on_cassandra = ancho.run(GAMBLER, sequences=3000, seed=11, workers=2, store=url, params={"stake": 4, "goal": 9})
    on_disk = ancho.run(GAMBLER, sequences=3000, seed=11, workers=2, params={"stake": 4, "goal": 9})
    assert on_cassandra.status == "succeeded"
    custom = on_cassandra.summary["custom"]["median_rounds_when_won"]
    assert isinstance(custom, float) and custom == on_disk.summary["custom"]["median_rounds_when_won"]
    assert on_cassandra.frame.equals(on_disk.frame)
    strip = ("run",)
    assert {k: v for k, v in on_cassandra.summary.items() if k not in strip} == {
        k: v for k, v in on_disk.summary.items() if k not in strip
    }
    on_cassandra.store.close()


@pytest.mark.cassandra
@pytest.mark.slow
def test_cli_run_with_a_cassandra_store(cassandra_catalog, home):  # noqa: F811
    url = cassandra_url(cassandra_catalog.catalog)
    p = run_cli("run", GAMBLER, "-n", "500", "--seed", "4", "--store", url, "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "succeeded" and summary["sequences"] == 500
    assert isinstance(summary["custom"]["median_rounds_when_won"], float)
    assert cassandra_catalog.get_run(summary["run"]).owner == "local"
    assert len(cassandra_catalog.read_column(summary["run"], "rounds")) == 500


@pytest.mark.cassandra
def test_adding_a_server_user_creates_their_keyspace_and_role(cassandra_catalog, tmp_path):  # noqa: F811
    from ancho.server.settings import Settings
    from ancho.server.users import users_for

    settings = Settings(home=tmp_path / "server", store=cassandra_url(cassandra_catalog.catalog))
    token = users_for(settings).add("carol")
    assert token and "carol" in cassandra_catalog.owners()
    keyspace = cassandra_catalog.add_owner("carol")  # already there: nothing new is made
    tables = {
        r.table_name
        for r in cassandra_catalog.session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
        )
    }
    assert tables == {"chunks", "blocks", "failures"}


@pytest.mark.cassandra
def test_ancho_users_add_creates_the_keyspace_at_once(cassandra_catalog, tmp_path):  # noqa: F811
    """``ancho users add`` on a server configured with a Cassandra store makes the user's keyspace and role right away."""
    home = tmp_path / "server"
    home.mkdir()
    config = home / "ancho.toml"
    config.write_text(f'store = "{cassandra_url(cassandra_catalog.catalog)}"\n')
    done = run_cli("users", "add", "dave", env={"ANCHO_HOME": str(home), "ANCHO_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("anc_")
    assert "dave" in cassandra_catalog.owners()


@pytest.mark.cassandra
def test_status_reads_reuse_a_fresh_reading_and_see_other_writers_within_the_window(store, cassandra_catalog):  # noqa: F811
    """versioned_run (the status read) reads Cassandra at most once per STATUS_FRESH_SECONDS per run; a write through
    this store shows at once, one through another store object (another process) within the window."""
    from ancho.stores.base import NotAtHand
    from ancho.stores.cassandra import CassandraStore

    reads = []
    real = CassandraStore.get_run

    def counted(self, run_id, owner=None):
        reads.append(run_id)
        return real(self, run_id, owner)

    new_run(store, "fresh1", "alice")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(CassandraStore, "get_run", counted)
        version, record = store.versioned_run("fresh1", "alice")
        assert record.done == 0
        assert store.run_version("fresh1", "alice", wait=False) == version
        assert store.versioned_run("fresh1", "alice") == (version, record)
        assert reads == ["fresh1"]  # kept: one reading
        with pytest.raises(NotFound):
            store.versioned_run("fresh1", "bob", wait=False)  # the owner is checked on kept readings too
        assert store.run_version("fresh1", "bob", wait=False) is None
    store.update_run("fresh1", done=5)
    with pytest.raises(NotAtHand):
        store.run_version("fresh1", "alice", wait=False)  # our write: the reading is stale
    assert store.versioned_run("fresh1", "alice")[1].done == 5
    other = CassandraStore.from_url(cassandra_url(cassandra_catalog.catalog))
    try:
        other.update_run("fresh1", done=9)
    finally:
        other.close()
    time.sleep(CassandraStore.STATUS_FRESH_SECONDS)
    with pytest.raises(NotAtHand):
        store.run_version("fresh1", "alice", wait=False)  # the window has passed
    assert store.versioned_run("fresh1", "alice")[1].done == 9


def test_a_reading_overtaken_by_a_write_is_not_kept(store, monkeypatch):
    """A status read that began before a write of this store landed must not keep what it read."""
    from ancho.stores.base import NotAtHand

    new_run(store, "fresh2", "alice")
    real = type(store).get_run

    def overtaken(self, run_id, owner=None):
        record = real(self, run_id, owner)
        self.update_run(run_id, done=7)  # lands while the reading is on its way back
        return record

    monkeypatch.setattr(type(store), "get_run", overtaken)
    assert store.versioned_run("fresh2", "alice")[1].done == 0
    monkeypatch.setattr(type(store), "get_run", real)
    with pytest.raises(NotAtHand):
        store.run_version("fresh2", "alice", wait=False)


def test_chunks_can_be_read_in_parts_as_spark_tasks_would(store):
    import pyarrow as pa

    from ancho.stores.cassandra_results import chunk_starts, read_chunks

    new_run(store, "r1", "alice")
    for a, b in [(0, 10), (10, 25), (25, 40)]:
        store.write_chunk("r1", floats(a, b))
    source = store.results_source("r1")
    starts = chunk_starts(source)
    assert starts == [0, 10, 25]
    parts = [pa.Table.from_batches(list(read_chunks(source, [s]))) for s in starts]
    assert pa.concat_tables(parts).equals(store.read_table("r1"))


@pytest.mark.cassandra
def test_runs_of_one_process_share_one_session_per_store_url(cassandra_catalog):  # noqa: F811
    url = cassandra_url(cassandra_catalog.catalog)
    first = ancho.run("examples/gambler.py", sequences=50, seed=1, store=url)
    second = ancho.run("examples/gambler.py", sequences=50, seed=2, store=url)
    assert first.store is second.store
    assert first.frame.sequence.tolist() == list(range(50)) and len(second.frame) == 50


@pytest.mark.cassandra
def test_a_run_too_long_to_hold_is_summarised_from_cassandra_as_when_held(cassandra_catalog, monkeypatch):  # noqa: F811
    """The passes of ancho.streamed read Cassandra's blocks as they read chunk files: the same summary and plots."""
    from ancho import streamed
    from ancho.plotdata import run_plots

    from ..test_streamed import Wide

    url = cassandra_url(cassandra_catalog.catalog)
    held = ancho.run(Wide, sequences=50_000, seed=5, workers=2, store=url, targets=["payoff>1"])
    plots = run_plots(held.store, held.run_id)
    monkeypatch.setattr(streamed, "BUDGET", 8)
    passed = ancho.run(Wide, sequences=50_000, seed=5, workers=2, store=url, targets=["payoff>1"])
    assert repr(passed.summary["outputs"]) == repr(held.summary["outputs"])
    assert passed.summary["targets"] == held.summary["targets"]
    assert repr(run_plots(passed.store, passed.run_id)) == repr(plots)
    held.store.close()
    passed.store.close()
