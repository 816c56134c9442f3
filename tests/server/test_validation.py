"""Bad input to POST /runs (and /inspect): a 4xx with a JSON body naming the problem, and the store unharmed."""

from __future__ import annotations

import pytest

from .conftest import GAMBLER, csv_text, detail_text, is_json_error, tar_gz, upload_id, zip_bytes


@pytest.fixture(scope="module")
def before(alice, finished_run):
    """What the store holds before the bad requests: it must hold exactly that afterwards."""
    return {
        "runs": sorted(r["id"] for r in alice.get("/runs", params={"limit": 1000}).json()),
        "summary": alice.get(f"/runs/{finished_run}/summary").json(),
        "csv": csv_text(alice, finished_run),
    }


def post_raw(client, content: bytes, ctype: str = "application/json"):
    return client.post("/runs", content=content, headers={"content-type": ctype})


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"",
        b"{'model': 1}",
        b"[",
        b"nul",
        b'{"model": {"upload": "x"}, }',
        b"\xff\xfe\x00",
        b'{"model": {"upload": "' + b"\\ud800" + b'"}}',
        b"1e999999",
        b"[]",
        b"null",
        b'"text"',
        b"42",
    ],
)
def test_malformed_json(alice, before, content):
    r = post_raw(alice, content)
    assert r.status_code in (400, 422), r.text
    assert is_json_error(r)


def test_wrong_content_type(alice, before):
    r = post_raw(alice, b"model=x", "application/x-www-form-urlencoded")
    assert r.status_code in (415, 422), r.text
    assert is_json_error(r)


def body(upload, **kw):
    return {"model": {"upload": upload}, "sequences": 10, **kw}


WRONG_TYPES = {
    "sequences-string": ({"sequences": "10"}, "sequences"),
    "sequences-bool": ({"sequences": True}, "sequences"),
    "sequences-float": ({"sequences": 1.5}, "sequences"),
    "sequences-list": ({"sequences": [10]}, "sequences"),
    "seed-string": ({"seed": "abc"}, "seed"),
    "seed-float": ({"seed": 1.25}, "seed"),
    "targets-string": ({"targets": "rounds>=3"}, "targets"),
    "targets-numbers": ({"targets": [3]}, "targets"),
    "until-number": ({"until": 3}, "until"),
    "params-list": ({"params": [1, 2]}, "params"),
    "params-string": ({"params": "stake=3"}, "params"),
    "max_failures-negative": ({"max_failures": -1}, "max_failures"),
    "executor-number": ({"executor": 7}, "executor"),
    "unknown-field": ({"sequencez": 10}, "sequencez"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_wrong_types_name_the_field(alice, gambler_upload, before, case):
    extra, field = WRONG_TYPES[case]
    r = alice.post("/runs", json=body(gambler_upload, **extra))
    assert r.status_code == 422, r.text
    assert field in detail_text(r)


@pytest.mark.parametrize(
    "payload,field",
    [
        ({}, "model"),
        ({"sequences": 10}, "model"),
        ({"model": {}}, "upload"),
        ({"model": None}, "model"),
        ({"model": "gambler.tar.gz"}, "model"),
        ({"model": {"entry": "model.py:Gambler"}}, "upload"),
        ({"model": {"upload": "", "url": "", "git": ""}}, "upload"),
        ({"model": {"upload": "x", "url": "https://example.org/m.tar.gz"}}, "upload"),
        ({"model": {"upload": "x", "ref": "main"}}, "ref"),
        ({"model": {"upload": "x", "colour": "red"}}, "colour"),
    ],
)
def test_missing_or_contradictory_model(alice, before, payload, field):
    r = alice.post("/runs", json=payload)
    assert r.status_code == 422, r.text
    assert field in detail_text(r)


@pytest.mark.parametrize(
    "params,name",
    [
        ({"nope": 1}, "nope"),
        ({"stake": "abc"}, "stake"),
        ({"stake": 1.5}, "stake"),
        ({"stake": [1]}, "stake"),
        ({"stake": {"a": 1}}, "stake"),
        ({"p": "often"}, "p"),
        ({"stake": None}, "stake"),
        ({"stake": 3, "Stake": 4}, "stake"),
    ],
)
def test_bad_params_name_the_param(alice, gambler_upload, before, params, name):
    r = alice.post("/runs", json=body(gambler_upload, params=params))
    assert r.status_code == 422, r.text
    assert name.lower() in detail_text(r)
    assert "params" in detail_text(r)


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"targets": ["rounds>>3"]}, "targets"),
        ({"targets": ["rounds>=30", ""]}, "targets"),
        ({"targets": ["__import__('os')>=1"]}, "targets"),
        ({"targets": ["x" * 10_000]}, "targets"),
        ({"targets": ["rounds>=1"] * 101}, "targets"),
        ({"until": "mean(rounds)"}, "until"),
        ({"until": "mean(rounds)+-0"}, "until"),
        ({"until": "mean(rounds)+--1"}, "until"),
        ({"until": ""}, "until"),
        ({"until": "median(rounds)+-1"}, "until"),
        ({"max_sequences": 100}, "max_sequences"),
        ({"until": "mean(rounds)+-1", "sequences": 500, "max_sequences": 100}, "max_sequences"),
        ({"executor": "weird"}, "executor"),
        ({"executor": "spark://127.0.0.1:1"}, "executor"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**200}, "seed"),
    ],
)
def test_bad_targets_goals_and_options(alice, gambler_upload, before, extra, field):
    r = alice.post("/runs", json=body(gambler_upload, **extra))
    assert r.status_code == 422, r.text
    assert field in detail_text(r)


