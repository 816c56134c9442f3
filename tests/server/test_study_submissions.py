"""Study submissions over REST, on the real session server: every parameter kind of the model API checked at
submit time (a wrong value is a 422 naming its point and parameter, and nothing is created), and a study's point
runs keep the server's folders out of their tracebacks, as runs submitted alone do."""

from __future__ import annotations

import time

import pytest

from .conftest import FLAKY, detail_text, is_json_error, submit, tar_gz, upload_id, wait_run

FINAL = ("succeeded", "failed", "cancelled")

#: a parameter of every kind the model API converts (ancho/model.py: the scalars itself, the rest with pydantic);
#: ``y`` is a closed form of them, the same for every sequence
KINDS = """
from typing import Literal

import ancho


class Kinds(ancho.Model):
    n: int = 3
    x: float = 0.5
    flag: bool = False
    name: str = "a"
    weights: list[float] = [1.0, 2.0]
    pair: tuple[int, int] = (1, 2)
    mode: Literal["fast", "slow"] = "fast"
    level: Literal[1, 2] = 1
    table: dict[str, float] = {"a": 1.0}
    maybe: float | None = None

    def sequence(self, rng):
        assert isinstance(self.pair, tuple) and isinstance(self.weights, list)
        y = self.n * self.x + sum(self.weights) + sum(self.pair) + sum(self.table.values()) + (self.maybe or 0.0)
        y += self.flag + len(self.name) + (10 if self.mode == "slow" else 0) + 100 * self.level
        return {"y": float(y), "u": float(rng.random())}
"""


def expected_y(**given) -> float:
    p = {"n": 3, "x": 0.5, "flag": False, "name": "a", "weights": [1.0, 2.0], "pair": [1, 2], "mode": "fast",
         "level": 1, "table": {"a": 1.0}, "maybe": None, **given}  # fmt: skip
    y = p["n"] * p["x"] + sum(p["weights"]) + sum(p["pair"]) + sum(p["table"].values()) + (p["maybe"] or 0.0)
    return y + p["flag"] + len(p["name"]) + (10 if p["mode"] == "slow" else 0) + 100 * p["level"]


@pytest.fixture(scope="module")
def kinds(alice) -> dict:
    return {"upload": upload_id(alice, tar_gz({"model.py": KINDS}), "kinds.tar.gz")}


def wait_study(client, study_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/studies/{study_id}").json()
        if view["status"] in FINAL:
            return view
        assert time.monotonic() < deadline, f"study {study_id} still {view['status']} ({view['progress']})"
        time.sleep(0.1)


def submit_study(client, body: dict) -> str:
    r = client.post("/studies", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("n", [1]),
        ("n", True),
        ("n", 1.5),
        ("x", [0.1]),
        ("x", True),
        ("x", "abc"),
        ("flag", [1]),
        ("flag", "maybe"),
        ("name", 3),
        ("name", ["a"]),
        ("weights", 0.5),
        ("weights", ["a", "b"]),
        ("weights", True),
        ("pair", [1]),
        ("pair", "x"),
        ("pair", {"a": 1}),
        ("mode", "medium"),
        ("mode", 1),
        ("level", 3),
        ("level", [1]),
        ("table", [1.0]),
        ("table", {"a": "lots"}),
        ("maybe", "x"),
        ("maybe", [1.0]),
    ],
)
def test_a_wrong_value_of_any_kind_is_422_naming_its_point_and_parameter(alice, kinds, name, bad):
    """The second point is wrong: the error names point 1 and the parameter, under ``body.design``."""
    studies_before = {s["id"] for s in alice.get("/studies").json()}
    runs_before = len(alice.get("/runs", params={"limit": 1000}).json())
    design = {"points": [{"n": 2, name: _good(name)}, {"n": 2, name: bad}]} if name != "n" else {
        "points": [{"x": 0.1, "n": 2}, {"x": 0.1, "n": bad}]}  # fmt: skip
    r = alice.post("/studies", json={"model": kinds, "design": design, "sequences": 10})
    assert r.status_code == 422, (name, bad, r.status_code, r.text)
    assert is_json_error(r)
    text = detail_text(r)
    assert "point 1" in text and f"'{name}'" in text, text
    assert "point 0" not in text, text  # the good point is not blamed
    assert [tuple(e["loc"][:2]) for e in r.json()["detail"]][0] == ("body", "design")
    assert {s["id"] for s in alice.get("/studies").json()} == studies_before
    assert len(alice.get("/runs", params={"limit": 1000}).json()) == runs_before


