"""Train a group of LoRA adapters together: one forward and backward per step over all of their examples.

Each job keeps its own recipe: rank, alpha, learning rate, epochs, examples per step, seed (its initial
weights and its example order) and its own AdamW state and step count. What the jobs share is the pass
through the base model: every step packs the current examples of all active jobs into rows (examples end to
end, positions restarting at each, so attention never crosses an example: no padding inside a row), runs
the frozen base once with the adapters stacked (`multilora`), and takes each job's loss as the mean over its
own label tokens, the loss a job trained alone would have. Logits are computed only where there are labels.

The result of a job does not depend on its companions beyond float rounding (tests compare a grouped job with
the same job alone, and with peft's own training loop).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seal_lab.errors import CallCancelled, InvalidArgument
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import LoadedModel
from seal_lab.model.groupoptim import GroupAdamW
from seal_lab.model.multilora import (
    AdapterWeights,
    StackedLora,
    fresh_adapter,
    lora_targets,
    with_all_targets,
)

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class TrainProgressEvent:
    step: int
    total_steps: int
    epoch: int
    loss: float
    #: Set while the job is held up after (or besides) training: what it waits for and why (TrainProgress).
    waiting_for: str = ""


@dataclass
class GroupJob:
    examples: list[TrainingExample]
    directive: Directive
    seed: int
    on_progress: Callable[[TrainProgressEvent], None] | None = None
    #: Asked before every step (on the training thread): True stops this job there, with `TrainingCancelled`
    #: as its outcome (nothing to publish); the group's other jobs go on.
    cancelled: Callable[[], bool] | None = None
    #: Start from this adapter instead of a fresh one (a continual stream's current model); see `start_adapter`.
    init: AdapterWeights | None = None
    #: With `init`: merge it (frozen) and train a fresh adapter of the directive's rank on top.
    merge_init: bool = False


class TrainingCancelled(CallCancelled):
    """A job stopped before its last step because nobody waits for it any more: it has no adapter."""


@dataclass(frozen=True)
class Schedule:
    """How every job's learning rate moves and its gradient is bounded (Hugging Face Trainer's recipe as SEAL
    used it, plus warmup): linear warmup over `warmup_ratio` of the job's steps, then linear decay towards zero;
    each adapter's gradient clipped to norm `max_grad_norm` (0: off). Unlike `get_linear_schedule_with_warmup`
    no step runs at learning rate 0 (a 1-step job would learn nothing): warmup step s of W runs at
    (s + 1) / (W + 1), and the decay ends at 1 / (steps after warmup) on the last step.
    `Schedule.constant()` is the old recipe: the directive's learning rate on every step, no clipping."""

    warmup_ratio: float = 0.1
    decay: bool = True
    max_grad_norm: float = 1.0

    @classmethod
    def constant(cls) -> Schedule:
        return cls(warmup_ratio=0.0, decay=False, max_grad_norm=0.0)

    def factor(self, step: int, total: int) -> float:
        """The learning-rate multiplier of 0-based `step` of a job's `total` steps."""
        warmup = math.floor(total * self.warmup_ratio)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if not self.decay:
            return 1.0
        return (total - step) / max(1, total - warmup)


@dataclass
class TrainOutcome:
    adapter: AdapterWeights | None = None
    step_loss: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    trainable_parameters: int = 0
    group_size: int = 1

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def tokenize(
    loaded: LoadedModel, examples: list[TrainingExample], max_length: int, text_eos: bool = False
) -> list[tuple[list, list]]:
    """(input_ids, labels) per example; labels are -100 on the prompt, so only the completion is learned.

    A supervised completion (an example with a prompt) always ends with EOS: it must learn where it ends.
    Plain knowledge text ends with EOS only when `text_eos` (measured in the recipe pilot, see README).
    """
    tokenizer = loaded.tokenizer
    eos = tokenizer.eos_token_id
    encoded = []
    for example in examples:
        prompt_ids = tokenizer.encode(example.prompt, add_special_tokens=False) if example.prompt else []
        completion_ids = tokenizer.encode(example.completion, add_special_tokens=False)
        if example.prompt or text_eos:
            completion_ids.append(eos)
        # Too long: the prompt loses its start (a policy prompt is long; what it taught comes last), then the
        # completion its end.
        prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(completion_ids) - max_length) :]
        ids = (prompt_ids + completion_ids)[:max_length]
        labels = ([IGNORE] * len(prompt_ids) + completion_ids)[:max_length]
        if any(label != IGNORE for label in labels[1:]):  # the first token is never predicted
            encoded.append((ids, labels))
    return encoded


