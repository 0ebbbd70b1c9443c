"""`adapter_config.json` is checked against the trainer's limits before peft reads it (issue 12, item 5):
a stored config cannot make a service allocate `r` x every layer as it pleases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.formats.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterFiles,
    AdapterLimits,
    check_adapter_config,
    fetch_adapter,
    publish_adapter,
)
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.store.local import LocalStore
from tests.unit.test_adapters import META, _safetensors

GOOD = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]}


def config(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_plain_lora_config_within_the_limits_passes():
    assert check_adapter_config(config(), "adapters/x")["r"] == 16
    assert check_adapter_config(config(target_modules="all-linear"), "adapters/x")["r"] == 16


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (config(r=10**9), "r=1000000000 must be an integer in [1, 512]"),
        (config(r=0), "r=0 must be"),
        (config(r="16"), "r=16 must be an integer"),
        (config(r=True), "must be an integer"),
        (config(lora_alpha=float("nan")), "lora_alpha=nan"),
        (config(lora_alpha=float("inf")), "lora_alpha=inf"),
        (config(lora_alpha=-1), "lora_alpha=-1"),
        (config(target_modules=["../../etc/passwd"]), "target_modules must be"),
        (config(target_modules=[f"layer{i}" for i in range(300)]), "target_modules must be"),
        (config(target_modules=[]), "target_modules must be"),
        (config(target_modules=".*"), "target_modules must be"),
        (config(peft_type="IA3"), "is not LORA"),
        (config(rank_pattern={"q_proj": 4096}), "this one sets ['rank_pattern']"),
        (config(layers_to_transform=[0]), "this one sets ['layers_to_transform']"),
        (config(padding="x" * 70_000), "the limit is 65,536"),
        (b"[1, 2]", "not a JSON object"),
        (b"{not json", "is not JSON"),
    ],
)
def test_a_config_beyond_the_limits_is_refused_with_its_reason(data, message):
    with pytest.raises(InvalidArgument) as refused:
        check_adapter_config(data, "adapters/x")
    assert message in refused.value.message and "adapters/x" in refused.value.message


def test_the_trainers_limits_bound_rank_and_alpha():
    limits = AdapterLimits.from_directive_limits(DirectiveLimits(max_lora_rank=8, max_lora_alpha=16))
    with pytest.raises(InvalidArgument, match=r"r=16 must be an integer in \[1, 8\]"):
        check_adapter_config(config(), "adapters/x", limits)
    with pytest.raises(InvalidArgument, match=r"lora_alpha=32 must be in \(0, 16\]"):
        check_adapter_config(config(r=8), "adapters/x", limits)


def test_fetching_an_adapter_refuses_its_config_before_downloading_its_weights(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    files = AdapterFiles(_safetensors(), config(r=10**6))
    key = publish_adapter(store, files, META)
    destination = tmp_path / "adapter"
    with pytest.raises(InvalidArgument, match="r=1000000 must be"):
        fetch_adapter(store, key, destination, META["base_model_fingerprint"], base_id="tiny")
    assert not (destination / ADAPTER_WEIGHTS).exists()
    assert (destination / ADAPTER_CONFIG).exists()  # what was checked: the copy peft would have read


def test_weights_over_the_size_limit_are_refused(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    key = publish_adapter(store, AdapterFiles(_safetensors(), config()), META)
    with pytest.raises(InvalidArgument, match=r"adapter_model\.safetensors is 73 bytes; the limit is 10"):
        fetch_adapter(
            store,
            key,
            tmp_path / "a",
            META["base_model_fingerprint"],
            AdapterLimits(max_weights_bytes=10),
            base_id="tiny",
        )
