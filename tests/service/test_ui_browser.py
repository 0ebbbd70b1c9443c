"""The web UI in a real browser: headless Chromium driven by selenium through Debian's chromedriver, against
the coordinator served on a loopback port over the real run manager and fake services (tests/ui_stack.py).

One session does what a new user would: signs in with the keyboard, starts a tiny run from the form, watches
its progress arrive over the event stream while its training is held, sees the results once it is released,
starts a second run and compares the two, starts a third and cancels it through the confirmation page. At
1280 and 390 pixels the pages must not scroll sideways; screenshots of each page at both widths are saved
under build/test-artifacts/ui/ (or SEAL_TEST_ARTIFACTS). A missing browser or driver fails the test; set
SEAL_SKIP_BROWSER_TESTS=1 to skip it on purpose (`make test` installs both: deploy/system-packages.sh).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui_stack import UiStack, ui_stack
from tests.unit.test_adapter_routes import publish

TOKEN = "browser-test-token"
WIDTHS = (1280, 390)
ROOT = Path(__file__).resolve().parents[2]
WAIT = 30


def _programs() -> tuple[str, str]:
    if os.environ.get("SEAL_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("SEAL_SKIP_BROWSER_TESTS=1")
    browser = next(
        (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(
            "Chromium and its driver are not installed: apt-get install -y chromium chromium-driver "
            "(or set SEAL_SKIP_BROWSER_TESTS=1)"
        )
    return browser, driver


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("SEAL_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts") / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    browser_path, driver_path = _programs()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read at the end
    # The driver path is given, so selenium's manager downloads nothing.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[UiStack]:
    with ui_stack(tmp_path, TOKEN) as running:
        yield running


def _wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message)


def _landed(driver, url_test, message: str) -> None:
    """Wait until the address passes `url_test` and the new page has loaded.

    A form sent from the keyboard changes the address before the next document has a body;
    looking for an element in between finds none.
    """
    from selenium.webdriver.common.by import By

    def arrived(d) -> bool:
        if not url_test(d.current_url):
            return False
        return d.execute_script("return document.readyState") == "complete" and bool(
            d.find_elements(By.TAG_NAME, "body")
        )

    _wait(driver, arrived, message)


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _resize(driver, width: int) -> None:
    """Make the viewport `width` CSS pixels wide (the window's frame, if any, added)."""
    driver.set_window_size(width, 900)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:
        driver.set_window_size(width + (width - inner), 900)


def _shoot(driver, artifacts: Path, name: str) -> dict[int, tuple[int, int]]:
    """Screenshots of the whole page at each width, and (scrollWidth, clientWidth) per width."""
    widths = {}
    for width in WIDTHS:
        _resize(driver, width)
        height, frame = driver.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
        )
        driver.set_window_size(driver.get_window_size()["width"], min(height + frame, 5000))
        widths[width] = tuple(
            driver.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
        )
        driver.save_screenshot(str(artifacts / f"{name}-{width}.png"))
    _resize(driver, 1280)
    return widths


def _no_sideways_scroll(widths: dict[int, tuple[int, int]], page: str) -> None:
    for width, (scroll, client) in widths.items():
        assert client == width, f"{page}: the viewport is {client} px, not {width}"
        assert scroll <= client, f"{page} scrolls sideways at {width} px: {scroll} > {client}"


def _start_run(driver, stack: UiStack, name: str, k: int) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{stack.url}/ui/runs")
    details = driver.find_element(By.ID, "start")
    if not details.get_attribute("open"):
        details.find_element(By.TAG_NAME, "summary").send_keys(Keys.ENTER)  # the keyboard opens it
    form = details.find_element(By.TAG_NAME, "form")
    for field, value in (("name", name), ("limit", "2"), ("heldout", "1")):
        element = form.find_element(By.NAME, field)
        element.clear()
        element.send_keys(value)
    k_field = form.find_element(By.NAME, "k")
    k_field.clear()
    k_field.send_keys(str(k))
    k_field.send_keys(Keys.ENTER)  # submits the form
    _landed(driver, lambda url: "/ui/runs/run-" in url, "the run page never opened")
    return driver.current_url.rsplit("/", 1)[1]


