"""The coordinator's HTTP side: every `/v1` route (read from the app, so a new route is covered without touching
this file) needs the token, `/healthz` stays open, a foreign Host gets 400, and HTTPS (mutual as an option)
serves the CLI's client, which sends the token."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr

from seal_lab.errors import NotFound
from seal_lab.security import Security, TlsSettings
from seal_lab.store.local import LocalStore
from services.coordinator.__main__ import uvicorn_options
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.cli.api_client import connect
from services.coordinator.cli.launcher import LocalStack
from services.coordinator.settings import CoordinatorSettings
from tests.tls_fixtures import TOKEN, WRONG_TOKEN, LabCertificates, make_certificates

LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


class NoRuns:
    """A run manager that knows no run: whatever a route asks of it, past the token, is a 404."""

    runs: dict = {}  # noqa: RUF012 - read only
    ready = True

    def summaries(self, before: object = None) -> list:
        return []

    def __getattr__(self, name: str):
        def unknown(*args: object, **kwargs: object) -> None:
            raise NotFound("no such run")

        return unknown


def _app(
    tmp_path: Path,
    token: str | None = TOKEN,
    allowed_hosts: list[str] | None = None,
    public_docs: bool = False,
):
    settings = CoordinatorSettings(
        allowed_hosts=allowed_hosts or [*LOOPBACK_HOSTS, "testserver"], public_docs=public_docs
    )
    security = Security(token=SecretStr(token) if token else None)
    app = create_app(settings, LocalStore(tmp_path / "store"), security)
    app.dependency_overrides[get_manager] = NoRuns
    return app


def _v1_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) under /v1, as the app routes them (included routers flattened), ids filled in."""
    routes = [
        (method, re.sub(r"\{[^}]+\}", "run-x", context.path))
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.path.startswith("/v1")
        for method in sorted(context.methods)
    ]
    assert len(routes) >= 7, routes  # runs (create, list, get, resume), results, report, events
    return routes


def test_every_v1_route_needs_the_token(tmp_path):
    app = _app(tmp_path)
    client = TestClient(app, raise_server_exceptions=False)
    for method, path in _v1_routes(app):
        missing = client.request(method, path)
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in missing.json()["detail"]
        wrong = client.request(method, path, headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
        assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["detail"], (method, path)
        assert TOKEN not in wrong.text
        basic = client.request(method, path, headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401, (method, path)
        right = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code != 401, (method, path, right.text)
    # The token is checked before the body is read: a stranger's malformed JSON is not parsed.
    assert client.post("/v1/runs", content=b"{not json").status_code == 401


DOCS = ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]


def test_health_stays_open_and_the_api_description_needs_the_token(tmp_path):
    client = TestClient(_app(tmp_path))
    assert client.get("/healthz").status_code == 200
    for path in DOCS:
        response = client.get(path)
        assert response.status_code == 401, path
        assert (
            response.json()["code"] == "unauthenticated"
            and "Authorization: Bearer" in response.json()["message"]
        )
        wrong = client.get(path, headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
        assert wrong.status_code == 401, path
        assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert not set(DOCS) & set(schema["paths"])  # the description does not describe itself


def test_public_docs_open_the_api_description_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAL_COORDINATOR_PUBLIC_DOCS", "true")
    assert CoordinatorSettings().public_docs is True
    assert CoordinatorSettings.model_fields["public_docs"].default is False
    client = TestClient(_app(tmp_path, public_docs=True))
    for path in DOCS:
        assert client.get(path).status_code == 200, path
    assert "url: '/openapi.json'" in client.get("/docs").text  # the page loads the description from here
    assert client.get("/v1/runs").status_code == 401


def test_without_a_token_the_api_stays_open_as_before(tmp_path):
    client = TestClient(_app(tmp_path, token=None))
    assert client.get("/v1/runs").json()["runs"] == []
    assert all(client.get(path).status_code == 200 for path in DOCS)


def test_the_host_header_is_checked_against_the_allowed_names(tmp_path):
    assert CoordinatorSettings.model_fields["allowed_hosts"].default == LOOPBACK_HOSTS
    app = _app(tmp_path, allowed_hosts=LOOPBACK_HOSTS)
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert TestClient(app, base_url=f"http://{host}").get("/healthz").status_code == 200, host
    for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example"):
        client = TestClient(app, base_url=f"http://{host}")
        assert client.get("/healthz").status_code == 400, host
        refused = client.get("/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_host", refused.text
        assert "SEAL_COORDINATOR_ALLOWED_HOSTS" in refused.json()["message"]


def test_allowed_hosts_come_as_a_comma_list_and_bad_wildcards_are_refused(monkeypatch):
    monkeypatch.setenv("SEAL_COORDINATOR_ALLOWED_HOSTS", "coordinator, localhost,*.lab.example")
    assert CoordinatorSettings().allowed_hosts == ["coordinator", "localhost", "*.lab.example"]
    monkeypatch.setenv("SEAL_COORDINATOR_ALLOWED_HOSTS", "lab.*")
    with pytest.raises(ValueError, match="wildcard"):
        CoordinatorSettings()


@pytest.fixture
def certs(tmp_path) -> LabCertificates:
    return make_certificates(tmp_path / "tls")


def _https_coordinator(tmp_path: Path, security: Security) -> Iterator[str]:
    """The app under uvicorn with the options `seal-coordinator` uses, on a loopback port, in a thread."""
    settings = CoordinatorSettings(startup_wait_seconds=5)
    app = create_app(settings, LocalStore(tmp_path / "store"), security)
    options = {k: v for k, v in uvicorn_options(settings, security).items() if k not in ("host", "port")}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def https_url(tmp_path, certs) -> Iterator[str]:
    yield from _https_coordinator(tmp_path, certs.server())


@pytest.fixture
def mutual_tls_url(tmp_path, certs) -> Iterator[str]:
    yield from _https_coordinator(tmp_path, certs.server(client_auth=True))


def test_https_serves_a_client_that_checks_the_lab_ca_and_sends_the_token(https_url, certs):
    with connect(https_url, timeout=10, security=certs.client()) as client:
        assert client.get("/v1/runs").json()["runs"] == []
        assert client.get("/healthz").status_code == 200
    with connect(https_url, timeout=10, security=certs.client(token=None)) as client:
        assert client.get("/v1/runs").status_code == 401
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(https_url, timeout=10, security=certs.client(foreign=True)).get("/healthz")
    with pytest.raises(httpx.TransportError):  # plaintext to the HTTPS port
        httpx.get(https_url.replace("https://", "http://") + "/healthz", timeout=10)


def test_https_with_mutual_tls_refuses_a_client_without_a_certificate(mutual_tls_url, certs):
    with connect(mutual_tls_url, timeout=10, security=certs.client(with_cert=True)) as client:
        assert client.get("/v1/runs").json()["runs"] == []
    with pytest.raises(httpx.TransportError), connect(mutual_tls_url, 10, certs.client()) as client:
        client.get("/healthz")


def test_the_local_stack_reaches_an_https_coordinator_over_https(tmp_path, certs):
    tls = TlsSettings(cert_file=certs.cert, key_file=certs.key, ca_file=certs.ca)
    assert LocalStack(tmp_path, security=Security(tls=tls)).coordinator_url.startswith("https://127.0.0.1:")
    assert LocalStack(tmp_path).coordinator_url.startswith("http://127.0.0.1:")
