"""A run's fan chart and its "compare with…" view in real headless Chromium: drawn, keyboard-reachable, phone-wide.

Screenshots go to conftest.ARTIFACTS (30-… to 35-…).
"""

from __future__ import annotations

import time

import pytest

from ..conftest import need_module

need_module("selenium", "pip install selenium (the test extra)")  # skips the module here, fails under CI
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from ..server.conftest import submit, tar_gz, upload_id, wait_run  # noqa: E402
from .conftest import screenshot, sign_in, wait_for  # noqa: E402
from .test_compare_http import SHIFT  # noqa: E402
from .test_fan_http import RAMP  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def fits_the_screen(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")


def tab_to(driver, css: str, presses: int = 120):
    """Press Tab from the top of the page until an element matching ``css`` has the focus (keyboard only)."""
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    for _ in range(presses):
        el = driver.switch_to.active_element
        if driver.execute_script("return arguments[0].matches(arguments[1])", el, css):
            return el
        el.send_keys(Keys.TAB)
    raise AssertionError(f"Tab never reached {css}")


def test_fan_chart_is_drawn_and_keyboard_reachable(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        run_id = submit(
            api, {"model": {"upload": upload_id(api, tar_gz({"model.py": RAMP}))}, "sequences": 2000, "seed": 2}
        )
        assert wait_run(api, run_id)["status"] == "succeeded"
    sign_in(browser, site, site.tokens["alice"])
    browser.get(f"{site.url}/runs/{run_id}")
    fan = browser.find_element(By.CSS_SELECTOR, "figure.fan svg")
    assert fan.size["width"] > 300 and fan.size["height"] > 100
    # the bands are painted (their fill comes from the stylesheet), under the median line
    fill = browser.execute_script("return getComputedStyle(document.querySelector('.fan50')).fill")
    assert fill not in ("none", "rgb(0, 0, 0)"), fill
    probe = tab_to(browser, ".probe")
    assert probe.get_attribute("aria-label").startswith("step 0: median ")
    stroke = browser.execute_script("return getComputedStyle(arguments[0].querySelector('line')).stroke", probe)
    assert stroke != "rgba(0, 0, 0, 0)", "a focused step is not shown"
    probe.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("aria-label").startswith("step ")
    browser.execute_script("arguments[0].scrollIntoView()", fan)
    screenshot(browser, artifacts, "30-fan-run")
    # the numbers behind it open from the keyboard
    summary = tab_to(browser, ".fan-numbers summary")
    summary.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".fan-table").is_displayed(), 10, "the table")
    browser.set_window_size(390, 844)
    browser.get(f"{site.url}/runs/{run_id}")
    time.sleep(0.2)
    assert fits_the_screen(browser)
    assert browser.find_element(By.CSS_SELECTOR, "figure.fan svg").size["width"] <= 390
    browser.execute_script("document.querySelector('figure.fan').scrollIntoView()")
    screenshot(browser, artifacts, "31-fan-phone")


def test_compare_with_another_run_by_clicks(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        upload = upload_id(api, tar_gz({"model.py": SHIFT}), "shift.tar.gz")
        base = submit(api, {"model": {"upload": upload}, "sequences": 2000, "seed": 8, "targets": ["x>0"]})
        moved = submit(api, {"model": {"upload": upload}, "sequences": 2000, "seed": 8, "params": {"mu": 0.3}})
        for run_id in (base, moved):
            assert wait_run(api, run_id)["status"] == "succeeded"
    sign_in(browser, site, site.tokens["alice"])
    browser.get(f"{site.url}/runs/{base}")
    browser.find_element(By.ID, "compare-link").click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/runs/{base}/compare"), message="the compare page")
    screenshot(browser, artifacts, "32-compare-pick")
    Select(browser.find_element(By.ID, "with")).select_by_value(moved)
    browser.find_element(By.CSS_SELECTOR, "#compare-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.comparison"), message="the comparison")
    assert browser.find_element(By.ID, "pairing").text.startswith("Paired:")
    rows = {
        r.find_element(By.TAG_NAME, "th").text: r
        for r in browser.find_elements(By.CSS_SELECTOR, "table.comparison tbody tr")
    }
    assert set(rows) == {"x", "u", "P(x>0)"}
    assert "significant" in rows["x"].get_attribute("class")
    assert rows["x"].find_elements(By.TAG_NAME, "td")[2].text == "0.3"  # common random numbers: exactly mu's shift
    dot = tab_to(browser, ".probe")
    assert dot.get_attribute("aria-label").startswith("x: b − a = 0.3") and dot.get_attribute("aria-label").endswith(
        "; significant"
    )
    screenshot(browser, artifacts, "33-compare-paired")
    browser.set_window_size(390, 844)
    browser.refresh()
    time.sleep(0.2)
    assert fits_the_screen(browser)
    screenshot(browser, artifacts, "34-compare-phone")
    # another user's run typed into the address: a message on the page, not their numbers
    browser.set_window_size(1280, 900)
    browser.get(f"{site.url}/runs/{base}/compare?with=0123456789ab")
    assert "no run" in browser.find_element(By.ID, "compare-error").text
    assert not browser.find_elements(By.CSS_SELECTOR, "table.comparison")
    screenshot(browser, artifacts, "35-compare-error")
