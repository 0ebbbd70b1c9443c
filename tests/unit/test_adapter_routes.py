"""`/v1/adapters`: list (paged), show, download a file by name; 404 for unknown keys and file names; the token
like every /v1 route. A local store with two published adapters, no model."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from seal_lab.formats.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterFiles,
    adapter_meta,
    base_model_ref,
    publish_adapter,
)
from seal_lab.security import Security
from seal_lab.settings import EMBEDDED_MODEL
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.settings import CoordinatorSettings

TOKEN = "a-token-for-the-adapter-routes-1234"


def _safetensors(value: float) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<f", value)


def publish(store: LocalStore, folder: Path, value: float, seed: int) -> str:
    folder.mkdir(parents=True)
    (folder / ADAPTER_WEIGHTS).write_bytes(_safetensors(value))
    config = {"r": 4, "target_modules": ["q_proj"], "base_model_name_or_path": str(folder)}
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config))
    base = base_model_ref(EMBEDDED_MODEL)
    meta = adapter_meta(EMBEDDED_MODEL, base, "fp-1", dataset_key="datasets/d.jsonl", seed=seed)
    return publish_adapter(store, AdapterFiles.from_peft_folder(folder, base), meta)


@pytest.fixture
def published(tmp_path: Path) -> tuple[LocalStore, list[str]]:
    store = LocalStore(tmp_path / "store")
    keys = sorted(publish(store, tmp_path / f"peft-{i}", float(i), i) for i in range(3))
    return store, keys


def app_for(store: LocalStore, token: str | None = None) -> TestClient:
    security = Security(token=SecretStr(token)) if token else None
    app = create_app(CoordinatorSettings(), store, security)
    app.dependency_overrides[get_manager] = lambda: SimpleNamespace(store=store)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers)  # no lifespan: the stand-in manager holds the store


def test_the_list_is_paged_by_key(published):
    store, keys = published
    client = app_for(store)
    first = client.get("/v1/adapters", params={"limit": 2}).json()
    assert [a["key"] for a in first["adapters"]] == keys[:2] and first["next_after"] == keys[1]
    assert first["adapters"][0]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert first["adapters"][0]["dataset_key"] == "datasets/d.jsonl"
    rest = client.get("/v1/adapters", params={"limit": 2, "after": first["next_after"]}).json()
    assert [a["key"] for a in rest["adapters"]] == keys[2:] and rest["next_after"] is None
    assert client.get("/v1/adapters", params={"limit": 500}).status_code == 422


def test_show_gives_the_config_the_sidecar_and_the_files(published):
    store, keys = published
    digest = keys[0].split("/")[1]
    detail = app_for(store).get(f"/v1/adapters/{digest}")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["key"] == keys[0]
    assert body["files"] == [
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "seal_adapter.json",
    ]
    assert body["config"]["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert body["meta"]["base_model"]["fingerprint"] == "fp-1"


def test_each_known_file_downloads_with_its_stored_bytes(published):
    store, keys = published
    client = app_for(store)
    digest = keys[0].split("/")[1]
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "seal_adapter.json"):
        response = client.get(f"/v1/adapters/{digest}/files/{name}")
        assert response.status_code == 200, response.text
        assert response.content == store.get_bytes(f"{keys[0]}/{name}")
        assert f'filename="{name}"' in response.headers["content-disposition"]


def test_an_unknown_adapter_or_file_is_a_404_that_names_no_path(published, tmp_path: Path):
    store, keys = published
    client = app_for(store)
    digest = keys[0].split("/")[1]
    missing = client.get(f"/v1/adapters/{'0' * 64}")
    assert missing.status_code == 404 and "no adapter" in missing.json()["detail"]
    assert client.get(f"/v1/adapters/{'0' * 64}/files/README.md").status_code == 404
    for name in ("model.bin", "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "adapter_config.json.partial"):
        response = client.get(f"/v1/adapters/{digest}/files/{name}")
        assert response.status_code == 404, name
        assert str(tmp_path) not in response.text
    detail = client.get(f"/v1/adapters/{digest}/files/model.bin").json()["detail"]
    assert "adapter_model.safetensors" in detail and "README.md" in detail
    assert client.get("/v1/adapters/bad%20name").status_code == 404


def test_the_adapter_routes_need_the_token(published):
    store, keys = published
    digest = keys[0].split("/")[1]
    bare = TestClient(create_app(CoordinatorSettings(), store, Security(token=SecretStr(TOKEN))))
    for route in ("/v1/adapters", f"/v1/adapters/{digest}", f"/v1/adapters/{digest}/files/README.md"):
        assert bare.get(route).status_code == 401, route
    assert app_for(store, TOKEN).get(f"/v1/adapters/{digest}/files/README.md").status_code == 200


def test_an_adapter_with_an_unreadable_config_is_a_409_with_a_message(published):
    store, keys = published
    store.put_bytes(f"{keys[0]}/{ADAPTER_CONFIG}", b"{not json", overwrite=True)
    response = app_for(store).get(f"/v1/adapters/{keys[0].split('/')[1]}")
    assert response.status_code == 409 and "unreadable adapter_config.json" in response.json()["detail"]
