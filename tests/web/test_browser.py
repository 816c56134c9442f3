"""The site in real headless Chromium against a real ``ancho serve``: what a person does, click by click.

Every test saves screenshots of the pages it visits (see conftest.ARTIFACTS).
"""

from __future__ import annotations

import csv
import io
import time

import pytest

from ..conftest import need_module

need_module("selenium", "pip install selenium (the test extra)")  # skips the module here, fails under CI
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from ..server.conftest import GAMBLER, SLOW, submit, tar_gz, upload_id, wait_run
from .conftest import screenshot, sign_in, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def visible_error(driver, field_id: str) -> str:
    box = driver.find_element(By.ID, f"{field_id}-error")
    return box.text if box.is_displayed() else ""


def test_sign_in_upload_run_and_explore(site, browser, models_dir, artifacts):
    sign_in(browser, site, site.tokens["alice"])
    screenshot(browser, artifacts, "01-runs")
    browser.find_element(By.LINK_TEXT, "New run").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "new-run"))
    browser.find_element(By.ID, "file").send_keys(str(models_dir / "gambler.tar.gz"))
    browser.find_element(By.ID, "inspect").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "param-stake"), message="the parameter form")
    # the parameters with their types and defaults, from the model itself
    assert text(browser, "#model-name") == "Gambler"
    assert "Gambler's ruin" in text(browser, "#model-doc")
    stake = browser.find_element(By.ID, "param-stake")
    assert stake.get_attribute("value") == "10"
    assert "int" in browser.find_element(By.CSS_SELECTOR, "label[for=param-stake]").text
    assert browser.find_element(By.ID, "param-p").get_attribute("value") == "0.5"
    for name, value in (("stake", "3"), ("goal", "10"), ("p", "0.45")):
        field = browser.find_element(By.ID, f"param-{name}")
        field.clear()
        field.send_keys(value)
    seq = browser.find_element(By.ID, "sequences")
    seq.clear()
    seq.send_keys("3000")
    browser.find_element(By.ID, "seed").send_keys("3")
    browser.find_element(By.ID, "targets").send_keys("rounds>=30")
    screenshot(browser, artifacts, "02-new-run-filled")
    browser.find_element(By.ID, "submit").click()
    wait_for(
        browser, lambda d: "/runs/" in d.current_url and not d.current_url.endswith("/new"), message="the run page"
    )
    run_id = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    # the page follows the run and redraws itself with the results when it ends
    wait_for(browser, lambda d: d.find_elements(By.ID, "summary-h"), timeout=180, message="the summary")
    assert text(browser, ".heading .badge") == "succeeded"
    screenshot(browser, artifacts, "03-run-succeeded")

    with site.client(site.tokens["alice"]) as api:
        summary = api.get(f"/runs/{run_id}/summary").json()
        expected_csv = api.get(f"/runs/{run_id}/results", params={"format": "csv"}).text
    assert (
        summary["params"] == {"stake": 3, "goal": 10, "p": 0.45}
        and summary["sequences"] == 3000
        and summary["seed"] == 3
    )
    rows = {
        r.find_element(By.TAG_NAME, "th").text: r.text
        for r in browser.find_elements(By.CSS_SELECTOR, "table.summary tbody tr")
    }
    assert set(rows) == {"won", "rounds"}
    assert f"{summary['outputs']['rounds']['mean']:.4g}" in rows["rounds"]
    target_row = text(browser, "table.targets tbody tr")
    assert "rounds>=30" in target_row and f"{summary['targets'][0]['probability'] * 100:.2f}%" in target_row
    custom = text(browser, "#custom-h + dl")
    assert "median_rounds_when_won" in custom
    # plots: a histogram and a running mean per output, and the target probabilities
    titles = [t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "svg.chart > title")]
    assert {
        "Distribution of won",
        "Distribution of rounds",
        "Running mean of won",
        "Running mean of rounds",
        "Target probabilities",
    } <= set(titles)
    bars = browser.find_elements(By.CSS_SELECTOR, "svg[aria-label^='Distribution of rounds'] rect.bar")
    assert (
        sum(
            int(
                b.find_element(By.TAG_NAME, "title")
                .get_attribute("textContent")
                .split(": ")[1]
                .split()[0]
                .replace(",", "")
            )
            for b in bars
        )
        == 3000
    )
    assert browser.find_elements(By.CSS_SELECTOR, "svg[aria-label^='Running mean of rounds'] polygon.band")
    # downloads: the CSV link gives every sequence's outputs, the same bytes as the REST API
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".downloads a")}
    assert {"Results (CSV)", "Results (Parquet)", "Report (PDF)", "Notebook (Jupyter)"} <= set(links)
    assert links["Report (PDF)"].endswith(f"/api/v1/runs/{run_id}/report.pdf")
    browser.find_element(By.LINK_TEXT, "Results (CSV)").click()
    path = wait_for(browser, lambda d: [p for p in d.downloads.glob("*.csv")], message="the CSV download")[0]
    wait_for(browser, lambda d: path.exists() and path.read_text() == expected_csv, timeout=30, message="the whole CSV")
    table = list(csv.reader(io.StringIO(path.read_text())))
    assert table[0] == ["sequence", "won", "rounds"] and len(table) == 3001
    # and the run is in the list, finished
    browser.find_element(By.LINK_TEXT, "Runs").click()
    row = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-run='{run_id}']"))[0]
    assert "succeeded" in row.text and "3,000 / 3,000" in row.text
    screenshot(browser, artifacts, "04-runs-with-one")


