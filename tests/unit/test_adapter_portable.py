"""Portable adapters: the config names the base model by a loadable id (never this machine's path to it), so
the same training gives the same key on every machine; seal_adapter.json says what the weights were; the
model card is kept. No model is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from seal_lab.formats.adapters import (
    ADAPTER_CARD,
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    AdapterFiles,
    adapter_meta,
    base_model_ref,
    publish_adapter,
)
from seal_lab.settings import EMBEDDED_MODEL
from seal_lab.store.local import LocalStore

UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _peft_folder(folder: Path, recorded_base: str) -> Path:
    """The folder `multilora.save_peft_folder` writes for a model loaded from `recorded_base` (peft records
    the loaded model's `name_or_path`: for the embedded model, a path into this machine's model cache)."""
    pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    from seal_lab.model.multilora import AdapterWeights, save_peft_folder

    generator = torch.Generator().manual_seed(0)
    weights = {
        f"model.layers.0.self_attn.{name}": (
            torch.randn(4, 8, generator=generator),
            torch.randn(8, 4, generator=generator),
        )
        for name in ("v_proj", "q_proj")
    }
    model = SimpleNamespace(name_or_path=recorded_base)
    save_peft_folder(folder, AdapterWeights(4, 8.0, weights), ["v_proj", "q_proj"], model)
    return folder


def test_the_embedded_model_is_recorded_by_its_upstream_id_with_its_dequantised_weights():
    ref = base_model_ref(EMBEDDED_MODEL)
    assert (ref.id, ref.source) == (UPSTREAM, "embedded")
    assert "Q4_1" in ref.weights and "dequantised" in ref.weights


def test_a_hugging_face_id_is_recorded_as_given():
    ref = base_model_ref("Qwen/Qwen2.5-0.5B-Instruct")
    assert (ref.id, ref.source) == ("Qwen/Qwen2.5-0.5B-Instruct", "hub")


def test_a_local_folder_is_recorded_by_the_id_its_config_names_else_by_its_name(tmp_path: Path):
    named = tmp_path / "models" / "my-copy"
    named.mkdir(parents=True)
    (named / "config.json").write_text(json.dumps({"_name_or_path": "Qwen/Qwen2.5-0.5B"}))
    assert (base_model_ref(str(named)).id, base_model_ref(str(named)).source) == (
        "Qwen/Qwen2.5-0.5B",
        "local-folder",
    )
    plain = tmp_path / "models" / "tiny-base"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"_name_or_path": str(plain)}))  # a path: not an id
    ref = base_model_ref(str(plain))
    assert ref.id == "tiny-base" and "folder's name" in ref.weights
    # A relative path is a path too, and the meta never keeps the configured path.
    assert base_model_ref(str(plain) + "/.").id == "tiny-base"
    meta = adapter_meta(str(plain), ref, "fp-1", seed=3)
    assert str(tmp_path) not in json.dumps(meta)
    assert meta["base_model_name"] == "tiny-base" and meta["base_model"]["fingerprint"] == "fp-1"


@pytest.mark.model  # needs torch and peft (make test-light skips it)
def test_two_machines_with_different_model_caches_publish_the_same_adapter_key(tmp_path: Path):
    """The same training on two machines: peft records each machine's cache path; the stored config names the
    upstream id, so the keys agree and no stored file holds either path."""
    homes = "/home/alice/.cache/seal-lab/models/smollm2-135m-instruct"
    image = "/opt/seal/models/smollm2-135m-instruct"
    base = base_model_ref(EMBEDDED_MODEL)
    keys, stores = [], []
    for index, cache_path in enumerate((homes, image)):
        folder = _peft_folder(tmp_path / f"peft-{index}", cache_path)
        assert json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == cache_path
        files = AdapterFiles.from_peft_folder(folder, base)
        store = LocalStore(tmp_path / f"store-{index}")
        keys.append(publish_adapter(store, files, adapter_meta(EMBEDDED_MODEL, base, "fp-1")))
        stores.append(store)
    assert keys[0] == keys[1]
    for store in stores:
        config = json.loads(store.get_bytes(f"{keys[0]}/{ADAPTER_CONFIG}"))
        assert config["base_model_name_or_path"] == UPSTREAM
        for name in (ADAPTER_CONFIG, ADAPTER_META, ADAPTER_CARD):
            text = store.get_bytes(f"{keys[0]}/{name}").decode()
            assert "/home/" not in text and "/opt/" not in text, name


@pytest.mark.model  # needs torch and peft (make test-light skips it)
def test_the_stored_adapter_keeps_a_model_card_naming_its_base(tmp_path: Path):
    yaml = pytest.importorskip("yaml")
    base = base_model_ref(EMBEDDED_MODEL)
    files = AdapterFiles.from_peft_folder(_peft_folder(tmp_path / "peft", "/opt/seal/models/x"), base)
    store = LocalStore(tmp_path / "store")
    key = publish_adapter(store, files, adapter_meta(EMBEDDED_MODEL, base, "fp-1"))
    assert sorted(k.rsplit("/", 1)[1] for k in store.list_keys(f"{key}/")) == sorted(
        [ADAPTER_CARD, ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS]
    )
    card = store.get_bytes(f"{key}/{ADAPTER_CARD}").decode()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == UPSTREAM and front["library_name"] == "peft"
    assert f"base_model:adapter:{UPSTREAM}" in front["tags"]
    assert "Q4_1" in card and "fp-1" in card and "### Framework versions" in card
    meta = store.get_json(f"{key}/{ADAPTER_META}")
    assert meta["base_model"] == {
        "id": UPSTREAM,
        "source": "embedded",
        "weights": base.weights,
        "fingerprint": "fp-1",
    }
