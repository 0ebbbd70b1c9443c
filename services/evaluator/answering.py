"""Closed-book answering and scoring: the model answers without the passage (SEAL's protocol).

Every (adapter or base model, question) row is scored twice: its greedy answer against the golds (exact match,
F1, contains, token recall), and, decoding-free, the mean log-probability of the first gold answer right after
the prompt under the same adapter (teacher forcing: one forward per batch of rows, no generation).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seal_lab.model.base import LoadedModel, chat_prompt, generate_texts
from seal_lab.model.callend import IsCancelled, check_cancelled
from seal_lab.model.multilora import AdapterWeights, StackedLora, with_all_targets
from seal_lab.scoring.textmetrics import Scores, clean_answer, score_answer
from seal_lab.store import json_bytes, sha256_hex

#: SEAL's question text for knowledge incorporation (no passage in the prompt); `{topic}` is SEAL's
#: "Topic: {title}\n" line, or nothing for a question without a title.
QUESTION_TEMPLATE = "Let's answer a question directly and concisely.\nQuestion: {topic}{question}\nAnswer:"
#: Names how questions are asked and scored; part of the evaluation cache key, so a change here never reuses
#: records made the old way. v2: the topic line, the chat template, token recall and the gold log-likelihood.
PROMPT_VERSION = "seal-topic-chat-v2+token-recall+gold-logprob-v1"
#: Gold answers longer than this are scored on their first tokens (golds are short spans; this bounds memory).
MAX_GOLD_TOKENS = 64


@dataclass(frozen=True)
class QuestionItem:
    question_id: str
    question: str
    answers: tuple[str, ...]
    topic: str = ""


def question_prompt(tokenizer: Any, item: QuestionItem) -> str:
    """The prompt the model answers: SEAL's question ("Question: Topic: {title}\n{question}", no topic line
    without a title) through the model's chat template (a user turn and the assistant header), or the plain
    question text for a tokenizer without a template."""
    topic = f"Topic: {item.topic}\n" if item.topic else ""
    return chat_prompt(tokenizer, QUESTION_TEMPLATE.format(topic=topic, question=item.question))


def gold_answer(item: QuestionItem) -> str:
    """The gold answer the log-likelihood is taken of: the first non-empty one, stripped."""
    return next((a.strip() for a in item.answers if a.strip()), "")


def answer_continuation(prompt: str, answer: str) -> str:
    """The text tokenized after the prompt for teacher forcing.

    A chat prompt ends with the assistant header (`...<|im_start|>assistant\n`), so the answer follows as
    plain text, exactly as the model writes it and as the trainer tokenizes a completion after its prompt
    (`encode(answer, add_special_tokens=False)`). A plain prompt ends with "Answer:", where a word follows
    after a space: the answer then gets a leading space (one token boundary, as in "Answer: Paris").
    """
    return answer if not prompt or prompt[-1].isspace() else " " + answer


def question_set_hash(
    questions: list[QuestionItem], max_new_tokens: int, judge: dict[str, Any] | None = None
) -> str:
    """Identity of what is asked and how, for caching evaluations. `judge` (what decides SEAL's judge's
    verdicts, its model included) is part of it only when a judge is on, so an evaluation cached without
    verdicts is never taken for one with them, and the hashes of evaluations without a judge stay as they were."""
    payload: dict[str, Any] = {
        "prompt_version": PROMPT_VERSION,
        "template": QUESTION_TEMPLATE,
        "max_new_tokens": max_new_tokens,
        "questions": [[q.question_id, q.question, list(q.answers), q.topic] for q in questions],
    }
    if judge is not None:
        payload["judge"] = judge
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
    cancelled: IsCancelled | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers for every task in one batched generate, and each row's gold log-likelihood
    (`gold_logprobs`, same batches): each row runs under its own task's adapter (stacked, see `multilora`),
    base-model rows under none. Returns a JSON-ready record per task: `mean` scores, `mean_gold_logprob`,
    and per answer `question_id`, `answer`, `scores` and `gold_logprob`. Every question needs a non-empty
    gold answer. `cancelled` is asked before every batch and at every decoding step: once it says yes,
    `CallCancelled` is raised and no record is made."""
    import torch

    slot_of: dict[int, int] = {}  # id(adapter) -> its slot in the stack; the same object shares one
    adapters: list[AdapterWeights] = []
    for task in tasks:
        if task.adapter is not None and id(task.adapter) not in slot_of:
            slot_of[id(task.adapter)] = len(adapters)
            adapters.append(task.adapter)
    slots = [-1 if task.adapter is None else slot_of[id(task.adapter)] for task in tasks]
    items = [q for task in tasks for q in task.questions]
    prompts = [question_prompt(loaded.tokenizer, q) for q in items]
    golds = [gold_answer(q) for q in items]
    row_slots = [slot for task, slot in zip(tasks, slots, strict=True) for _ in task.questions]

    def generate(before_batch: Any = None) -> list[Any]:
        return generate_texts(
            loaded,
            prompts,
            max_new_tokens=max_new_tokens,
            stop_at_newline=True,
            batch_size=batch_size,
            before_batch=before_batch,
            cancelled=cancelled,
        )

    def likelihoods(before_batch: Any = None) -> list[float]:
        return gold_logprobs(
            loaded, prompts, golds, batch_size=batch_size, before_batch=before_batch, cancelled=cancelled
        )

    if adapters:
        used = [name for name in targets if any(name in a.weights for a in adapters)]
        stack = StackedLora(loaded.model, used, [with_all_targets(a, loaded.model, used) for a in adapters])
        with stack.applied() as routing:

            def route(start: int, end: int) -> None:
                routing.per_row(torch.tensor(row_slots[start:end]))

            outputs = generate(route)
            logprobs = likelihoods(route)
    else:
        outputs = generate()
        logprobs = likelihoods()
    records, at = [], 0
    for task in tasks:
        end = at + len(task.questions)
        records.append(_record(task.questions, outputs[at:end], logprobs[at:end]))
        at = end
    return records


