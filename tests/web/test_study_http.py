"""The site's study pages over plain HTTP (a browser without JavaScript), on the real session server.

Isolation (another user's study is a 404 page and missing from their list),
the new-study form's plain post and its errors next to their fields (never a
5xx), the study page's numbers against the gambler's closed form, sorting,
pictures and the comparison with a baseline point.
"""

from __future__ import annotations

import html
import re
import time

import pytest

from ..server.conftest import GAMBLER, SLOW, tar_gz, upload_id
from .test_site_http import field_error

pytestmark = pytest.mark.slow


def ruin(stake: int, goal: int, p: float) -> float:
    """The closed-form probability of going broke from ``stake`` before reaching ``goal``."""
    if p == 0.5:
        return 1 - stake / goal
    r = (1 - p) / p
    return 1 - (1 - r**stake) / (1 - r**goal)


def wait_study(api, study_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = api.get(f"/studies/{study_id}").json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return view
        assert time.monotonic() < deadline, f"study {study_id} still {view['status']}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def grid_study(site) -> str:
    """Alice's finished grid study: p over three values, stake 3, goal 10, 4,000 sequences per point."""
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": GAMBLER}))
        body = {
            "model": {"upload": upload, "entry": "model.py:Gambler"},
            "design": {"grid": {"p": [0.45, 0.5, 0.55]}},
            "params": {"stake": 3, "goal": 10},
            "sequences": 4000,
            "seed": 7,
            "targets": ["rounds>=30"],
        }
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        assert wait_study(api, r.json()["id"])["status"] == "succeeded"
        return r.json()["id"]


def cells(page_html: str) -> list[list[str]]:
    """The points table's rows as cell texts."""
    table = re.search(r'<table class="points">.*?<tbody>(.*?)</tbody>', page_html, re.S).group(1)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]


def test_another_users_study_is_not_found_and_not_listed(site, page, grid_study):
    page.sign_in(site.tokens["bob"])
    assert page.http.get("/studies").status_code == 200
    assert grid_study not in page.http.get("/studies").text
    r = page.http.get(f"/studies/{grid_study}")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "not yours" in r.text
    assert page.http.get(f"/studies/{grid_study}", params={"baseline": "0"}).status_code == 404
    r = page.http.post(f"/site/studies/{grid_study}/cancel", data={"csrf": page.csrf})
    assert r.status_code == 404


def test_pages_need_a_session_and_cancel_needs_csrf(site, page, grid_study):
    for path in ("/studies", "/studies/new", f"/studies/{grid_study}"):
        r = page.http.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    page.sign_in(site.tokens["alice"])
    assert page.http.post(f"/site/studies/{grid_study}/cancel").status_code == 403


def test_study_page_shows_every_point_against_the_closed_form(site, page, grid_study):
    page.sign_in(site.tokens["alice"])
    listed = page.http.get("/studies").text
    assert f'href="/studies/{grid_study}"' in listed and 'href="/studies"' in listed  # the nav link too
    r = page.http.get(f"/studies/{grid_study}")
    assert r.status_code == 200
    with site.client(site.tokens["alice"]) as api:
        summary = api.get(f"/studies/{grid_study}/summary").json()
    rows = cells(r.text)
    assert [row[0] for row in rows] == ["0", "1", "2"]
    for row, point in zip(rows, summary["points"]):
        assert f'<a href="/runs/{point["run"]}">{point["point"]}</a>' in r.text
        p = point["params"]["p"]
        won = point["outputs"]["won"]
        assert row[1] == f"{p:g}" and row[2] == f"{won['mean']:.4g}"
        exact = 1 - ruin(3, 10, p)
        assert abs(won["mean"] - exact) < 4 * won["sem"], (p, won, exact)  # within 4 standard errors
        target = point["targets"][0]
        assert f"{target['probability'] * 100:.2f}%" in row
    # one varied parameter: each output's mean and each target's probability against it, with 95% bands
    titles = set(re.findall(r'<svg class="chart"[^>]*><title>([^<]+)</title>', r.text))
    assert {"Mean of won against p", "Mean of rounds against p", "Probability of rounds&gt;=30 against p"} <= titles
    assert r.text.count('<polygon class="band"') == 3
    # a finished study links its report and notebook, which the signed-in session downloads
    for link in (f"/api/v1/studies/{grid_study}/report.pdf", f"/api/v1/studies/{grid_study}/notebook.ipynb"):
        assert f'href="{link}"' in r.text
        got = page.http.get(link)
        assert got.status_code == 200 and got.content[:5] in (b"%PDF-", b'{\n "c')


