"""The site over plain HTTP: sessions, CSRF, who sees what, error pages; the REST API keeps its contract."""

from __future__ import annotations

import html as html_text
import re

import pytest

from ..server.conftest import GAMBLER, add_user, submit, tar_gz, upload_id, users_cli, wait_run

pytestmark = pytest.mark.slow  # a server per session


def test_pages_need_a_session(page):
    for path in ("/runs", "/runs/new", "/runs/abc123"):
        r = page.http.get(path)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/signin?next=")
    assert page.http.get("/").headers["location"] == "/signin"


def test_sign_in_sets_a_protected_cookie(site, page):
    r = page.sign_in(site.tokens["alice"])
    assert r.status_code == 303 and r.headers["location"] == "/runs"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("ancho_session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= flags
    assert "samesite=lax" in cookie.lower()
    assert site.tokens["alice"] not in cookie  # the token never goes to the browser
    runs = page.http.get("/runs")
    assert runs.status_code == 200 and "alice" in runs.text
    assert page.http.get("/").headers["location"] == "/runs"


def test_wrong_token_is_a_page_with_a_message(page):
    r = page.sign_in("anc_not-a-real-token")
    assert r.status_code == 401
    assert "text/html" in r.headers["content-type"]
    assert 'id="token-error"' in r.text and "not valid" in r.text
    assert "ancho_session" not in r.headers.get("set-cookie", "")
    empty = page.sign_in("")
    assert empty.status_code == 422 and "Enter your API token" in empty.text


def test_sign_in_needs_the_forms_csrf_token(site, page):
    page.http.get("/signin")
    r = page.http.post("/signin", data={"token": site.tokens["alice"], "csrf": "forged", "next": "/runs"})
    assert r.status_code == 403 and "expired" in r.text
    assert "ancho_session" not in r.headers.get("set-cookie", "")
    form = page.http.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    other = page.http.post(
        "/signin", data={"token": site.tokens["alice"], "csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert other.status_code == 403


def test_next_never_leaves_the_site(site, page):
    form = page.http.get("/signin", params={"next": "//evil.example/x"})
    assert 'name="next" value="/runs"' in form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = page.http.post("/signin", data={"token": site.tokens["alice"], "csrf": csrf, "next": "https://evil.example/"})
    assert r.headers["location"] == "/runs"


def field_error(html: str, field: str) -> str:
    """The message shown next to a field of a form page ('' when none)."""
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error"[^>]*>([^<]*)</p>', html)
    assert found, f"no error box for {field}"
    return html_text.unescape(found.group(1))


def test_actions_need_csrf_and_the_api_takes_the_cookie_for_reading_only(site, page):
    page.sign_in(site.tokens["alice"])
    csrf = page.csrf
    form = {"kind": "previous", "upload": "0" * 64, "action": "inspect"}
    assert page.http.post("/runs/new", data=form).status_code == 403
    assert page.http.post("/runs/new", data={**form, "csrf": "wrong"}).status_code == 403
    r = page.http.post("/runs/new", data={**form, "csrf": csrf})
    assert r.status_code == 422 and "text/html" in r.headers["content-type"]
    assert field_error(r.text, "upload")
    archive = {"file": ("g.tar.gz", tar_gz({"model.py": GAMBLER}))}
    upload = page.http.post("/runs/new", data={"kind": "upload", "action": "inspect"}, files=archive)
    assert upload.status_code == 403
    # the REST API: reading with the cookie works, changing does not (no CSRF token there)
    body = {"model": {"upload": "0" * 64}}
    assert page.http.get("/api/v1/runs").status_code == 200
    assert page.http.post("/api/v1/runs", json=body).status_code == 401
    assert page.http.post("/api/v1/models", files={"file": ("g.tar.gz", b"x")}).status_code == 401


def test_submit_and_cancel_through_the_site(site, page):
    """The new-run form as a browser without JavaScript posts it: upload and read, a bad value, then a run."""
    page.sign_in(site.tokens["alice"])
    csrf = page.csrf
    archive = {"file": ("g.tar.gz", tar_gz({"model.py": GAMBLER}))}
    read = page.http.post(
        "/runs/new", data={"csrf": csrf, "kind": "upload", "sequences": "10000", "action": "inspect"}, files=archive
    )
    assert read.status_code == 200, read.text
    assert [m for m in re.findall(r'name="(param-[^"]+)"', read.text)] == ["param-stake", "param-goal", "param-p"]
    assert 'id="param-stake" name="param-stake" type="text" value="10"' in read.text
    upload = re.search(r'<option value="([0-9a-f]{64})" selected>', read.text).group(1)  # chosen: not sent again
    assert re.search(r'value="previous" checked', read.text)
    inspected = re.search(r'name="inspected" value="([^"]*)"', read.text).group(1)
    form = {
        "csrf": csrf,
        "kind": "previous",
        "upload": upload,
        "inspected": html_text.unescape(inspected),
        "param-stake": "abc",
        "param-goal": "20",
        "param-p": "0.5",
        "sequences": "10000",
        "action": "submit",
    }
    bad = page.http.post("/runs/new", data=form)
    assert (
        bad.status_code == 422
        and "stake" in field_error(bad.text, "param-stake")
        and "'abc'" in field_error(bad.text, "param-stake")
    )
    assert 'id="param-stake" name="param-stake" type="text" value="abc"' in bad.text  # as it was sent
    assert re.search(r'id="param-stake"[^>]*aria-invalid="true" autofocus', bad.text)
    wrong = page.http.post(
        "/runs/new", data={**form, "param-stake": "3", "sequences": "lots", "targets": "rounds>=5\nrounds>=>3"}
    )
    assert wrong.status_code == 422 and "whole number" in field_error(wrong.text, "sequences")
    r = page.http.post("/runs/new", data={**form, "param-stake": "3", "sequences": str(10**9)})
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    run_id = r.headers["location"].rsplit("/", 1)[1]
    with site.client(site.tokens["alice"]) as api:
        assert api.get(f"/runs/{run_id}/summary").status_code in (404, 409)  # not finished
        assert api.get(f"/runs/{run_id}").json()["progress"]["total"] == 10**9
    assert page.http.post(f"/site/runs/{run_id}/cancel", data={"csrf": "nope"}).status_code == 403
    done = page.http.post(f"/site/runs/{run_id}/cancel", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/runs/{run_id}"
    assert page.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "cancelled"
    assert "cancelled" in page.http.get(f"/runs/{run_id}").text


def test_sign_out_ends_the_session(site, page):
    page.sign_in(site.tokens["alice"])
    csrf = page.csrf
    cookie = page.http.cookies.get("ancho_session")
    r = page.http.post("/signout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    page.http.cookies.set("ancho_session", cookie)  # a copy of the old cookie is worth nothing now
    assert page.http.get("/runs").status_code == 303
    assert page.http.get("/api/v1/runs").status_code == 401


def test_revoking_the_token_ends_its_sessions(site, page):
    token = add_user(site.home, "dave")
    page.sign_in(token)
    assert page.http.get("/runs").status_code == 200
    assert users_cli(site.home, "revoke", "dave").returncode == 0
    assert page.http.get("/runs").status_code == 303
    assert page.http.get("/api/v1/runs").status_code == 401


def test_one_user_never_sees_anothers_runs(site, page):
    with site.client(site.tokens["alice"]) as alice:
        run_id = submit(
            alice, {"model": {"upload": upload_id(alice, tar_gz({"model.py": GAMBLER}))}, "sequences": 50, "seed": 1}
        )
        wait_run(alice, run_id)
    page.sign_in(site.tokens["bob"])
    assert run_id not in page.http.get("/runs").text
    other = page.http.get(f"/runs/{run_id}")
    assert other.status_code == 404 and "text/html" in other.headers["content-type"]
    assert run_id not in other.text.split("<main", 1)[1]
    for path in (
        f"/api/v1/runs/{run_id}",
        f"/api/v1/runs/{run_id}/results?format=csv",
        f"/api/v1/runs/{run_id}/events",
    ):
        assert page.http.get(path).status_code == 404
    csrf = page.csrf
    refused = page.http.post(f"/site/runs/{run_id}/cancel", data={"csrf": csrf})
    assert (
        refused.status_code == 404 and "text/html" in refused.headers["content-type"]
    )  # a page, like the form's errors


def test_errors_are_pages_on_the_site_and_json_on_the_api(site, page):
    r = page.http.get("/no/such/page")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "There is nothing here" in r.text
    api = page.http.get("/api/v1/no/such")
    assert api.status_code == 404 and api.json()["detail"]
    page.sign_in(site.tokens["alice"])
    bad = page.http.get("/runs", params={"status": "bogus"})
    assert bad.status_code == 422 and "There is no run status" in bad.text and "bogus" in bad.text
    assert page.http.put("/runs").status_code == 405


def test_assets_are_served_by_ancho(site, page):
    page.sign_in(site.tokens["alice"])
    html = page.http.get("/runs/new").text + page.http.get("/signin").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(ref.startswith(("/", "#")) for ref in refs), refs  # nothing from another host
    for ref in {r.split("?")[0] for r in refs if r.startswith("/static/")}:
        assert page.http.get(ref).status_code == 200, ref


def test_run_page_shows_failures_with_tracebacks(site, page):
    from ..server.conftest import FLAKY, zip_bytes

    with site.client(site.tokens["alice"]) as alice:
        model = upload_id(alice, zip_bytes({"flaky/model.py": FLAKY}), "flaky.zip")
        run_id = submit(
            alice,
            {"model": {"upload": model}, "params": {"rate": 0.3}, "sequences": 200, "seed": 4, "max_failures": 200},
        )
        ok = wait_run(alice, run_id)
        failed = submit(alice, {"model": {"upload": model}, "params": {"rate": 0.3}, "sequences": 200, "seed": 4})
        assert wait_run(alice, failed)["status"] == "failed"
    assert ok["status"] == "succeeded" and ok["failures"] > 20
    page.sign_in(site.tokens["alice"])
    html = page.http.get(f"/runs/{run_id}").text
    assert 'id="failures-h"' in html and "ZeroDivisionError" in html and "unlucky draw" in html
    assert "Traceback" in html and str(site.home) not in html  # paths relative to the model, not the server's folders
    # the first 20, failures in a row with the same exception shown once, and a link to all of them
    groups = re.findall(r"<summary>Sequences? (\d+)(?:–(\d+) \((\d+), the same exception\))?:", html)
    assert html.count('class="failure"') == len(groups) <= 20
    assert sum(int(n or 1) for _, _, n in groups) == 20
    assert all(not last or int(last) - int(first) + 1 == int(n) for first, last, n in groups)
    assert f"/api/v1/runs/{run_id}/failures?limit=10000" in html
    html = page.http.get(f"/runs/{failed}").text
    assert "The run failed" in html and 'class="alert"' in html and 'id="summary-h"' not in html


def test_pages_carry_a_content_security_policy(site, page):
    for r in (page.http.get("/signin"), page.http.get("/no/such/page")):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"


def test_cross_site_form_posts_are_refused(site, page):
    """What a hostile page could send without JavaScript's CORS checks: simple forms, with the victim's cookie."""
    page.sign_in(site.tokens["alice"])
    with site.client(site.tokens["alice"]) as alice:
        model = upload_id(alice, tar_gz({"model.py": GAMBLER}))
        run_id = submit(alice, {"model": {"upload": model}, "sequences": 10**9})
    r = page.http.post(f"/site/runs/{run_id}/cancel", data={"x": "1"})
    assert r.status_code == 403
    r = page.http.post(
        f"/site/runs/{run_id}/cancel", data={"csrf": page.csrf}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    r = page.http.post("/runs/new", data={"kind": "previous", "upload": model, "action": "submit"})
    assert r.status_code == 403
    r = page.http.post(
        "/runs/new",
        data={"kind": "previous", "upload": model, "action": "submit", "csrf": page.csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert page.http.get(f"/api/v1/runs/{run_id}").json()["status"] in ("queued", "running")
    assert page.http.post("/signout", data={"csrf": "forged"}).status_code == 403
    with site.client(site.tokens["alice"]) as alice:
        assert alice.post(f"/runs/{run_id}/cancel").json()["status"] == "cancelled"


def test_run_page_of_a_precision_goal(site, page):
    with site.client(site.tokens["alice"]) as alice:
        model = upload_id(alice, tar_gz({"model.py": GAMBLER}))
        run_id = submit(
            alice,
            {
                "model": {"upload": model},
                "params": {"stake": 3, "goal": 10},
                "sequences": 200,
                "seed": 8,
                "until": "mean(rounds)+-1",
                "max_sequences": 50_000,
            },
        )
        assert wait_run(alice, run_id)["status"] == "succeeded"
        summary = alice.get(f"/runs/{run_id}/summary").json()
    page.sign_in(site.tokens["alice"])
    html = page.http.get(f"/runs/{run_id}").text
    assert "until <code>mean(rounds)+-1</code>, at most 50,000" in html
    assert "Precision goal <code>mean(rounds)+-1</code>: met" in html
    assert f"{summary['sequences']:,} sequences" in html


def test_download_links_work_with_the_session(site, page):
    """The run page's plain links: results, summary, report and notebook, with the session cookie only."""
    with site.client(site.tokens["alice"]) as alice:
        run_id = submit(
            alice, {"model": {"upload": upload_id(alice, tar_gz({"model.py": GAMBLER}))}, "sequences": 300, "seed": 6}
        )
        wait_run(alice, run_id)
        expected_csv = alice.get(f"/runs/{run_id}/results", params={"format": "csv"}).text
    page.sign_in(site.tokens["alice"])
    html = page.http.get(f"/runs/{run_id}").text
    links = re.findall(r'<a href="(/api/v1/runs/[^"]+)" download', html)
    assert len(links) == 5, links
    got = {link: page.http.get(link.replace("&amp;", "&")) for link in links}
    assert all(r.status_code == 200 for r in got.values()), {k: (r.status_code, r.text[:200]) for k, r in got.items()}
    by_end = {k.rsplit("/", 1)[1]: r for k, r in got.items()}
    assert by_end["results?format=csv"].text == expected_csv
    assert by_end["results?format=parquet"].content[:4] == b"PAR1"
    assert by_end["summary"].json()["run"] == run_id
    assert by_end["report.pdf"].content[:5] == b"%PDF-"
    assert by_end["notebook.ipynb"].json()["nbformat"] == 4


def test_odd_new_run_posts_are_answered_with_the_form(site, page):
    """What a hand-made post may send: files where texts belong, unknown actions and kinds, junk parameters."""
    page.sign_in(site.tokens["alice"])
    csrf = page.csrf
    odd = [
        ({"csrf": csrf}, {"inspected": ("x", b"{}"), "action": ("a", b"submit"), "kind": ("k", b"url")}),
        ({"csrf": csrf, "kind": "nonsense", "action": "launch"}, None),
        ({"csrf": csrf, "kind": "url", "url": "https://127.0.0.1:1/" + "x" * 5000, "action": "inspect"}, None),
        (
            {
                "csrf": csrf,
                "kind": "previous",
                "upload": "../../etc",
                "action": "submit",
                "sequences": "-3",
                "seed": "1e9",
            },
            None,
        ),
        (
            {
                "csrf": csrf,
                "kind": "previous",
                "upload": "0" * 64,
                "param-x": "1",
                "inspected": "{not json",
                "action": "submit",
            },
            None,
        ),
        ({"csrf": csrf, "kind": "upload", "action": "inspect"}, {"file": ("m.tar.gz", b"not an archive")}),
    ]
    for data, files in odd:
        r = page.http.post("/runs/new", data=data, files=files)
        assert r.status_code in (200, 422), (data, r.status_code, r.text[:500])
        assert 'id="new-run"' in r.text and 'class="error"' in r.text
    r = page.http.post(
        "/runs/new",
        data={"csrf": csrf, "kind": "upload", "action": "inspect"},
        files={"file": ("m.tar.gz", b"not an archive")},
    )
    assert "archive" in field_error(r.text, "file")


REQUIRED = """
from typing import Literal

import ancho


class Needs(ancho.Model):
    rate: float
    size: Literal[1, 2, 3] = 2

    def sequence(self, rng):
        return {"x": rng.random() * self.rate * self.size}
"""


def test_starting_without_reading_the_parameters(site, page):
    """A required parameter left out shows its field with the model's message; a menu of numbers runs as numbers."""
    page.sign_in(site.tokens["alice"])
    csrf = page.csrf
    r = page.http.post(
        "/runs/new",
        data={"csrf": csrf, "kind": "upload", "sequences": "50", "action": "submit"},
        files={"file": ("needs.tar.gz", tar_gz({"model.py": REQUIRED}))},
    )
    assert r.status_code == 422
    assert "rate" in field_error(r.text, "param-rate")  # the fields came up, the message beside its own
    assert re.search(r'id="param-rate"[^>]*aria-invalid="true" autofocus', r.text)
    upload = re.search(r'<option value="([0-9a-f]{64})" selected>', r.text).group(1)
    inspected = html_text.unescape(re.search(r'name="inspected" value="([^"]*)"', r.text).group(1))
    ok = page.http.post(
        "/runs/new",
        data={
            "csrf": csrf,
            "kind": "previous",
            "upload": upload,
            "inspected": inspected,
            "param-rate": "0.5",
            "param-size": "3",
            "sequences": "50",
            "action": "submit",
        },
    )
    assert ok.status_code == 303, ok.text[-3000:]
    run_id = ok.headers["location"].rsplit("/", 1)[1]
    with site.client(site.tokens["alice"]) as api:
        assert wait_run(api, run_id)["status"] == "succeeded"
        assert api.get(f"/runs/{run_id}/summary").json()["params"] == {"rate": 0.5, "size": 3}


def test_run_page_of_a_batch_model(site, page):
    """The example's batch model from the site: its settings name the block its results depend on, and the page
    draws its output's plots like any run's."""
    from ..conftest import EXAMPLES

    with site.client(site.tokens["alice"]) as alice:
        model = upload_id(alice, tar_gz({"option.py": (EXAMPLES / "option.py").read_text()}))
        run_id = submit(
            alice, {"model": {"upload": model, "entry": "option.py:BSCall"}, "sequences": 50_000, "seed": 2}
        )
        assert wait_run(alice, run_id)["status"] == "succeeded"
        gambler = submit(alice, {"model": {"upload": upload_id(alice, tar_gz({"model.py": GAMBLER}))}, "sequences": 50})
        wait_run(alice, gambler)
    page.sign_in(site.tokens["alice"])
    form = {"csrf": page.csrf, "kind": "previous", "upload": model, "action": "inspect"}
    batch = page.http.post("/runs/new", data={**form, "entry": "option.py:BSCall"}).text
    assert 'id="model-kind">A batch model: each call computes 4,096 sequences' in batch
    assert 'id="model-kind"' not in page.http.post("/runs/new", data=form).text  # its default: one at a time
    html = page.http.get(f"/runs/{run_id}").text
    assert "<dt>Block</dt><dd>4,096 sequences a call" in html
    assert 'id="summary-h"' in html and "<svg" in html and "could not be drawn" not in html
    assert "<dt>Block</dt>" not in page.http.get(f"/runs/{gambler}").text


SLOW_SUMMARY = """
import time
import ancho


class SlowSummary(ancho.Model):
    def sequence(self, rng):
        return {"x": float(rng.random())}

    @ancho.summary
    def slow(self, results):
        time.sleep(6)
        return len(results)
"""


def test_a_run_whose_sequences_are_done_says_it_is_summarising(site, page):
    """Every sequence done, the run still running (its summary, here a summary function, takes seconds): the page
    says so instead of a full bar and nothing else (a long trajectory's summary took as long as its sequences)."""
    page.sign_in(site.tokens["alice"])
    with site.client(site.tokens["alice"]) as alice:
        model = upload_id(alice, tar_gz({"model.py": SLOW_SUMMARY}))
        run_id = submit(alice, {"model": {"upload": model}, "sequences": 500, "seed": 1})
        wait_run(alice, run_id, until=lambda v: v["status"] == "running" and v["progress"]["done"] == 500)
        text = page.http.get(f"/runs/{run_id}").text
        view = alice.get(f"/runs/{run_id}").json()
        assert view["status"] == "running", "the summary ended before the page was read"
        assert "every sequence is done; summarising the results…" in text
        assert wait_run(alice, run_id)["status"] == "succeeded"
    assert "summarising" not in page.http.get(f"/runs/{run_id}").text