def _good(name: str):
    return {"x": 0.25, "flag": True, "name": "abc", "weights": [0.5], "pair": [3, 4], "mode": "slow", "level": 2,
            "table": {"b": 2.5}, "maybe": 1.5}[name]  # fmt: skip


@pytest.mark.parametrize(("name", "bad"), [("weights", [[1.0], 2.0]), ("pair", [[1, 2], "x"]), ("mode", ["medium"])])
def test_a_wrong_grid_value_is_422_naming_the_parameter(alice, kinds, name, bad):
    r = alice.post("/studies", json={"model": kinds, "design": {"grid": {name: bad}}, "sequences": 10})
    assert r.status_code == 422 and is_json_error(r), r.text
    assert f"'{name}'" in detail_text(r)


def test_values_of_every_kind_run_as_the_model_converts_them(alice, kinds):
    """Right values of every kind pass the check and reach the model converted (y is exact: the same each time)."""
    points = [
        {"weights": [0.5, 0.25], "pair": [3, 4], "mode": "slow", "level": 2, "table": {"b": 2.5}, "maybe": 1.5,
         "flag": True, "name": "abc", "n": 2, "x": 0.25},
        {"weights": [3.0], "pair": [0, 0], "mode": "fast", "level": 1, "table": {"c": 0.5}, "maybe": -2.5, "flag": False,
         "name": "xy", "n": 0, "x": 7.0},
    ]  # fmt: skip
    study_id = submit_study(alice, {"model": kinds, "design": {"points": points}, "sequences": 50, "seed": 2})
    assert wait_study(alice, study_id)["status"] == "succeeded"
    summary = alice.get(f"/studies/{study_id}/summary").json()
    for point, given in zip(summary["points"], points, strict=True):
        assert point["status"] == "succeeded" and point["sequences"] == 50
        y = point["outputs"]["y"]
        assert y["min"] == y["max"] == pytest.approx(expected_y(**given), abs=1e-12), (given, y)


@pytest.mark.parametrize("points", [1, 2], ids=["point-by-point", "points-together"])
def test_a_point_runs_tracebacks_hold_no_server_path(server, alice, points):
    """Failing sequences of a study's points (run alone, or together in shared chunks) are listed as a run's are:
    the model's file relative to its source, no server folder (ANCHO_HOME, the checkout) anywhere."""
    flaky = upload_id(alice, tar_gz({"model.py": FLAKY}), "flaky.tar.gz")
    body = {
        "model": {"upload": flaky},
        "design": {"grid": {"rate": [0.3, 0.4][:points]}},
        "sequences": 200,
        "seed": 4,
        "max_failures": 200,
    }
    study_id = submit_study(alice, body)
    wait_study(alice, study_id)  # (how it ends is not the point here: its points' stored failures are)
    alone = submit(alice, {"model": {"upload": flaky}, "params": {"rate": 0.3}, "sequences": 200, "seed": 4,
                           "max_failures": 200})  # fmt: skip
    wait_run(alice, alone)
    runs = [p["run"] for p in alice.get(f"/studies/{study_id}/summary").json()["points"]]
    for run_id in [*runs, alone]:
        failures = alice.get(f"/runs/{run_id}/failures", params={"limit": 10000}).json()
        assert failures, run_id
        for f in failures:
            assert "ZeroDivisionError" in f["error"] and 'File "model.py"' in f["traceback"], f["traceback"]
            for path in (str(server.home), str(server.home.resolve()), "/work/", "/tmp/"):
                assert path not in f["traceback"], (run_id, path, f["traceback"])
