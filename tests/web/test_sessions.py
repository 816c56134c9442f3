"""Web sessions against the users table: expiry, sign-out, revoked and replaced tokens."""

from __future__ import annotations

from ancho.server.sessions import Sessions, same
from ancho.server.users import Users


def test_a_session_lives_as_long_as_its_token(tmp_path):
    db = tmp_path / "server.db"
    users = Users(db)
    token = users.add("alice")
    sessions = Sessions(db)
    sid, opened = sessions.open("alice", token)
    assert sessions.get(sid) == opened and opened.user == "alice" and len(opened.csrf) >= 32
    assert sessions.get(sid + "x") is None and sessions.get(None) is None and sessions.get("a" * 500) is None
    users.revoke("alice")
    assert sessions.get(sid) is None
    fresh = users.add("alice")  # a new token does not bring back sessions of the old one
    assert sessions.get(sid) is None
    sid2, _ = sessions.open("alice", fresh)
    assert sessions.get(sid2).user == "alice"
    sessions.close(sid2)
    assert sessions.get(sid2) is None


def test_expired_sessions_are_refused_and_pruned(tmp_path):
    db = tmp_path / "server.db"
    token = Users(db).add("bob")
    old = Sessions(db, lifetime=-1)
    sid, _ = old.open("bob", token)
    assert old.get(sid) is None
    Sessions(db).open("bob", token)  # opening a session prunes expired ones
    assert old.db.conn().execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0] == 1


def test_same():
    assert same("abc", "abc")
    assert not same("abc", "abd") and not same("", "") and not same(None, "x")
