"""An exported adapter loads in a fresh Python process with plain peft, offline, on the base model its config
names (the recorded id mapped to a local copy, as a user's cache would), and gives the same logits as the
adapter applied in-process by seal-lab. The tiny random Llama stands in for the base model; no training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.model  # make test-light skips it, make test runs it

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from seal_lab.formats.adapters import AdapterFiles, adapter_meta, base_model_ref, publish_adapter  # noqa: E402
from seal_lab.store.local import LocalStore  # noqa: E402
from services.coordinator.api.app import create_app  # noqa: E402
from services.coordinator.api.deps import get_manager  # noqa: E402
from services.coordinator.cli import api_client  # noqa: E402
from services.coordinator.cli import main as cli  # noqa: E402
from services.coordinator.settings import CoordinatorSettings  # noqa: E402
from tests.tiny_model import tiny_llama  # noqa: E402

#: Run in the fresh process: resolve the recorded id, load base and adapter with plain transformers + peft.
LOAD = """
import json, sys
from pathlib import Path
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

folder, local_copies = sys.argv[1], json.loads(sys.argv[2])
recorded = json.loads(Path(folder, "adapter_config.json").read_text())["base_model_name_or_path"]
base = AutoModelForCausalLM.from_pretrained(local_copies[recorded])
model = PeftModel.from_pretrained(base, folder).eval()
with torch.no_grad():
    print(json.dumps(model(torch.tensor([[1, 2, 3, 4, 5]])).logits[0, -1].tolist()))
"""


def _adapter(model) -> object:
    from seal_lab.model.multilora import AdapterWeights

    generator = torch.Generator().manual_seed(1)
    weights = {}
    for layer in range(model.config.num_hidden_layers):
        for name in ("q_proj", "v_proj"):
            linear = model.get_submodule(f"model.layers.{layer}.self_attn.{name}")
            weights[f"model.layers.{layer}.self_attn.{name}"] = (
                torch.randn(4, linear.in_features, generator=generator) * 0.3,
                torch.randn(linear.out_features, 4, generator=generator) * 0.3,
            )
    return AdapterWeights(4, 8.0, weights)


def test_an_exported_adapter_loads_in_a_fresh_process_on_its_recorded_base(tmp_path: Path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from seal_lab.model.base import LoadedModel, model_fingerprint
    from seal_lab.model.lora import adapter_applied
    from seal_lab.model.multilora import save_peft_folder

    base_dir = tiny_llama(tmp_path / "machine-a" / "tiny-base")
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    loaded = LoadedModel(base_dir, model, None, model_fingerprint(base_dir, model), "cpu", "float32", 0.0)
    # What the trainer does after training (services/trainer/server.py: _store_outcome).
    save_peft_folder(tmp_path / "peft", _adapter(model), ["q_proj", "v_proj"], model)
    base = base_model_ref(loaded.name)
    store = LocalStore(tmp_path / "store")
    files = AdapterFiles.from_peft_folder(tmp_path / "peft", base)
    key = publish_adapter(store, files, adapter_meta(loaded.name, base, loaded.fingerprint))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        plain = model(ids).logits[0, -1]
        with adapter_applied(loaded, store, key) as adapted:
            expected = adapted(ids).logits[0, -1]
    assert not torch.allclose(plain, expected, atol=1e-3)  # the adapter changes the output

    app = create_app(CoordinatorSettings(), store)
    app.dependency_overrides[get_manager] = lambda: SimpleNamespace(store=store)
    monkeypatch.setattr(api_client, "connect", lambda url, timeout, security=None: TestClient(app))
    exported = tmp_path / "exported"
    result = CliRunner().invoke(cli.app, ["adapters", "export", key, str(exported)])
    assert result.exit_code == 0, result.output
    for path in exported.iterdir():
        assert str(tmp_path) not in path.read_bytes().decode("utf-8", "replace"), path.name

    # Another machine: its own copy of the base, found by the id the adapter records; no network.
    copy = shutil.copytree(base_dir, tmp_path / "machine-b" / "models" / "copy-of-tiny")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.run(
        [sys.executable, "-c", LOAD, str(exported), json.dumps({"tiny-base": str(copy)})],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    logits = torch.tensor(json.loads(process.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