def test_points_table_sorts_on_the_server(site, page, grid_study):
    page.sign_in(site.tokens["alice"])
    down = cells(page.http.get(f"/studies/{grid_study}", params={"sort": "won.mean", "order": "desc"}).text)
    means = [float(row[2]) for row in down]
    assert means == sorted(means, reverse=True) and [row[1] for row in down] == ["0.55", "0.5", "0.45"]
    # an unknown column or order is the point order, not an error
    odd = page.http.get(f"/studies/{grid_study}", params={"sort": "<script>", "order": "x", "page": "-4"})
    assert odd.status_code == 200 and [row[0] for row in cells(odd.text)] == ["0", "1", "2"]


def test_comparison_with_a_baseline_point(site, page, grid_study):
    page.sign_in(site.tokens["alice"])
    r = page.http.get(f"/studies/{grid_study}", params={"baseline": "1"})
    assert r.status_code == 200
    with site.client(site.tokens["alice"]) as api:
        summary = api.get(f"/studies/{grid_study}/summary").json()
    table = re.search(r'<table class="comparison">.*?<tbody>(.*?)</tbody>', r.text, re.S).group(1)
    shown = {int(n) for n in re.findall(r'<th scope="row">(\d+)</th>', table)}
    assert shown == {0, 2}
    # p = 0.45 and 0.55 against 0.5: the chance of winning differs by far more than its error (closed form)
    base = 1 - ruin(3, 10, 0.5)
    for k in (0, 2):
        exact = (1 - ruin(3, 10, summary["points"][k]["params"]["p"])) - base
        assert abs(exact) > 0.05
    assert table.count("(significant)") >= 2
    assert "won: each point minus point 1" in r.text
    for bad, says in (("abc", "is not a point"), ("7", "is not a point of study"), ("-1", "is not a point")):
        r = page.http.get(f"/studies/{grid_study}", params={"baseline": bad})
        assert r.status_code == 200 and says in html.unescape(r.text), bad


def new_study_post(page, data: dict, files=None):
    return page.http.post("/studies/new", data={"csrf": page.csrf, **data}, files=files)


