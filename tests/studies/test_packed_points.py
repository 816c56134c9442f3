"""A study's tiny points keep their chunks as rows of the embedded store's database (``Store.write_chunks``), and
every promise of a run still holds for each: its results are those of the same run made alone, a resume after a
kill recomputes nothing stored, and any reader sees ordinary chunk files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ancho
from ancho.studies.packed import PACK_SEQUENCES

WALK = """
import os


class Walk(ancho.Model):
    p: float = 0.5
    steps: int = 20

    def sequence(self, rng):
        log = os.environ.get("WALK_LOG")
        if log:  # (a line per sequence computed: what a resume must not redo)
            with open(log, "a") as fh:
                fh.write("x\\n")
        x = rng.random(self.steps) < self.p
        return {"up": int(x.sum()), "last": bool(x[-1]), "mean": float(x.mean())}
"""


def _rows(store) -> int:
    return store.db.conn().execute("SELECT count(*) FROM packed_chunks").fetchone()[0]


def test_tiny_points_are_stored_as_rows_and_each_reads_back_as_its_run_alone(store, write_model):
    model = str(write_model(WALK))
    ps = [0.2 + 0.6 * k / 39 for k in range(40)]
    study = ancho.study(model, ancho.points([{"p": p} for p in ps]), sequences=30, seed=11, workers=2, store=store)
    assert study.status == "succeeded" and study.record.done == 40 * 30
    runs = [p["run"] for p in study.record.points]
    assert not any((store.home / "runs" / run_id).exists() for run_id in runs)  # no folder, no file: rows
    assert _rows(store) >= 40
    for k in (0, 17, 39):
        alone = ancho.run(model, {"p": ps[k]}, sequences=30, seed=11, workers=1, store=store)
        point = study.runs[k]
        assert point.summary["outputs"] == alone.summary["outputs"]
        for name in ("sequence", "up", "last", "mean"):
            assert np.array_equal(store.read_column(point.run_id, name), store.read_column(alone.run_id, name))
        assert (store.home / "runs" / point.run_id / "chunks").is_dir()  # read once: now ordinary files
    # the exact mean of a Binomial(20, p)/20 is p: every point within 4 standard errors
    for k, point in enumerate(study.runs):
        mean = point.summary["outputs"]["mean"]
        assert abs(mean["mean"] - ps[k]) <= 4 * mean["sem"] + 1e-12


def test_a_resume_of_points_whose_chunks_are_still_rows_recomputes_nothing(store, write_model, tmp_path: Path,
                                                                            monkeypatch):  # fmt: skip
    """Killed after the batch's rows were committed but before the records said so: the resume reads the rows."""
    model = str(write_model(WALK))
    log = tmp_path / "computed.log"
    monkeypatch.setenv("WALK_LOG", str(log))
    study = ancho.study(model, ancho.grid(p=[0.3, 0.5, 0.7]), sequences=40, seed=2, workers=1, store=store)
    assert log.read_text().count("x") == 3 * 40
    before = study.runs[1]
    store.update_study(study.study_id, status="running")
    store.update_run(before.run_id, status="running", summary=None, schema={})  # as a kill -9 left it
    assert _rows(store) >= 3 and not (store.home / "runs" / before.run_id).exists()
    again = ancho.study(None, None, resume=study.study_id, workers=1, store=store)
    assert again.status == "succeeded"
    assert log.read_text().count("x") == 3 * 40  # nothing computed again
    assert again.runs[1].summary["outputs"] == before.summary["outputs"]
    assert again.runs[1].record.schema == {"up": "int", "last": "bool", "mean": "float"}


