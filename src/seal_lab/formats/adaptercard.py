"""The model card (`README.md`) stored with an adapter: what peft's `save_pretrained` writes, from the
adapter's canonical config and its `seal_adapter.json`, so the folder reads the same wherever it is published
(Hugging Face Hub metadata: `base_model`, `library_name: peft`, tags). No path, no torch, no peft import."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import yaml


def model_card(config: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """peft's card fields (front matter and framework versions) and how to load the adapter."""
    base = meta.get("base_model") or {}
    base_id = str(base.get("id") or config.get("base_model_name_or_path") or "")
    front = {
        "base_model": base_id,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": sorted({f"base_model:adapter:{base_id}", "lora", "transformers", "seal-lab"}),
    }
    modules = config.get("target_modules")
    modules_text = ", ".join(modules) if isinstance(modules, list) else str(modules)
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=True).strip(),
        "---",
        "",
        f"# LoRA adapter for {base_id}",
        "",
        "Trained by seal-lab (SEAL's inner loop: one self-edit, one adapter).",
        "",
        f"- LoRA rank {config.get('r')}, alpha {config.get('lora_alpha')}, on {modules_text}",
    ]
    if base.get("weights"):
        lines.append(f"- trained on {base['weights']} (fingerprint {base.get('fingerprint')})")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_id}")',
        'model = PeftModel.from_pretrained(base, "path/to/this/folder")',
        "```",
        "",
        "### Framework versions",
        "",
        *(f"- {label} {version}" for label, version in _versions()),
        "",
    ]
    return "\n".join(lines).encode()


def _versions() -> list[tuple[str, str]]:
    found = []
    for label, package in (("PEFT", "peft"), ("seal-lab", "seal-lab")):
        try:
            found.append((label, metadata.version(package)))
        except metadata.PackageNotFoundError:
            continue
    return found
