"""A strategy file sent with the request, run by the real generator (a tiny random Llama): both stages run,
the first stage's prompt and output are in the stored record, and the strategy's hash is part of the key."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from seal.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from seal_lab.formats.datasets import read_dataset
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.formats.strategies import builtin_texts
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.generator.server import GeneratorServicer
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

PASSAGE = generator_pb2.Passage(passage_id="p", title="Bells", context="The Ostrany bell rings on Sundays.")
# A split no text can fail (min_words 1 on blocks): the random model's words are training texts whatever they are.
TWO_STAGES = """\
name: two-step
description: entities, then facts
source: a test
stages:
  - name: entities
    template: |-
      List the entities of {{ title }}: {{ context }}
    sampling:
      max_new_tokens: 6
  - name: facts
    template: |-
      Entities: {{ entities }}
      Facts about {{ title }}:
split:
  kind: blocks
  min_words: 1
example_output: "the bell rings"
"""


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, LocalStore]]:
    model = tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    store = LocalStore(tmp_path_factory.mktemp("store"))
    settings = ModelSettings(name=model, device="cpu", dtype="float32", torch_threads=1)
    server = serve(
        GeneratorServicer(store, ModelHost("generator", settings)),
        "seal.v1.Generator",
        generator_pb2_grpc.add_GeneratorServicer_to_server,
    )
    yield server, store
    server.stop()


def _generate(server: ServerThread, fmt: str, strategy: str = "") -> generator_pb2.GenerateResponse:
    request = generator_pb2.GenerateRequest(
        passage=PASSAGE,
        format=fmt,
        strategy=strategy,
        num_samples=2,
        sampling=generator_pb2.SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=8, seed=3),
        limits=DirectiveLimits().to_proto(),
        include_passage=True,
    )
    return generator_pb2_grpc.GeneratorStub(server.channel()).Generate(request, timeout=300)


def test_a_two_stage_strategy_runs_both_stages_and_keeps_the_first_in_the_record(generator):
    server, store = generator
    response = _generate(server, "two-step", TWO_STAGES)
    assert [e.format for e in response.self_edits] == ["two-step", "two-step"]
    for edit in response.self_edits:
        meta = read_dataset(store, edit.dataset_key).meta
        (first,) = meta["stages"]
        assert (
            first["name"] == "entities"
            and first["prompt"] == "List the entities of Bells: The Ostrany bell rings on Sundays."
        )
        # the second stage's prompt holds this sample's own first-stage output
        assert meta["prompt"] == f"Entities: {first['output']}\nFacts about Bells:"
        assert len(meta["strategy_sha256"]) == 64
        assert [s["max_new_tokens"] for s in meta["stage_sampling"]] == [6, 8]
        assert edit.generated_tokens > 0


def test_a_changed_strategy_never_shares_a_key_and_an_original_keeps_its_record(generator):
    server, store = generator
    keys = {e.dataset_key for e in _generate(server, "two-step", TWO_STAGES).self_edits}
    changed = TWO_STAGES.replace("description: entities, then facts", "description: entities, then facts!")
    assert keys.isdisjoint(e.dataset_key for e in _generate(server, "two-step", changed).self_edits)
    original = _generate(server, "implications").self_edits[0]
    meta = read_dataset(store, original.dataset_key).meta
    assert "strategy_sha256" not in meta and "stages" not in meta
    # the same file sent as text is the built-in itself: the same record, the same key
    sent = _generate(server, "implications", builtin_texts()["implications"]).self_edits[0]
    assert sent.dataset_key == original.dataset_key


def test_a_bad_strategy_is_invalid_argument_with_its_line(generator):
    server, _ = generator
    with pytest.raises(grpc.RpcError) as caught:
        _generate(server, "two-step", TWO_STAGES.replace("{{ entities }}", "{{ entitys }}"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "strategy 'two-step':12: stage 'facts': unknown variable 'entitys'" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        _generate(server, "other", TWO_STAGES)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "not 'other'" in caught.value.details()


def test_get_info_lists_the_built_in_strategies(generator):
    server, _ = generator
    info = generator_pb2_grpc.GeneratorStub(server.channel()).GetInfo(common_pb2.GetInfoRequest(), timeout=30)
    assert {"implications", "entigraph", "active-reading"} <= set(info.formats)
