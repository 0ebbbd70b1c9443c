"""AdamW for a group of LoRA adapters stacked into `[G, ...]` tensors (`multilora.StackedLora`): each adapter
its own learning rate, step count and moments, as if it had its own `torch.optim.AdamW`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class GroupAdamW:
    """torch's AdamW (weight decay 0) on stacked `[G, ...]` tensors: a learning rate and a step count per
    adapter, and adapters outside the step (`active` false) left exactly as they are.

    Each active adapter's row goes through torch's fused AdamW kernel (`torch._fused_adamw_`, what
    `torch.optim.AdamW(fused=True)` runs, on CPUs since torch 2.4: one pass over the weights instead of ten),
    one call per distinct learning rate."""

    def __init__(self, params: list[Any], slots: int, device: str) -> None:
        import torch

        self.params = params
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        # One step count per adapter and tensor, counted before each update (as torch's AdamW does).
        self.steps = [[torch.zeros((), device=device) for _ in range(slots)] for _ in params]
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-8

    def step(
        self, learning_rates: Sequence[float], active: Sequence[bool], max_grad_norm: float = 0.0
    ) -> None:
        import torch

        slots = [s for s, on in enumerate(active) if on]
        if max_grad_norm > 0:  # each adapter's own gradient norm, over all of its tensors (torch's clip)
            grads = [p.grad for p in self.params if p.grad is not None]
            if grads:
                squares = sum(
                    torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1).square() for g in grads
                )
                scale = (max_grad_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
                for g in grads:
                    g.mul_(scale.view((-1,) + (1,) * (g.dim() - 1)))
        by_rate: dict[float, list[int]] = {}
        for s in slots:
            by_rate.setdefault(learning_rates[s], []).append(s)
        with torch.no_grad():
            for p, m, v, steps in zip(self.params, self.exp_avg, self.exp_avg_sq, self.steps, strict=True):
                if p.grad is None:
                    continue
                g = p.grad
                for s in slots:
                    steps[s] += 1
                for rate, group in by_rate.items():
                    torch._fused_adamw_(
                        [p[s] for s in group],
                        [g[s] for s in group],
                        [m[s] for s in group],
                        [v[s] for s in group],
                        [],
                        [steps[s] for s in group],
                        lr=rate,
                        beta1=self.beta1,
                        beta2=self.beta2,
                        weight_decay=0.0,
                        eps=self.eps,
                        amsgrad=False,
                        maximize=False,
                    )
                p.grad = None
