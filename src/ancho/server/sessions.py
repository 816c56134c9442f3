"""Web sessions: a browser signs in once with its API token and then carries a session cookie.

They live in server/ beside the users table they join, because both front
ends read them through the one resolver (:mod:`.auth`): the web site for its
pages and actions, the REST API for the site's reads (downloads, the event
stream). The web site only opens and closes them.

The cookie holds a random session id; the server keeps only its SHA-256,
with the user, the hash of the token that opened it, and the session's CSRF
token. A session is valid only while that token is: revoking a user's token
(or issuing a new one) ends every session it opened, because the lookup
joins the users table on the token hash. The token itself is never stored
in the browser, so a leaked cookie expires and can be signed out, unlike
the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..sqlite import Database

COOKIE = "ancho_session"
#: the sign-in form's CSRF token lives in this short-lived cookie (double submit: no session exists yet)
SIGNIN_COOKIE = "ancho_signin"
#: seconds a session lasts after sign-in
LIFETIME = 7 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
"""


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str


class Sessions:
    """Session rows in the server's database (next to the users table they depend on)."""

    def __init__(self, db: Path, lifetime: float = LIFETIME):
        # opened after server.users.Users, whose users table the lookup joins
        self.db = Database(db, _SCHEMA)
        self.lifetime = lifetime

    def open(self, user: str, token: str) -> tuple[str, Session]:
        """A new session for ``user`` (already authenticated by ``token``): returns (cookie value, session)."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        with self.db.write() as d:
            d.execute("DELETE FROM web_sessions WHERE expires < ?", (now,))
            d.execute(
                "INSERT INTO web_sessions (id_hash, user, token_hash, csrf, created, expires) VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(sid), user, _hash(token), csrf, now, now + self.lifetime),
            )
        return sid, Session(user, csrf)

    def get(self, sid: str | None) -> Session | None:
        """The live session of a cookie value: not expired, and its token not revoked or replaced."""
        if not sid or len(sid) > 100:
            return None
        row = (
            self.db.conn()
            .execute(
                "SELECT s.user, s.csrf FROM web_sessions s JOIN users u ON u.name = s.user AND u.token_hash = s.token_hash "
                "WHERE s.id_hash = ? AND s.expires > ? AND u.revoked IS NULL",
                (_hash(sid), time.time()),
            )
            .fetchone()
        )
        return Session(row[0], row[1]) if row else None

    def close(self, sid: str | None) -> None:
        if sid:
            with self.db.write() as d:
                d.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hash(sid),))


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())
