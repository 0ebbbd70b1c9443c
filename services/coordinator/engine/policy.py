"""ReST-EM's supervised step, as data: the policy's training set from a round's winning self-edits, and
imported teacher self-edits matched to the held-out passages."""

from __future__ import annotations

from typing import Any

from seal_lab.errors import InvalidArgument
from seal_lab.formats.datasets import PolicyMeta, TrainingExample, read_dataset, write_dataset
from seal_lab.formats.directive import DIRECTIVE_LINE_PREFIX, Directive, format_directive
from seal_lab.formats.passages import Passage
from seal_lab.store import ObjectStore

from ..run.records import BestSelfEdit

#: What the policy dataset's meta record keeps of each winner.
WINNER_FIELDS = ("passage_id", "dataset_key", "reward", "format", "sample_index")


def policy_examples(
    written: tuple[TrainingExample, ...], winner: BestSelfEdit, directives: bool = True
) -> list[TrainingExample]:
    """The (prompt, completion) pairs the generator produced for a winning self-edit.

    With `directives` off (the run trained every self-edit with the trainer's default directive, so what the
    model wrote after its self-edit taught nothing) the policy learns the self-edit alone, as in SEAL's
    knowledge incorporation. Otherwise, when directive search found a better directive than the one the model
    wrote, the policy is taught that directive instead: "keep the best" applies to the training directive as
    well as to the data.
    """
    examples = list(written)
    if not directives:  # the directive's example is the one prompted to write a directive line
        return [e for e in examples if not e.prompt.endswith(DIRECTIVE_LINE_PREFIX)]
    if winner.directive_trial and len(examples) == 2:
        best = Directive(**winner.directive.values())
        examples[1] = TrainingExample(
            examples[1].prompt, format_directive(best).removeprefix(DIRECTIVE_LINE_PREFIX)
        )
    return examples


def build_policy_dataset(
    store: ObjectStore, winners: list[BestSelfEdit], directives: bool = True
) -> tuple[str, int]:
    """Write the SFT dataset (self-edit prompt -> winning self-edit, and its directive line when `directives`)
    to the store: (key, examples)."""
    examples: list[TrainingExample] = []
    for winner in winners:
        dataset = read_dataset(store, winner.dataset_key)
        if not dataset.meta:
            raise InvalidArgument(f"dataset {winner.dataset_key!r} has no meta record")
        examples += policy_examples(dataset.policy_examples, winner, directives)
    if not examples:
        return "", 0
    meta = PolicyMeta(tuple({k: getattr(w, k) for k in WINNER_FIELDS} for w in winners))
    return write_dataset(store, meta, examples), len(examples)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def match_teacher_completions(
    name: str, entries: list[Any], completion_index: int, heldout: list[Passage]
) -> dict[str, str]:
    """{held-out passage id: completion} from SEAL-format entries, matched by passage text."""
    if not heldout:
        raise InvalidArgument(f"teacher {name!r}: there are no held-out passages to compare it on")
    by_context: dict[str, str] = {}
    for number, entry in enumerate(entries):
        where = f"teachers[{name}].passages[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("context"), str):
            raise InvalidArgument(f"{where}: expected an object with a string 'context'")
        completions = entry.get("completions")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise InvalidArgument(f"{where}: 'completions' must be a list of strings")
        if completion_index < len(completions):
            by_context[_normalise(entry["context"])] = completions[completion_index]
    matched = {
        p.passage_id: by_context[_normalise(p.context)]
        for p in heldout
        if _normalise(p.context) in by_context
    }
    if not matched:
        raise InvalidArgument(
            f"teacher {name!r}: none of its {len(entries)} passages (with a completion {completion_index}) "
            f"matches a held-out passage; passages are matched by their context text"
        )
    return matched
