"""Training directives: the hyperparameters a self-edit asks for, their limits, parsing and clamping.

Shared by the generator (parses what the model wrote, clamps it to the trainer's published limits) and the
trainer (enforces the same limits on whatever it receives).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

from seal.v1 import common_pb2, generator_pb2


@dataclass(frozen=True)
class Directive:
    epochs: int = 5
    learning_rate: float = 2e-3
    lora_rank: int = 16
    lora_alpha: int = 32
    batch_size: int = 1
    #: Tokens per training sequence: 1024 cuts none of SQuAD's passages (99% are under 460 tokens).
    max_length: int = 1024
    #: The training budget in optimizer steps of `batch_size` examples each (the data is cycled in seeded
    #: shuffled passes as often as needed), the same for every condition of a table whatever its data
    #: size. 0 = `epochs` full passes instead (the budget then grows with the data).
    steps: int = 24
    #: The training budget in tokens (0 = off): examples are taken from the same seeded shuffled passes until
    #: their tokens (each sequence as trained, cut to `max_length`) reach this many, `batch_size` per step (the
    #: last step may hold fewer). When set it takes precedence over `steps` and `epochs`: conditions whose
    #: texts differ in length then train on the same number of tokens rather than the same number of steps.
    tokens: int = 0

    def to_proto(self) -> common_pb2.Directive:
        return common_pb2.Directive(**asdict(self))

    @classmethod
    def from_proto(cls, message: common_pb2.Directive) -> Directive:
        return cls(**{f.name: getattr(message, f.name) for f in fields(cls)})

    def as_dict(self) -> dict[str, float | int]:
        """The fields as records and store keys keep them (a trainer's job key, a self-edit dataset's meta
        record). A field added later is left out at its "off" value (`tokens` 0), so that every directive
        that could be written before it has the very same record and key as before."""
        values = asdict(self)
        for name in ADDED_FIELDS:
            if values[name] == 0:
                del values[name]
        return values


#: Directive fields added after keys were first made from directives: absent from `Directive.as_dict` (hence from
#: every key and record) while 0, and optional in a written directive (not "missing" when a model omits them).
ADDED_FIELDS = ("tokens",)


#: What every self-edit trains with unless a run asks for the model's own (`self_edit_directive`), what a
#: self-edit without a usable directive gets then, what every held-out condition trains with, and the example
#: shown to the model. Chosen by `benchmarks/recipe_pilot.py` on passages disjoint from the held-out ones (README,
#: "The recipe"): with warmup, linear decay and clipping, lr 2e-3 for 24 steps learned as much per self-edit as
#: the seed-style loop (constant 1e-3) on the demo passages, and so did the default loop end to end on invented
#: passages kept for checking (benchmarks/seed_check.py); at 1e-3 it learned about half as much, at 3e-3 it
#: erased more of what the model knew.
DEFAULT_DIRECTIVE = Directive()


@dataclass(frozen=True)
class DirectiveLimits:
    min_epochs: int = 1
    max_epochs: int = 10
    min_learning_rate: float = 1e-5
    max_learning_rate: float = 1e-2
    min_lora_rank: int = 1
    max_lora_rank: int = 64
    min_lora_alpha: int = 1
    max_lora_alpha: int = 128
    min_batch_size: int = 1
    max_batch_size: int = 16
    min_max_length: int = 32
    max_max_length: int = 1024
    min_steps: int = 0
    max_steps: int = 200
    #: A token budget of 200,000 is about what the step limit allows at its worst (200 steps of a 1,024-token
    #: sequence).
    min_tokens: int = 0
    max_tokens: int = 200_000
    default: Directive = DEFAULT_DIRECTIVE

    def to_proto(self) -> common_pb2.DirectiveLimits:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "default"}
        return common_pb2.DirectiveLimits(**values, default_directive=self.default.to_proto())

    @classmethod
    def from_proto(cls, message: common_pb2.DirectiveLimits) -> DirectiveLimits:
        values = {f.name: getattr(message, f.name) for f in fields(cls) if f.name != "default"}
        return cls(**values, default=Directive.from_proto(message.default_directive))

    def bounds(self, name: str) -> tuple[float, float]:
        return getattr(self, f"min_{name}"), getattr(self, f"max_{name}")

    def clamp(self, directive: Directive) -> Directive:
        """The nearest directive inside the limits."""
        values = {}
        for field in fields(Directive):
            low, high = self.bounds(field.name)
            values[field.name] = type(low)(min(max(getattr(directive, field.name), low), high))
        return Directive(**values)

    def overridden(self, directive: Directive, values: Mapping[str, float | int]) -> Directive:
        """`directive` with the fields `values` sets, as asked (`epochs_mean_epochs`), clamped to these limits:
        a directive-search entry, a continual update, a held-out override over the directive it applies to."""
        return self.clamp(Directive(**{**asdict(directive), **epochs_mean_epochs(dict(values))}))

    def with_clamped_default(self) -> DirectiveLimits:
        """These limits with their default moved inside them (limits tighter than the default)."""
        return replace(self, default=self.clamp(self.default))

    def violations(self, directive: Directive) -> list[str]:
        """Human-readable reasons a directive is outside the limits (empty when it is fine)."""
        return self.check(asdict(directive))  # every field, those `as_dict` leaves out at 0 included

    def check(self, values: Mapping[str, Any], where: str = "") -> list[str]:
        """The one limit rule: for each directive field in `values` (some or all of them) outside these
        limits, `<where><field>=<value> is outside [<min>, <max>]` (empty when all fit). What a caller sets is
        refused with these; only a directive a model wrote is clamped (`clamp`, `parse_directive`)."""
        problems = []
        for field in fields(Directive):
            if field.name not in values:
                continue
            low, high = self.bounds(field.name)
            value = values[field.name]
            if not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and low <= value <= high
            ):
                problems.append(f"{where}{field.name}={_number(value)} is outside [{low:g}, {high:g}]")
        return problems

    def beyond(self, ceiling: DirectiveLimits) -> list[str]:
        """Where these limits reach outside `ceiling` (a minimum below its minimum, a maximum above its
        maximum), as `max_<field>=<value> is above <bound>`; empty when they lie within it."""
        problems = []
        for field in fields(Directive):
            low, high = self.bounds(field.name)
            floor, top = ceiling.bounds(field.name)
            if low < floor:
                problems.append(f"min_{field.name}={_number(low)} is below {_number(floor)}")
            if high > top:
                problems.append(f"max_{field.name}={_number(high)} is above {_number(top)}")
        return problems


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


#: The widest limits any trainer may publish (its `SEAL_TRAINER_MAX_*` settings are bounded by these) and a
#: generator accepts from a caller: a caller's `max_epochs 1e6` is refused, not shown to the model and recorded.
#: The rank and alpha ceilings are those of an adapter any reader accepts (seal_lab.formats.adapters.AdapterLimits).
DIRECTIVE_CEILING = DirectiveLimits(
    min_epochs=1,
    max_epochs=100,
    min_learning_rate=1e-8,
    max_learning_rate=1.0,
    min_lora_rank=1,
    max_lora_rank=512,
    min_lora_alpha=1,
    max_lora_alpha=4096,
    min_batch_size=1,
    max_batch_size=256,
    min_max_length=1,
    max_max_length=32768,
    min_steps=0,
    max_steps=100_000,
    min_tokens=0,
    max_tokens=100_000_000,
)


class DirectiveSource(Enum):
    """Where a self-edit's directive came from. The value is the name datasets and run records carry."""

    PARSED = "parsed"
    CLAMPED = "clamped"
    PARTIAL = "partial"
    DEFAULT = "default"

    def to_proto(self) -> generator_pb2.DirectiveSource.ValueType:
        return _SOURCE_TO_PROTO[self]


