"""The best and worst self-edits of a run's training rounds, with their full text from the store."""

from __future__ import annotations

from seal_lab.errors import StoreUnavailable
from seal_lab.formats.datasets import read_dataset
from seal_lab.store import ObjectStore

from ..run.result_schemas import DatasetTexts, Example, RunResults

EXAMPLES_PER_SIDE = 3


def _dataset_texts(store: ObjectStore, key: str) -> DatasetTexts:
    """The raw self-edit and the training texts of a stored dataset."""
    dataset = read_dataset(store, key)
    return DatasetTexts(
        raw_output=dataset.raw_output,
        directive_text=dataset.directive_text,
        texts=[e.completion for e in dataset.examples],
    )


def attach_examples(results: RunResults, store: ObjectStore) -> None:
    """The best and worst self-edits of the training rounds, with their full text, into `results`."""
    scored = [
        (round_result.round, passage, edit)
        for round_result in results.rounds
        for passage in round_result.passages
        for edit in passage.self_edits
        if edit.reward is not None
    ]
    scored.sort(key=lambda item: (item[2].reward, item[0], item[1].passage_id, item[2].sample_index))
    picks = {"best": scored[::-1][:EXAMPLES_PER_SIDE], "worst": scored[:EXAMPLES_PER_SIDE]}
    examples: dict[str, list[Example]] = {}
    for side, items in picks.items():
        examples[side] = []
        for round_index, passage, edit in items:
            try:
                text = _dataset_texts(store, edit.dataset_key)
            except StoreUnavailable:  # the store is away: the caller waits for it, so results do not change
                raise
            except Exception as exc:  # a missing dataset must not cost the run its results
                text = DatasetTexts(
                    raw_output=edit.preview if "preview" in edit.model_fields_set else "",
                    directive_text="",
                    texts=[],
                    error=str(exc),
                )
            examples[side].append(
                Example.model_validate(
                    {
                        "round": round_index,
                        "passage_id": passage.passage_id,
                        "title": passage.title,
                        "format": edit.format,
                        "sample_index": edit.sample_index,
                        "reward": edit.reward,
                        "scores": edit.scores,
                        "retention": edit.retention,
                        "directive": edit.directive,
                        "directive_source": edit.directive_source,
                        "trained_with": edit.trained_with,
                        **text.model_dump(),
                    }
                )
            )
    results.examples = examples
