"""LoRA around a loaded base model: train a fresh adapter, and load stored adapters safely.

The base model stays loaded for the life of the process; peft layers are injected for one job and removed
again afterwards (`unload`), so every job starts from the same clean base.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seal_lab.directive import Directive
from seal_lab.errors import CorruptObject, FailedPrecondition, InvalidArgument, NotFound
from seal_lab.models import LoadedModel
from seal_lab.store import ObjectStore, content_digest, validate_key

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_META = "seal_adapter.json"  # base-model fingerprint, directive, metrics
ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_META)


@dataclass(frozen=True)
class TrainingExample:
    """Loss is taken on `completion` only; `prompt` (may be empty) is context the model is not taught."""

    prompt: str
    completion: str


@dataclass
class TrainProgressEvent:
    step: int
    total_steps: int
    epoch: int
    loss: float


@dataclass
class TrainOutcome:
    directory: Path
    step_loss: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    trainable_parameters: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _tokenize(
    loaded: LoadedModel, examples: list[TrainingExample], max_length: int
) -> list[tuple[list, list]]:
    """(input_ids, labels) per example; labels are -100 on the prompt, so only the completion is learned."""
    tokenizer = loaded.tokenizer
    eos = tokenizer.eos_token_id
    encoded = []
    for example in examples:
        prompt_ids = tokenizer.encode(example.prompt, add_special_tokens=False) if example.prompt else []
        completion_ids = tokenizer.encode(example.completion, add_special_tokens=False)
        if example.prompt:
            # A supervised completion must learn where it ends. Plain knowledge text gets no EOS: teaching
            # the model that documents end abruptly makes it answer questions with an immediate EOS.
            completion_ids.append(eos)
        # Too long: the prompt loses its start (a policy prompt is long; what it taught comes last), then the
        # completion its end.
        prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(completion_ids) - max_length) :]
        ids = (prompt_ids + completion_ids)[:max_length]
        labels = ([-100] * len(prompt_ids) + completion_ids)[:max_length]
        if any(label != -100 for label in labels):
            encoded.append((ids, labels))
    return encoded


def train_adapter(
    loaded: LoadedModel,
    examples: list[TrainingExample],
    directive: Directive,
    seed: int,
    output_dir: Path,
    target_modules: list[str] | str = "all-linear",
    on_progress: Callable[[TrainProgressEvent], None] | None = None,
) -> TrainOutcome:
    """Train one fresh LoRA adapter and save it as a peft folder (safetensors). Deterministic per seed."""
    import torch
    from peft import LoraConfig, get_peft_model

    sequences = _tokenize(loaded, examples, directive.max_length)
    if not sequences:
        raise InvalidArgument("the dataset has no training text")
    pad_id = loaded.tokenizer.pad_token_id
    torch.manual_seed(seed)
    config = LoraConfig(
        r=directive.lora_rank,
        lora_alpha=directive.lora_alpha,
        lora_dropout=0.0,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(loaded.model, config)
    outcome = TrainOutcome(directory=output_dir)
    try:
        peft_model.train()
        params = [p for p in peft_model.parameters() if p.requires_grad]
        outcome.trainable_parameters = sum(p.numel() for p in params)
        optimizer = torch.optim.AdamW(params, lr=directive.learning_rate, weight_decay=0.0)
        order_rng = random.Random(seed)
        batches_per_epoch = -(-len(sequences) // directive.batch_size)
        total_steps = batches_per_epoch * directive.epochs
        started = time.perf_counter()
        step = 0
        for epoch in range(directive.epochs):
            order = list(range(len(sequences)))
            order_rng.shuffle(order)
            for start in range(0, len(order), directive.batch_size):
                batch = [sequences[i] for i in order[start : start + directive.batch_size]]
                input_ids, labels, mask = _pad_batch(batch, pad_id, loaded.device)
                loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                outcome.tokens += int(mask.sum())
                outcome.step_loss.append(round(float(loss.detach()), 5))
                if on_progress:
                    on_progress(TrainProgressEvent(step, total_steps, epoch + 1, outcome.step_loss[-1]))
        outcome.seconds = time.perf_counter() - started
        peft_model.save_pretrained(output_dir, safe_serialization=True)
    finally:
        peft_model.unload()  # back to the clean base model for the next job
        loaded.model.eval()
    return outcome


def _pad_batch(batch: list[tuple[list, list]], pad_id: int, device: str) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return input_ids.to(device), labels.to(device), mask.to(device)


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
