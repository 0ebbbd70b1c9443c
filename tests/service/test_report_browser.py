"""The HTML report in a real browser: headless Chromium at 1280 pixels, no horizontal scrolling.

The report is rendered from tests/fixtures/report_results.json (long unbroken titles, content-addressed
adapter keys, eight conditions, six metrics, two rounds). A copy gets a small script that measures the laid-out
page and writes the numbers into document.title, which `--dump-dom` prints. Chromium comes from Debian's
packages (`make test` installs it: deploy/system-packages.sh). A missing browser fails the test; set
SEAL_SKIP_BROWSER_TESTS=1 to skip it on purpose.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from services.coordinator.report.render import ReportRun, render_report

FIXTURE = Path(__file__).parents[1] / "fixtures" / "report_results.json"
WIDTH = 1280
# Layout facts, measured after load: the page's width, every table's right edge against the viewport, elements
# that scroll sideways inside the page, and each chart's drawn width against its column's.
PROBE = """<script>addEventListener("load", () => {
  const vw = document.documentElement.clientWidth;
  const sideways = [...document.querySelectorAll("body *")].filter(e => e.scrollWidth > e.clientWidth + 1
    && ["auto", "scroll"].includes(getComputedStyle(e).overflowX) && e.clientHeight > 0);
  document.title = JSON.stringify({
    scrollWidth: document.documentElement.scrollWidth,
    viewport: vw,
    tablesPastTheEdge: [...document.querySelectorAll("table")]
      .filter(t => t.getBoundingClientRect().right > vw).map(t => t.rows[0].textContent),
    scrollers: sideways.map(e => e.tagName),
    charts: [...document.querySelectorAll("svg")].map(s => [s.getBoundingClientRect().width,
      s.parentElement.getBoundingClientRect().width]),
    csvLinks: document.querySelectorAll('a[download][href^="data:text/csv"]').length,
  });
});</script>"""


def _chromium() -> str:
    if os.environ.get("SEAL_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("SEAL_SKIP_BROWSER_TESTS=1")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("Chromium is not installed: apt-get install -y chromium (or set SEAL_SKIP_BROWSER_TESTS=1)")


def _run() -> dict[str, Any]:
    return {
        "id": "run-20261129-050733-9c83ff",
        "name": "conditions on SQuAD, two teachers, every metric",
        "status": "succeeded",
        "services": {"evaluator": {"model_name": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
        "results": json.loads(FIXTURE.read_text()),
    }


def measure(page: str, tmp_path: Path) -> dict[str, Any]:
    """Open `page` in headless Chromium at 1280 pixels and return what PROBE measured."""
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WIDTH},2000",
        "--dump-dom",
        path.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    title = re.search(r"<title>(.*?)</title>", done.stdout, re.S)
    assert title and title.group(1).startswith("{"), f"no measurement from Chromium: {done.stderr[-2000:]}"
    return json.loads(html.unescape(title.group(1)))


def test_the_report_fits_a_1280_pixel_window_without_horizontal_scrolling(tmp_path):
    facts = measure(render_report(ReportRun.model_validate(_run())), tmp_path)
    assert facts["viewport"] <= WIDTH
    assert facts["scrollWidth"] <= WIDTH, facts
    assert facts["tablesPastTheEdge"] == [], facts
    assert facts["scrollers"] == [], facts  # no table hidden in a sideways-scrolling box either
    # Seven charts, each drawn at its column's width (scaled from its 640-pixel viewBox), each with its data.
    assert len(facts["charts"]) == 7 and facts["csvLinks"] == 7
    assert all(abs(svg - column) < 1 for svg, column in facts["charts"]), facts["charts"]
