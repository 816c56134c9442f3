"""``GET /api/v1/runs/{id}/trajectories/{name}``: a run's series as a long CSV, Parquet or JSON pages; isolation."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from .conftest import submit, tar_gz, upload_id, wait_run

WALK = """
import ancho
import numpy as np


class Walk(ancho.Model):
    steps: int = 12

    def sequence(self, rng):
        path = np.cumsum(rng.choice([-1, 1], size=self.steps))
        return {"walk": path.tolist(), "end": int(path[-1])}
"""


@pytest.fixture(scope="module")
def walk_run(alice):
    upload = upload_id(alice, tar_gz({"model.py": WALK}), "walk.tar.gz")
    run_id = submit(alice, {"model": {"upload": upload}, "sequences": 300, "seed": 4})
    assert wait_run(alice, run_id)["status"] == "succeeded"
    return run_id


def test_csv_parquet_and_json_hold_the_same_series(alice, walk_run):
    csv = alice.get(f"/runs/{walk_run}/trajectories/walk?format=csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "sequence,step,value" and len(lines) == 1 + 300 * 12
    long = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    from_csv = long[:, 2].reshape(300, 12)

    parquet = alice.get(f"/runs/{walk_run}/trajectories/walk?format=parquet")
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column_names == ["sequence", "walk"]
    assert np.array_equal(np.array(table.column("walk").to_pylist()), from_csv)

    page = alice.get(f"/runs/{walk_run}/trajectories/walk", params={"offset": 290, "limit": 50})
    assert page.status_code == 200
    body = page.json()
    assert body["steps"] == 12 and body["sequences"] == list(range(290, 300))
    assert np.array_equal(np.array(body["values"]), from_csv[290:])
    # each series is a walk of ±1 steps that ends where the scalar output says
    assert np.all(np.abs(np.diff(from_csv, axis=1)) == 1)


def test_not_a_trajectory_and_other_users_are_404(alice, bob, anonymous, walk_run):
    for name in ("end", "nope"):
        r = alice.get(f"/runs/{walk_run}/trajectories/{name}")
        assert r.status_code == 404 and "walk" in r.json()["detail"], r.text
    assert bob.get(f"/runs/{walk_run}/trajectories/walk").status_code == 404
    assert bob.get(f"/runs/{walk_run}/trajectories/walk?format=csv").status_code == 404
    assert anonymous.get(f"/runs/{walk_run}/trajectories/walk").status_code == 401
    assert alice.get(f"/runs/{walk_run}/trajectories/walk?format=xml").status_code == 422
    assert alice.get(f"/runs/{walk_run}/trajectories/walk?limit=0").status_code == 422


MANY_LONG = """
import ancho
import numpy as np


class ManyLong(ancho.Model):
    block = 2

    def sequences(self, rng, n):
        return {f"t{k}": np.zeros((n, 60_000)) for k in range(40)}
"""


def test_trajectories_too_long_together_fail_the_run_not_the_server(alice):
    """Forty trajectories of 60,000 steps, each under the cap: their summary would be 19M numbers (a record of
    ~350 MB in the server's memory). The run fails at its first chunk, saying how many steps there were and what
    the cap is; the server answers as before."""
    upload = upload_id(alice, tar_gz({"model.py": MANY_LONG}), "many.tar.gz")
    run_id = submit(alice, {"model": {"upload": upload}, "sequences": 4, "seed": 4})
    view = wait_run(alice, run_id)
    assert view["status"] == "failed", view
    assert "40 trajectories of 2,400,000 steps together" in view["error"] and "at most 100,000" in view["error"]
    assert alice.get(f"/runs/{run_id}/summary").status_code == 409
    assert alice.get("/runs", params={"limit": 5}).status_code == 200
