"""Parameters that are not JSON as Python holds them, through the server: ``POST /inspect`` answers their JSON form,
and a run records and reproduces them. Before, a model with a ``pathlib.Path`` or date default was refused as if it
had forged its worker's reply (the reply unpickler takes no pathlib), and an ``inf`` default was answered as null."""

from __future__ import annotations

from .conftest import submit, tar_gz, upload_id, wait_run

TYPED = """
import datetime
import math
import pathlib

import ancho


class Typed(ancho.Model):
    path: pathlib.Path = pathlib.Path("data/input.csv")
    start: datetime.date = datetime.date(2026, 1, 1)
    cap: float = math.inf
    pair: tuple[int, int] = (1, 2)

    def sequence(self, rng):
        return {
            "ok": isinstance(self.path, pathlib.Path) and isinstance(self.start, datetime.date) and math.isinf(self.cap)
            and self.pair in ((1, 2), (3, 4))
        }
"""


def test_inspect_and_run_a_model_with_typed_parameters(alice):
    model = {"upload": upload_id(alice, tar_gz({"model.py": TYPED}), "typed.tar.gz"), "entry": "model.py:Typed"}
    r = alice.post("/inspect", json={"model": model})
    assert r.status_code == 200, r.text
    defaults = {p["name"]: p["default"] for p in r.json()["parameters"]}
    assert defaults == {"path": "data/input.csv", "start": "2026-01-01", "cap": "inf", "pair": [1, 2]}
    run_id = submit(alice, {"model": model, "params": {"start": "2027-05-06", "pair": [3, 4]}, "sequences": 20})
    view = wait_run(alice, run_id)
    assert view["status"] == "succeeded", view
    assert view["params"] == {"path": "data/input.csv", "start": "2027-05-06", "cap": "inf", "pair": [3, 4]}
    assert alice.get(f"/runs/{run_id}/summary").json()["outputs"]["ok"]["mean"] == 1.0
