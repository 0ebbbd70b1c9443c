"""The docs stay true to the code: the settings page is what the settings classes generate, every settings class
and every setting is documented, the API reference is the document the coordinator serves, and the README stays
a short front page whose links land on files that exist (`make docs` checks the site's own links)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.settings import CoordinatorSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_settings_page_is_what_the_settings_classes_generate(reference):
    committed = reference.SETTINGS_PAGE.read_text(encoding="utf-8")
    assert committed == reference.settings_markdown(), "stale: run `python docs/hooks/reference.py`"


def test_every_settings_class_in_the_code_is_on_the_settings_page(reference):
    documented = {name for _, name in reference.SETTINGS_CLASSES}
    assert reference.declared_settings_classes() == documented


def test_every_setting_has_a_description(reference):
    assert reference.undescribed() == []


def test_the_settings_page_names_each_variable_with_its_prefix_and_default(reference):
    page = reference.settings_markdown()
    assert "| `SEAL_COORDINATOR_PORT` | int | `8000` |" in page
    assert "| `SEAL_STORE_S3_CA_FILE`, `SSL_CERT_FILE` | path \\| none | none |" in page
    assert "| `SEAL_TRAINER_WARMUP_RATIO` | float (≥ 0.0, ≤ 0.5) | `0.1` |" in page
    # a machine's home folder is written as ~, so the page is the same on every machine
    assert "`~/.cache/seal-lab/models`" in page and str(Path.home()) + "/" not in page


def test_the_api_reference_is_the_document_the_coordinator_serves(reference, tmp_path):
    app = create_app(CoordinatorSettings(public_docs=True), LocalStore(tmp_path))
    with TestClient(app) as client:
        served = client.get("/openapi.json").json()
    schema = reference.openapi_schema()
    assert schema == served
    assert {"/v1/runs", "/v1/runs/{run_id}", "/healthz"} <= set(schema["paths"])


def test_the_api_reference_page_holds_the_marker_the_hook_replaces(reference):
    page = ROOT / "docs" / reference.API_PAGE
    assert page.read_text(encoding="utf-8").count(reference.API_MARKER) == 1


def test_the_readme_is_a_short_front_page_with_the_two_command_quick_start():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    quick_start = re.search(r"## Quick start\n.*?```sh\n(.*?)```", text, re.DOTALL)
    assert quick_start is not None
    commands = [line.split("#")[0].strip() for line in quick_start[1].splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_every_relative_link_of_the_readme_lands_on_a_file_and_every_docs_page_is_linked():
    text = README.read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in t]
    missing = [t for t in targets if not (ROOT / t).is_file()]
    assert targets and missing == []
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")} - {"docs/index.md"}
    assert pages - set(targets) == set(), "a docs page the README's list does not link"
