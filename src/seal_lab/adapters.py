"""The stored adapter: one owner for what the trainer publishes and the generator and evaluator load.

An adapter is a folder in the store, `adapters/<sha256(weights + config)>/`:

- `adapter_model.safetensors`: the LoRA weights, peft's tensor names (safetensors only: never a pickle);
- `adapter_config.json`: peft's config, canonical (sorted keys and target modules), so the same adapter always
  has the same bytes and hence the same key;
- `seal_adapter.json`: base-model fingerprint, dataset, directive, recipe, metrics. Not part of the key: the
  first job to publish an adapter keeps its metadata.

Readers check an adapter before use: it exists, its weights are safetensors, it was trained for this base
model, and its bytes match its key. Nothing here imports torch or peft.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seal_lab.errors import AlreadyExists, CorruptObject, FailedPrecondition, NotFound
from seal_lab.store import ObjectStore, content_digest, validate_key

ADAPTER_PREFIX = "adapters"
#: The two files of a peft adapter folder (what `PeftModel.from_pretrained` reads).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
#: Ours beside them: base-model fingerprint, directive, metrics.
ADAPTER_META = "seal_adapter.json"


def canonical_adapter_config(data: bytes) -> bytes:
    """peft writes `target_modules` from a set, in an order that changes with each process's hash seed; sorted,
    the same adapter always gets the same bytes, hence the same content-addressed key."""
    config = json.loads(data)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return json.dumps(config, indent=2, sort_keys=True).encode()


def _digest(weights: bytes, config: bytes) -> str:
    return hashlib.sha256(weights + config).hexdigest()


@dataclass(frozen=True)
class AdapterFiles:
    """The keyed part of an adapter: its weights and canonical config, as stored."""

    weights: bytes
    config: bytes

    @classmethod
    def from_peft_folder(cls, folder: Path) -> AdapterFiles:
        """The files of a peft folder just written (`multilora.save_peft_folder`), config made canonical."""
        config = canonical_adapter_config((folder / ADAPTER_CONFIG).read_bytes())
        return cls((folder / ADAPTER_WEIGHTS).read_bytes(), config)

    @property
    def key(self) -> str:
        return f"{ADAPTER_PREFIX}/{_digest(self.weights, self.config)}"


def publish_adapter(store: ObjectStore, files: AdapterFiles, meta: dict[str, Any]) -> str:
    """Write an adapter under its content key; return the key.

    Every write is write-once. Weights and config are the same bytes whoever trained them; another job that
    produced the very same adapter keeps the first job's metadata.
    """
    key = files.key
    store.put_bytes(f"{key}/{ADAPTER_WEIGHTS}", files.weights)
    store.put_bytes(f"{key}/{ADAPTER_CONFIG}", files.config, "application/json")
    with contextlib.suppress(AlreadyExists):
        store.put_bytes(f"{key}/{ADAPTER_META}", json.dumps(meta, indent=1).encode(), "application/json")
    return key


def has_weights(store: ObjectStore, key: str) -> bool:
    """Whether a published adapter's weights are (still) in the store."""
    return store.exists(f"{key}/{ADAPTER_WEIGHTS}")


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
    """A content key (`AdapterFiles.key`) that does not match the files is a corrupt copy, moved aside."""
    expected = content_digest(key)
    if expected is None:  # an adapter stored under a name of its own: nothing to check against
        return
    if _digest((folder / ADAPTER_WEIGHTS).read_bytes(), (folder / ADAPTER_CONFIG).read_bytes()) != expected:
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
