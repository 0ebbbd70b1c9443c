"""The train/held-out split of a run's passages: chosen once at creation, kept in the run's spec."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import Passage, parse_passages

from .schemas import RunCreate


@dataclass(frozen=True)
class Split:
    """Indices into a run's passages: those the policy trains on, and those held out from it."""

    train: tuple[int, ...] = ()
    heldout: tuple[int, ...] = ()

    @classmethod
    def of(cls, passages: list[Passage], heldout_ids: Collection[str]) -> Split:
        return cls(
            tuple(i for i, p in enumerate(passages) if p.passage_id not in heldout_ids),
            tuple(i for i, p in enumerate(passages) if p.passage_id in heldout_ids),
        )

    def ids(self, passages: list[Passage]) -> dict[str, list[str]]:
        """The split as stored: passage ids, not indices."""
        return {
            "train": [passages[i].passage_id for i in self.train],
            "heldout": [passages[i].passage_id for i in self.heldout],
        }


def choose_heldout(passages: list[Passage], body: RunCreate) -> tuple[list[Passage], list[Passage]]:
    """(training, held-out) passages: the given held-out set, or `config.heldout` of them by seeded shuffle."""
    if body.heldout_passages is not None:
        heldout = parse_passages(body.heldout_passages, "request body 'heldout_passages'")
        overlap = {p.passage_id for p in passages} & {p.passage_id for p in heldout}
        if overlap:
            raise InvalidArgument(
                f"{len(overlap)} passage(s) are both training and held-out, e.g. {sorted(overlap)[0]!r}"
            )
        return passages, heldout
    count = body.config.heldout
    if not count:
        return passages, []
    if count >= len(passages):
        raise InvalidArgument(
            f"config.heldout={count} leaves none of the {len(passages)} passages for training"
        )
    order = list(range(len(passages)))
    random.Random(body.config.seed).shuffle(order)
    held = set(order[:count])
    return (
        [p for i, p in enumerate(passages) if i not in held],
        [p for i, p in enumerate(passages) if i in held],
    )
