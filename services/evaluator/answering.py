"""Closed-book answering and scoring: the model answers without the passage (SEAL's protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seal_lab.models import LoadedModel, generate_texts
from seal_lab.multilora import AdapterWeights, StackedLora, with_all_targets
from seal_lab.store import json_bytes, sha256_hex
from seal_lab.textmetrics import Scores, clean_answer, score_answer

#: SEAL's question template for knowledge incorporation (no passage in the prompt).
QUESTION_TEMPLATE = "Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:"


@dataclass(frozen=True)
class QuestionItem:
    question_id: str
    question: str
    answers: tuple[str, ...]


def question_set_hash(questions: list[QuestionItem], max_new_tokens: int) -> str:
    """Identity of what is asked and how, for caching evaluations."""
    payload = {
        "template": QUESTION_TEMPLATE,
        "max_new_tokens": max_new_tokens,
        "questions": [[q.question_id, q.question, list(q.answers)] for q in questions],
    }
    return sha256_hex(json_bytes(payload))[:32]


@dataclass
class AnswerTask:
    """A question set to answer under one adapter (None: the base model)."""

    questions: list[QuestionItem]
    adapter: AdapterWeights | None


def answer_tasks(
    loaded: LoadedModel,
    tasks: list[AnswerTask],
    targets: list[str],
    max_new_tokens: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Greedy answers for every task in one batched generate: each row runs under its own task's adapter
    (stacked, see `multilora`), base-model rows under none. Returns a JSON-ready record per task."""
    import torch

    slot_of: dict[int, int] = {}  # id(adapter) -> its slot in the stack; the same object shares one
    adapters: list[AdapterWeights] = []
    for task in tasks:
        if task.adapter is not None and id(task.adapter) not in slot_of:
            slot_of[id(task.adapter)] = len(adapters)
            adapters.append(task.adapter)
    slots = [-1 if task.adapter is None else slot_of[id(task.adapter)] for task in tasks]
    prompts = [QUESTION_TEMPLATE.format(question=q.question) for task in tasks for q in task.questions]
    row_slots = [slot for task, slot in zip(tasks, slots, strict=True) for _ in task.questions]

    def generate(before_batch: Any = None) -> list[Any]:
        return generate_texts(
            loaded,
            prompts,
            max_new_tokens=max_new_tokens,
            stop_at_newline=True,
            batch_size=batch_size,
            before_batch=before_batch,
        )

    if adapters:
        used = [name for name in targets if any(name in a.weights for a in adapters)]
        stack = StackedLora(loaded.model, used, [with_all_targets(a, loaded.model, used) for a in adapters])
        with stack.applied() as routing:
            outputs = generate(lambda start, end: routing.per_row(torch.tensor(row_slots[start:end])))
    else:
        outputs = generate()
    records, at = [], 0
    for task in tasks:
        records.append(_record(task.questions, outputs[at : at + len(task.questions)]))
        at += len(task.questions)
    return records


def answer_questions(
    loaded: LoadedModel, questions: list[QuestionItem], max_new_tokens: int, batch_size: int
) -> dict[str, Any]:
    """Greedy answers of `loaded.model` as it is (for instance with a peft adapter applied)."""
    return answer_tasks(loaded, [AnswerTask(questions, None)], [], max_new_tokens, batch_size)[0]


def _record(questions: list[QuestionItem], outputs: list[Any]) -> dict[str, Any]:
    answers = []
    for question, output in zip(questions, outputs, strict=True):
        text = clean_answer(output.text)
        scores = score_answer(text, question.answers)
        answers.append({"question_id": question.question_id, "answer": text, "scores": scores.__dict__})
    mean = Scores.mean([Scores(**a["scores"]) for a in answers])
    return {"mean": mean.__dict__, "answers": answers}