def test_wrong_token_shows_a_message(site, browser, artifacts):
    browser.get(site.url + "/runs")
    wait_for(browser, lambda d: "/signin" in d.current_url)
    screenshot(browser, artifacts, "05-signin")
    field = browser.find_element(By.ID, "token")
    field.send_keys("anc_mistyped-token")
    field.send_keys(Keys.ENTER)
    error = wait_for(browser, lambda d: d.find_elements(By.ID, "token-error"))[0]
    assert "not valid" in error.text
    assert browser.find_element(By.ID, "token").get_attribute("aria-invalid") == "true"
    assert not browser.get_cookie("ancho_session")
    screenshot(browser, artifacts, "06-signin-wrong-token")


def test_bad_input_shows_messages_next_to_the_fields(site, browser, models_dir, artifacts):
    sign_in(browser, site, site.tokens["alice"])
    browser.get(site.url + "/runs/new")
    browser.find_element(By.ID, "submit").click()  # no archive chosen yet
    assert "Choose an archive" in wait_for(browser, lambda d: visible_error(d, "file"))
    browser.find_element(By.ID, "file").send_keys(str(models_dir / "gambler.tar.gz"))
    browser.find_element(By.ID, "inspect").click()
    stake = wait_for(browser, lambda d: d.find_elements(By.ID, "param-stake"))[0]
    stake.clear()
    stake.send_keys("lots")
    browser.find_element(By.ID, "submit").click()
    message = wait_for(browser, lambda d: visible_error(d, "param-stake"), message="the stake error")
    assert "stake" in message and "int" in message and "'lots'" in message
    stake = browser.find_element(By.ID, "param-stake")  # the form came back from the server, as it was sent
    assert stake.get_attribute("value") == "lots"
    assert stake.get_attribute("aria-invalid") == "true"
    assert browser.switch_to.active_element == stake  # focus moves to the field at fault
    screenshot(browser, artifacts, "07-bad-parameter")
    stake.clear()
    stake.send_keys("3")
    browser.find_element(By.ID, "targets").send_keys("rounds>=>30")
    browser.find_element(By.ID, "submit").click()
    assert "line 1" in wait_for(browser, lambda d: visible_error(d, "targets"), message="the target error")
    assert not visible_error(browser, "param-stake")
    browser.find_element(By.ID, "targets").clear()
    browser.find_element(By.ID, "max_sequences").send_keys("500")
    browser.find_element(By.ID, "submit").click()
    assert "max_sequences" in wait_for(
        browser, lambda d: visible_error(d, "max_sequences"), message="the max_sequences error"
    )
    assert "/runs/new" in browser.current_url  # nothing was submitted
    screenshot(browser, artifacts, "08-bad-run-settings")
    # a different model than the one whose parameters are shown: its own parameters come up first
    browser.find_element(By.ID, "max_sequences").clear()
    browser.find_element(By.ID, "entry").send_keys("model.py:Gambler")
    browser.find_element(By.ID, "submit").click()
    assert "model changed" in wait_for(browser, lambda d: visible_error(d, "form"), message="the changed-model note")
    assert browser.find_element(By.ID, "param-stake").get_attribute("value") == "10"  # the form was rebuilt
    assert "/runs/new" in browser.current_url
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "progress-h"), message="the run page")


