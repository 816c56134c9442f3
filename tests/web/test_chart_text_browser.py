"""Chart text and long names as Chromium lays them out: inside each picture, apart, and no page wider than the screen."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ..conftest import need_module

need_module("selenium", "pip install selenium (the test extra)")  # skips the module here, fails under CI
from ancho.plotdata import Fan  # noqa: E402
from ancho.web.charts import convergence_svg, fan_svg, histogram_svg  # noqa: E402
from ancho.web.study_charts import parallel_svg, paths_svg  # noqa: E402

from ..server.conftest import submit, tar_gz, upload_id, wait_run  # noqa: E402
from .conftest import screenshot, sign_in  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = "a_rather_long_output_name_for_label_testing_purposes"
MODEL = f'''
import ancho


class Long(ancho.Model):
    """A long output name with values in the millions, and a count of heads in 1000 tosses."""

    def sequence(self, rng):
        return {{"{LONG}": float(rng.normal(0, 1) * 1e6), "ups": int(rng.binomial(1000, 0.5))}}
'''

#: every chart's text elements that leave their picture or overlap another (with half a pixel's grace)
CLASHES = """
const out = [];
for (const svg of document.querySelectorAll('svg.chart')) {
  const box = svg.getBoundingClientRect();
  const texts = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]);
  for (const [s, r] of texts)
    if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
      out.push('outside: ' + s);
  for (let i = 0; i < texts.length; i++)
    for (let j = i + 1; j < texts.length; j++) {
      const [a, p] = texts[i], [b, q] = texts[j];
      if (p.left < q.right - 0.5 && q.left < p.right - 0.5 && p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5)
        out.push('overlap: ' + a + ' / ' + b);
    }
}
return out;
"""


def settled(browser, name: str) -> None:
    """No clash once the layout has settled after a resize (a few polls), else the clashes."""
    for _ in range(20):
        clashes = browser.execute_script(CLASHES)
        if not clashes:
            return
        time.sleep(0.25)
    raise AssertionError((name, clashes))


def wide_ticks() -> list:
    """A fan chart up to 40,000 (its six-character y labels were cut once) and a study's mean paths up to 200 with
    their key, plainly named and with long names."""
    line = np.linspace(0, 40_000, 50).tolist()
    fan = fan_svg(Fan("wealth", 50, 100, list(range(50)), *[line] * 8))
    t = np.arange(101)
    walks = [(f"point {k}, drift = {d}", (d * t).tolist(), k / 2) for k, d in enumerate((0, 1, 2))]
    return [fan, paths_svg("walk", walks, ("drift = 0", "drift = 2")), paths_svg(LONG, walks, (f"{LONG} = 0", f"{LONG} = 2"))]  # fmt: skip


def big_charts() -> str:
    """Charts of a billion sequences and a long name, with a study's parallel coordinates and mean paths and a fan
    chart, as one page's HTML."""
    n = np.unique(np.geomspace(1, 10**9, 200).round().astype(np.int64)).tolist()
    mean = [2.5e6 + 1e5 / (k + 1) for k in range(len(n))]
    conv = {"n": n, "mean": mean, "low": [m - 3e3 for m in mean], "high": [m + 3e3 for m in mean]}
    hist = {"kind": "int", "edges": [-0.5, 0.5, 1.5, 2.5], "counts": [10**9 // 3, 10**9 // 2, 10**9 // 6]}
    rng = np.random.default_rng(1)
    cols = {p: rng.uniform(-0.123456, 4.56789, 20).tolist() for p in ("mu", "lam", "steps")}
    pc = parallel_svg(["mu", "lam", "steps"], LONG, cols, rng.normal(0, 3, 20).tolist())
    svgs = (histogram_svg(LONG, hist), convergence_svg(LONG, conv), pc, *wide_ticks())
    return "".join(f'<figure class="chart-box">{svg}</figure>' for svg in svgs)


def test_long_names_and_large_counts_read_on_a_desktop_and_a_phone(site, browser, artifacts):
    with site.client(site.tokens["alice"]) as api:
        run_id = submit(api, {"model": {"upload": upload_id(api, tar_gz({"model.py": MODEL}))}, "sequences": 3000, "seed": 4})  # fmt: skip
        assert wait_run(api, run_id)["status"] == "succeeded"
    sign_in(browser, site, site.tokens["alice"])
    for width, name in ((1280, "desktop"), (390, "phone")):
        browser.set_window_size(width, 900)
        browser.get(f"{site.url}/runs/{run_id}")
        time.sleep(0.2)
        screenshot(browser, artifacts, f"30-long-names-{name}")
        settled(browser, name)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        # the summary's columns are all in view at a desktop's width: the long name wraps instead
        if width == 1280:
            wrap = "return (e => e.scrollWidth <= e.clientWidth + 1)(document.querySelector('table.summary').parentElement)"
            assert browser.execute_script(wrap)

        browser.execute_script(f"document.querySelector('.charts').innerHTML = {json.dumps(big_charts())}")
        time.sleep(0.1)
        screenshot(browser, artifacts, f"31-billion-{name}")
        settled(browser, name)