@pytest.mark.parametrize("sequences", [0, -1, -(10**12), 10**13, 10**100, 2**63, 1e30, float("inf")])
def test_negative_zero_or_absurd_sequences(alice, gambler_upload, before, sequences):
    import json

    raw = json.dumps(body(gambler_upload, sequences=sequences)).replace("Infinity", "1e999").encode()
    r = post_raw(alice, raw)
    assert r.status_code == 422, r.text
    assert "sequences" in detail_text(r)


def test_max_sequences_absurd(alice, gambler_upload, before):
    r = alice.post("/runs", json=body(gambler_upload, until="mean(rounds)+-1", max_sequences=10**15))
    assert r.status_code == 422 and "max_sequences" in detail_text(r)


@pytest.mark.parametrize("upload", ["0" * 64, "f" * 64, "abc", "../../etc", "A" * 64, "0" * 65])
def test_unknown_upload_id(alice, before, upload):
    r = alice.post("/runs", json=body(upload))
    assert r.status_code in (404, 422), r.text
    assert "upload" in detail_text(r)


@pytest.mark.parametrize(
    "entry,words",
    [
        ("missing.py:Gambler", "missing.py"),
        ("model.py:Nope", "nope"),
        ("Nope", "nope"),
        ("model.txt:Gambler", "model.txt"),
        ("../model.py:Gambler", "inside"),
        ("/etc/passwd.py:X", "inside"),
        ("sub/../../model.py:Gambler", "inside"),
    ],
)
def test_entry_missing_from_the_archive(alice, gambler_upload, before, entry, words):
    r = alice.post("/runs", json={"model": {"upload": gambler_upload, "entry": entry}})
    assert r.status_code == 422, r.text
    assert "entry" in detail_text(r) and words in detail_text(r)


@pytest.fixture(scope="module")
def odd_uploads(alice):
    two = GAMBLER + "\n\nclass Second(Gambler):\n    pass\n"
    return {
        "no-model": upload_id(alice, tar_gz({"README.md": "# nothing here\n"})),
        "no-subclass": upload_id(alice, zip_bytes({"model.py": "x = 1\n"})),
        "syntax": upload_id(alice, tar_gz({"model.py": "def broken(:\n"})),
        "import-error": upload_id(alice, tar_gz({"model.py": "import no_such_module_anywhere\n"})),
        "raises": upload_id(alice, tar_gz({"model.py": "raise SystemExit(3)\n"})),
        "two-models": upload_id(alice, tar_gz({"model.py": two})),
        "not-a-model": upload_id(alice, tar_gz({"model.py": "import ancho\nclass M:\n    pass\n"})),
    }


@pytest.mark.parametrize(
    "case,words",
    [
        ("no-model", "no .py"),
        ("no-subclass", "no ancho.model"),
        ("syntax", "syntax"),
        ("import-error", "no_such_module_anywhere"),
        ("raises", "model"),
        ("two-models", "several"),
        ("not-a-model", "no ancho.model"),
    ],
)
def test_archives_without_a_usable_model(alice, odd_uploads, before, case, words):
    r = alice.post("/runs", json={"model": {"upload": odd_uploads[case]}, "sequences": 10})
    assert r.status_code == 422, r.text
    assert words in detail_text(r), r.text
    assert "/sources/trees/" not in detail_text(r)  # the server's folders are none of the client's business


def test_inspect_reports_parameters_and_validates(alice, gambler_upload):
    r = alice.post("/inspect", json={"model": {"upload": gambler_upload}})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["name"] == "Gambler" and info["entry"] == "model.py:Gambler"
    assert [p["name"] for p in info["parameters"]] == ["stake", "goal", "p"]
    r = alice.post("/inspect", json={"model": {"upload": gambler_upload}, "params": {"nope": 1}})
    assert r.status_code == 422 and "nope" in detail_text(r)


def test_a_target_naming_no_output_fails_the_run_naming_it(alice, gambler_upload):
    """Outputs are known only once a sequence has run: the run fails at its first chunk, saying which target."""
    r = alice.post("/runs", json=body(gambler_upload, targets=["nope>=3"]))
    if r.status_code == 422:  # a server that probes the outputs first may refuse it up front
        assert "nope" in detail_text(r)
        return
    from .conftest import wait_run

    view = wait_run(alice, r.json()["id"])
    assert view["status"] == "failed" and "nope" in view["error"]


def test_the_store_is_unharmed(alice, finished_run, before):
    """Runs only move forward: no bad request created, changed or removed a run (this module's own aside)."""
    after = sorted(r["id"] for r in alice.get("/runs", params={"limit": 1000}).json())
    assert set(before["runs"]) <= set(after)
    assert alice.get(f"/runs/{finished_run}/summary").json() == before["summary"]
    assert csv_text(alice, finished_run) == before["csv"]
