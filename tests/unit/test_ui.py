"""The web UI at /ui over HTTP, as a browser without a script engine meets it: the real app served on a
loopback port over the real run manager and fake services (tests/ui_stack.py). Sign-in (form and cookie, or
the bearer header; nothing without it), CSRF on forms, starting a run from the form and from a config file,
the run page and its downloads, cancel and delete behind a confirmation, compare, adapters, services.
Browser tests (headless Chromium): tests/service/test_ui_browser.py."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from services.coordinator.api.session import proof, session_secret
from services.coordinator.api.ui import views
from services.coordinator.api.ui.client import Api
from services.coordinator.api.ui.pages import PAGE_SIZE
from tests.ui_stack import UiStack, ui_stack
from tests.unit.test_adapter_routes import publish
from tests.unit.test_orchestrator import settings as orchestrator_settings
from tests.unit.test_run_index import copies_of, finished_run, strip_headlines

TOKEN = "ui-test-token"
STATIC = Path(__file__).resolve().parents[2] / "services" / "coordinator" / "api" / "ui" / "static"
#: htmx 2.0.10 as the django-htmx 1.29.0 wheel ships it (static/htmx.LICENSE says where it comes from).
HTMX_SHA256 = "71ea67185bfa8c98c39d31717c6fce5d852370fcdfd129db4543774d3145c0de"
TINY = {
    "name": "tiny",
    "dataset": "demo",
    "limit": "2",
    "k": "1",
    "rounds": "0",
    "heldout": "1",
    "seed": "0",
    "formats": "implications",
    "reward_metric": "f1",
}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found[1]


def signed_in(stack: UiStack) -> httpx.Client:
    client = httpx.Client(base_url=stack.url, timeout=30)
    login = client.get("/ui/login")
    done = client.post("/ui/login", data={"token": TOKEN, "csrf": csrf_of(login.text), "next": "/ui/runs"})
    assert done.status_code == 303 and done.headers["location"] == "/ui/runs"
    return client


def start(client: httpx.Client, **fields: Any) -> str:
    page = client.get("/ui/runs")
    files = fields.pop("files", {"config_file": ("", b"")})
    response = client.post("/ui/runs", data={**TINY, **fields, "csrf": csrf_of(page.text)}, files=files)
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def wait_status(client: httpx.Client, run_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {statuses}: {run['status']}")


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with ui_stack(tmp_path, TOKEN) as running:
        yield running


def test_vendored_htmx_is_the_pinned_file_with_its_licence():
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == HTMX_SHA256
    licence = (STATIC / "htmx.LICENSE").read_text()
    assert "Zero-Clause BSD" in licence and "2.0.10" in licence


def test_nothing_is_served_without_the_token_and_the_login_form_signs_in(stack):
    client = httpx.Client(base_url=stack.url, timeout=30)
    for path in ("/ui/runs", "/ui/compare", "/ui/adapters", "/ui/services", "/ui/runs/x"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/ui/login?next=/ui/")
    assert client.get("/v1/runs").status_code == 401
    login = client.get("/ui/login")
    wrong = client.post("/ui/login", data={"token": "nope", "csrf": csrf_of(login.text)})
    assert wrong.status_code == 401 and "not the coordinator" in wrong.text
    assert client.post("/ui/login", data={"token": TOKEN, "csrf": "forged"}).status_code == 400
    client = signed_in(stack)
    page = client.get("/ui/runs")
    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self': no inline script
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    cookie = client.cookies.get("seal_ui")
    assert cookie and TOKEN not in cookie  # the cookie proves the token, it does not hold it
    assert client.get("/v1/runs").status_code == 200  # reads ride on the cookie (event stream, downloads)
    assert client.post("/v1/runs", json={"dataset": "demo"}).status_code == 401  # writes never do
    logout = client.post("/ui/logout", data={"csrf": csrf_of(client.get("/ui/runs").text)})
    assert logout.status_code == 303 and client.get("/ui/runs").status_code == 303


def test_the_bearer_header_opens_the_ui_too_and_an_open_coordinator_needs_nothing(tmp_path):
    with ui_stack(tmp_path / "a", TOKEN) as stack:
        assert (
            httpx.get(f"{stack.url}/ui/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        assert httpx.get(f"{stack.url}/ui/runs", headers={"Authorization": "Bearer other"}).status_code == 303
    with ui_stack(tmp_path / "b", None) as stack:
        assert httpx.get(f"{stack.url}/ui/runs").status_code == 200


def test_a_form_without_the_sessions_csrf_token_is_refused(stack):
    client = signed_in(stack)
    response = client.post("/ui/runs", data={**TINY, "csrf": "from-another-site"})
    assert response.status_code == 403 and "expired" in response.text
    assert client.get("/v1/runs").json()["runs"] == []


def test_a_run_started_from_the_form_shows_progress_results_and_downloads(stack):
    client = signed_in(stack)
    run_id = start(client)
    run = wait_status(client, run_id, ("succeeded",))
    assert run["name"] == "tiny" and run["config"]["k"] == 1 and run["config"]["heldout"] == 1
    page = client.get(f"/ui/runs/{run_id}").text
    assert f'data-events="/v1/runs/{run_id}/events?after=' in page  # the live stream the script follows
    assert 'data-field="status">succeeded' in page
    assert "Held-out conditions" in page and "+0.300" in page  # the fakes: 0.1 base, 0.4 adapted
    csv = client.get(f"/ui/runs/{run_id}/csv/passages.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    rows = csv.text.strip().splitlines()
    assert (
        rows[0].startswith("passage_id,title,baseline_f1,best_reward") and len(rows) == 2
    )  # 1 training passage
    assert client.get(f"/ui/runs/{run_id}/csv/nonesuch.csv").status_code == 404
    listing = client.get("/ui/runs").text
    assert run_id in listing and "+0.300" in listing and "succeeded" in listing
    assert run_id not in client.get("/ui/runs", params={"status": "failed"}).text
    table = client.get("/ui/runs", headers={"HX-Request": "true"}).text
    assert table.startswith('<div id="runs"') and "<html" not in table  # htmx's refresh gets the table alone


def test_a_config_file_starts_a_run_and_a_bad_one_shows_the_apis_message(stack):
    client = signed_in(stack)
    run_id = start(client, files={"config_file": ("run.yaml", b"k: 2\nretention: false\n")})
    assert wait_status(client, run_id, ("succeeded",))["config"]["k"] == 2
    page = client.get("/ui/runs")
    bad = client.post(
        "/ui/runs",
        data={**TINY, "csrf": csrf_of(page.text)},
        files={"config_file": ("run.yaml", b"k: 99\n")},
    )
    assert bad.status_code == 422 and "less than or equal to 16" in bad.text
    broken = client.post(
        "/ui/runs", data={**TINY, "csrf": csrf_of(page.text)}, files={"config_file": ("x.yaml", b"k: [")}
    )
    assert broken.status_code == 400 and "not JSON or YAML" in broken.text


def test_cancel_and_delete_ask_first_then_act(stack):
    client = signed_in(stack)
    stack.hold_training()
    run_id = start(client)
    wait_status(client, run_id, ("running",))
    confirm = client.get(f"/ui/runs/{run_id}/cancel")
    assert confirm.status_code == 200 and "Cancel run" in confirm.text
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"  # asking changed nothing
    done = client.post(f"/ui/runs/{run_id}/cancel", data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 303
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
    delete = client.get(f"/ui/runs/{run_id}/delete")
    assert client.post(f"/ui/runs/{run_id}/delete", data={"csrf": csrf_of(delete.text)}).status_code == 303
    assert client.get(f"/v1/runs/{run_id}").status_code == 404
    gone = client.get(f"/ui/runs/{run_id}")
    assert gone.status_code == 404 and "no run" in gone.text.lower()


def test_a_cancelling_continual_run_shows_its_badge_and_filter_and_no_second_cancel_button(stack):
    client = signed_in(stack)
    stack.hold_training()
    body = {"dataset": "demo", "limit": 2, "config": {"mode": "continual", "k": 1}}
    created = client.post("/v1/runs", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    wait_status(client, run_id, ("running",))
    confirm = client.get(f"/ui/runs/{run_id}/cancel")
    assert "each finish their step in flight first" in confirm.text
    # The step in flight is held: the answer comes after a moment, the run still cancelling.
    assert client.post(f"/ui/runs/{run_id}/cancel", data={"csrf": csrf_of(confirm.text)}).status_code == 303
    page = client.get(f"/ui/runs/{run_id}").text
    assert 'class="status s-cancelling"' in page and f"/ui/runs/{run_id}/cancel" not in page
    assert 'data-field="round"' not in page  # a continual run has no rounds
    listed = client.get("/ui/runs", params={"status": "cancelling"}).text
    assert '<option value="cancelling" selected>' in listed and run_id in listed
    stack.release_training()
    done = wait_status(client, run_id, ("cancelled",))
    assert done["jobs_done"] > 0 and 'class="status s-cancelled"' in client.get(f"/ui/runs/{run_id}").text


def test_compare_puts_runs_side_by_side_with_config_differences_first(stack):
    client = signed_in(stack)
    first = start(client, k="1")
    second = start(client, k="2")
    for run_id in (first, second):
        wait_status(client, run_id, ("succeeded",))
    picker = client.get("/ui/compare").text
    assert first in picker and second in picker
    page = client.get("/ui/compare", params=[("run", first), ("run", second)]).text
    differing = re.findall(r'<tr class="differs"><th scope="row">([^<]+)', page)
    assert [d.strip() for d in differing] == ["k"]
    assert "held-out: passage only" in page and page.count("+0.300") >= 2
    assert page.count("<svg") == 2  # held-out score and mean reward by round, both runs on each chart


def test_adapters_and_services_pages(stack, tmp_path):
    key = publish(stack.store, tmp_path / "peft", 1.0, seed=7)
    client = signed_in(stack)
    digest = key.rpartition("/")[2]
    listing = client.get("/ui/adapters").text
    assert f'href="/ui/adapters/{digest}"' in listing
    card = client.get(f"/ui/adapters/{digest}").text
    assert (
        f"seal-lab adapters export {digest}" in card
        and f"/v1/adapters/{digest}/files/adapter_config.json" in card
    )
    download = client.get(
        f"/v1/adapters/{digest}/files/adapter_config.json"
    )  # the card's link, on the cookie
    assert download.status_code == 200 and download.json()["r"] == 4
    assert client.get("/ui/adapters/nonesuch").status_code == 404
    wait_status(client, start(client), ("succeeded",))
    services = client.get("/ui/services").text
    assert "ok" in services and "calls in flight" in services  # health and the /metrics queues
    rows = _rows(services)  # every service as GET /v1/services found it just now
    assert [row[:3] for row in rows] == [
        ["generator", "127.0.0.1:50051", "up"],
        ["evaluator", "127.0.0.1:50053", "up"],
        ["trainer", "trainer-a:1", "up"],
    ]
    assert rows[2][3:] == ["fake sha256:fake-model (local)", "float32", "—", "1 slot (group 1)", "0/1 busy"]


def _rows(page: str) -> list[list[str]]:
    """The cells of the services table, tags stripped and spaces joined."""
    table = page.split("<h2>Services</h2>", 1)[1].split("</table>", 1)[0]
    return [
        [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
        if "<td>" in row
    ]


def test_the_services_page_shows_a_service_that_is_down_with_its_reason(stack):
    client = signed_in(stack)
    stack.call(
        lambda: stack.trainer.fail("GetInfo", grpc.StatusCode.UNAVAILABLE, details="connection refused")
    )
    response = client.get("/ui/services")
    assert response.status_code == 200
    rows = {row[1]: row for row in _rows(response.text)}
    assert rows["trainer-a:1"][2] == "down UNAVAILABLE: connection refused"
    assert rows["trainer-a:1"][3] == "—" and rows["127.0.0.1:50051"][2] == "up"


def test_session_secret_is_configured_or_derived_never_a_default():
    assert session_secret("configured", "token") == "configured"
    derived = session_secret(None, "token")
    assert derived == session_secret(None, "token") and "token" not in derived and derived != proof("token")
    assert session_secret(None, "other") != derived
    assert session_secret(None, None) != session_secret(None, None)  # random per process without a token


def test_views_compute_ages_and_config_differences():
    assert (
        views.age(100.0, now=100.0 + 7200) == "2 h" and views.age("1970-01-01T00:01:40Z", now=130.0) == "30 s"
    )
    rows = views.config_rows(
        [{"k": 1, "formats": ["a"], "p": {"x": 1}}, {"k": 2, "formats": ["a"], "p": {"x": 1}}]
    )
    assert [(r["key"], r["differs"]) for r in rows] == [("k", True), ("formats", False), ("p.x", False)]


# ---- the runs page's headlines come with the list (no read per run) -----------------------------------------


def api_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every call the UI's pages make to the API from now on, as (method, path)."""
    calls: list[tuple[str, str]] = []
    call = Api.call

    async def counted(self: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
        calls.append((method, path))
        return await call(self, method, path, **kwargs)

    monkeypatch.setattr(Api, "call", counted)
    return calls


def headline_cells(table: str) -> dict[str, str]:
    """Each row of the runs table: run id -> its headline cell's text."""
    rows = re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', table, re.S)
    return {
        run_id: re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", row, re.S)[-1]) for run_id, row in rows
    }


def test_the_runs_page_shows_a_page_of_finished_runs_headlines_from_one_api_request(tmp_path, monkeypatch):
    run_id = finished_run(tmp_path / "store", orchestrator_settings())
    copies = copies_of(tmp_path / "store", run_id, PAGE_SIZE - 1)
    with ui_stack(tmp_path, TOKEN) as stack:
        client = signed_in(stack)
        listed = {r["id"]: r for r in client.get("/v1/runs", params={"page_size": PAGE_SIZE}).json()["runs"]}
        assert set(listed) == {run_id, *copies}
        calls = api_calls(monkeypatch)
        table = client.get("/ui/runs", headers={"HX-Request": "true"}).text
    assert calls == [("GET", "/v1/runs")]  # no GET /v1/runs/{id}, for any of the 20 rows
    cells = headline_cells(table)
    assert set(cells) == set(listed)
    for run, cell in cells.items():
        headline = listed[run]["headline"]
        assert headline["metric"] == "f1" and isinstance(headline["gain"], float)
        assert cell == f"{headline['gain']:+.3f} f1 gain", cell


def test_a_run_an_older_coordinator_indexed_without_its_headline_costs_one_read_once(tmp_path, monkeypatch):
    run_id = finished_run(tmp_path / "store", orchestrator_settings())
    assert strip_headlines(tmp_path / "store")  # the index as a coordinator before the headline wrote it
    with ui_stack(tmp_path, TOKEN) as stack:
        client = signed_in(stack)
        assert client.get("/v1/runs").json()["runs"][0]["headline"] is None
        calls = api_calls(monkeypatch)
        first = client.get("/ui/runs", headers={"HX-Request": "true"}).text
        assert calls == [("GET", "/v1/runs"), ("GET", f"/v1/runs/{run_id}")]  # the one row without it
        calls.clear()
        again = client.get("/ui/runs", headers={"HX-Request": "true"}).text
        assert calls == [("GET", "/v1/runs")]  # the coordinator lists it now
        gain = client.get("/v1/runs").json()["runs"][0]["headline"]["gain"]
    assert headline_cells(first) == headline_cells(again) == {run_id: f"{gain:+.3f} f1 gain"}
