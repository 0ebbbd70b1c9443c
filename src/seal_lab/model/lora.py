"""LoRA around a loaded base model: train a fresh adapter, and apply a stored one (checked by `adapters`).

The base model stays loaded for the life of the process; adapter layers are injected for one job (or one
group of jobs, see `grouptrain` and `multilora`) and removed again afterwards, so every job starts from the
same clean base.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seal_lab.formats.adapters import DEFAULT_ADAPTER_LIMITS, AdapterLimits, base_model_ref, fetch_adapter
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import LoadedModel
from seal_lab.model.grouptrain import GroupJob, TrainOutcome, TrainProgressEvent, train_group
from seal_lab.model.multilora import save_peft_folder
from seal_lab.store import ObjectStore


def train_adapter(
    loaded: LoadedModel,
    examples: list[TrainingExample],
    directive: Directive,
    seed: int,
    output_dir: Path,
    target_modules: list[str] | str = "all-linear",
    on_progress: Callable[[TrainProgressEvent], None] | None = None,
) -> TrainOutcome:
    """Train one fresh LoRA adapter and save it as a peft folder (safetensors). Deterministic per seed.

    A group of one (`grouptrain.train_group`): the trainer service trains concurrent jobs together instead.
    """
    (result,) = train_group(loaded, [GroupJob(examples, directive, seed, on_progress)], target_modules)
    if isinstance(result, Exception):
        raise result
    assert result.adapter is not None
    save_peft_folder(output_dir, result.adapter, target_modules, loaded.model)
    return result


@contextmanager
def adapter_applied(
    loaded: LoadedModel, store: ObjectStore, key: str, limits: AdapterLimits = DEFAULT_ADAPTER_LIMITS
) -> Iterator[Any]:
    """Yield the base model with the stored adapter applied (its config checked against `limits` before peft
    reads it); removed again on exit."""
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="seal-adapter-") as tmp:
        base_id = base_model_ref(loaded.name).id
        fetch_adapter(store, key, Path(tmp), loaded.fingerprint, limits, base_id=base_id)
        peft_model = PeftModel.from_pretrained(loaded.model, tmp, is_trainable=False)
    try:
        peft_model.eval()
        yield peft_model
    finally:
        peft_model.unload()