def test_entry_that_does_not_exist(site, browser, models_dir):
    sign_in(browser, site, site.tokens["alice"])
    browser.get(site.url + "/runs/new")
    browser.find_element(By.ID, "file").send_keys(str(models_dir / "gambler.tar.gz"))
    browser.find_element(By.ID, "entry").send_keys("nothere.py:Model")
    browser.find_element(By.ID, "inspect").click()
    assert "nothere.py" in wait_for(browser, lambda d: visible_error(d, "entry"), message="the entry error")
    browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=url]").click()
    assert not browser.find_element(By.ID, "file").is_displayed()
    url = browser.find_element(By.ID, "url")
    url.send_keys("ftp://example.org/model.tar.gz")
    browser.find_element(By.ID, "inspect").click()
    assert "ftp" in wait_for(browser, lambda d: visible_error(d, "url"), message="the URL error")
    # an earlier upload can be picked again
    browser.get(site.url + "/runs/new")
    browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=previous]").click()
    Select(browser.find_element(By.ID, "upload")).select_by_index(0)
    browser.find_element(By.ID, "inspect").click()
    assert wait_for(browser, lambda d: d.find_elements(By.ID, "param-goal"))


def test_a_new_run_without_javascript(site, browser, models_dir, artifacts):
    """The new-run form is the server's: with scripts off, upload, read the parameters, fix a bad value, run."""
    sign_in(browser, site, site.tokens["alice"])
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(site.url + "/runs/new")
        browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=url]").click()
        assert (
            browser.find_element(By.ID, "url").is_displayed() and not browser.find_element(By.ID, "file").is_displayed()
        )
        browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=upload]").click()
        browser.find_element(By.ID, "file").send_keys(str(models_dir / "gambler.tar.gz"))
        browser.find_element(By.ID, "inspect").click()
        stake = wait_for(browser, lambda d: d.find_elements(By.ID, "param-stake"), message="the parameter form")[0]
        stake.clear()
        stake.send_keys("many")
        seq = browser.find_element(By.ID, "sequences")
        seq.clear()
        seq.send_keys("400", Keys.ENTER)  # Enter starts the run once its parameters are shown
        assert "'many'" in wait_for(browser, lambda d: visible_error(d, "param-stake"), message="the stake error")
        screenshot(browser, artifacts, "18-no-script-bad-parameter")
        stake = browser.find_element(By.ID, "param-stake")
        stake.clear()
        stake.send_keys("2")
        browser.find_element(By.ID, "submit").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "progress-h"), message="the run page")
        run_id = browser.current_url.rstrip("/").rsplit("/", 1)[1]
        with site.client(site.tokens["alice"]) as api:
            assert wait_run(api, run_id)["status"] == "succeeded"
            summary = api.get(f"/runs/{run_id}/summary").json()
        assert summary["params"]["stake"] == 2 and summary["sequences"] == 400
        browser.get(f"{site.url}/runs/{run_id}")
        assert browser.find_elements(By.ID, "summary-h")
        # the page's script did not run: it would have put each time in the reader's zone, the UTC one as its title
        assert browser.find_element(By.CSS_SELECTOR, "time[data-ts]").get_attribute("title") == ""
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_live_progress_and_cancel(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        model = upload_id(api, tar_gz({"model.py": SLOW}), "slow.tar.gz")
        run_id = submit(api, {"model": {"upload": model}, "params": {"seconds": 0.02}, "sequences": 100_000, "seed": 1})
        wait_run(api, run_id, until=lambda v: v["status"] == "running" and v["progress"]["done"] > 0)
    sign_in(browser, site, site.tokens["alice"])
    # the list refreshes the rows of runs still running
    row = f"tr[data-run='{run_id}'] [data-count]"
    listed = wait_for(browser, lambda d: text(d, row))
    wait_for(browser, lambda d: text(d, row) != listed, message="the run list to refresh")
    browser.get(f"{site.url}/runs/{run_id}")
    rate = wait_for(browser, lambda d: text(d, "[data-rate]"), message="sequences/s")
    assert rate.endswith("sequences/s")
    assert wait_for(browser, lambda d: text(d, "[data-eta]")).endswith("left")
    first = int(
        browser.find_element(By.CSS_SELECTOR, "[data-progress]").get_attribute("aria-valuenow").split(".")[0] or 0
    )
    done_text = text(browser, "[data-count]")
    wait_for(browser, lambda d: text(d, "[data-count]") != done_text, message="progress to move")
    assert first < 100
    screenshot(browser, artifacts, "09-run-live")
    browser.find_element(By.CSS_SELECTOR, "form.cancel button").click()
    wait_for(browser, lambda d: text(d, ".heading .badge") == "cancelled", message="the cancelled status")
    assert not browser.find_elements(By.CSS_SELECTOR, "form.cancel")
    screenshot(browser, artifacts, "10-run-cancelled")
    # the list filters by status
    browser.get(f"{site.url}/runs?status=cancelled")
    assert browser.find_elements(By.CSS_SELECTOR, f"tr[data-run='{run_id}']")
    browser.get(f"{site.url}/runs?status=succeeded")
    assert not browser.find_elements(By.CSS_SELECTOR, f"tr[data-run='{run_id}']")


def test_another_users_runs_stay_hidden(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        run_id = submit(
            api, {"model": {"upload": upload_id(api, tar_gz({"model.py": GAMBLER}))}, "sequences": 20, "seed": 2}
        )
    sign_in(browser, site, site.tokens["bob"])
    assert run_id not in browser.find_element(By.TAG_NAME, "body").text
    assert "You have no runs yet" in text(browser, "main") or not browser.find_elements(
        By.CSS_SELECTOR, f"tr[data-run='{run_id}']"
    )
    screenshot(browser, artifacts, "11-bob-runs")
    browser.get(f"{site.url}/runs/{run_id}")
    assert text(browser, "main h1") == "Not found"
    screenshot(browser, artifacts, "12-not-found")


def test_keyboard_only(site, browser):
    browser.get(site.url + "/signin")
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "token"  # autofocus
    active.send_keys(site.tokens["alice"], Keys.ENTER)
    wait_for(browser, lambda d: d.current_url.endswith("/runs"))
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    skip = browser.switch_to.active_element
    assert skip.text == "Skip to content"
    # tab through the page: every control is reachable, and focus is visible
    seen = []
    for _ in range(12):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        el = browser.switch_to.active_element
        seen.append(el.text or el.get_attribute("aria-label") or el.tag_name)
        outline = browser.execute_script(
            "const s = getComputedStyle(arguments[0]); return s.outlineStyle + ' ' + s.outlineWidth", el
        )
        assert outline.split()[0] != "none", (seen, outline)
    assert "New run" in seen and "Sign out" in seen


def test_phone_width(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        run_id = submit(
            api,
            {
                "model": {"upload": upload_id(api, tar_gz({"model.py": GAMBLER}))},
                "sequences": 2000,
                "seed": 5,
                "targets": ["rounds>=30"],
            },
        )
        wait_run(api, run_id)
    sign_in(browser, site, site.tokens["alice"])
    browser.set_window_size(390, 844)
    for path, name in (("/runs", "13-phone-runs"), (f"/runs/{run_id}", "14-phone-run"), ("/runs/new", "15-phone-new")):
        browser.get(site.url + path)
        time.sleep(0.2)
        # nothing wider than the screen but the tables' own scrolling boxes
        wide = browser.execute_script(
            "return [...document.querySelectorAll('main > *, header, .card > *:not(.table-wrap)')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + e.className)"
        )
        assert wide == [], (path, wide)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        screenshot(browser, artifacts, name)
    # dark mode follows the system's setting
    browser.set_window_size(1280, 900)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    try:
        browser.get(f"{site.url}/runs/{run_id}")
        background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background != "rgb(246, 247, 249)", background
        screenshot(browser, artifacts, "16-dark-run")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_every_request_stays_on_the_server(site, browser):
    sign_in(browser, site, site.tokens["alice"])
    for path in ("/runs", "/runs/new"):
        browser.get(site.url + path)
        urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and all(u.startswith(site.url + "/") for u in urls), urls


OPTION = '''
from typing import Literal

import ancho


class Choices(ancho.Model):
    """Parameters of several kinds, to see the form offer each its own way."""

    kind: Literal["call", "put"] = "call"
    strikes: list[float] = [90.0, 110.0]
    antithetic: bool = False
    label: str = "base"

    def sequence(self, rng):
        x = rng.random()
        return {"x": x if self.kind == "call" else -x, "n": len(self.strikes), "anti": self.antithetic}
'''


def test_parameters_of_every_kind(site, browser, tmp_path, artifacts):
    archive = tmp_path / "choices.tar.gz"
    archive.write_bytes(tar_gz({"model.py": OPTION}))
    sign_in(browser, site, site.tokens["alice"])
    browser.get(site.url + "/runs/new")
    browser.find_element(By.ID, "file").send_keys(str(archive))
    browser.find_element(By.ID, "inspect").click()
    kind = Select(wait_for(browser, lambda d: d.find_elements(By.ID, "param-kind"))[0])
    assert [o.text for o in kind.options] == ["call", "put"] and kind.first_selected_option.text == "call"
    anti = Select(browser.find_element(By.ID, "param-antithetic"))
    assert anti.first_selected_option.text == "false"
    strikes = browser.find_element(By.ID, "param-strikes")
    assert strikes.get_attribute("value") == "[90.0, 110.0]"
    assert "list[float]" in browser.find_element(By.CSS_SELECTOR, "label[for=param-strikes]").text
    assert browser.find_element(By.ID, "param-label").get_attribute("value") == "base"
    kind.select_by_visible_text("put")
    anti.select_by_visible_text("true")
    strikes.clear()
    strikes.send_keys("[80, 100, 120]")
    browser.find_element(By.ID, "param-label").clear()  # a text can be emptied
    seq = browser.find_element(By.ID, "sequences")
    seq.clear()
    seq.send_keys("200")
    screenshot(browser, artifacts, "17-parameters-of-every-kind")
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "summary-h"), timeout=180, message="the summary")
    run_id = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    with site.client(site.tokens["alice"]) as api:
        summary = api.get(f"/runs/{run_id}/summary").json()
    assert summary["params"] == {"kind": "put", "strikes": [80.0, 100.0, 120.0], "antithetic": True, "label": ""}
    assert summary["outputs"]["n"]["mean"] == 3 and summary["outputs"]["x"]["max"] <= 0
