"""Many LoRA adapters on one base model at once: stacked weights, per-token routing, batched matmuls.

peft applies one adapter to a whole batch (its mixed-adapter forward loops over adapters in every layer).
Here every target linear layer holds the A and B matrices of G adapters stacked into `[G, r, in]` and
`[G, out, r]` tensors; each token is routed to its adapter (or to none), the tokens are gathered per adapter
into `[G, L, in]`, and the LoRA path is two batched matmuls whatever G is. The trainer trains a group of
adapters in one optimizer step this way; the evaluator answers under many adapters in one generate.

Adapters enter and leave as standard peft folders (`adapter_model.safetensors` + `adapter_config.json`), and
a fresh adapter starts from exactly the weights peft would give it for the same seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seal_lab.errors import FailedPrecondition
from seal_lab.formats.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS

PEFT_PREFIX = "base_model.model."


@dataclass
class AdapterWeights:
    """One adapter: rank, alpha, and per target module its A `[r, in]` and B `[out, r]` (CPU tensors)."""

    rank: int
    alpha: float
    weights: dict[str, tuple[Any, Any]]

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


def lora_targets(model: Any, target_modules: list[str] | str) -> list[str]:
    """Names of the linear layers peft would wrap for `target_modules`, in peft's order (cached per model)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers, check_target_module_exists

    cache = model.__dict__.setdefault("_seal_lora_targets", {})
    cache_key = json.dumps(target_modules)
    if cache_key not in cache:
        config = LoraConfig(r=1, target_modules=target_modules, task_type="CAUSAL_LM")
        config = _maybe_include_all_linear_layers(config, model)
        cache[cache_key] = [
            name
            for name, module in model.named_modules()
            if name and _is_linear(module) and check_target_module_exists(config, name)
        ]
        if not cache[cache_key]:
            raise FailedPrecondition(
                f"no linear layer of the model matches target_modules={target_modules!r}"
            )
    return cache[cache_key]


def _is_linear(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear)


