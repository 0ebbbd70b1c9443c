"""LoRA around a loaded base model: train a fresh adapter, and load stored adapters safely.

The base model stays loaded for the life of the process; adapter layers are injected for one job (or one
group of jobs, see `grouptrain` and `multilora`) and removed again afterwards, so every job starts from the
same clean base.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seal_lab.directive import Directive
from seal_lab.errors import CorruptObject, FailedPrecondition, NotFound
from seal_lab.grouptrain import GroupJob, TrainingExample, TrainOutcome, TrainProgressEvent, train_group
from seal_lab.models import LoadedModel
from seal_lab.multilora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, save_peft_folder
from seal_lab.store import ObjectStore, content_digest, validate_key

log = logging.getLogger(__name__)

ADAPTER_META = "seal_adapter.json"  # base-model fingerprint, directive, metrics
ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_META)

__all__ = ["TrainOutcome", "TrainProgressEvent", "TrainingExample", "train_adapter"]


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


def verify_adapter(store: ObjectStore, key: str, base_fingerprint: str) -> dict[str, Any]:
    """Check a stored adapter without downloading its weights: it exists, is safetensors, fits this base.

    Returns the adapter's metadata.
    """
    validate_key(key)
    if not store.exists(f"{key}/{ADAPTER_CONFIG}"):
        raise NotFound(f"no adapter at key {key!r}")
    if not store.exists(f"{key}/{ADAPTER_WEIGHTS}"):
        others = [k.rsplit("/", 1)[-1] for k in store.list_keys(f"{key}/")]
        raise FailedPrecondition(
            f"adapter {key!r} has no {ADAPTER_WEIGHTS} (found {others}); only safetensors adapters are loaded"
        )
    try:
        meta = store.get_json(f"{key}/{ADAPTER_META}")
    except NotFound:
        raise FailedPrecondition(
            f"adapter {key!r} has no {ADAPTER_META}; cannot verify its base model"
        ) from None
    except (json.JSONDecodeError, CorruptObject):
        raise FailedPrecondition(f"adapter {key!r} has an unreadable {ADAPTER_META}") from None
    trained_on = meta.get("base_model_fingerprint")
    if trained_on != base_fingerprint:
        raise FailedPrecondition(
            f"adapter {key!r} was trained for base model {meta.get('base_model_name')!r} "
            f"(fingerprint {trained_on}), not this one (fingerprint {base_fingerprint})"
        )
    return meta


def fetch_adapter(store: ObjectStore, key: str, destination: Path, base_fingerprint: str) -> dict[str, Any]:
    """Verify, then download an adapter folder for peft.

    Only the two peft files are fetched, so peft can never find a pickle to load.
    """
    meta = verify_adapter(store, key, base_fingerprint)
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        store.get_file(f"{key}/{name}", destination / name)
    _check_content_hash(store, key, destination)
    _check_safetensors(destination / ADAPTER_WEIGHTS, key)
    return meta


def _check_content_hash(store: ObjectStore, key: str, folder: Path) -> None:
    """Adapter keys are sha256(weights + config) (see the trainer): a mismatch is a corrupt copy, moved aside."""
    expected = content_digest(key)
    if expected is None:  # an adapter stored under a name of its own: nothing to check against
        return
    digest = hashlib.sha256()
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        digest.update((folder / name).read_bytes())
    if digest.hexdigest() != expected:
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            store.quarantine(f"{key}/{name}", "content does not match the adapter key's sha256")
        raise CorruptObject(f"adapter {key!r} does not match its content hash; moved to quarantine/", key=key)


def _check_safetensors(path: Path, key: str) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise FailedPrecondition(
            f"adapter {key!r}: {ADAPTER_WEIGHTS} is not a valid safetensors file"
        ) from exc


@contextmanager
def adapter_applied(loaded: LoadedModel, store: ObjectStore, key: str) -> Iterator[Any]:
    """Yield the base model with the stored adapter applied; removed again on exit."""
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="seal-adapter-") as tmp:
        fetch_adapter(store, key, Path(tmp), loaded.fingerprint)
        peft_model = PeftModel.from_pretrained(loaded.model, tmp, is_trainable=False)
    try:
        peft_model.eval()
        yield peft_model
    finally:
        peft_model.unload()