def test_a_user_signs_in_starts_watches_compares_and_cancels_runs(browser, stack, artifacts, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    # Sign in, with the keyboard only.
    driver.get(f"{stack.url}/ui/runs")
    assert "/ui/login" in driver.current_url
    _no_sideways_scroll(_shoot(driver, artifacts, "login"), "login")
    token = driver.switch_to.active_element  # the token field has the focus
    assert token.get_attribute("name") == "token"
    token.send_keys(TOKEN, Keys.ENTER)
    _landed(driver, lambda url: url.endswith("/ui/runs"), "sign-in did not land on the runs page")
    # The first Tab reaches the skip link.
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("class") == "skip"

    # A run whose training is held: its progress arrives over the event stream.
    stack.hold_training()
    watched = _start_run(driver, stack, "watched", k=1)
    _wait(driver, lambda d: _text(d, '[data-field="status"]') == "running", "the run never showed running")
    _wait(driver, lambda d: "Live" in _text(d, '[data-field="note"]'), "the event stream never opened")
    driver.find_element(By.CSS_SELECTOR, "#live details summary").click()
    _wait(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-field="events"] li')) >= 3,
        "no events arrived",
    )
    _wait(driver, lambda d: "train" in _text(d, '[data-field="current"]'), "the phase never showed training")
    seqs = [
        li.get_attribute("data-seq")
        for li in driver.find_elements(By.CSS_SELECTOR, '[data-field="events"] li')
    ]
    assert len(seqs) == len(set(seqs)), seqs  # the stream resumes after the events the page was rendered with
    _no_sideways_scroll(_shoot(driver, artifacts, "run-live"), "a running run")
    stack.release_training()
    # The stream says it finished; the page reloads itself with the results.
    _wait(driver, lambda d: d.find_elements(By.ID, "results-h"), "the results never appeared")
    assert _text(driver, '[data-field="status"]') == "succeeded"
    assert driver.find_elements(By.CSS_SELECTOR, f'a[href="/ui/runs/{watched}/csv/passages.csv"]')
    _no_sideways_scroll(_shoot(driver, artifacts, "run-results"), "a finished run")

    # A second run, then both side by side.
    second = _start_run(driver, stack, "second", k=2)
    _wait(driver, lambda d: d.find_elements(By.ID, "results-h"), "the second run never finished")
    driver.get(f"{stack.url}/ui/compare")
    for run_id in (watched, second):
        driver.find_element(By.CSS_SELECTOR, f'input[name="run"][value="{run_id}"]').send_keys(Keys.SPACE)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.differs"), "no config difference shown")
    differing = [
        row.find_element(By.TAG_NAME, "th").text
        for row in driver.find_elements(By.CSS_SELECTOR, "tr.differs")
    ]
    assert differing == ["k differs"]
    assert driver.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    _no_sideways_scroll(_shoot(driver, artifacts, "compare"), "compare")

    # The runs list, then a third run cancelled through the confirmation page.
    driver.get(f"{stack.url}/ui/runs")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")
    assert [r.get_attribute("data-run") for r in rows] == [second, watched]
    _no_sideways_scroll(_shoot(driver, artifacts, "runs"), "runs")
    stack.hold_training()
    doomed = _start_run(driver, stack, "doomed", k=1)
    _wait(driver, lambda d: _text(d, '[data-field="status"]') == "running", "the third run never ran")
    driver.find_element(By.LINK_TEXT, "Cancel run").click()
    _landed(driver, lambda url: url.endswith(f"/ui/runs/{doomed}/cancel"), "the confirmation never opened")
    _no_sideways_scroll(_shoot(driver, artifacts, "cancel-confirm"), "the confirmation")
    assert driver.switch_to.active_element.text == "Cancel run"  # the button has the focus
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    _landed(driver, lambda url: url.endswith(f"/ui/runs/{doomed}"), "cancel did not return to the run")
    _wait(driver, lambda d: _text(d, '[data-field="status"]') == "cancelled", "the run was not cancelled")

    driver.get(f"{stack.url}/ui/services")
    assert "trainer-a:1" in driver.page_source
    _no_sideways_scroll(_shoot(driver, artifacts, "services"), "services")

    # An adapter's card, reached from the list with the keyboard.
    key = publish(stack.store, tmp_path / "peft", 1.0, seed=3)
    driver.get(f"{stack.url}/ui/adapters")
    link = driver.find_element(By.CSS_SELECTOR, "main table a")
    link.send_keys(Keys.ENTER)
    _landed(driver, lambda url: "/ui/adapters/" in url, "the adapter's card never opened")
    assert key in _text(driver, "h1")
    assert driver.find_elements(By.CSS_SELECTOR, 'a[href$="/files/adapter_model.safetensors"]')
    _no_sideways_scroll(_shoot(driver, artifacts, "adapter"), "an adapter")

    # The pages ran without a script error or a blocked resource (the Content-Security-Policy).
    console = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert [m for m in console if "favicon.ico" not in m] == []
