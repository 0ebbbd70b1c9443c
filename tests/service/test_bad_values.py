"""Bad values for every request field of every method of the three services (issue 12, item 7).

Each request field, found by walking the request's descriptor, is set in turn to values a careless or hostile
caller sends: empty, huge, negative or huge numbers, NaN and infinities, path-like keys, too many items. Every
answer must be a success, or a status that is neither INTERNAL nor UNKNOWN and says what is wrong, without a
trace or a filesystem path. Real gRPC servers in-process: the trainer and the evaluator on a tiny random Llama
(tests/tiny_model.py), the generator on a stand-in teacher (its model is needed only after validation, and
sampling on any model takes seconds), which fetches a policy adapter as the local backend does.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from seal.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from seal_lab.formats.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    AdapterLimits,
    fetch_adapter,
)
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.backends import RawSelfEdit
from services.generator.server import GeneratorServicer
from services.trainer.server import TrainerServicer
from services.trainer.settings import TrainerSettings
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

TRAINER_SETTINGS = TrainerSettings(max_epochs=1, max_max_length=64, max_steps=2, max_lora_rank=4)
LIMITS = DirectiveLimits(max_epochs=1, max_lora_rank=4, max_max_length=64, max_steps=2).with_clamped_default()
DIRECTIVE = Directive(
    epochs=1, learning_rate=1e-3, lora_rank=2, lora_alpha=4, batch_size=1, max_length=32, steps=1
)
QUESTION = evaluator_pb2.Question(question_id="q0", question="Colour?", answers=["red"], topic="Bells")
PASSAGE = generator_pb2.Passage(passage_id="p-1", title="Bells", context="The Vellum Bell is red.")
#: An adapter for this model whose config asks for a rank no trainer gives (refused before peft loads it).
HUGE_RANK_ADAPTER = "adapters/huge-rank"
#: Over the 16 MiB a message may have (seal_lab.rpc.wire): the server refuses it before any handler runs.
OVERSIZE = "x" * (17 * 1024 * 1024)


class StandInTeacher:
    """A generator backend that writes one fixed self-edit at once; a policy adapter is fetched and checked
    as the local backend does before peft would load it."""

    name = "stand-in"
    model_name = "stand-in"

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.fingerprint = ""

    def write(
        self,
        prompt: str,
        num_samples: int,
        sampling: Any,
        policy_adapter_key: str,
        limits: DirectiveLimits,
        cancelled: Any = None,
    ) -> list[RawSelfEdit]:
        if policy_adapter_key:
            with tempfile.TemporaryDirectory() as folder:
                adapter_limits = AdapterLimits.from_directive_limits(limits)
                fetch_adapter(
                    self.store,
                    policy_adapter_key,
                    Path(folder),
                    self.fingerprint,
                    adapter_limits,
                    base_id=self.model_name,
                )
        text = "1. The Vellum Bell is red.\nTraining: epochs=1 learning_rate=0.001 lora_rank=2"
        return [RawSelfEdit(text, text, 12)] * num_samples


@dataclass
class Stack:
    store: LocalStore
    generator: ServerThread
    trainer: ServerThread
    evaluator: ServerThread
    dataset_key: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    model = ModelSettings(name=tiny_llama(tmp_path_factory.mktemp("tiny")), device="cpu", dtype="float32")
    store = LocalStore(tmp_path_factory.mktemp("store"))
    teacher = StandInTeacher(store)
    servers = [
        serve(
            GeneratorServicer(store, ModelHost("generator", model), remote=teacher),
            "seal.v1.Generator",
            generator_pb2_grpc.add_GeneratorServicer_to_server,
        ),
        serve(
            TrainerServicer(store, ModelHost("trainer", model), TRAINER_SETTINGS),
            "seal.v1.Trainer",
            trainer_pb2_grpc.add_TrainerServicer_to_server,
        ),
        serve(
            EvaluatorServicer(store, ModelHost("evaluator", model), EvaluatorSettings(max_questions=100)),
            "seal.v1.Evaluator",
            evaluator_pb2_grpc.add_EvaluatorServicer_to_server,
        ),
    ]
    try:
        generator = generator_pb2_grpc.GeneratorStub(servers[0].channel())
        imported = generator.Import(BASE["Import"](), timeout=60)
        evaluator = evaluator_pb2_grpc.EvaluatorStub(servers[2].channel())
        fingerprint = evaluator.GetInfo(common_pb2.GetInfoRequest(), timeout=10).model_fingerprint
        teacher.fingerprint = fingerprint
        huge = {"peft_type": "LORA", "r": 10**9, "lora_alpha": 16, "target_modules": ["q_proj"]}
        store.put_bytes(f"{HUGE_RANK_ADAPTER}/{ADAPTER_CONFIG}", json.dumps(huge).encode())
        store.put_bytes(f"{HUGE_RANK_ADAPTER}/{ADAPTER_WEIGHTS}", b"not read")
        store.put_json(f"{HUGE_RANK_ADAPTER}/{ADAPTER_META}", {"base_model_fingerprint": fingerprint})
        yield Stack(store, *servers, dataset_key=imported.self_edits[0].dataset_key)
    finally:
        for server in servers:
            server.stop()


# ---- the table: a valid request per method, and the bad values each field gets ---------------------------

BASE: dict[str, Callable[[], Message]] = {
    "Generate": lambda: generator_pb2.GenerateRequest(
        passage=PASSAGE,
        format="implications",
        num_samples=1,
        sampling=generator_pb2.SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=4, seed=1),
        limits=LIMITS.to_proto(),
        include_passage=True,
        run_id="run-1",
    ),
    "Import": lambda: generator_pb2.ImportRequest(
        passage=PASSAGE,
        format="implications",
        outputs=["1. The Vellum Bell is red.\n2. It rings on Sundays."],
        limits=LIMITS.to_proto(),
        include_passage=True,
        source="teacher:test",
        run_id="run-1",
    ),
    "Train": lambda: trainer_pb2.TrainRequest(
        directive=DIRECTIVE.to_proto(), seed=1, job_id="run-1/p-1/train"
    ),
    "Evaluate": lambda: evaluator_pb2.EvaluateRequest(
        questions=[QUESTION],
        adapter_keys=[""],
        max_new_tokens=2,
        run_id="run-1",
        sets=[evaluator_pb2.QuestionSet(set_id="set-1", questions=[QUESTION], adapter_keys=[""])],
    ),
}
SERVICE = {"Generate": "generator", "Import": "generator", "Train": "trainer", "Evaluate": "evaluator"}

_STRINGS = {"empty": "", "huge": "x" * 200_000, "path": "../../etc/passwd", "odd": "\x00\u202e\u2603 a/b"}
_NUMBERS = {
    FieldDescriptor.TYPE_INT32: {"negative": -1, "zero": 0, "max": 2**31 - 1, "min": -(2**31)},
    FieldDescriptor.TYPE_INT64: {"negative": -1, "zero": 0, "max": 2**63 - 1},
    FieldDescriptor.TYPE_UINT64: {"zero": 0, "max": 2**64 - 1},
    FieldDescriptor.TYPE_DOUBLE: {
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "negative": -1.0,
        "huge": 1e300,
    },
    FieldDescriptor.TYPE_BOOL: {"false": False, "true": True},
}
_MISSING = object()
#: A repeated message filled with 10,000 copies of its first element.
TEN_THOUSAND = object()


def _bad_values(field: FieldDescriptor) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.is_repeated:
            return {"none": [], "10k": TEN_THOUSAND}  # the list itself; its first element's fields follow
        return {"missing": _MISSING}
    if field.type == FieldDescriptor.TYPE_STRING:
        values: dict[str, Any] = dict(_STRINGS)
    else:
        values = dict(_NUMBERS[field.type])
    if field.is_repeated:
        return {
            "none": [],
            **{f"one {name}": [value] for name, value in values.items()},
            "10k": [next(iter(values.values()))] * 10_000,
        }
    return values


def _fields(descriptor: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], FieldDescriptor]]:
    """Every field, nested ones too (the first element of a repeated message stands for all)."""
    for field in descriptor.fields:
        here = (*path, field.name)
        yield here, field
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            yield from _fields(field.message_type, here)


def _cases() -> Iterator[Any]:
    for method, base in BASE.items():
        for path, field in _fields(base().DESCRIPTOR):
            for label, value in _bad_values(field).items():
                yield pytest.param(method, path, value, id=f"{method}:{'.'.join(path)}={label}")
    extra = [
        ("Generate", ("policy_adapter_key",), HUGE_RANK_ADAPTER, "adapter config over the limits"),
        ("Generate", ("policy_adapter_key",), "adapters/" + "a" * 300, "300-character key"),
        ("Evaluate", ("adapter_keys",), [HUGE_RANK_ADAPTER], "adapter config over the limits"),
        ("Evaluate", ("adapter_keys",), ["a" * 300], "300-character key"),
        ("Train", ("dataset_key",), "datasets/" + "a" * 300, "300-character key"),
        ("Train", ("dataset_key",), "datasets/missing.jsonl", "missing key"),
        ("Generate", ("passage", "context"), OVERSIZE, "over the message limit"),
        ("Evaluate", ("run_id",), OVERSIZE, "over the message limit"),
        ("Train", ("job_id",), OVERSIZE, "over the message limit"),
    ]
    for method, path, value, label in extra:
        yield pytest.param(method, path, value, id=f"{method}:{'.'.join(path)}={label}")


def _set(message: Message, path: tuple[str, ...], value: Any) -> None:
    *parents, name = path
    for part in parents:
        child = getattr(message, part)
        message = child[0] if hasattr(child, "add") else child  # a repeated message: its first element
    field = message.DESCRIPTOR.fields_by_name[name]
    if value is _MISSING:
        message.ClearField(name)
    elif field.is_repeated:
        items = getattr(message, name)
        copies = list(items)[:1] * 10_000 if value is TEN_THOUSAND else value
        del items[:]
        items.extend(copies)
    else:
        setattr(message, name, value)


def _call(stack: Stack, method: str, request: Message) -> None:
    server = getattr(stack, SERVICE[method])
    channel = server.channel()
    try:
        stub = {
            "generator": generator_pb2_grpc.GeneratorStub,
            "trainer": trainer_pb2_grpc.TrainerStub,
            "evaluator": evaluator_pb2_grpc.EvaluatorStub,
        }[SERVICE[method]](channel)
        answer = getattr(stub, method)(request, timeout=120)
        if method == "Train":
            list(answer)
    finally:
        channel.close()


@pytest.mark.parametrize(("method", "path", "value"), list(_cases()))
def test_every_field_takes_bad_values_without_an_internal_error(stack, method, path, value):
    request = BASE[method]()
    if method == "Train":
        request.dataset_key = stack.dataset_key
    _set(request, path, value)
    try:
        _call(stack, method, request)
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{code.name}: {details}"
        assert details.strip(), f"{code.name} without a message"
        assert str(stack.store.root) not in details and "Traceback" not in details, details
        # The service's own message, short: one that echoes a huge value is dropped by gRPC on the way
        # ("Stream removed (received metadata size exceeds hard limit)") and the caller learns nothing.
        assert "Stream removed" not in details and len(details) < 2_000, details[:200]


@pytest.mark.parametrize("service", ["generator", "trainer", "evaluator"])
def test_get_info_answers_with_versions_not_the_host(stack, service):
    stub = {
        "generator": generator_pb2_grpc.GeneratorStub,
        "trainer": trainer_pb2_grpc.TrainerStub,
        "evaluator": evaluator_pb2_grpc.EvaluatorStub,
    }[service](getattr(stack, service).channel())
    info = stub.GetInfo(common_pb2.GetInfoRequest(), timeout=10)
    assert info.version and "python" in info.runtime and "platform" not in info.runtime


def test_the_table_covers_every_field_of_every_request():
    covered = {(method, path) for method, path, _ in (case.values for case in _cases())}
    for method, base in BASE.items():
        for path, _field in _fields(base().DESCRIPTOR):
            assert (method, path) in covered