_SOURCE_TO_PROTO = {
    DirectiveSource.PARSED: generator_pb2.DIRECTIVE_SOURCE_PARSED,
    DirectiveSource.CLAMPED: generator_pb2.DIRECTIVE_SOURCE_CLAMPED,
    DirectiveSource.PARTIAL: generator_pb2.DIRECTIVE_SOURCE_PARTIAL,
    DirectiveSource.DEFAULT: generator_pb2.DIRECTIVE_SOURCE_DEFAULT,
}
_SOURCE_NAMES = {proto: source.value for source, proto in _SOURCE_TO_PROTO.items()}


def directive_source_name(value: int) -> str:
    """The recorded name of a proto `DirectiveSource` ("unspecified" when the generator left it unset)."""
    return _SOURCE_NAMES.get(value, "unspecified")


@dataclass(frozen=True)
class ParsedDirective:
    directive: Directive
    source: DirectiveSource
    notes: tuple[str, ...]


# Names a model may use for each field; matched case-insensitively as `name = value` or `name: value`.
_ALIASES = {
    "epochs": ("epochs", "epoch", "num_epochs", "n_epochs"),
    "learning_rate": ("learning_rate", "learning rate", "lr"),
    "lora_rank": ("lora_rank", "lora rank", "rank", "r"),
    "lora_alpha": ("lora_alpha", "lora alpha", "alpha"),
    "batch_size": ("batch_size", "batch size", "bs"),
    "max_length": ("max_length", "max length", "max_len", "max_seq_len"),
    "steps": ("steps", "train_steps", "max_steps", "num_steps"),
    "tokens": ("tokens", "train_tokens", "training_tokens", "token_budget"),
}
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
# A line such as "Training: epochs=3 ..." or "**Training directive:** ...".
_DIRECTIVE_LINE = re.compile(r"^\W*training(?:\s+directive)?\W*:", re.I | re.M)


