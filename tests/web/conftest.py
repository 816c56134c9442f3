"""The web site's tests: a real ``ancho serve`` on 127.0.0.1 and real headless Chromium driven by Selenium.

``site`` is one server for the whole suite, with users ``alice`` and ``bob``
(tokens from ``ancho users add``, as an administrator hands them out).
``browser`` is a fresh-cookied Chromium window per test. Screenshots of the
pages go to ``$ANCHO_TEST_ARTIFACTS/web`` (default: a folder under the
system's temporary directory, printed at the end) so people can look at
them; CI can keep that folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import need_service
from ..server.conftest import GAMBLER, Server, server_with_users, tar_gz

CHROMIUM = os.environ.get("ANCHO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ANCHO_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("ANCHO_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "ancho-test-artifacts") / "web"


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    srv = server_with_users(tmp_path_factory.mktemp("site"), ("alice", "bob"), "web-server")
    yield srv
    srv.kill()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Model archives as files, for the browser's file input."""
    d = tmp_path_factory.mktemp("archives")
    (d / "gambler.tar.gz").write_bytes(tar_gz({"model.py": GAMBLER}, folder="gambler"))
    return d


class Page:
    """A signed-in (or not) HTTP client of the site, as a browser without JavaScript would use it."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.http = httpx.Client(base_url=srv.url, timeout=60, follow_redirects=False)

    def sign_in(self, token: str) -> httpx.Response:
        form = self.http.get("/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        return self.http.post("/signin", data={"token": token, "csrf": csrf, "next": "/runs"})

    @property
    def csrf(self) -> str:
        page = self.http.get("/runs")
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def page(site):
    p = Page(site)
    yield p
    p.close()


# -- the browser -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium_session(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        need_service("chromium", f"{CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium and chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        need_service("selenium", "pip install selenium (in the test extra)")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=opts, service=DriverService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium_session, site):
    """The shared Chromium with no cookies and a laptop-sized window."""
    d = chromium_session
    d.get(site.url + "/api/v1/health")  # cookies can only be cleared on the site's origin
    d.delete_all_cookies()
    d.set_window_size(1280, 900)
    for f in d.downloads.iterdir():
        f.unlink()
    yield d


@pytest.fixture(scope="session")
def artifacts():
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    yield ARTIFACTS
    print(f"\nweb screenshots: {ARTIFACTS}")


def screenshot(driver, folder: Path, name: str) -> Path:
    """A PNG of the whole page (beyond the window), named ``name``."""
    import base64

    driver.execute_script("window.scrollTo(0, 0)")  # a page captured while scrolled misses the parts painted late
    time.sleep(0.1)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width = driver.execute_script("return window.innerWidth")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(size["height"], 8000), "scale": 1},
        },
    )
    path = folder / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait_for(driver, condition, timeout: float = 60, message: str = ""):
    """Poll ``condition(driver)`` until it returns something truthy; fail with the page's text otherwise."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition(driver)
        except (StaleElementReferenceException, NoSuchElementException):  # the page is being replaced (a form sent)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            body = driver.find_element("tag name", "body").text[:2000]
            raise AssertionError(f"timed out waiting for {message or condition}; page {driver.current_url}:\n{body}")
        time.sleep(0.1)


def sign_in(driver, srv: Server, token: str) -> None:
    driver.get(srv.url + "/signin")
    field = driver.find_element("id", "token")
    field.send_keys(token)
    field.submit()
    wait_for(driver, lambda d: d.current_url.rstrip("/").endswith("/runs"), message="the runs page after signing in")