def test_tiny_points_records_are_written_once_final_and_a_kill_before_them_loses_no_stored_chunk(
    store, write_model, tmp_path: Path, monkeypatch
):
    """A tiny point's record is written once, when it ends, after its chunks' rows: killed between the two, the
    resume finds the rows of a point without a record and recomputes nothing."""
    from ancho.stores.embedded import EmbeddedStore

    written: list[tuple[str, str]] = []
    real_create, real_update = EmbeddedStore.create_runs, EmbeddedStore.update_runs

    def create_runs(self, records):
        written.extend((r.id, r.status) for r in records)
        return real_create(self, records)

    def update_runs(self, changes):
        written.extend((run_id, "updated") for run_id, _ in changes)
        return real_update(self, changes)

    monkeypatch.setattr(EmbeddedStore, "create_runs", create_runs)
    monkeypatch.setattr(EmbeddedStore, "update_runs", update_runs)
    model = str(write_model(WALK))
    log = tmp_path / "computed.log"
    monkeypatch.setenv("WALK_LOG", str(log))
    study = ancho.study(model, ancho.grid(p=[0.3, 0.5, 0.7]), sequences=40, seed=2, workers=1, store=store)
    assert sorted(written) == sorted((p["run"], "succeeded") for p in study.record.points)  # once each, final
    before = [point.summary["outputs"] for point in study.runs]
    store.update_study(study.study_id, status="running")
    with store.db.write() as db:  # as a kill -9 between the batch's rows and its records left it (two points:
        for point in study.runs[1:]:  # a resume runs them together again)
            db.execute("DELETE FROM runs WHERE id = ?", (point.run_id,))
    assert _rows(store) >= 3
    again = ancho.study(None, None, resume=study.study_id, workers=1, store=store)
    assert again.status == "succeeded"
    assert log.read_text().count("x") == 3 * 40  # nothing computed again
    for k in (1, 2):
        assert again.runs[k].summary["outputs"] == before[k]
        assert again.runs[k].record.schema == {"up": "int", "last": "bool", "mean": "float"}


def test_points_over_the_packing_size_write_their_own_files(store, write_model):
    model = str(write_model(WALK))
    study = ancho.study(model, ancho.grid(p=[0.4, 0.6]), sequences=PACK_SEQUENCES + 1, seed=4, workers=2,
                        store=store)  # fmt: skip
    assert study.status == "succeeded" and _rows(store) == 0
    for point in study.runs:
        assert (store.home / "runs" / point.run_id / "chunks").is_dir()
        assert len(store.read_column(point.run_id, "up")) == PACK_SEQUENCES + 1


def test_a_batch_the_store_cannot_take_fails_its_points_and_no_other(store, write_model, monkeypatch):
    """The batch's rows are one transaction: when it fails (a full disk), every point in it is recorded failed with
    the store's one line, and the points of the other batches succeed."""
    from ancho.errors import StoreError
    from ancho.stores.embedded import EmbeddedStore

    model = str(write_model(WALK))
    doomed: list[str] = []
    real = EmbeddedStore.write_chunks

    def write_chunks(self, chunks):
        if doomed and any(run_id == doomed[0] for run_id, _ in chunks):
            raise StoreError("could not store the results of sequences 0..29 under HOME: No space left on device")
        return real(self, chunks)

    monkeypatch.setattr(EmbeddedStore, "write_chunks", write_chunks)
    real_update = EmbeddedStore.update_study

    def update_study(self, study_id, **changes):  # the study names each point's run before the run is written
        for p in changes.get("points") or ():
            if p["params"].get("p") == 0.5 and p.get("run") and not doomed:
                doomed.append(p["run"])
        return real_update(self, study_id, **changes)

    monkeypatch.setattr(EmbeddedStore, "update_study", update_study)
    monkeypatch.setattr("ancho.studies.pacing.WRITE_EVERY", 0.0)  # a batch a result: many batches in a short study
    monkeypatch.setattr("ancho.studies.pacing.WRITE_SHARE", 0.0)
    ps = [0.2 + 0.6 * k / 20 for k in range(21)]  # p = 0.5 is point 10
    study = ancho.study(model, ancho.points([{"p": p} for p in ps]), sequences=30, seed=1, workers=2, store=store)
    assert study.status == "failed" and doomed
    statuses = {p["run"]: p["status"] for p in study.record.points}
    assert statuses[doomed[0]] == "failed"
    for p in study.record.points:
        run = store.get_run(p["run"])
        if p["status"] == "failed":
            assert run.status == "failed" and run.error.startswith("could not store the results of sequences 0..29")
        else:
            assert run.status == "succeeded" and len(store.read_column(run.id, "up")) == 30
    failed = sum(p["status"] == "failed" for p in study.record.points)
    assert 1 <= failed < 21
    assert study.record.error.startswith(f"{failed} of 21 points failed")