@dataclass
class _Plan:
    """One job's schedule: its examples in the order its seed gives, `batch_size` per step.

    Three budgets: `tokens` (> 0: until the examples' tokens reach it; takes precedence), else `steps` (> 0),
    else `epochs` passes. The first two draw from the same seeded shuffled passes, so a token budget's plan is
    a step budget's cut where its tokens are spent."""

    sequences: list[tuple[list, list]]
    steps: list[list[int]]
    epochs_of_step: list[int]

    @classmethod
    def build(cls, encoded: list[tuple[list, list]], directive: Directive, seed: int) -> _Plan:
        # What each position predicts: the next token's label (nothing after the last token).
        sequences = [(ids, [*labels[1:], IGNORE]) for ids, labels in encoded]
        order_rng = random.Random(seed)
        steps, epochs = [], []
        by_tokens = directive.tokens > 0
        if directive.steps <= 0 and not by_tokens:  # `epochs` passes, a pass's last batch possibly short
            for epoch in range(directive.epochs):
                order = list(range(len(sequences)))
                order_rng.shuffle(order)
                for start in range(0, len(order), directive.batch_size):
                    steps.append(order[start : start + directive.batch_size])
                    epochs.append(epoch + 1)
            return cls(sequences, steps, epochs)
        # A budget of `steps` steps, or of `tokens` tokens: seeded shuffled passes, cut into steps of
        # `batch_size` distinct examples (fewer when the data has fewer); an example that would repeat inside a
        # step waits for the next. A token budget ends with the example that reaches it (that step may be short).
        per_step = min(directive.batch_size, len(sequences))
        stream: list[tuple[int, int]] = []  # (example, pass)
        waiting: list[tuple[int, int]] = []
        passes = used = 0  # used: the tokens of the examples planned so far

        def spent() -> bool:
            return used >= directive.tokens if by_tokens else len(steps) >= directive.steps

        while not spent():
            step: list[int] = []
            first_pass = 0
            candidates, waiting = waiting, []
            while len(step) < per_step and not (by_tokens and spent()):
                if not candidates:
                    if not stream:
                        passes += 1
                        order = list(range(len(sequences)))
                        order_rng.shuffle(order)
                        stream = [(i, passes) for i in order]
                    candidates = [stream.pop(0)]
                index, number = candidates.pop(0)
                if index in step:
                    waiting.append((index, number))
                    continue
                first_pass = first_pass or number
                step.append(index)
                used += len(sequences[index][0])
            waiting += candidates
            steps.append(step)
            epochs.append(first_pass)
        return cls(sequences, steps, epochs)