def gold_logprobs(
    loaded: LoadedModel,
    prompts: list[str],
    answers: list[str],
    *,
    batch_size: int,
    before_batch: Callable[[int, int], None] | None = None,
    cancelled: IsCancelled | None = None,
) -> list[float]:
    """Mean log-probability per token (nats) of each answer right after its prompt, by teacher forcing.

    Input = prompt ids + answer ids, tokenized apart (`add_special_tokens=False` both; the answer text from
    `answer_continuation`, at most `MAX_GOLD_TOKENS` tokens), so the prompt's ids are exactly the ones
    generation sees. `batch_size` rows per forward, left-padded with an attention mask and positions counted
    from each row's first real token (as `generate` does); every row then ends at the same column, so only the
    last columns' logits are computed (`logits_to_keep`) and log-softmaxed, in float32.
    `before_batch(start, end)` is called before each forward (per-row adapter routing, as for generation).
    `cancelled` is asked before each forward: once it says yes, `CallCancelled` is raised.
    """
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
    results: list[float] = []
    for start in range(0, len(prompts), batch_size):
        check_cancelled(cancelled, f"before the gold log-likelihoods of row {start + 1} of {len(prompts)}")
        rows: list[tuple[list[int], int]] = []  # (ids, answer length)
        chunk = slice(start, start + batch_size)
        for prompt, answer in zip(prompts[chunk], answers[chunk], strict=True):
            prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
            answer_ids = tokenizer.encode(answer_continuation(prompt, answer), add_special_tokens=False)
            answer_ids = answer_ids[:MAX_GOLD_TOKENS]
            if not prompt_ids or not answer_ids:
                raise ValueError(
                    f"row {start + len(rows)}: a gold log-likelihood needs a prompt and an answer"
                )
            rows.append((prompt_ids + answer_ids, len(answer_ids)))
        width = max(len(ids) for ids, _ in rows)
        longest = max(n for _, n in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, _) in enumerate(rows):
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, width - len(ids) :] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        if before_batch is not None:
            before_batch(start, start + len(rows))
        kwargs: dict[str, Any] = {"logits_to_keep": longest + 1} if keeps_logits else {}
        with torch.inference_mode():
            logits = model(
                input_ids=input_ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                position_ids=positions.to(loaded.device),
                use_cache=False,
                **kwargs,
            ).logits
            # Columns width-longest-1 .. width-2 predict the last `longest` tokens (answers end every row).
            predicting = logits[:, -(longest + 1) : -1].float().log_softmax(-1)
            targets = input_ids[:, width - longest :].to(predicting.device)
            token_logprobs = predicting.gather(-1, targets[..., None])[..., 0].cpu()
        for i, (_, count) in enumerate(rows):
            results.append(float(token_logprobs[i, longest - count :].double().mean()))
    return results


def answer_questions(
    loaded: LoadedModel, questions: list[QuestionItem], max_new_tokens: int, batch_size: int
) -> dict[str, Any]:
    """Greedy answers of `loaded.model` as it is (for instance with a peft adapter applied)."""
    return answer_tasks(loaded, [AnswerTask(questions, None)], [], max_new_tokens, batch_size)[0]


def _record(questions: list[QuestionItem], outputs: list[Any], logprobs: list[float]) -> dict[str, Any]:
    answers = []
    for question, output, logprob in zip(questions, outputs, logprobs, strict=True):
        text = clean_answer(output.text)
        scores = score_answer(text, question.answers)
        answers.append(
            {
                "question_id": question.question_id,
                "answer": text,
                "scores": scores.__dict__,
                "gold_logprob": logprob,
            }
        )
    mean = Scores.mean([Scores(**a["scores"]) for a in answers])
    mean_logprob = math.fsum(logprobs) / len(logprobs) if logprobs else 0.0
    return {"mean": mean.__dict__, "mean_gold_logprob": mean_logprob, "answers": answers}
