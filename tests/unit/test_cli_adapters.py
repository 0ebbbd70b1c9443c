"""`seal-lab adapters list | show | export [--push-to-hub]` against the real routes (the coordinator app
in-process: TestClient) over a local store; the Hugging Face Hub is a fake HfApi (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from seal_lab.formats.adapters import ADAPTER_CONFIG
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.cli import api_client
from services.coordinator.cli import main as cli
from services.coordinator.settings import CoordinatorSettings

from .test_adapter_routes import publish

FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors", "seal_adapter.json"]


@pytest.fixture
def coordinator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalStore, str]:
    """A store with one adapter, and the CLI connected to the coordinator app that serves it."""
    store = LocalStore(tmp_path / "store")
    key = publish(store, tmp_path / "peft", 1.0, 7)
    app = create_app(CoordinatorSettings(), store)
    app.dependency_overrides[get_manager] = lambda: SimpleNamespace(store=store)
    monkeypatch.setattr(api_client, "connect", lambda url, timeout, security=None: TestClient(app))
    return store, key


def test_list_and_show_print_the_adapter(coordinator):
    _, key = coordinator
    listed = CliRunner().invoke(cli.app, ["adapters", "list"])
    assert listed.exit_code == 0, listed.output
    assert key in listed.output and "HuggingFaceTB/SmolLM2-135M-Instruct" in listed.output
    shown = CliRunner().invoke(cli.app, ["adapters", "show", key])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["meta"]["seed"] == 7


def test_export_writes_the_four_files_as_stored(coordinator, tmp_path: Path):
    store, key = coordinator
    target = tmp_path / "exported"
    result = CliRunner().invoke(cli.app, ["adapters", "export", key, str(target)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == FILES
    for name in FILES:
        assert (target / name).read_bytes() == store.get_bytes(f"{key}/{name}")


def test_export_refuses_files_that_do_not_match_the_key(coordinator, tmp_path: Path):
    store, key = coordinator
    config = store.get_bytes(f"{key}/{ADAPTER_CONFIG}")
    store.put_bytes(f"{key}/{ADAPTER_CONFIG}", config.replace(b'"r": 4', b'"r": 8'), overwrite=True)
    result = CliRunner().invoke(cli.app, ["adapters", "export", key, str(tmp_path / "out")])
    assert result.exit_code == 2 and "do not match its key" in " ".join(result.output.split())
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-checked is left behind


def test_export_of_an_unknown_adapter_says_so(coordinator, tmp_path: Path):
    result = CliRunner().invoke(cli.app, ["adapters", "export", "0" * 64, str(tmp_path / "out")])
    assert result.exit_code == 2 and "404" in result.output and "no adapter" in result.output


def test_push_to_hub_creates_the_repo_and_uploads_the_exported_folder(coordinator, tmp_path, monkeypatch):
    _, key = coordinator
    calls: list[tuple[str, Any, dict[str, Any]]] = []

    class FakeHfApi:
        def create_repo(self, repo_id: str, **kwargs: Any) -> None:
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs: Any) -> Any:
            calls.append(
                ("upload_folder", sorted(p.name for p in Path(kwargs["folder_path"]).iterdir()), kwargs)
            )
            return SimpleNamespace(commit_url="https://huggingface.co/me/adapter/commit/abc")

    hub = ModuleType("huggingface_hub")
    hub.HfApi = FakeHfApi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    target = tmp_path / "exported"
    result = CliRunner().invoke(
        cli.app, ["adapters", "export", key, str(target), "--push-to-hub", "me/adapter"]
    )
    assert result.exit_code == 0, result.output
    assert calls[0] == (
        "create_repo",
        "me/adapter",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    assert calls[1][0] == "upload_folder" and calls[1][1] == FILES
    assert calls[1][2]["repo_id"] == "me/adapter" and calls[1][2]["folder_path"] == str(target)
    assert "pushed to https://huggingface.co/me/adapter/commit/abc" in result.output


def test_push_to_hub_without_the_hub_extra_says_how_to_install_it(coordinator, tmp_path, monkeypatch):
    _, key = coordinator
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    result = CliRunner().invoke(
        cli.app, ["adapters", "export", key, str(tmp_path / "out"), "--push-to-hub", "me/adapter"]
    )
    assert result.exit_code == 2
    assert "seal-lab[hub]" in result.output and "Traceback" not in result.output
