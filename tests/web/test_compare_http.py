"""The run page's "compare with…" view over HTTP: the REST API's numbers as a table and a picture; isolation; bad input.

The model draws x = mu + Z. Two runs with the same seed share Z sequence by
sequence, so their paired difference is exactly the difference of the mus;
with different seeds Welch's interval must hold the true difference
(within 4 standard errors of it, √(2/n)).
"""

from __future__ import annotations

import html as html_text
import math
import re

import httpx
import pytest

from ancho.web.charts import fmt

from ..server.conftest import GAMBLER, submit, tar_gz, upload_id, wait_run
from .conftest import Page

pytestmark = pytest.mark.slow  # a server per session

SHIFT = '''
import ancho


class Shift(ancho.Model):
    """x is mu plus standard normal noise."""

    mu: float = 0.0

    def sequence(self, rng):
        return {"x": self.mu + float(rng.standard_normal()), "u": float(rng.random())}
'''

N = 3000


def api_client(site, user: str) -> httpx.Client:
    return httpx.Client(
        base_url=site.url + "/api/v1", timeout=60, headers={"Authorization": f"Bearer {site.tokens[user]}"}
    )


@pytest.fixture(scope="module")
def runs(site) -> dict[str, str]:
    """Alice's runs of Shift (mu 0 and 0.5 with seed 5, mu 0.5 with seed 6), a Gambler run of hers, and Bob's Shift run."""
    out = {}
    with api_client(site, "alice") as alice, api_client(site, "bob") as bob:
        shift = upload_id(alice, tar_gz({"model.py": SHIFT}), "shift.tar.gz")
        gambler = upload_id(alice, tar_gz({"model.py": GAMBLER}), "gambler.tar.gz")
        for key, body in {
            "a": {"params": {"mu": 0.0}, "seed": 5, "targets": ["x>0"]},
            "b": {"params": {"mu": 0.5}, "seed": 5},
            "c": {"params": {"mu": 0.5}, "seed": 6},
        }.items():
            out[key] = submit(alice, {"model": {"upload": shift}, "sequences": N, **body})
        out["gambler"] = submit(alice, {"model": {"upload": gambler}, "sequences": 200, "seed": 5})
        bob_shift = upload_id(bob, tar_gz({"model.py": SHIFT}), "shift.tar.gz")
        out["bob"] = submit(bob, {"model": {"upload": bob_shift}, "sequences": N, "params": {"mu": 0.5}, "seed": 5})
        for key, run_id in out.items():
            assert wait_run(bob if key == "bob" else alice, run_id)["status"] == "succeeded"
    return out


@pytest.fixture
def alice_page(site):
    p = Page(site)
    p.sign_in(site.tokens["alice"])
    yield p
    p.close()


