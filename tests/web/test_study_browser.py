"""Study pages in real headless Chromium against a real ``ancho serve``: the new-study form with scripts on and off,
a study's live page, its pictures, sorting and its width on a phone. Screenshots go to conftest.ARTIFACTS."""

from __future__ import annotations

import pytest

from ..conftest import need_module

need_module("selenium", "pip install selenium (the test extra)")  # skips the module here, fails under CI
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from ..server.conftest import GAMBLER, tar_gz, upload_id  # noqa: E402
from .conftest import screenshot, sign_in, wait_for  # noqa: E402
from .test_study_http import wait_study  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def visible_error(driver, field_id: str) -> str:
    box = driver.find_element(By.ID, f"{field_id}-error")
    return box.text if box.is_displayed() else ""


def fill(driver, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = driver.find_element(By.ID, name)
        field.clear()
        field.send_keys(value)


def read_parameters(driver, site, models_dir) -> None:
    driver.get(site.url + "/studies/new")
    driver.find_element(By.ID, "file").send_keys(str(models_dir / "gambler.tar.gz"))
    driver.find_element(By.ID, "inspect").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "design-p"), message="the parameter and design fields")


def test_new_study_with_scripts_and_its_live_page(site, browser, models_dir, artifacts):
    sign_in(browser, site, site.tokens["alice"])
    browser.find_element(By.LINK_TEXT, "Studies").click()
    wait_for(browser, lambda d: d.current_url.endswith("/studies"))
    screenshot(browser, artifacts, "s01-studies")
    read_parameters(browser, site, models_dir)
    # a grid needs no n: its field is hidden until a sampled design is chosen
    assert not browser.find_element(By.ID, "design_n").is_displayed()
    Select(browser.find_element(By.ID, "design_kind")).select_by_value("lhs")
    assert browser.find_element(By.ID, "design_n").is_displayed()
    assert not browser.find_element(By.ID, "levels").is_displayed()
    fill(browser, {"param-stake": "3", "param-goal": "10", "design-p": "0.6:0.4", "design_n": "5", "sequences": "800"})
    browser.find_element(By.ID, "submit").click()
    message = wait_for(browser, lambda d: visible_error(d, "design-p"), message="the range error")
    assert "must be below" in message
    assert browser.switch_to.active_element.get_attribute("id") == "design-p"  # the field at fault has the focus
    screenshot(browser, artifacts, "s02-new-study-error")
    fill(browser, {"design-p": "0.4:0.6", "targets": "rounds>=30", "seed": "11"})
    screenshot(browser, artifacts, "s03-new-study-filled")
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, lambda d: "/studies/s" in d.current_url, message="the study page")
    study_id = browser.current_url.split("/studies/")[1].split("?")[0]
    # the page follows the study and reloads itself with the points and pictures when it ends
    wait_for(browser, lambda d: d.find_elements(By.ID, "pictures-h"), timeout=600, message="the pictures")
    assert browser.find_element(By.CSS_SELECTOR, ".heading .badge").text == "succeeded"
    assert "5 of 5 points ended" in browser.find_element(By.CSS_SELECTOR, "[data-points]").text
    titles = {t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "svg.chart > title")}
    assert {"Mean of won against p", "Mean of rounds against p", "Probability of rounds>=30 against p"} <= titles
    screenshot(browser, artifacts, "s04-study-page")
    # sorting by a column is a link (keyboard and no-script alike); each point links to its run
    browser.find_element(By.CSS_SELECTOR, "table.points thead a[href*='sort=p&']").click()
    wait_for(browser, lambda d: "sort=p" in d.current_url)
    values = [float(td.text) for td in browser.find_elements(By.CSS_SELECTOR, "table.points tbody tr td:nth-child(2)")]
    assert values == sorted(values) and len(values) == 5 and all(0.4 <= v <= 0.6 for v in values)
    browser.find_element(By.CSS_SELECTOR, "table.points tbody tr td a").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "summary-h"), message="a point's run page")
    with site.client(site.tokens["alice"]) as api:
        assert api.get(f"/studies/{study_id}").json()["points"] == 5


