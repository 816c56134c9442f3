"""The same bad input to each front end: one rule says what is wrong, each front end names the field its own way.

``ancho run`` names the option (``--max-sequences``), ``ancho.run`` raises a
FieldError whose ``field`` says which argument, and the REST API answers 422
with the field's ``loc`` and a message that names it as the body does
(``max_sequences``), with no command-line option in it.
"""

from __future__ import annotations

import pickle

import pytest

import ancho
from ancho.errors import ExpressionError, Field, FieldError, ParameterError

from .conftest import EXAMPLES, run_cli
from .server.conftest import GAMBLER as GAMBLER_SOURCE
from .server.conftest import Server, add_user, tar_gz, upload_id

GAMBLER = str(EXAMPLES / "gambler.py")
SERVER_CAP = 5000


class Gambler(ancho.Model):
    stake: int = 10
    goal: int = 20

    def sequence(self, rng):
        return {"rounds": int(rng.integers(1, 50))}


#: id: (ancho run options, ancho.run keywords, REST body fields,
#:      field and its index or name, the option the CLI line starts with, REST loc, words in every message)
CASES = {
    "max_sequences-without-until": (
        ["-n", "100", "--max-sequences", "5000"],
        {"sequences": 100, "max_sequences": 5000},
        {"sequences": 100, "max_sequences": 5000},
        (Field.MAX_SEQUENCES, None),
        "--max-sequences caps a precision goal",
        ["body", "max_sequences"],
        "caps a precision goal",
    ),
    "max_sequences-below-sequences": (
        ["-n", "500", "--until", "mean(rounds)+-1", "--max-sequences", "100"],
        {"sequences": 500, "until": "mean(rounds)+-1", "max_sequences": 100},
        {"sequences": 500, "until": "mean(rounds)+-1", "max_sequences": 100},
        (Field.MAX_SEQUENCES, None),
        "--max-sequences (100) is below --sequences (500)",
        ["body", "max_sequences"],
        "the first batch",
    ),
    "sequences-over-the-cap": (
        ["-n", str(2 * 10**12)],
        {"sequences": 2 * 10**12},
        {"sequences": SERVER_CAP + 1},
        (Field.SEQUENCES, None),
        "--sequences",
        ["body", "sequences"],
        "sequences",
    ),
    "non-whole-int-parameter": (
        ["-n", "100", "-p", "stake=2.5"],
        {"sequences": 100, "params": {"stake": "2.5"}},
        {"sequences": 100, "params": {"stake": 2.5}},
        (Field.PARAMS, "stake"),
        "--param stake: parameter 'stake' expects int",
        ["body", "params"],
        "not a whole number",
    ),
    "bad-target-at-index-1": (
        ["-n", "100", "-t", "rounds>=3", "-t", "rounds=>3"],
        {"sequences": 100, "targets": ["rounds>=3", "rounds=>3"]},
        {"sequences": 100, "targets": ["rounds>=3", "rounds=>3"]},
        (Field.TARGETS, 1),
        "--target: cannot read target 'rounds=>3'",
        ["body", "targets", 1],
        "cannot read target",
    ),
}


def _field(exc: FieldError):
    return exc.field, exc.name if exc.field is Field.PARAMS else exc.index


@pytest.mark.parametrize("case", CASES)
def test_ancho_run_names_the_option(home, case):
    options, _, _, _, starts, _, words = CASES[case]
    p = run_cli("run", GAMBLER, *options)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"ancho: error: {starts}"), lines[0]
    assert words in lines[0] and "max_sequences" not in lines[0]
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


@pytest.mark.parametrize("case", CASES)
def test_python_api_error_carries_the_field(store, case):
    _, kwargs, _, field, _, _, words = CASES[case]
    with pytest.raises(FieldError) as err:
        ancho.run(Gambler, store=store, **kwargs)
    assert _field(err.value) == field
    assert words in str(err.value) and "--" not in str(err.value)
    assert store.list_runs() == []


def test_python_api_error_types_are_kept(store):
    with pytest.raises(ParameterError):
        ancho.run(Gambler, store=store, params={"stake": 2.5})
    with pytest.raises(ExpressionError):
        ancho.run(Gambler, store=store, until="mean(rounds)")


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    home = tmp_path_factory.mktemp("capped") / "home"
    token = add_user(home, "alice")
    srv = Server(home, {"ANCHO_MAX_SEQUENCES": str(SERVER_CAP)}, name="capped").start()
    with srv.client(token) as client:
        client.gambler = upload_id(client, tar_gz({"model.py": GAMBLER_SOURCE}, folder="gambler"), "gambler.tar.gz")
        yield client
    srv.kill()


@pytest.mark.parametrize("case", CASES)
def test_rest_answers_loc_and_the_body_name(capped, case):
    _, _, fields, _, _, loc, words = CASES[case]
    r = capped.post("/runs", json={"model": {"upload": capped.gambler}, **fields})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == loc
    assert words in error["msg"] and "--" not in r.text
    if loc[1] in ("max_sequences", "sequences"):
        assert error["msg"].startswith(loc[1])
    assert capped.get("/runs").json() == []


def test_rest_cap_is_the_servers(capped):
    r = capped.post("/runs", json={"model": {"upload": capped.gambler}, "sequences": SERVER_CAP + 1})
    assert "this server allows at most 5,000 sequences per run" in r.json()["detail"][0]["msg"]
    r = capped.post(
        "/runs",
        json={
            "model": {"upload": capped.gambler},
            "sequences": 100,
            "until": "mean(rounds)+-1",
            "max_sequences": SERVER_CAP + 1,
        },
    )
    assert r.json()["detail"][0]["loc"] == ["body", "max_sequences"]


def test_submit_checks_the_rules_before_sending(home):
    """``ancho submit`` spells the rules' errors with its options, before it packs or sends anything."""
    p = run_cli("submit", GAMBLER, "-n", "100", "--max-sequences", "50", "--url", "http://127.0.0.1:9")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("ancho: error: --max-sequences caps a precision goal: give it with --until"), lines[0]


def test_field_errors_cross_processes_whole():
    for err in (
        FieldError(Field.MAX_SEQUENCES, "{MAX_SEQUENCES} caps {UNTIL}"),
        ParameterError("{PARAMS} is bad", "n"),
        ExpressionError("bad", index=2),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.loc == err.loc and _field(back) == _field(err)


def test_a_rest_loc_addresses_the_same_field():
    assert FieldError(("body", "targets", 1), "x").loc == ("body", "targets", 1)
    assert FieldError(("body", "model", "entry"), "x").field is Field.MODEL_ENTRY
    assert FieldError(("body", "model", "unheard-of"), "x").field is Field.MODEL  # the field around an unknown part
    assert (
        ParameterError("{PARAMS} is bad", "n").loc == ("body", "params")
        and str(ParameterError("{PARAMS} is bad", "n")) == "parameter 'n' is bad"
    )
