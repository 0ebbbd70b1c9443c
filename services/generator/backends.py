"""Where self-edit text comes from: the local model (default) or an OpenAI-compatible teacher over HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from seal_lab.errors import ConfigurationError, InvalidArgument
from seal_lab.formats.adapters import AdapterLimits
from seal_lab.formats.directive import DIRECTIVE_LINE_PREFIX, DirectiveLimits, format_directive
from seal_lab.model.base import GeneratedText, LoadedModel, chat_prompt, generate_texts
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

    def write_each(
        self,
        prompts: list[str],
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
        directive: bool = True,
    ) -> list[RawSelfEdit]:
        """One text per prompt (a stage of a multi-stage strategy: sample i's prompt holds its earlier
        stages' outputs); the directive is written only when `directive` (the last stage)."""
        ...


class LocalBackend:
    """The service's own base model, optionally with a policy adapter (ReST-EM) from the store."""

    name = "local"

    def __init__(self, loaded: LoadedModel, store: ObjectStore) -> None:
        self.loaded = loaded
        self.store = store
        self.model_name = loaded.name

    @contextlib.contextmanager
    def _model(self, policy_adapter_key: str, limits: DirectiveLimits) -> Iterator[LoadedModel]:
        if not policy_adapter_key:
            yield self.loaded
            return
        # The policy was trained by the trainer whose limits came with the request: its config stays within them.
        adapter_limits = AdapterLimits.from_directive_limits(limits)
        with adapter_applied(self.loaded, self.store, policy_adapter_key, adapter_limits) as policy_model:
            yield dataclasses.replace(self.loaded, model=policy_model)

    def write(
        self,
        prompt: str,
        num_samples: int,
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
    ) -> list[RawSelfEdit]:
        with self._model(policy_adapter_key, limits) as model:
            chat = chat_prompt(model.tokenizer, prompt)
            edits = self._generate(model, [chat], num_samples, sampling, cancelled)
            return self._with_directives(model, [chat] * num_samples, edits, sampling, limits, cancelled)

    def write_each(
        self,
        prompts: list[str],
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
        directive: bool = True,
    ) -> list[RawSelfEdit]:
        with self._model(policy_adapter_key, limits) as model:
            chats = [chat_prompt(model.tokenizer, prompt) for prompt in prompts]
            edits = self._generate(model, chats, 1, sampling, cancelled)
            if not directive:
                return [
                    RawSelfEdit(edit.text, "", edit.tokens, policy_examples=((chat, edit.text),))
                    for chat, edit in zip(chats, edits, strict=True)
                ]
            return self._with_directives(model, chats, edits, sampling, limits, cancelled)

    @staticmethod
    def _generate(
        model: LoadedModel,
        chats: list[str],
        num_samples: int,
        sampling: Sampling,
        cancelled: IsCancelled | None,
    ) -> list[GeneratedText]:
        return generate_texts(
            model,
            chats,
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            num_return_sequences=num_samples,
            cancelled=cancelled,
        )

    @staticmethod
    def _with_directives(
        model: LoadedModel,
        chats: list[str],
        edits: list[GeneratedText],
        sampling: Sampling,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None,
    ) -> list[RawSelfEdit]:
        """Each edit (written for the chat at its index) and the directive written after it."""
        # The directive is written as a continuation of the self-edit: a small model asked for it inside the
        # main prompt mixes it into the self-edit; prefilled, it does not.
        prefill = f"\n\nTo learn these facts, train a LoRA adapter. {directive_guidance(limits)}\n{DIRECTIVE_PREFIX}"
        continuations = [chat + edit.text.rstrip() + prefill for chat, edit in zip(chats, edits, strict=True)]
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
            for chat, edit, directive, continuation in zip(
                chats, edits, directives, continuations, strict=True
            )
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
        return self.write_each([prompt] * num_samples, sampling, policy_adapter_key, limits, cancelled)

    def write_each(
        self,
        prompts: list[str],
        sampling: Sampling,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: IsCancelled | None = None,
        directive: bool = True,
    ) -> list[RawSelfEdit]:
        if policy_adapter_key:
            raise InvalidArgument(
                "a policy adapter needs the local backend; this generator uses a remote teacher"
            )
        # Strong teachers follow an instruction to end with a directive line.
        instruction = (
            "\n\nAfter the list, choose how a small model should be trained on it (a LoRA adapter) and write one "
            f"last line that starts with 'Training:'. {directive_guidance(limits)}"
            if directive
            else ""
        )
        results = []
        for index, prompt in enumerate(prompts):  # one request per sample: not every server supports `n`
            check_cancelled(cancelled, f"before sample {index + 1} of {len(prompts)}")
            reply = self._chat.complete(
                [{"role": "user", "content": prompt + instruction}],
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=sampling.seed + index,
            )
            text = reply.text or ""
            results.append(RawSelfEdit(text, text if directive else "", reply.completion_tokens))
        return results

    def close(self) -> None:
        self._chat.close()