def test_new_study_without_javascript(site, browser, models_dir, artifacts):
    sign_in(browser, site, site.tokens["alice"])
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        read_parameters(browser, site, models_dir)
        Select(browser.find_element(By.ID, "design_kind")).select_by_value("sobol")
        fill(browser, {"param-goal": "8", "design-p": "0.4:0.6", "design-stake": "1:7", "design_n": "3"})
        fill(browser, {"sequences": "200"})
        browser.find_element(By.ID, "submit").click()
        assert "power of two" in wait_for(browser, lambda d: visible_error(d, "design_n"), message="the n error")
        screenshot(browser, artifacts, "s05-no-script-error")
        fill(browser, {"design_n": "4"})
        browser.find_element(By.ID, "submit").click()
        wait_for(browser, lambda d: "/studies/s" in d.current_url, message="the study page")
        study_id = browser.current_url.split("/studies/")[1].split("?")[0]
        with site.client(site.tokens["alice"]) as api:
            view = wait_study(api, study_id)
        assert view["status"] == "succeeded" and view["points"] == 4 * (2 + 2)
        browser.get(f"{site.url}/studies/{study_id}")
        assert browser.find_elements(By.ID, "sensitivity-h") and browser.find_elements(By.ID, "pictures-h")
        screenshot(browser, artifacts, "s06-no-script-sobol-study")
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_study_page_at_phone_width(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": GAMBLER}))
        body = {
            "model": {"upload": upload},
            "design": {"lhs": {"n": 12, "ranges": {"p": [0.4, 0.6], "stake": [1, 9], "goal": [10, 12]}}},
            "sequences": 200,
            "seed": 3,
        }
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        study_id = r.json()["id"]
        assert wait_study(api, study_id)["status"] == "succeeded"
    sign_in(browser, site, site.tokens["alice"])
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{site.url}/studies/{study_id}?baseline=0")
        # three parameters: parallel coordinates; nothing but the tables scrolls sideways
        assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.pc")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= browser.execute_script("return window.innerWidth")
        screenshot(browser, artifacts, "s07-study-phone")
    finally:
        browser.set_window_size(1280, 900)


def test_study_page_by_keyboard_and_its_comparison(site, browser, artifacts):
    from selenium.webdriver.common.keys import Keys

    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": GAMBLER}))
        body = {"model": {"upload": upload}, "design": {"grid": {"p": [0.4, 0.5, 0.6]}}, "params": {"stake": 3, "goal": 10},
                "sequences": 2000, "seed": 4}  # fmt: skip
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        study_id = r.json()["id"]
        assert wait_study(api, study_id)["status"] == "succeeded"
    sign_in(browser, site, site.tokens["alice"])
    browser.get(f"{site.url}/studies/{study_id}")
    # Tab from the top of the page to the first sortable heading after "Point": focus is visible, Enter sorts
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    for _ in range(60):
        el = browser.switch_to.active_element
        if "sort=p&" in (el.get_attribute("href") or ""):
            break
        el.send_keys(Keys.TAB)
    else:
        raise AssertionError("no sortable heading reached by Tab")
    outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", el)
    assert outline != "none"
    el.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "sort=p" in d.current_url, message="the sorted page")
    # the baseline form by keyboard: every point against point 1, p = 0.4 and 0.6 marked as differing
    field = browser.find_element(By.ID, "baseline")
    field.clear()
    field.send_keys("1", Keys.ENTER)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.comparison"), message="the comparison")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.comparison tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["0", "2"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart circle.dot.significant")) >= 2
    browser.execute_script("document.getElementById('compare-h').scrollIntoView()")
    screenshot(browser, artifacts, "s08-study-comparison")
