"""SEAL's own judge (optional): an OpenAI-compatible chat model asked SEAL's yes/no grading prompt per answer.

SEAL scored knowledge incorporation with GPT-4.1 and this prompt, which lets an answer carry extra text as long
as it conveys the gold answer; a small model that answers in a sentence is judged fairly by it. The judge is
off unless `SEAL_EVALUATOR_JUDGE_BASE_URL` is set; then every answer gets `judge` = 1.0 (yes) or 0.0 (no).

A judge that cannot be asked fails the evaluation with a clear status, never with a silent 0. It is asked
through the shared client (`seal_lab.openai_client`, the generator's teacher's too): after bounded retries on
408/429/5xx, timeouts and refused connections (honouring Retry-After) it is `Unavailable`; a key, URL or model
the endpoint refuses (401, 403, 404) is `FailedPrecondition`, another refused request `InvalidArgument`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from seal_lab.errors import FailedPrecondition
from seal_lab.openai_client import ChatClient, Endpoint, RetryRule

from .answering import QuestionItem, gold_answer
from .settings import EvaluatorSettings

log = logging.getLogger(__name__)

#: SEAL's grading prompt, verbatim: `SQUAD_GRADE_TEMPLATE` of knowledge-incorporation/src/utils.py in
#: github.com/Continual-Intelligence/SEAL at commit 4cb1e7d4350c62403daee8c6723e6184886cb304 (the file last
#: changed in c8735e7698e225a3d9d55c0e2a126453b400f58b). SEAL sends it as the only user message.
SEAL_GRADE_TEMPLATE = (
    "You are a grading assistant. Your job is to determine whether a student's answer correctly answers the question based solely on the provided gold answer. "
    "Do not use any outside knowledge. The student answer can include additional information, but it must at least fully convey the gold answer and must not contradict it. "
    "Ignore style, phrasing, or extra details that do not affect correctness. Respond ONLY with 'yes' or 'no'.\n\n"
    "Question: {question}\nGold answer: {gold}\nStudent answer: {pred}\n"
    "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'."
)
#: Names how verdicts are made; part of the evaluation cache key with the judge's model and reply budget.
JUDGE_VERSION = "seal-grade-v1"
#: SEAL's `parse_yes_no`: yes only if the reply has the word "yes" and not the word "no" (case-insensitive).
_YES = re.compile(r"\b(yes)\b", re.I)
_NO = re.compile(r"\b(no)\b", re.I)


def seal_question(item: QuestionItem) -> str:
    """The question as SEAL wrote it into the grading prompt: "Topic: {title}\\n{question}" (its
    query_server.py), or the bare question when there is no title (the retention set)."""
    return f"Topic: {item.topic}\n{item.question}" if item.topic else item.question


def grade_prompt(item: QuestionItem, answer: str) -> str:
    """SEAL's grading prompt for one answer; the gold is the first non-empty gold answer (SEAL had one)."""
    return SEAL_GRADE_TEMPLATE.format(
        question=seal_question(item), gold=gold_answer(item), pred=answer.strip()
    )


def parse_yes_no(text: str) -> bool:
    """True for yes; False for no and for anything ambiguous (SEAL's rule)."""
    return bool(_YES.search(text)) and not _NO.search(text)


#: How the judge's errors name it and its settings.
JUDGE = Endpoint("judge", "SEAL_EVALUATOR_JUDGE_")


class Judge:
    """Asks one OpenAI-compatible endpoint (`POST {base_url}/chat/completions`) for SEAL's verdicts."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_seconds: float = 60.0,
        concurrency: int = 8,
        max_tokens: int = 16,
        max_retries: int = 4,
        max_retry_wait_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        # One pool per judge, shared by concurrent evaluations: at most `concurrency` requests in flight in all.
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge")
        self._chat = ChatClient(
            base_url,
            model,
            api_key,
            JUDGE,
            timeout_seconds=timeout_seconds,
            retry=RetryRule(max_retries, max_retry_wait_seconds),
            max_connections=concurrency,
            sleep=sleep,
        )

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> Judge | None:
        """The configured judge, or None when `judge_base_url` is empty (the judge is off)."""
        if not settings.judge_enabled:
            return None
        key = settings.judge_api_key.get_secret_value() if settings.judge_api_key else None
        return cls(
            settings.judge_base_url,
            settings.judge_model,
            key,
            timeout_seconds=settings.judge_timeout_seconds,
            concurrency=settings.judge_concurrency,
            max_tokens=settings.judge_max_tokens,
            max_retries=settings.judge_max_retries,
            max_retry_wait_seconds=settings.judge_max_retry_wait_seconds,
        )

    @property
    def identity(self) -> dict[str, Any]:
        """What decides the verdicts, for the evaluation cache key (the endpoint's address does not)."""
        return {
            "version": JUDGE_VERSION,
            "template": SEAL_GRADE_TEMPLATE,
            "model": self.model,
            "max_tokens": self.max_tokens,
        }

    def verdicts(self, prompts: Sequence[str]) -> list[bool]:
        """One verdict per grading prompt, `concurrency` requests at a time; the first failure cancels the
        prompts not yet sent."""
        futures = [self._pool.submit(self.ask, prompt) for prompt in prompts]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def ask(self, prompt: str) -> bool:
        # SEAL sends the prompt as the only user message, at temperature 0.
        reply = self._chat.complete(
            [{"role": "user", "content": prompt}], temperature=0, max_tokens=self.max_tokens
        )
        if not reply.text or not reply.text.strip():
            # A reasoning model can spend a small budget before it writes anything: that is no verdict.
            raise FailedPrecondition(
                f"judge replied with no text (finish_reason={reply.finish_reason!r}); "
                "raise SEAL_EVALUATOR_JUDGE_MAX_TOKENS or use another model"
            )
        return parse_yes_no(reply.text)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._chat.close()


def add_verdicts(judge: Judge, graded: Sequence[tuple[Sequence[QuestionItem], dict[str, Any]]]) -> None:
    """Adds `judge` to every answer's scores and to the mean of each (questions, evaluation record) pair.

    All answers of all records are asked together. An empty answer is "no" without asking (SEAL grades only
    answers with text)."""
    rows = [
        (question, answer)
        for questions, record in graded
        for question, answer in zip(questions, record["answers"], strict=True)
    ]
    asked = [(q, a) for q, a in rows if a["answer"].strip()]
    for (_, answer), verdict in zip(
        asked, judge.verdicts([grade_prompt(q, a["answer"]) for q, a in asked]), strict=True
    ):
        answer["scores"]["judge"] = float(verdict)
    for _, record in graded:
        for answer in record["answers"]:
            answer["scores"].setdefault("judge", 0.0)
        values = [a["scores"]["judge"] for a in record["answers"]]
        record["mean"]["judge"] = math.fsum(values) / len(values) if values else 0.0
