"""Parameters whose values are not JSON as Python holds them (a path, a date, an Enum, a set, a tuple, ±inf): a run's
record and the model's description keep their JSON form (``Parameter.jsonable``), and the model's instance in each
worker gets its own types back. Before, ``ancho run`` of such a model ended in a traceback from the record's JSON."""

from __future__ import annotations

import datetime
import enum
import math
import pathlib

import pytest

import ancho
from ancho.errors import ModelError, ParameterError
from ancho.model import describe_model

from .conftest import run_cli


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Typed(ancho.Model):
    """Each output says whether its parameter reached the worker as its own type."""

    path: pathlib.Path = pathlib.Path("data/input.csv")
    start: datetime.date = datetime.date(2026, 1, 1)
    colour: Colour = Colour.RED
    tags: set[str] = {"a", "b"}  # noqa: RUF012 - a parameter's default
    pair: tuple[int, int] = (1, 2)
    cap: float = math.inf

    def sequence(self, rng):
        return {
            "path": isinstance(self.path, pathlib.Path) and self.path.suffix == ".csv",
            "date": isinstance(self.start, datetime.date) and self.start.year >= 2026,
            "colour": isinstance(self.colour, Colour),
            "tags": isinstance(self.tags, set) and "a" in self.tags,
            "pair": self.pair == (1, 2) or self.pair == (3, 4),
            "cap": math.isinf(self.cap),
        }


EXPECTED = {"path": "data/input.csv", "start": "2026-01-01", "colour": "red", "pair": [1, 2], "cap": "inf"}


def test_the_description_and_the_record_keep_json_and_the_workers_get_the_types(tmp_path):
    described = {p["name"]: p["default"] for p in describe_model(Typed)["parameters"]}
    assert {k: described[k] for k in EXPECTED} == EXPECTED and sorted(described["tags"]) == ["a", "b"]
    res = ancho.run(Typed, sequences=20, seed=1, workers=2, store=str(tmp_path / "store"))
    assert res.status == "succeeded"
    assert all(res.summary["outputs"][name]["mean"] == 1.0 for name in res.summary["outputs"])
    assert {k: res.record.params[k] for k in EXPECTED} == EXPECTED
    given = ancho.run(Typed, params={"start": "2026-03-04", "colour": "blue", "pair": [3, 4]}, sequences=5,
                      seed=1, workers=1, store=str(tmp_path / "store"))  # fmt: skip
    assert given.status == "succeeded" and given.record.params["start"] == "2026-03-04"
    assert given.record.params["colour"] == "blue" and given.summary["outputs"]["pair"]["mean"] == 1.0


def test_a_study_over_dates_and_the_cli(tmp_path, write_model):
    study = ancho.study(Typed, design=ancho.grid(start=["2026-01-01", "2027-06-30"]), sequences=5, seed=2,
                        workers=1, store=str(tmp_path / "store"))  # fmt: skip
    assert study.status == "succeeded"
    assert [p["params"]["start"] for p in study.summary["points"]] == ["2026-01-01", "2027-06-30"]
    path = write_model(
        """
        import pathlib

        class Reads(ancho.Model):
            source: pathlib.Path = pathlib.Path("in.csv")

            def sequence(self, rng):
                return {"csv": self.source.suffix == ".csv"}
        """
    )
    done = run_cli("run", str(path), "-n", "10", "--param", "source=other.csv", "--json",
                   env={"ANCHO_HOME": str(tmp_path / "home")})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"source": "other.csv"' in done.stdout and "Traceback" not in done.stderr


def test_values_with_no_json_form_are_one_line_errors_naming_the_parameter():
    class Holder:
        pass

    class Opaque(ancho.Model):
        thing: object = None

        def sequence(self, rng):
            return {"x": 1.0}

    with pytest.raises(ParameterError, match="thing.*no JSON form") as err:
        Opaque.recorded_params({"thing": Holder()})
    assert "\n" not in str(err.value)

    class BadDefault(ancho.Model):
        thing: object = Holder()

        def sequence(self, rng):
            return {"x": 1.0}

    with pytest.raises(ModelError, match="model BadDefault: the default of parameter 'thing'.*no JSON form"):
        describe_model(BadDefault)
