"""Session fixation: a session id planted in the browser before sign-in (by another site, a shared machine,
a crafted link) is never adopted: signing in always issues a fresh one."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # a server per session


def _session_cookie(response) -> str:
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("ancho_session="))
    return cookie.split(";", 1)[0].split("=", 1)[1]


def test_a_planted_session_id_is_never_adopted(site, page):
    planted = "attacker-chosen-session-id-0123456789abcdef"
    page.http.cookies.set("ancho_session", planted)
    assert page.http.get("/runs").status_code == 303  # the planted id is no session
    r = page.sign_in(site.tokens["alice"])
    issued = _session_cookie(r)
    assert issued != planted
    page.http.cookies.clear()
    page.http.cookies.set("ancho_session", planted)
    assert page.http.get("/runs").status_code == 303  # still nobody's: signing in did not bless it
    page.http.cookies.clear()
    page.http.cookies.set("ancho_session", issued)
    assert page.http.get("/runs").status_code == 200
