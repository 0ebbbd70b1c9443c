"""The stored adapter: one owner for what the trainer publishes and the generator and evaluator load.

An adapter is a folder in the store, `adapters/<sha256(weights + config)>/`:

- `adapter_model.safetensors`: the LoRA weights, peft's tensor names (safetensors only: never a pickle);
- `adapter_config.json`: peft's config, canonical (sorted keys and target modules), so the same adapter always
  has the same bytes and hence the same key;
- `seal_adapter.json`: base-model fingerprint, dataset, directive, recipe, metrics. Not part of the key: the
  first job to publish an adapter keeps its metadata.

Readers check an adapter before use: it exists, its weights are safetensors, it was trained for this base
model, its bytes match its key, and its config asks for nothing beyond the trainer's limits (rank, alpha,
target modules, sizes) before peft allocates what it says. Nothing here imports torch or peft.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seal_lab.directive import DirectiveLimits
from seal_lab.errors import AlreadyExists, CorruptObject, FailedPrecondition, InvalidArgument, NotFound
from seal_lab.store import ObjectStore, content_digest, validate_key

ADAPTER_PREFIX = "adapters"
#: The two files of a peft adapter folder (what `PeftModel.from_pretrained` reads).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
#: Ours beside them: base-model fingerprint, directive, metrics.
ADAPTER_META = "seal_adapter.json"


#: Config fields that make peft allocate or apply more than a plain LoRA on named layers: refused when set.
_UNSUPPORTED_CONFIG = (
    "use_dora",
    "use_rslora",
    "rank_pattern",
    "alpha_pattern",
    "modules_to_save",
    "layers_to_transform",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
)
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_.]{1,100}$")


@dataclass(frozen=True)
class AdapterLimits:
    """What an adapter's config may ask for. `from_directive_limits`: the trainer's own limits, which every
    adapter it trains keeps; the defaults are a ceiling for readers that do not know them (the evaluator)."""

    max_rank: int = 512
    max_alpha: float = 4096
    max_target_modules: int = 256
    max_config_bytes: int = 64 * 1024
    max_weights_bytes: int = 4 * 1024**3

    @classmethod
    def from_directive_limits(cls, limits: DirectiveLimits) -> AdapterLimits:
        return cls(max_rank=limits.max_lora_rank, max_alpha=limits.max_lora_alpha)


DEFAULT_ADAPTER_LIMITS = AdapterLimits()


def check_adapter_config(
    data: bytes, key: str, limits: AdapterLimits = DEFAULT_ADAPTER_LIMITS
) -> dict[str, Any]:
    """The adapter's `adapter_config.json`, parsed, if it stays within `limits`; InvalidArgument saying which
    field does not (read before peft, which would allocate `r` x every target layer as told)."""
    where = f"adapter {key!r}: {ADAPTER_CONFIG}"
    if len(data) > limits.max_config_bytes:
        raise InvalidArgument(f"{where} is {len(data):,} bytes; the limit is {limits.max_config_bytes:,}")
    try:
        config = json.loads(data)
    except ValueError:
        raise InvalidArgument(f"{where} is not JSON") from None
    if not isinstance(config, dict):
        raise InvalidArgument(f"{where} is not a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise InvalidArgument(f"{where}: peft_type {str(config.get('peft_type'))[:40]!r} is not LORA")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= limits.max_rank:
        raise InvalidArgument(f"{where}: r={str(rank)[:40]} must be an integer in [1, {limits.max_rank}]")
    alpha = config.get("lora_alpha", rank)
    if (
        not isinstance(alpha, int | float)
        or isinstance(alpha, bool)
        or not math.isfinite(alpha)
        or not 0 < alpha <= limits.max_alpha
    ):
        raise InvalidArgument(f"{where}: lora_alpha={str(alpha)[:40]} must be in (0, {limits.max_alpha:g}]")
    modules = config.get("target_modules")
    if modules != "all-linear" and (
        not isinstance(modules, list)
        or not modules
        or len(modules) > limits.max_target_modules
        or not all(isinstance(m, str) and _MODULE_NAME.match(m) for m in modules)
    ):
        raise InvalidArgument(
            f"{where}: target_modules must be 'all-linear' or a list of 1 to {limits.max_target_modules} "
            "layer names (letters, digits, '_' and '.')"
        )
    unsupported = [name for name in _UNSUPPORTED_CONFIG if config.get(name)]
    if unsupported:
        raise InvalidArgument(f"{where}: only plain LoRA adapters are loaded (this one sets {unsupported})")
    return config


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


def fetch_adapter(
    store: ObjectStore,
    key: str,
    destination: Path,
    base_fingerprint: str,
    limits: AdapterLimits = DEFAULT_ADAPTER_LIMITS,
) -> dict[str, Any]:
    """Verify, then download an adapter folder for peft; its config is checked against `limits` first.

    Only the two peft files are fetched, so peft can never find a pickle to load.
    """
    meta = verify_adapter(store, key, base_fingerprint)
    # The config first, checked as peft will read it, before the (larger) weights are downloaded.
    store.get_file(f"{key}/{ADAPTER_CONFIG}", destination / ADAPTER_CONFIG)
    check_adapter_config((destination / ADAPTER_CONFIG).read_bytes(), key, limits)
    store.get_file(f"{key}/{ADAPTER_WEIGHTS}", destination / ADAPTER_WEIGHTS)
    _check_content_hash(store, key, destination)
    size = (destination / ADAPTER_WEIGHTS).stat().st_size
    if size > limits.max_weights_bytes:
        raise InvalidArgument(
            f"adapter {key!r}: {ADAPTER_WEIGHTS} is {size:,} bytes; the limit is {limits.max_weights_bytes:,}"
        )
    _check_safetensors(destination / ADAPTER_WEIGHTS, key)
    return meta


def check_adapter_present(store: ObjectStore, key: str) -> None:
    """A key a client names as an adapter: valid, and an adapter's config is there (InvalidArgument if not).
    Cheap (one existence check), for refusing a request before any work starts."""
    validate_key(key)
    if not store.exists(f"{key}/{ADAPTER_CONFIG}"):
        raise InvalidArgument(f"no adapter at key {key!r} in the store")


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