def _find_value(text: str, aliases: tuple[str, ...]) -> str | None:
    for alias in aliases:
        pattern = rf"(?<![\w]){re.escape(alias)}\s*[=:]\s*{_NUMBER}"
        match = re.search(pattern, text, re.I)
        if match:
            return match.group(1)
    return None


def directive_region(text: str) -> str:
    """The part of a model output that holds the directive: from a 'Training' line to the end."""
    match = _DIRECTIVE_LINE.search(text)
    return text[match.start() :] if match else ""


def strip_directive(text: str) -> str:
    """The model output without its directive part (what becomes training text)."""
    match = _DIRECTIVE_LINE.search(text)
    return text[: match.start()] if match else text


def epochs_mean_epochs(values: dict[str, Any]) -> dict[str, Any]:
    """Directive fields as asked: `epochs` without `steps` asks for passes over the data (steps 0), not for
    the step budget of the directive they are applied to (a written directive, a directive-search entry); and
    `epochs` or `steps` without `tokens` asks for that budget, not for a token budget that would override it
    (tokens 0)."""
    if "epochs" in values and "steps" not in values:
        values = {**values, "steps": 0}
    if "steps" in values and "tokens" not in values:
        values = {**values, "tokens": 0}
    return values


def parse_directive(text: str, limits: DirectiveLimits) -> ParsedDirective:
    """Read a directive from model output; clamp to limits; fall back to the default field by field."""
    region = directive_region(text)
    default = limits.default
    values: dict[str, float | int] = {}
    notes: list[str] = []
    clamped = False
    for field in fields(Directive):
        raw = _find_value(region, _ALIASES[field.name]) if region else None
        if raw is None:
            continue
        try:
            number = float(raw)
        except ValueError:
            continue
        if not math.isfinite(number):
            notes.append(f"{field.name}={raw} is not a number; default used")
            continue
        low, high = limits.bounds(field.name)
        bounded = min(max(number, low), high)
        if bounded != number:
            clamped = True
            notes.append(f"{field.name}={raw} clamped to {bounded:g}")
        values[field.name] = round(bounded) if field.type in ("int", int) else bounded
    if not values:
        reason = "no directive in the output" if not region else "directive found but unreadable"
        return ParsedDirective(limits.clamp(default), DirectiveSource.DEFAULT, (f"{reason}; default used",))
    values = epochs_mean_epochs(values)
    missing = [f.name for f in fields(Directive) if f.name not in values and f.name not in ADDED_FIELDS]
    directive = limits.clamp(replace(default, **values))  # defaulted fields must fit the limits too
    if missing:
        notes.append(f"missing {', '.join(missing)}: defaults used")
        source = DirectiveSource.PARTIAL
    else:
        source = DirectiveSource.CLAMPED if clamped else DirectiveSource.PARSED
    return ParsedDirective(directive, source, tuple(notes))


#: How a directive line starts; the generator prefills it so that the model writes the values.
DIRECTIVE_LINE_PREFIX = "Training: epochs="


def format_directive(directive: Directive) -> str:
    """The line format the generator's prompt asks the model to write (and that the parser reads)."""
    return (
        f"Training: epochs={directive.epochs} learning_rate={directive.learning_rate:g} "
        f"lora_rank={directive.lora_rank} lora_alpha={directive.lora_alpha} "
        f"batch_size={directive.batch_size} max_length={directive.max_length}"
        + (f" steps={directive.steps}" if directive.steps else "")  # no steps: the epochs decide
        + (f" tokens={directive.tokens}" if directive.tokens else "")  # a token budget, when there is one
    )