def fresh_adapter(model: Any, targets: list[str], rank: int, alpha: float, seed: int) -> AdapterWeights:
    """The initial weights peft gives a new adapter after `torch.manual_seed(seed)` (B zero, A Kaiming).

    peft creates `nn.Linear(in, r)` and `nn.Linear(r, out)` (each drawing its default init), then draws A once
    more; the same draws in the same order give the same numbers (tests compare with peft itself).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name in targets:
        layer = model.get_submodule(name)
        a = torch.empty(rank, layer.in_features)
        b = torch.empty(layer.out_features, rank)
        torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        torch.nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
        torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        weights[name] = (a, torch.zeros_like(b))
    return AdapterWeights(rank, alpha, weights)


class Routing:
    """Which adapter slot each token goes to (-1: none), and the gather indices derived from it.

    Set either per token (`[rows, width]`, training on packed rows) or per row (`[rows]`, generation: every
    token of a row, prompt and new ones, belongs to its row's adapter). The indices are computed once per
    input shape and shared by every layer.
    """

    def __init__(self, slots: int, on_change: Any = None) -> None:
        self.slots = slots
        #: None: runs on a CPU, the gather on CUDA (see `segments`); True / False forces one (tests).
        self.use_runs: bool | None = None
        self._token: Any = None
        self._row: Any = None
        self._cache: tuple[tuple[int, int], Any] | None = None
        self._on_change = on_change

    def per_token(self, token_slots: Any) -> None:
        """Route `[rows, width]` tokens (call before each forward pass that trains)."""
        self._token, self._row, self._cache = token_slots, None, None
        if self._on_change:
            self._on_change()

    def per_row(self, row_slots: Any) -> None:
        """Route whole rows, `[rows]` (call before each batch that generates)."""
        self._token, self._row, self._cache = None, row_slots, None
        if self._on_change:
            self._on_change()

    def segments(self, rows: int, width: int, device: Any) -> Runs | tuple[Any, Any] | None:
        """Where each adapter's tokens are, for `StackedLoraLinear`; None when no token has an adapter.

        On a CPU, `Runs` when the flattened tokens fall into few runs of one slot each (a packed training
        step whose rows hold each job's examples side by side, generation rows grouped by adapter): each run
        is a plain slice, so the LoRA path is two small matmuls per run with no gather, no scatter and no
        padding. Otherwise (and always on CUDA, where one batched matmul beats a loop of kernel launches)
        (index `[G, L]` into the flattened tokens, mask `[G, L]`), every adapter's tokens gathered and padded
        to the longest."""
        import torch

        if self._cache is not None and self._cache[0] == (rows, width):
            return self._cache[1]
        if self._token is not None:
            if tuple(self._token.shape) != (rows, width):
                raise ValueError(
                    f"routing is for {tuple(self._token.shape)} tokens, input is {(rows, width)}"
                )
            flat = self._token.reshape(-1)
        elif self._row is not None:
            flat = self._row.reshape(rows, 1).expand(rows, width).reshape(-1)
        else:
            raise ValueError("no routing set")
        flat = flat.to(device)
        valid = flat >= 0
        counts = torch.bincount(flat[valid], minlength=self.slots)
        longest = int(counts.max()) if counts.numel() else 0
        result: Runs | tuple[Any, Any] | None = None
        use_runs = flat.device.type == "cpu" if self.use_runs is None else self.use_runs
        runs = _runs(flat) if use_runs and longest else None
        if runs is not None and (self.use_runs or len(runs.slots) <= 2 * int((counts > 0).sum()) + 1):
            result = runs
        elif longest:
            order = torch.argsort(torch.where(valid, flat, self.slots), stable=True)[: int(valid.sum())]
            slot_of = flat[order]
            starts = torch.cumsum(counts, 0) - counts
            position = torch.arange(order.numel(), device=device) - starts[slot_of]
            index = torch.zeros(self.slots, longest, dtype=torch.long, device=device)
            mask = torch.zeros(self.slots, longest, dtype=torch.bool, device=device)
            index[slot_of, position] = order
            mask[slot_of, position] = True
            result = (index, mask)
        self._cache = ((rows, width), result)
        return result


@dataclass(frozen=True)
class Runs:
    """The flattened tokens as consecutive runs: run i is `lengths[i]` tokens of slot `slots[i]` (-1: none)."""

    slots: list[int]
    lengths: list[int]


def _runs(flat: Any) -> Runs:
    import torch

    change = torch.nonzero(flat[1:] != flat[:-1]).reshape(-1) + 1
    starts = [0, *change.tolist()]
    ends = [*starts[1:], flat.numel()]
    return Runs(flat[starts].tolist(), [e - b for b, e in zip(starts, ends, strict=True)])


def _stacked_linear_class() -> Any:
    import torch

    class StackedLoraLinear(torch.nn.Module):
        """A frozen base linear layer plus G adapters' LoRA paths; tokens routed by a shared `Routing`."""

        def __init__(self, base: Any, stack: StackedLora, name: str) -> None:
            super().__init__()
            self.base = base
            self.stack = stack
            self.name = name

        def forward(self, x: Any) -> Any:
            y = self.base(x)
            rows, width = (x.shape[0], x.shape[1]) if x.dim() == 3 else (1, x.shape[0])
            routed = self.stack.routing.segments(rows, width, x.device)
            if routed is None:
                return y
            a, b = self.stack.views(self.name)  # [G, r, in], [G, out, r]
            if isinstance(routed, Runs):  # each run a slice under one adapter: peft's own two matmuls

                def lora(part: Any, slot: int) -> Any:
                    linear = torch.nn.functional.linear
                    low = linear(part.to(a.dtype), a[slot]) * self.stack.scaling[slot]
                    return linear(low, b[slot]).to(y.dtype)

                if len(routed.slots) == 1:  # every token under one adapter: no split, no concatenation
                    return y + lora(x, routed.slots[0])
                # torch.split, not slicing: its backward is one concatenation, not a zeroed copy per slice.
                xs = torch.split(x.reshape(-1, x.shape[-1]), routed.lengths)
                ys = torch.split(y.reshape(-1, y.shape[-1]), routed.lengths)
                pieces = [
                    part_y if slot < 0 else part_y + lora(part_x, slot)
                    for slot, part_x, part_y in zip(routed.slots, xs, ys, strict=True)
                ]
                return torch.cat(pieces).reshape(y.shape)
            index, mask = routed
            groups, length = index.shape
            flat_x = x.reshape(-1, x.shape[-1])
            # index_select, not `flat_x[index]`: its backward is an index_add, which on a CPU is several times
            # faster than the accumulating index_put that advanced indexing needs.
            gathered = flat_x.index_select(0, index.reshape(-1)).view(groups, length, -1).to(a.dtype)
            low = torch.bmm(gathered, a.transpose(1, 2))  # [G, L, r]
            # Scaling and the pad mask on the rank-r product (r columns, not `out`): pads contribute zero.
            low = low * (self.stack.scaling[:, None, None] * mask[..., None])
            delta = torch.bmm(low, b.transpose(1, 2))  # [G, L, out]
            flat_y = y.reshape(-1, y.shape[-1])
            flat_y = flat_y.index_add(0, index.reshape(-1), delta.reshape(-1, delta.shape[-1]).to(y.dtype))
            return flat_y.reshape(y.shape)

    return StackedLoraLinear


class StackedLora:
    """G adapters stacked into every target layer of `model` while the context is open.

    `params()` are the stacked A and B tensors (leaf tensors; trainable when `trainable`); `export(g)` gives
    adapter g back at its own rank. Padded ranks are zero in A and B, so they stay zero under training.
    """

    def __init__(
        self, model: Any, targets: list[str], adapters: Sequence[AdapterWeights], trainable: bool = False
    ) -> None:
        import torch

        if not adapters:
            raise ValueError("no adapters to stack")
        self.model = model
        self.adapters = list(adapters)
        self.routing = Routing(len(adapters), on_change=self._split)
        self._current: dict[str, tuple[Any, Any]] = {}
        device = next(model.parameters()).device
        self.max_rank = max(a.rank for a in adapters)
        self.scaling = torch.tensor([a.scaling for a in adapters], dtype=torch.float32, device=device)
        # Every layer's A and B live in one flat `[G, N]` tensor (the only leaf the optimizer sees: a handful
        # of kernels per step however many layers); each layer reads its `[G, r, in]` / `[G, out, r]` views.
        self.shapes: dict[str, tuple[int, int]] = {}  # name -> (in, out)
        for name in targets:
            layer = model.get_submodule(name)
            self.shapes[name] = (layer.in_features, layer.out_features)
        size = sum(self.max_rank * (fan_in + fan_out) for fan_in, fan_out in self.shapes.values())
        flat = torch.zeros(len(adapters), size)
        for name, (a_view, b_view) in self._layer_views(flat).items():
            for slot, adapter in enumerate(adapters):
                if name not in adapter.weights:
                    raise FailedPrecondition(f"adapter {slot} has no weights for layer {name}")
                a_g, b_g = adapter.weights[name]
                a_view[slot, : adapter.rank] = a_g
                b_view[slot, :, : adapter.rank] = b_g
        self.flat = flat.to(device).requires_grad_(trainable)

    def freeze_leading_ranks(self, ranks: dict[int, int]) -> None:
        """Keep the first `ranks[slot]` ranks of those slots as they are: their gradient is zeroed (AdamW with
        no weight decay then leaves them exactly unchanged, and they do not count in the clipping norm)."""
        import torch

        mask = torch.ones_like(self.flat, requires_grad=False)
        for a_view, b_view in self._layer_views(mask).values():
            for slot, count in ranks.items():
                a_view[slot, :count] = 0
                b_view[slot, :, :count] = 0
        self.flat.register_hook(lambda grad: grad * mask)

    def _layer_views(self, flat: Any) -> dict[str, tuple[Any, Any]]:
        """Each layer's `[G, r, in]` and `[G, out, r]` views of `flat`, taken with one `split`: its backward
        is one concatenation (a slice per layer would add a zero-filled copy of the whole tensor per layer)."""
        import torch

        rank, groups = self.max_rank, flat.shape[0]
        sizes = [n for fan_in, fan_out in self.shapes.values() for n in (rank * fan_in, fan_out * rank)]
        chunks = torch.split(flat, sizes, dim=1)
        return {
            name: (
                chunks[2 * i].view(groups, rank, fan_in),
                chunks[2 * i + 1].view(groups, fan_out, rank),
            )
            for i, (name, (fan_in, fan_out)) in enumerate(self.shapes.items())
        }

    def _split(self) -> None:
        """Fresh views for the next forward pass (its own autograd graph)."""
        self._current = self._layer_views(self.flat)

    def views(self, name: str) -> tuple[Any, Any]:
        if not self._current:
            self._split()
        return self._current[name]

    def params(self) -> list[Any]:
        return [self.flat]

    @contextmanager
    def applied(self) -> Iterator[Routing]:
        """Swap the target layers for stacked ones; the base model's own layers come back on exit."""
        cls = _stacked_linear_class()
        originals = {}
        try:
            for name in self.shapes:
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                originals[name] = getattr(parent, child)
                setattr(parent, child, cls(originals[name], self, name))
            yield self.routing
        finally:
            for name, original in originals.items():
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, original)

    def export(self, slot: int) -> AdapterWeights:
        adapter = self.adapters[slot]
        rank = adapter.rank
        weights = {
            name: (a[slot, :rank].cpu().clone(), b[slot, :, :rank].cpu().clone())
            for name, (a, b) in self._layer_views(self.flat.detach()).items()
        }
        return AdapterWeights(rank, adapter.alpha, weights)


def save_peft_folder(
    folder: Path, adapter: AdapterWeights, target_modules: list[str] | str, model: Any
) -> None:
    """Write a folder `PeftModel.from_pretrained` loads: safetensors weights and peft's own config file
    (naming `model`'s checkpoint as its base, as peft does)."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (a, b) in adapter.weights.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b.contiguous()
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    modules = sorted({name.rsplit(".", 1)[-1] for name in adapter.weights})
    config = LoraConfig(
        r=adapter.rank,
        lora_alpha=adapter.alpha,
        lora_dropout=0.0,
        target_modules=modules if target_modules == "all-linear" else target_modules,
        task_type="CAUSAL_LM",
        base_model_name_or_path=getattr(model, "name_or_path", None) or None,
        inference_mode=True,
    )
    config.save_pretrained(str(folder))


def load_peft_folder(folder: Path, targets: list[str]) -> AdapterWeights:
    """Read a plain LoRA peft folder (safetensors only) into per-layer A and B; refuses what it cannot apply."""
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        raise FailedPrecondition(f"{ADAPTER_CONFIG} is missing or not JSON") from None
    unsupported = [
        field
        for field in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern", "modules_to_save")
        if config.get(field)
    ]
    if config.get("peft_type", "LORA") != "LORA" or unsupported:
        raise FailedPrecondition(f"only plain LoRA adapters can be stacked (this one uses {unsupported})")
    rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    weights = {}
    for key, value in tensors.items():
        if not key.startswith(PEFT_PREFIX) or not key.endswith(".weight"):
            raise FailedPrecondition(f"unexpected tensor {key!r} in the adapter")
        module, kind = key[len(PEFT_PREFIX) : -len(".weight")].rsplit(".", 1)
        if kind not in ("lora_A", "lora_B"):
            raise FailedPrecondition(f"unexpected tensor {key!r} in the adapter")
        module = module.removesuffix(".default")
        pair = weights.setdefault(module, [None, None])
        pair[0 if kind == "lora_A" else 1] = value.float()
    unknown = sorted(set(weights) - set(targets))
    if unknown:
        raise FailedPrecondition(f"the adapter wraps layers this model has not: {unknown[:3]}")
    complete = {}
    for module, (a, b) in weights.items():
        if a is None or b is None or a.shape[0] != rank or b.shape[1] != rank:
            raise FailedPrecondition(f"the adapter's layer {module} is incomplete or not of rank {rank}")
        complete[module] = (a, b)
    return AdapterWeights(rank, alpha, complete)


def with_all_targets(adapter: AdapterWeights, model: Any, targets: list[str]) -> AdapterWeights:
    """Zero weights for target layers the adapter does not wrap (stacked adapters share one set of layers)."""
    import torch

    weights = dict(adapter.weights)
    for name in targets:
        if name not in weights:
            layer = model.get_submodule(name)
            weights[name] = (
                torch.zeros(adapter.rank, layer.in_features),
                torch.zeros(layer.out_features, adapter.rank),
            )
    return AdapterWeights(adapter.rank, adapter.alpha, weights)
