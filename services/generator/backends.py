"""Where self-edit text comes from: the local model (default) or an OpenAI-compatible teacher over HTTP."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from seal_lab.errors import ConfigurationError, InvalidArgument
from seal_lab.formats.adapters import AdapterLimits
from seal_lab.formats.directive import DIRECTIVE_LINE_PREFIX, DirectiveLimits, format_directive
from seal_lab.model.base import LoadedModel, chat_prompt, generate_texts
from seal_lab.model.callend import IsCancelled, check_cancelled
from seal_lab.model.lora import adapter_applied
from seal_lab.openai_client import ChatClient, Endpoint, RetryRule
from seal_lab.store import ObjectStore

log = logging.getLogger(__name__)


def directive_guidance(limits: DirectiveLimits) -> str:
    """What the model is told about directives: the trainer's limits and its default as an example.

    The example keeps a small model near workable values; sampling still varies them.
    """
    return (
        f"Allowed: epochs {limits.min_epochs}-{limits.max_epochs}, learning_rate {limits.min_learning_rate:g} to "
        f"{limits.max_learning_rate:g}, lora_rank {limits.min_lora_rank}-{limits.max_lora_rank}, lora_alpha "
        f"{limits.min_lora_alpha}-{limits.max_lora_alpha}, batch_size {limits.min_batch_size}-{limits.max_batch_size}, "
        f"max_length {limits.min_max_length}-{limits.max_max_length}, steps {limits.min_steps}-{limits.max_steps} "
        f"(the training budget; 0 = train for the epochs). For example: "
        f"{format_directive(limits.default).removeprefix('Training: ')}."
    )


DIRECTIVE_PREFIX = DIRECTIVE_LINE_PREFIX
DIRECTIVE_MAX_TOKENS = 64


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


@dataclass(frozen=True)
class RawSelfEdit:
    """What a backend wrote: the self-edit text and, separately, the text holding its directive."""

    text: str
    directive_text: str
    tokens: int
    # (prompt, completion) pairs exactly as the model produced this self-edit: ReST-EM fine-tunes the policy on
    # them when this self-edit wins. Empty for remote teachers (no policy to train).
    policy_examples: tuple[tuple[str, str], ...] = ()


class Backend(Protocol):
    """`write` asks `cancelled` between its steps (and the local model at every decoding step): once the call
    has ended it raises `CallCancelled` instead of writing on for nobody."""

    name: str
    model_name: str

    def write(
        self,
        prompt: str,
        num_samples: int,
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
    ) -> list[RawSelfEdit]: ...


class LocalBackend:
    """The service's own base model, optionally with a policy adapter (ReST-EM) from the store."""

    name = "local"

    def __init__(self, loaded: LoadedModel, store: ObjectStore) -> None:
        self.loaded = loaded
        self.store = store
        self.model_name = loaded.name

    def write(
        self,
        prompt: str,
        num_samples: int,
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
    ) -> list[RawSelfEdit]:
        if not policy_adapter_key:
            return self._write(self.loaded, prompt, num_samples, sampling, limits, cancelled)
        # The policy was trained by the trainer whose limits came with the request: its config stays within them.
        adapter_limits = AdapterLimits.from_directive_limits(limits)
        with adapter_applied(self.loaded, self.store, policy_adapter_key, adapter_limits) as policy_model:
            with_policy = dataclasses.replace(self.loaded, model=policy_model)
            return self._write(with_policy, prompt, num_samples, sampling, limits, cancelled)

    @staticmethod
    def _write(
        model: LoadedModel,
        prompt: str,
        num_samples: int,
        sampling: Sampling,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None,
    ) -> list[RawSelfEdit]:
        chat = chat_prompt(model.tokenizer, prompt)
        edits = generate_texts(
            model,
            [chat],
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            num_return_sequences=num_samples,
            cancelled=cancelled,
        )
        # The directive is written as a continuation of the self-edit: a small model asked for it inside the
        # main prompt mixes it into the self-edit; prefilled, it does not.
        prefill = f"\n\nTo learn these facts, train a LoRA adapter. {directive_guidance(limits)}\n{DIRECTIVE_PREFIX}"
        continuations = [chat + edit.text.rstrip() + prefill for edit in edits]
        directives = generate_texts(
            model,
            continuations,
            max_new_tokens=DIRECTIVE_MAX_TOKENS,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed + 1,
            stop_at_newline=True,
            cancelled=cancelled,
        )
        return [
            RawSelfEdit(
                edit.text,
                DIRECTIVE_PREFIX + directive.text,
                edit.tokens + directive.tokens,
                policy_examples=((chat, edit.text), (continuation, directive.text)),
            )
            for edit, directive, continuation in zip(edits, directives, continuations, strict=True)
        ]


#: How the teacher's errors name it and its settings.
TEACHER = Endpoint("teacher", "SEAL_GENERATOR_OPENAI_")


class OpenAIBackend:
    """Any OpenAI-compatible `/chat/completions` endpoint (vLLM, llama.cpp server, a hosted API), asked through
    the shared client (`seal_lab.openai_client`): its retry rule and errors are the judge's too. A teacher
    that stays unavailable is UNAVAILABLE, which the coordinator retries within its own budget; a refusal
    fails the call at once (FAILED_PRECONDITION for the key, URL or model, INVALID_ARGUMENT otherwise)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        timeout_seconds: float,
        *,
        max_retries: int = 4,
        max_retry_wait_seconds: float = 60.0,
        initial_backoff_seconds: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url or not model:
            raise ConfigurationError(
                "the openai backend needs SEAL_GENERATOR_OPENAI_BASE_URL and _OPENAI_MODEL"
            )
        self.model_name = model
        rule = RetryRule(max_retries, max_retry_wait_seconds, initial_backoff_seconds)
        self._chat = ChatClient(
            base_url,
            model,
            api_key,
            TEACHER,
            timeout_seconds=timeout_seconds,
            retry=rule,
            transport=transport,
            sleep=sleep,
        )

    def write(
        self,
        prompt: str,
        num_samples: int,
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
    ) -> list[RawSelfEdit]:
        if policy_adapter_key:
            raise InvalidArgument(
                "a policy adapter needs the local backend; this generator uses a remote teacher"
            )
        # Strong teachers follow an instruction to end with a directive line.
        instruction = (
            "\n\nAfter the list, choose how a small model should be trained on it (a LoRA adapter) and write one "
            f"last line that starts with 'Training:'. {directive_guidance(limits)}"
        )
        results = []
        for index in range(num_samples):  # one request per sample: not every server supports `n`
            check_cancelled(cancelled, f"before sample {index + 1} of {num_samples}")
            reply = self._chat.complete(
                [{"role": "user", "content": prompt + instruction}],
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=sampling.seed + index,
            )
            text = reply.text or ""
            results.append(RawSelfEdit(text, text, reply.completion_tokens))
        return results

    def close(self) -> None:
        self._chat.close()
