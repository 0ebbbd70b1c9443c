"""The evaluator and the adapters it is asked about, end to end on a real gRPC evaluator with a tiny model: an
adapter whose config names another base model is refused (and nothing cached for it), and each adapter key
has a cache entry of its own however alike two keys look."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from seal.v1 import evaluator_pb2, evaluator_pb2_grpc
from seal_lab.formats.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    AdapterFiles,
    adapter_meta,
    base_model_ref,
    canonical_adapter_config,
    publish_adapter,
)
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import load_model
from seal_lab.model.lora import train_adapter
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.server import CACHE_PREFIX, EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

QUESTION = evaluator_pb2.Question(
    question_id="q0", question="Who cast the Vellum Bell?", answers=["Pell Arrowby"]
)
DIRECTIVE = Directive(
    epochs=1, learning_rate=1e-3, lora_rank=2, lora_alpha=4, batch_size=1, max_length=32, steps=0
)


@dataclass
class Setup:
    store: LocalStore
    evaluator: ServerThread
    model_path: str
    #: Two adapters trained for the tiny model (seeds 0 and 1), published under their content keys.
    adapters: list[str]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    model_path = tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    settings = ModelSettings(name=model_path, device="cpu", dtype="float32")
    store = LocalStore(tmp_path_factory.mktemp("store"))
    loaded = load_model(settings)
    base = base_model_ref(model_path)
    examples = [TrainingExample("", "The Vellum Bell was cast in 1712 by Pell Arrowby.")]
    adapters = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"adapter-{seed}")
        train_adapter(loaded, examples, DIRECTIVE, seed, folder)
        files = AdapterFiles.from_peft_folder(folder, base)
        adapters.append(publish_adapter(store, files, adapter_meta(model_path, base, loaded.fingerprint)))
    servicer = EvaluatorServicer(store, ModelHost("evaluator", settings), EvaluatorSettings())
    server = serve(servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server)
    try:
        yield Setup(store, server, model_path, adapters)
    finally:
        server.stop()


def _evaluate(server: ServerThread, keys: list[str]) -> list[evaluator_pb2.AdapterEvaluation]:
    stub = evaluator_pb2_grpc.EvaluatorStub(server.channel())
    request = evaluator_pb2.EvaluateRequest(questions=[QUESTION], adapter_keys=keys, max_new_tokens=4)
    return list(stub.Evaluate(request, timeout=120).evaluations)


def _copy(store: LocalStore, source: str, key: str) -> None:
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_META):
        store.put_bytes(f"{key}/{name}", store.get_bytes(f"{source}/{name}"))


def test_an_adapter_whose_config_names_another_base_model_is_refused_and_not_cached(setup: Setup):
    """Its seal_adapter.json carries this model's fingerprint (copied from a real adapter), but its config,
    what peft and the Hub read, says gpt2: the two disagree, and the evaluator refuses it as the generator
    refuses such a policy adapter (one check, `seal_lab.formats.adapters.verify_adapter`)."""
    store = setup.store
    own = setup.adapters[0]
    files = AdapterFiles(
        store.get_bytes(f"{own}/{ADAPTER_WEIGHTS}"), store.get_bytes(f"{own}/{ADAPTER_CONFIG}")
    )
    foreign = AdapterFiles(files.weights, canonical_adapter_config(files.config, "gpt2"))
    key = publish_adapter(store, foreign, store.get_json(f"{own}/{ADAPTER_META}"))
    cached_before = store.list_keys(f"{CACHE_PREFIX}/")
    with pytest.raises(grpc.RpcError) as refused:
        _evaluate(setup.evaluator, ["", key])
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.value.details()
    base_id = base_model_ref(setup.model_path).id
    assert key in details and "'gpt2'" in details and repr(base_id) in details
    assert setup.model_path not in details and str(Path(setup.model_path).parent) not in details
    # Refused before anything was answered: not even the base model's evaluation was cached.
    assert store.list_keys(f"{CACHE_PREFIX}/") == cached_before
    # The same request without it is answered.
    assert [e.adapter_key for e in _evaluate(setup.evaluator, ["", own])] == ["", own]


def test_adapter_keys_that_differ_only_in_separators_have_their_own_cache_entries(setup: Setup):
    """`adapters/<sha>` and `adapters-<sha>` (another adapter, under a name of its own), and an adapter stored
    at the key `baseline` and the base model: each is evaluated, never served the other's cached result."""
    store = setup.store
    slashed = setup.adapters[0]
    dashed = slashed.replace("/", "-")
    _copy(store, setup.adapters[1], dashed)
    _copy(store, setup.adapters[1], "baseline")
    first = _evaluate(setup.evaluator, ["", slashed])
    assert [e.adapter_key for e in first] == ["", slashed]
    assert _evaluate(setup.evaluator, ["", slashed])[1].cached  # the cache works...
    (other,) = _evaluate(setup.evaluator, [dashed])
    assert other.adapter_key == dashed and not other.cached  # ...and keeps the two keys apart
    (named_baseline,) = _evaluate(setup.evaluator, ["baseline"])
    assert named_baseline.adapter_key == "baseline" and not named_baseline.cached
    # Each key's entry is its own: asked again, each is cached, with what was answered for it.
    again = _evaluate(setup.evaluator, ["", slashed, dashed, "baseline"])
    assert all(e.cached for e in again)
    assert [e.mean_gold_logprob for e in again] == [
        first[0].mean_gold_logprob,
        first[1].mean_gold_logprob,
        other.mean_gold_logprob,
        named_baseline.mean_gold_logprob,
    ]