def test_new_study_form_posts_without_javascript(site, page):
    """Upload and read the parameters, a bad design shown next to its field, then the study and its page."""
    page.sign_in(site.tokens["alice"])
    form = page.http.get("/studies/new")
    assert form.status_code == 200 and "How much to run at each point" in form.text and ">Start study<" in form.text
    run_form = page.http.get("/runs/new").text  # the same settings part, in the run's words
    assert "3. How much to run<" in run_form and ">Start run<" in run_form and "Keep running until" in run_form
    archive = {"file": ("g.tar.gz", tar_gz({"model.py": GAMBLER}))}
    read = new_study_post(page, {"kind": "upload", "action": "inspect", "sequences": "500"}, archive)
    assert read.status_code == 200 and 'id="design-p"' in read.text
    upload = re.search(r'<option value="([0-9a-f]{64})" selected', read.text).group(1)
    inspected = html.unescape(re.search(r'name="inspected" value="([^"]*)"', read.text).group(1))
    base = {"kind": "previous", "upload": upload, "inspected": inspected, "action": "submit", "sequences": "500"}
    base.update({"param-stake": "3", "param-goal": "10", "param-p": "0.5", "seed": "5"})
    cases = [
        ({"design_kind": "grid"}, "design", "at least one"),
        ({"design_kind": "lhs", "design-p": "0.6:0.4", "design_n": "8"}, "design-p", "low (0.6) must be below"),
        ({"design_kind": "sobol", "design-p": "0.4:0.6", "design_n": "6"}, "design_n", "power of two"),
        ({"design_kind": "random", "design-p": "0.4:x", "design_n": "8"}, "design-p", "LOW:HIGH"),
        ({"design_kind": "random", "design-p": "0.4:0.6", "design_n": "zero"}, "design_n", "whole number"),
        ({"design_kind": "grid", "design-stake": "3, three"}, "design-stake", "stake"),
        ({"design_kind": "grid", "design-p": "0.4", "baseline": "5"}, "baseline", "has 1 points"),
        ({"design_kind": "nonsense", "design-p": "0.4"}, "design_kind", "Choose a design kind"),
        ({"design_kind": "grid", "design-p": "0.4", "sequences": "0"}, "sequences", "at least 1"),
    ]
    for extra, field, says in cases:
        r = new_study_post(page, {**base, **extra})
        assert r.status_code == 422, (extra, r.status_code)
        assert says in field_error(r.text, field), (extra, field_error(r.text, field))
        assert 'value="' + html.escape(extra.get(field, "")) + '"' in r.text or field in ("design", "design_kind")
    ok = new_study_post(page, {**base, "design_kind": "grid", "design-p": "0.45, 0.55", "baseline": "1"})
    assert ok.status_code == 303, field_error(ok.text, "form")
    target = ok.headers["location"]
    assert re.fullmatch(r"/studies/s[0-9a-f]{11}\?baseline=1", target)
    study_id = target.split("/")[2].split("?")[0]
    with site.client(site.tokens["alice"]) as api:
        view = wait_study(api, study_id)
    assert view["status"] == "succeeded" and view["design"]["parameters"] == ["p"] and view["points"] == 2
    assert view["seed"] == 5 and view["sequences"] == 500
    with site.client(site.tokens["alice"]) as api:
        points = api.get(f"/studies/{study_id}/summary").json()["points"]
    assert [p["params"] for p in points] == [{"stake": 3, "goal": 10, "p": 0.45}, {"stake": 3, "goal": 10, "p": 0.55}]
    page_html = page.http.get(target).text
    assert re.findall(r'<th scope="row">(\d+)</th>', page_html.split('class="comparison"')[1]) == ["0"]


def test_two_parameters_give_a_heatmap_and_sobol_gives_sensitivity(site, page):
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": GAMBLER}))
        model = {"upload": upload, "entry": "model.py:Gambler"}
        grid = {"grid": {"p": [0.45, 0.55], "stake": [2, 4, 6]}}
        sobol = {"sobol": {"n": 8, "ranges": {"p": [0.4, 0.6], "stake": [1, 9]}}}
        ids = []
        for design in (grid, sobol):
            r = api.post("/studies", json={"model": model, "design": design, "params": {"goal": 10}, "sequences": 300})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for study_id in ids:
            assert wait_study(api, study_id)["status"] == "succeeded"
    page.sign_in(site.tokens["alice"])
    heat = page.http.get(f"/studies/{ids[0]}").text
    assert "Mean of won over p and stake" in heat and heat.count('<rect class="heat"') == 2 * 6  # two outputs
    sens = page.http.get(f"/studies/{ids[1]}").text
    assert 'id="sensitivity-h"' in sens and "Sensitivity of won" in sens
    # each varied parameter's S1 and ST with an interval that holds the value, for every output
    table = re.search(r'<h3>won</h3>.*?<table class="sensitivity">.*?<tbody>(.*?)</tbody>', sens, re.S).group(1)
    rows = dict(re.findall(r'<th scope="row">(\w+)</th>(.*?)</tr>', table, re.S))
    assert set(rows) == {"p", "stake"}
    for name, row in rows.items():
        s1, s1_ci, st, st_ci = [
            html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)
        ]
        for value, ci in ((s1, s1_ci), (st, st_ci)):
            low, high = (float(x.replace(",", "")) for x in ci.split(" – "))
            assert low <= float(value) <= high, (name, value, ci)
    assert "replication noise is" in sens and sens.count("<svg") >= 2 + 2  # two pictures, two sensitivity charts


