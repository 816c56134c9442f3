"""``ancho users add|list|revoke``: tokens printed once as the last stdout line, stored hashed, revoked at once."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .conftest import add_user, is_json_error, users_cli


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_add_prints_the_token_as_the_last_stdout_line(home):
    done = users_cli(home, "add", "dora")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("anc_") and len(lines[-1]) > 30
    assert " " not in lines[-1]


def test_tokens_are_stored_hashed(home):
    token = add_user(home, "dora")
    raw = (home / "server.db").read_bytes()
    assert token.encode() not in raw
    rows = sqlite3.connect(home / "server.db").execute("SELECT token_hash FROM users").fetchall()
    assert rows and all(token not in r[0] for r in rows)


@pytest.mark.slow
def test_list_shows_users_but_never_tokens(home):
    tokens = [add_user(home, n) for n in ("dora", "eve")]
    users_cli(home, "revoke", "eve")
    done = users_cli(home, "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(rows) == {"dora", "eve"}
    assert rows["dora"]["revoked"] is None and rows["eve"]["revoked"] is not None
    for t in tokens:
        assert t not in done.stdout
    table = users_cli(home, "list")
    assert table.returncode == 0 and "dora" in table.stdout


@pytest.mark.slow
def test_adding_an_existing_user_fails_until_revoked(home):
    first = add_user(home, "dora")
    again = users_cli(home, "add", "dora")
    assert again.returncode != 0
    assert "dora" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert users_cli(home, "revoke", "dora").returncode == 0
    second = add_user(home, "dora")
    assert second != first


def test_revoking_an_unknown_user_fails(home):
    done = users_cli(home, "revoke", "nobody")
    assert done.returncode != 0 and "nobody" in done.stderr


@pytest.mark.parametrize("name", ["Alice", "1abc", "../x", "é", "a" * 33, "x;drop", "local"])
def test_bad_names_are_rejected(home, name):
    done = users_cli(home, "add", name)
    assert done.returncode != 0
    assert done.stderr.strip() and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_revoke_takes_effect_at_once(server):
    """A running server refuses a revoked token on the very next request; a new token works."""
    token = add_user(server.home, "frank")
    with server.client(token) as c:
        assert c.get("/runs").status_code == 200
        assert users_cli(server.home, "revoke", "frank").returncode == 0
        r = c.get("/runs")
        assert r.status_code == 401 and is_json_error(r)
    new = add_user(server.home, "frank")
    with server.client(new) as c:
        assert c.get("/runs").status_code == 200
    with server.client(token) as c:
        assert c.get("/runs").status_code == 401


def test_a_revoked_token_is_refused_at_once_despite_the_cache(tmp_path):
    """Tokens are cached per thread; a revocation by another process (another connection) or by this one clears it."""
    from ancho.server.users import Users

    server_side, cli_side = Users(tmp_path / "users.db"), Users(tmp_path / "users.db")
    alice, bob = cli_side.add("alice"), cli_side.add("bob")
    assert server_side.authenticate(alice) == "alice" and server_side.authenticate(alice) == "alice"
    assert server_side.authenticate("anc_wrong") is None
    cli_side.revoke("alice")  # as `ancho users revoke alice` in another process
    assert server_side.authenticate(alice) is None
    assert server_side.authenticate(bob) == "bob"
    server_side.revoke("bob")
    assert server_side.authenticate(bob) is None
    carol = cli_side.add("carol")
    assert server_side.authenticate(carol) == "carol"