def train_group(
    loaded: LoadedModel,
    jobs: Sequence[GroupJob],
    target_modules: list[str] | str = "all-linear",
    tokens_per_step: int = 8192,
    row_tokens: int = 1024,
    schedule: Schedule | None = None,
    text_eos: bool = False,
) -> list[TrainOutcome | Exception]:
    """Train every job's adapter; a job that cannot train gets its exception, the others go on.

    `tokens_per_step` bounds the tokens of one forward pass (a larger step is split into micro-batches whose
    gradients add up to the same step); `row_tokens` is the length rows are packed to. `schedule`: the
    learning-rate schedule and clipping (default `Schedule()`); `text_eos`: see `tokenize`.
    """
    schedule = schedule or Schedule()
    results: list[TrainOutcome | Exception] = [TrainOutcome() for _ in jobs]
    plans: dict[int, _Plan] = {}
    for index, job in enumerate(jobs):
        sequences = tokenize(loaded, job.examples, job.directive.max_length, text_eos)
        if not sequences:
            results[index] = InvalidArgument("the dataset has no training text")
        else:
            plans[index] = _Plan.build(sequences, job.directive, job.seed)
    if not plans:
        return results
    members = sorted(plans)  # slot i of the stack is job members[i]
    model = loaded.model
    targets = lora_targets(model, target_modules)
    starts = [start_adapter(model, targets, jobs[j]) for j in members]
    adapters = [adapter for adapter, _ in starts]
    stack = StackedLora(model, targets, adapters, trainable=True)
    frozen = {slot: ranks for slot, (_, ranks) in enumerate(starts) if ranks}
    if frozen:
        stack.freeze_leading_ranks(frozen)
    device = loaded.device
    optimizer = GroupAdamW(stack.params(), len(members), device)
    learning_rates = [jobs[j].directive.learning_rate for j in members]
    for slot, j in enumerate(members):
        rank = adapters[slot].rank - frozen.get(slot, 0)
        outcome = results[j]
        assert isinstance(outcome, TrainOutcome)
        outcome.group_size = len(members)
        outcome.trainable_parameters = sum(
            rank * (model.get_submodule(name).in_features + model.get_submodule(name).out_features)
            for name in targets
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # the base stays frozen; only the stacked adapters learn
    started = time.perf_counter()
    longest = max(len(plans[j].steps) for j in members)
    stopped: set[int] = set()  # slots of cancelled jobs
    was_training = model.training
    model.train()
    try:
        with stack.applied() as routing:
            for step in range(longest):
                for slot, j in enumerate(members):  # a cancelled job stops here: no adapter, no more steps
                    cancelled = jobs[j].cancelled
                    if slot not in stopped and step < len(plans[j].steps) and cancelled and cancelled():
                        stopped.add(slot)
                        results[j] = TrainingCancelled(f"stopped before step {step + 1}: nobody waits for it")
                active = [s for s, j in enumerate(members) if step < len(plans[j].steps) and s not in stopped]
                if not active:
                    break
                items = [
                    (slot, *plans[members[slot]].sequences[i])
                    for slot in active
                    for i in plans[members[slot]].steps[step]
                ]
                losses, tokens = _step(loaded, routing, items, len(members), tokens_per_step, row_tokens)
                rates = [
                    rate * schedule.factor(step, len(plans[j].steps))
                    for rate, j in zip(learning_rates, members, strict=True)
                ]
                optimizer.step(rates, [s in active for s in range(len(members))], schedule.max_grad_norm)
                for slot in active:
                    j = members[slot]
                    outcome = results[j]
                    assert isinstance(outcome, TrainOutcome)
                    outcome.step_loss.append(round(losses[slot], 5))
                    outcome.tokens += tokens[slot]
                    on_progress = jobs[j].on_progress
                    if on_progress:
                        plan = plans[j]
                        on_progress(
                            TrainProgressEvent(
                                step + 1, len(plan.steps), plan.epochs_of_step[step], outcome.step_loss[-1]
                            )
                        )
                    if step + 1 == len(plans[j].steps):  # this job is done: its time and its weights
                        outcome.seconds = time.perf_counter() - started
                        outcome.adapter = stack.export(slot)
                        if slot in frozen:  # one plain LoRA: the merged part and the new one, scaling 1
                            outcome.adapter = unit_scaled(outcome.adapter)
    finally:
        model.train(was_training)
    return results


def start_adapter(model: Any, targets: list[str], job: GroupJob) -> tuple[AdapterWeights, int]:
    """A job's starting weights and how many of its leading ranks stay frozen.

    Fresh (no `init`): peft's initial weights for the job's seed. `init` alone: that adapter as it is, trained
    on at its own rank and alpha (one adapter carried through a stream, SEAL's way). `init` with `merge_init`:
    the init adapter stands for weights merged into the base, exactly: its ranks come first and stay frozen
    (its B rescaled to the fresh part's scaling, so the sum of the two products is unchanged), and a fresh
    adapter of the directive's rank and alpha trains after them as it would alone.
    """
    directive = job.directive
    fresh = fresh_adapter(model, targets, directive.lora_rank, directive.lora_alpha, job.seed)
    if job.init is None:
        return fresh, 0
    init = with_all_targets(job.init, model, targets)
    if not job.merge_init:
        return init, 0
    import torch

    ratio = init.scaling / fresh.scaling
    weights = {
        name: (
            torch.cat([init.weights[name][0], a]),
            torch.cat([init.weights[name][1] * ratio, b], dim=1),
        )
        for name, (a, b) in fresh.weights.items()
    }
    rank = init.rank + fresh.rank
    return AdapterWeights(rank, fresh.scaling * rank, weights), init.rank


def unit_scaled(adapter: AdapterWeights) -> AdapterWeights:
    """The same adapter with its scaling folded into B: alpha = rank (stays within the trainer's alpha limit)."""
    scaling = adapter.scaling
    weights = {name: (a, b * scaling) for name, (a, b) in adapter.weights.items()}
    return AdapterWeights(adapter.rank, float(adapter.rank), weights)


def _step(
    loaded: LoadedModel,
    routing: Any,
    items: list[tuple[int, list, list]],
    slots: int,
    tokens_per_step: int,
    row_tokens: int,
) -> tuple[list[float], list[int]]:
    """Forward and backward over `(slot, ids, targets)` items; each slot's loss is the mean over its labels."""
    import torch

    device = loaded.device
    label_counts = [0] * slots
    token_counts = [0] * slots
    for slot, ids, targets in items:
        label_counts[slot] += sum(t != IGNORE for t in targets)
        token_counts[slot] += len(ids)
    weights = torch.tensor([1.0 / max(1, c) for c in label_counts], device=device)
    loss_sums = torch.zeros(slots, device=device)
    body = loaded.model.get_decoder() if hasattr(loaded.model, "get_decoder") else loaded.model.base_model
    head = loaded.model.get_output_embeddings()
    for rows in _micro_batches(_pack(items, row_tokens), tokens_per_step):
        ids, positions, target, slot_of = _tensors(rows, device)
        routing.per_token(slot_of)
        hidden = body(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state
        where = target != IGNORE
        logits = head(hidden[where]).float()
        token_loss = torch.nn.functional.cross_entropy(logits, target[where], reduction="none")
        token_slot = slot_of[where]
        per_slot = torch.zeros(slots, device=device).index_add(0, token_slot, token_loss)
        (per_slot * weights).sum().backward()
        loss_sums += per_slot.detach()
    losses = (loss_sums * weights).tolist()
    return losses, token_counts


def _pack(items: list[tuple[int, list, list]], row_tokens: int) -> list[list[tuple[int, list, list]]]:
    """First-fit decreasing into rows of `row_tokens` (a longer example gets a row of its own)."""
    rows: list[list[tuple[int, list, list]]] = []
    room: list[int] = []
    for item in sorted(items, key=lambda it: -len(it[1])):
        size = len(item[1])
        for r, free in enumerate(room):
            if size <= free:
                rows[r].append(item)
                room[r] -= size
                break
        else:
            rows.append([item])
            room.append(max(row_tokens, size) - size)
    return rows


def _micro_batches(rows: list[list[tuple[int, list, list]]], tokens_per_step: int) -> list[list]:
    """Consecutive rows whose padded size (rows x widest) fits `tokens_per_step` (at least one row each)."""
    batches: list[list] = []
    current: list = []
    width = 0
    for row in rows:
        length = sum(len(item[1]) for item in row)
        if current and (len(current) + 1) * max(width, length) > tokens_per_step:
            batches.append(current)
            current, width = [], 0
        current.append(row)
        width = max(width, length)
    if current:
        batches.append(current)
    return batches


def _tensors(rows: list[list[tuple[int, list, list]]], device: str) -> tuple[Any, Any, Any, Any]:
    """input ids, restarting positions, next-token targets and adapter slot per token, `[rows, width]`.

    A row's tail padding is a sequence of its own (positions restart) that no loss sees. It is routed to the
    row's last adapter: it comes after every real token of its row, so nothing attends to it, and a group
    whose tokens all belong to one adapter then needs no gather (`multilora.Routing`).
    """
    import torch

    width = max(sum(len(item[1]) for item in row) for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    slot_of = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for slot, item_ids, item_targets in row:
            n = len(item_ids)
            ids[r, at : at + n] = torch.tensor(item_ids)
            positions[r, at : at + n] = torch.arange(n)
            target[r, at : at + n] = torch.tensor(item_targets)
            slot_of[r, at : at + n] = slot
            at += n
        positions[r, at:] = torch.arange(width - at)
        slot_of[r, at:] = row[-1][0]
    return ids.to(device), positions.to(device), target.to(device), slot_of.to(device)