WALK = """
import ancho
import numpy as np


class Walk(ancho.Model):
    \"\"\"Standard normal noise around a straight line: the mean path at step t is drift * t.\"\"\"

    drift: float = 0.0
    steps: int = 10

    def sequence(self, rng):
        return {"walk": (self.drift * np.arange(self.steps) + rng.standard_normal(self.steps)).tolist()}
"""


def test_trajectory_outputs_draw_each_points_mean_path(site, page):
    sequences = 400
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": WALK}))
        body = {
            "model": {"upload": upload},
            "design": {"grid": {"drift": [0, 1, 2]}},
            "sequences": sequences,
            "seed": 2,
        }
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        assert wait_study(api, r.json()["id"])["status"] == "succeeded"
    page.sign_in(site.tokens["alice"])
    text = html.unescape(page.http.get(f"/studies/{r.json()['id']}").text)
    assert "Mean path of walk at each point" in text and "(stronger lines for higher drift)" in text
    assert re.findall(r'<text class="tick key"[^>]*>([^<]+)</text>', text) == ["drift = 0", "drift = 2"]
    found = re.findall(r"<title>point (\d), drift = ([\d.]+): last mean (-?[\d.]+)</title>", text)
    assert [(k, float(d)) for k, d, _ in found] == [("0", 0.0), ("1", 1.0), ("2", 2.0)]
    for _, drift, last in found:  # the mean of 400 standard normals around 9 * drift: within 4 standard errors
        assert abs(float(last) - 9 * float(drift)) < 4 / sequences**0.5, (drift, last)


def test_a_running_study_is_followed_and_cancelled_from_its_page(site, page):
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": SLOW}))
        body = {
            "model": {"upload": upload},
            "design": {"grid": {"seconds": [0.05, 0.06]}},
            "sequences": 20000,
            "seed": 1,
        }
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        study_id = r.json()["id"]
    page.sign_in(site.tokens["alice"])
    live = page.http.get(f"/studies/{study_id}", params={"baseline": "0"})
    assert live.status_code == 200
    assert f'data-study-live="{study_id}"' in live.text and "/static/studies.js" in live.text
    assert "compared once the study has ended" in live.text
    assert page.http.post(f"/site/studies/{study_id}/cancel", data={"csrf": "wrong"}).status_code == 403
    r = page.http.post(f"/site/studies/{study_id}/cancel", data={"csrf": page.csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/studies/{study_id}"
    with site.client(site.tokens["alice"]) as api:
        assert wait_study(api, study_id)["status"] == "cancelled"
    ended = page.http.get(f"/studies/{study_id}").text
    assert "The study was cancelled" in ended and 'data-study-live=""' in ended and "Cancel study" not in ended


def test_morris_sensitivity_is_shown_with_mu_star(site, page):
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": GAMBLER}))
        design = {"morris": {"trajectories": 6, "levels": 4, "ranges": {"p": [0.4, 0.6], "stake": [1, 9]}}}
        body = {"model": {"upload": upload}, "design": design, "params": {"goal": 10}, "sequences": 300, "seed": 8}
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        assert wait_study(api, r.json()["id"])["status"] == "succeeded"
    page.sign_in(site.tokens["alice"])
    text = html.unescape(page.http.get(f"/studies/{r.json()['id']}").text)
    table = re.search(r"<h3>won</h3>.*?<table class=\"sensitivity\">(.*?)</table>", text, re.S).group(1)
    assert "mu*" in table and "sigma" in table
    assert set(re.findall(r'<th scope="row">(\w+)</th>', table)) == {"p", "stake"}
    # with three or more parameters it would be parallel coordinates; two sampled ones give a heatmap of dots
    assert '<circle class="heat"' in text and "p mu_star:" in text