DIES_ONCE = """
import os


class DiesOnce(ancho.Model):
    p: float = 0.5

    def sequence(self, rng):
        flag = os.environ["DIES_FLAG"]
        if self.p == 0.5 and not os.path.exists(flag):  # the first worker to run point p=0.5 dies mid-bundle
            open(flag, "w").close()
            os._exit(9)
        return {"x": float(rng.random() < self.p)}
"""


def test_a_worker_that_dies_mid_bundle_loses_its_chunks_and_they_run_again(store, write_model, tmp_path, monkeypatch):
    """Chunks go several to a worker message: a worker that dies loses every chunk it held, each is retried and
    counted once, and every point equals its run alone."""
    model = str(write_model(DIES_ONCE))
    monkeypatch.setenv("DIES_FLAG", str(tmp_path / "died"))
    ps = [0.1 * k for k in range(1, 10)]
    study = ancho.study(model, ancho.points([{"p": p} for p in ps]), sequences=20, seed=3, workers=2, store=store)
    assert (tmp_path / "died").exists()
    assert study.status == "succeeded" and study.record.done == 9 * 20
    assert sum(store.get_run(p["run"]).retries for p in study.record.points) >= 1
    for k in (0, 4, 8):
        alone = ancho.run(model, {"p": ps[k]}, sequences=20, seed=3, workers=1, store=store)
        assert np.array_equal(store.read_column(study.runs[k].run_id, "x"), store.read_column(alone.run_id, "x"))


FLAKY = """
import os


class Flaky(ancho.Model):
    p: float = 0.5

    def sequence(self, rng):
        if os.environ.get("FLAKY_FAIL") and self.p > 0.4:
            raise ValueError("the environment was not ready")
        return {"x": bool(rng.random() < self.p)}
"""


def test_a_resume_runs_the_failed_points_again(store, write_model, monkeypatch):
    """DESIGN: a resume skips the points whose run succeeded and executes the others again, failed ones too."""
    model = str(write_model(FLAKY))
    monkeypatch.setenv("FLAKY_FAIL", "1")
    study = ancho.study(model, ancho.grid(p=[0.3, 0.5, 0.7]), sequences=200, seed=3, workers=2, store=store)
    assert [p["status"] for p in study.record.points] == ["succeeded", "failed", "failed"]
    monkeypatch.delenv("FLAKY_FAIL")
    again = ancho.study(None, None, resume=study.study_id, workers=2, store=store)
    assert again.status == "succeeded" and again.record.error is None
    assert [p["status"] for p in again.record.points] == ["succeeded"] * 3
    assert not any("error" in p for p in again.record.points)
    for k, p in enumerate((0.3, 0.5, 0.7)):  # a Bernoulli(p) mean within 4 standard errors
        x = again.runs[k].summary["outputs"]["x"]
        assert x["count"] == 200 and abs(x["mean"] - p) <= 4 * (p * (1 - p) / 200) ** 0.5


def test_tiny_points_go_whole_so_their_summary_functions_run_with_their_chunk(store, monkeypatch):
    """Neither the first points (before the model's speed is known) nor the last (the tail's balance) are cut: a
    cut point's summary functions would run apart afterwards (on Spark a local worker started for each)."""
    from ancho.executors.local import LocalExecutor

    apart: list[str] = []
    real = LocalExecutor.summaries
    monkeypatch.setattr(
        LocalExecutor, "summaries", lambda self, task, *a: apart.append(task.run_id) or real(self, task, *a)
    )
    ps = [0.3 + 0.4 * k / 59 for k in range(60)]
    study = ancho.study(str(Path(__file__).resolve().parents[2] / "examples" / "gambler.py"),
                        ancho.points([{"p": p} for p in ps]), {"stake": 3, "goal": 6}, 100, seed=5, workers=2,
                        store=store)  # fmt: skip
    assert study.status == "succeeded" and apart == []
    for run in study.runs:
        assert "median_rounds_when_won" in run.summary["custom"]
