"""A continual run's streams: which passages, in which order (pure; the engine runs them, engine/continual.py).

`order` names the passages by title or by index into the run's passages; without it the stream is every
passage in the order given, or with `orderings` N, N seeded shuffles of them (the same seed, the same streams).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import Passage

from .schemas import RunConfig

#: Seeds of the shuffled orderings: config.seed times this, plus the ordering's number.
ORDERING_SEED_STRIDE = 1_000_003


def resolve_order(order: Sequence[int | str], passages: Sequence[Passage]) -> list[int]:
    """`order`'s entries as indexes into `passages`: a number (or a string of digits that is no title) is an
    index, a string a title. InvalidArgument naming the entries that match nothing, or a passage named twice."""
    by_title: dict[str, list[int]] = {}
    for index, passage in enumerate(passages):
        by_title.setdefault(passage.title, []).append(index)
    indexes, unknown, ambiguous = [], [], []
    for entry in order:
        if isinstance(entry, str) and entry in by_title:
            found = by_title[entry]
            if len(found) > 1:
                ambiguous.append(entry)
            indexes.append(found[0])
        elif isinstance(entry, int) or entry.isdigit():
            number = int(entry)
            if number >= len(passages):
                unknown.append(str(entry))
            indexes.append(number)
        else:
            unknown.append(repr(entry))
    if unknown:
        raise InvalidArgument(
            f"order names passages the run does not have: {', '.join(unknown[:10])} (titles, or indexes "
            f"0 to {len(passages) - 1})"
        )
    if ambiguous:
        raise InvalidArgument(f"order names titles several passages share: {ambiguous[:10]}; use indexes")
    repeated = sorted({i for i in indexes if indexes.count(i) > 1})
    if repeated:
        raise InvalidArgument(f"order names passages {repeated} more than once; a stream learns each once")
    return indexes


def stream_orders(config: RunConfig, passages: Sequence[Passage]) -> list[list[int]]:
    """Each stream of a continual run as passage indexes, in its order."""
    if not passages:
        raise InvalidArgument("a continual run needs at least one passage")
    if config.order is not None:
        return [resolve_order(config.order, passages)]
    every = list(range(len(passages)))
    if not config.orderings:
        return [every]
    orders = []
    for ordering in range(config.orderings):
        shuffled = list(every)
        random.Random(config.seed * ORDERING_SEED_STRIDE + ordering).shuffle(shuffled)
        orders.append(shuffled)
    return orders


def step_jobs(config: RunConfig, length: int) -> int:
    """The jobs of one stream of `length` passages (its baselines are counted once per run, not here)."""
    candidates = 1 if config.continual_pick == "first" else config.k
    per_step = 1 + candidates  # generate, train each candidate
    per_step += (config.continual_pick == "best") * (1 + bool(config.retention_lambda))  # candidates, candret
    per_step += config.retention
    jobs = length * per_step + length * (length + 1) // 2  # accuracy of every seen passage after each step
    return jobs + config.specificity_control * max(0, length - 1)  # the next unseen passage's


def continual_jobs_total(config: RunConfig, passages: Sequence[Passage]) -> int:
    orders = stream_orders(config, passages)
    seen = {i for order in orders for i in order}
    return len(seen) + sum(step_jobs(config, len(order)) for order in orders)