def cells(html: str) -> dict[str, list[str]]:
    """The comparison table's rows: first cell → the other cells' text."""
    body = re.search(r'<table class="comparison">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        texts = [
            html_text.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        rows[texts[0]] = texts[1:]
    return rows


def test_paired_comparison_shows_the_api_numbers(site, runs, alice_page):
    r = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": runs["b"]})
    assert r.status_code == 200, r.text
    assert "<strong>Paired:</strong>" in r.text
    with api_client(site, "alice") as api:
        expected = api.get(f"/runs/{runs['a']}/compare/{runs['b']}", params={"target": "x>0"}).json()
    assert expected["paired"] is True
    table = cells(r.text)
    # common random numbers: every sequence's x moved by exactly 0.5, so the interval is 0.5 itself
    x = expected["outputs"]["x"]
    assert x["difference"] == pytest.approx(0.5, abs=1e-9) and x["ci95"] == pytest.approx([0.5, 0.5], abs=1e-9)
    assert table["x"][2] == "0.5" and table["x"][3] == "0.5 – 0.5" and table["x"][-1] == "significant"
    # u does not depend on mu: the same in both runs, difference 0 (no interval to speak of: var 0)
    assert expected["outputs"]["u"]["difference"] == 0
    assert table["u"][-1] == "not significant"
    # the run's own target is compared too: P(x>0) from 1/2 to Φ(0.5) = 0.6915 (within 4 standard errors)
    t = expected["targets"][0]
    assert t["expr"] == "x>0"
    assert abs(t["difference"] - (0.6914625 - 0.5)) <= 4 * math.sqrt(0.6915 * 0.3085 / N)
    row = table["P(x>0)"]
    assert row[0] == f"{t['probability_a'] * 100:.2f}%" and row[2] == f"{t['difference'] * 100:+.2f} pts"
    # the picture: one focusable row per output and target, the significant ones marked in class and words
    svg = re.search(r'<svg class="chart"[^>]*aria-label="Differences between the runs\..*?</svg>', r.text, re.S).group(
        0
    )
    labels = re.findall(r'<g class="probe" tabindex="0" role="img" aria-label="([^"]+)"', svg)
    assert len(labels) == 3
    assert sum("; significant" in html_text.unescape(a) for a in labels) == svg.count('class="diff significant"') == 2
    assert f"/api/v1/runs/{runs['a']}/compare/{runs['b']}?target=x%3E0" in r.text


def test_different_seeds_are_independent_and_welch(site, runs, alice_page):
    r = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": runs["c"]})
    assert r.status_code == 200, r.text
    assert "<strong>Independent:</strong>" in r.text and "Welch" in r.text and "<strong>Paired:</strong>" not in r.text
    with api_client(site, "alice") as api:
        expected = api.get(f"/runs/{runs['a']}/compare/{runs['c']}").json()
    x = expected["outputs"]["x"]
    assert expected["paired"] is False and abs(x["difference"] - 0.5) <= 4 * math.sqrt(2 / N)
    # Welch's half-width: 1.96·√(2/n) for two unit variances (the sample variances within 15%)
    assert abs((x["ci95"][1] - x["ci95"][0]) / 2 - 1.96 * math.sqrt(2 / N)) <= 0.15 * 1.96 * math.sqrt(2 / N)
    table = cells(r.text)
    assert table["x"][3] == f"{fmt(x['ci95'][0])} – {fmt(x['ci95'][1])}"
    assert "Variance reduction" not in r.text  # only paired comparisons have one


def test_the_picker_lists_only_the_users_runs_of_the_same_model(site, runs, alice_page):
    r = alice_page.http.get(f"/runs/{runs['a']}/compare")
    assert r.status_code == 200
    offered = set(re.findall(r'<option value="([0-9a-f]+)"', r.text))
    assert {runs["b"], runs["c"]} <= offered  # (the session's other tests may add more of Alice's Shift runs)
    assert not offered & {runs["a"], runs["gambler"], runs["bob"]}  # not itself, not the Gambler run, not Bob's
    with api_client(site, "alice") as alice:
        model = alice.get(f"/runs/{runs['a']}").json()["model"]
        for run_id in offered:  # every run offered is one of hers, of the same model, ended well
            view = alice.get(f"/runs/{run_id}").json()
            assert view["model"] == model and view["status"] == "succeeded", view
    assert "(same seed: paired)" in r.text
    run_page = alice_page.http.get(f"/runs/{runs['a']}")
    assert f'href="/runs/{runs["a"]}/compare"' in run_page.text


def test_other_users_and_other_models_get_a_clear_error(site, runs, alice_page):
    theirs = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": runs["bob"]})
    assert theirs.status_code == 404 and "no run" in theirs.text and "Paired" not in theirs.text
    assert 'id="compare-error"' in theirs.text
    other_model = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": runs["gambler"]})
    assert other_model.status_code == 422 and "different models" in html_text.unescape(other_model.text)
    missing = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": "0" * 12})
    assert missing.status_code == 404 and 'id="compare-error"' in missing.text
    bad_target = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": runs["b"], "target": "nope>1"})
    assert bad_target.status_code == 422 and "nope" in html_text.unescape(bad_target.text)
    too_long = alice_page.http.get(f"/runs/{runs['a']}/compare", params={"with": "x" * 500})
    assert too_long.status_code == 422 and "text/html" in too_long.headers["content-type"]
    # Bob cannot open Alice's run's comparison, nor compare his run with hers
    bob = Page(site)
    try:
        bob.sign_in(site.tokens["bob"])
        assert bob.http.get(f"/runs/{runs['a']}/compare", params={"with": runs["b"]}).status_code == 404
        mine = bob.http.get(f"/runs/{runs['bob']}/compare", params={"with": runs["a"]})
        assert mine.status_code == 404 and re.findall(r'<option value="([0-9a-f]+)"', mine.text) == []
    finally:
        bob.close()
    anonymous = httpx.get(f"{site.url}/runs/{runs['a']}/compare", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/signin")
