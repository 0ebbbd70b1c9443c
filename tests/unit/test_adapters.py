"""The stored adapter layout: canonical config, content key, publish, verify and fetch (a local store)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from seal_lab.errors import CorruptObject, FailedPrecondition, NotFound
from seal_lab.formats.adapters import (
    ADAPTER_CARD,
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    AdapterFiles,
    base_model_ref,
    canonical_adapter_config,
    fetch_adapter,
    has_weights,
    publish_adapter,
    verify_adapter,
)
from seal_lab.store import sha256_hex
from seal_lab.store.local import LocalStore


def _safetensors() -> bytes:
    """A one-tensor safetensors file: 8-byte header length, JSON header, the data."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0)


def _folder(tmp_path: Path, modules: list[str]) -> Path:
    folder = tmp_path / "peft"
    folder.mkdir(exist_ok=True)
    (folder / ADAPTER_WEIGHTS).write_bytes(_safetensors())
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"r": 16, "target_modules": modules}))
    return folder


BASE = base_model_ref("tiny")
META = {"base_model_name": "tiny", "base_model_fingerprint": "fp-1", "metrics": {"steps": 3}}


def test_adapter_config_bytes_do_not_depend_on_set_order():
    one = canonical_adapter_config(
        json.dumps({"r": 16, "target_modules": ["q_proj", "v_proj", "o_proj"]}).encode()
    )
    other = canonical_adapter_config(
        json.dumps({"target_modules": ["o_proj", "q_proj", "v_proj"], "r": 16}).encode()
    )
    assert one == other
    assert json.loads(one)["target_modules"] == ["o_proj", "q_proj", "v_proj"]


def test_the_key_is_the_sha256_of_weights_and_canonical_config(tmp_path: Path):
    files = AdapterFiles.from_peft_folder(_folder(tmp_path, ["v_proj", "q_proj"]), BASE)
    assert json.loads(files.config)["target_modules"] == ["q_proj", "v_proj"]
    assert files.key == f"adapters/{sha256_hex(files.weights + files.config)}"
    again = AdapterFiles.from_peft_folder(_folder(tmp_path, ["q_proj", "v_proj"]), BASE)
    assert again.key == files.key


def test_a_published_adapter_is_verified_and_keeps_its_first_metadata(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    files = AdapterFiles.from_peft_folder(_folder(tmp_path, ["q_proj"]), BASE)
    key = publish_adapter(store, files, META)
    assert key == files.key and has_weights(store, key)
    assert store.list_keys(f"{key}/") == sorted(
        f"{key}/{n}" for n in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_CARD, ADAPTER_META)
    )
    assert store.get_bytes(f"{key}/{ADAPTER_META}") == json.dumps(META, indent=1).encode()
    # The same adapter from another job: the same key, the first job's metadata.
    assert publish_adapter(store, files, {**META, "metrics": {"steps": 9}}) == key
    assert verify_adapter(store, key, "fp-1", base_id="tiny") == META


def test_verify_refuses_a_missing_adapter_and_one_for_another_base_model(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    key = publish_adapter(store, AdapterFiles.from_peft_folder(_folder(tmp_path, ["q_proj"]), BASE), META)
    with pytest.raises(NotFound):
        verify_adapter(store, "adapters/missing", "fp-1", base_id="tiny")
    with pytest.raises(FailedPrecondition, match="trained for base model 'tiny'"):
        verify_adapter(store, key, "fp-2", base_id="tiny")
    store.delete(f"{key}/{ADAPTER_WEIGHTS}")
    assert not has_weights(store, key)
    with pytest.raises(FailedPrecondition, match="only safetensors adapters"):
        verify_adapter(store, key, "fp-1", base_id="tiny")


def test_verify_refuses_an_adapter_whose_config_names_another_base_model(tmp_path: Path):
    """The fingerprint in seal_adapter.json is this model's, but the config (what peft and the Hub read) names
    another: refused, naming both. A config naming a path (peft's default) or nothing is left to the
    fingerprint; an id spelt with other capitals is the same model."""
    store = LocalStore(tmp_path / "store")
    files = AdapterFiles.from_peft_folder(_folder(tmp_path, ["q_proj"]), BASE)

    def published(named: object) -> str:
        config = {**json.loads(files.config), "base_model_name_or_path": named}
        return publish_adapter(store, AdapterFiles(files.weights, json.dumps(config).encode()), META)

    with pytest.raises(FailedPrecondition) as refused:
        verify_adapter(store, published("gpt2"), "fp-1", base_id="tiny")
    assert "'gpt2'" in refused.value.message and "'tiny'" in refused.value.message
    for named in (None, "/home/someone/models/gpt2", "./gpt2", "TINY"):
        assert verify_adapter(store, published(named), "fp-1", base_id="tiny") == META
    # A fingerprint that differs is refused first, naming both models too.
    with pytest.raises(
        FailedPrecondition, match=r"trained for base model 'tiny' .* not this service's 'other'"
    ):
        verify_adapter(store, published("tiny"), "fp-2", base_id="other")


@pytest.mark.model
def test_fetch_downloads_the_two_peft_files(tmp_path: Path):
    pytest.importorskip("torch")  # safetensors' check opens the file for torch
    store = LocalStore(tmp_path / "store")
    key = publish_adapter(store, AdapterFiles.from_peft_folder(_folder(tmp_path, ["q_proj"]), BASE), META)
    destination = tmp_path / "fetched"
    assert fetch_adapter(store, key, destination, "fp-1", base_id="tiny") == META
    assert sorted(p.name for p in destination.iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]


def test_fetch_quarantines_an_adapter_whose_bytes_do_not_match_its_key(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    files = AdapterFiles.from_peft_folder(_folder(tmp_path, ["q_proj"]), BASE)
    key = publish_adapter(store, files, META)
    store.put_bytes(f"{key}/{ADAPTER_CONFIG}", files.config + b" ", overwrite=True)
    with pytest.raises(CorruptObject, match="content hash"):
        fetch_adapter(store, key, tmp_path / "fetched", "fp-1", base_id="tiny")
    assert not store.exists(f"{key}/{ADAPTER_CONFIG}") and store.list_keys("quarantine/")
