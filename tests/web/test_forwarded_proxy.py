"""Behind a TLS-terminating proxy: X-Forwarded-* count only when the setting trusted_proxies names the proxy.

A trusted proxy's ``X-Forwarded-Proto: https`` makes the session cookie
Secure (the browser spoke https to the proxy); from anyone else the
headers are ignored, so a client cannot pose as another address (in the
access log, or anywhere the server uses the client's address).
"""

from __future__ import annotations

import re

import httpx
import pytest

from ..server.conftest import Server, add_user

pytestmark = pytest.mark.slow  # servers of their own

FORGED = "203.0.113.77"  # TEST-NET-3: never a real client


def _cookie(response, name: str) -> str:
    return next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith(name + "="))


def _flags(cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}


def _sign_in_through_proxy(srv: Server, token: str):
    """Sign in as a browser on https would, through a proxy that speaks plain http to the server.

    The cookies go back by hand: httpx, on http, keeps a Secure cookie to itself (as a browser would
    on http), while the browser behind the proxy is on https and sends it.
    """
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": FORGED}
    with httpx.Client(base_url=srv.url, timeout=60, follow_redirects=False, headers=headers) as http:
        form = http.get("/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        nonce = _cookie(form, "ancho_signin").split(";")[0].split("=", 1)[1]
        http.cookies.clear()
        return http.post(
            "/signin", data={"token": token, "csrf": csrf, "next": "/runs"}, headers={"Cookie": f"ancho_signin={nonce}"}
        ), form


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "no-trusted-proxies"])
def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path, trusted):
    home = tmp_path / "home"
    token = add_user(home, "alice")
    env = {"ANCHO_TRUSTED_PROXIES": "127.0.0.1"} if trusted else {"ANCHO_TRUSTED_PROXIES": ""}
    srv = Server(home, env, name="proxy-server").start()
    try:
        r, form = _sign_in_through_proxy(srv, token)
        assert r.status_code == 303, r.text
        session = _cookie(r, "ancho_session")
        log = srv.log(tail=100_000)
        if trusted:
            assert "secure" in _flags(session)
            assert FORGED in log  # the proxy's word for the browser's address
        else:
            assert "secure" not in _flags(session)
            assert FORGED not in log  # the connection's own address, 127.0.0.1
            assert "127.0.0.1:" in log and "POST /signin" in log
        assert ("secure" in _flags(_cookie(form, "ancho_signin"))) is trusted  # the sign-in form's cookie too
    finally:
        srv.kill()
