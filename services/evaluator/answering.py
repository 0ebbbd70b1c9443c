"""Closed-book answering and scoring: the model answers without the passage (SEAL's protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seal_lab.models import LoadedModel, generate_texts
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


def answer_questions(
    loaded: LoadedModel, questions: list[QuestionItem], max_new_tokens: int, batch_size: int
) -> dict[str, Any]:
    """Greedy answers for every question; returns a JSON-ready evaluation record."""
    prompts = [QUESTION_TEMPLATE.format(question=q.question) for q in questions]
    outputs = generate_texts(
        loaded, prompts, max_new_tokens=max_new_tokens, stop_at_newline=True, batch_size=batch_size
    )
    answers = []
    for question, output in zip(questions, outputs, strict=True):
        text = clean_answer(output.text)
        scores = score_answer(text, question.answers)
        answers.append({"question_id": question.question_id, "answer": text, "scores": scores.__dict__})
    mean = Scores.mean([Scores(**a["scores"]) for a in answers])
    return {"mean": mean.__dict__, "answers": answers}
