"""CUDA path check: the trainer trains on the GPU (bf16), a CPU evaluator uses its adapter.

Checks what the split "trainer on the GPU box, the rest on laptops" needs:
- the same checkpoint loaded as float32 on the CPU and bfloat16 on CUDA has one fingerprint;
- the trainer service trains over real gRPC on CUDA and stores a safetensors adapter;
- an evaluator service on the CPU accepts that adapter and answers with it;
- ReST-EM across machines: the GPU trainer fine-tunes a policy adapter on (prompt -> self-edit) records, and
  a generator service on the CPU hot-swaps it in (`policy_adapter_key`) and writes other self-edits with it.

    python benchmarks/cuda_check.py [--model PATH_OR_ID] [--tokenizer DIR]

Without --model it builds a small random Llama (so it runs where the embedded model cannot be carried),
with the embedded model's tokenizer from --tokenizer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import grpc
import torch

from seal.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from seal_lab.formats.directive import Directive
from seal_lab.model.base import load_model
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.server import GeneratorServicer
from services.trainer.server import TrainerServicer
from services.trainer.settings import TrainerSettings
from tests.grpc_harness import serve
from tests.tiny_model import tiny_llama


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="")
    parser.add_argument("--tokenizer", type=Path, default=Path(".gpucheck/tokenizer"))
    args = parser.parse_args()
    assert torch.cuda.is_available(), "no CUDA device visible"
    report: dict = {"device_name": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_llama(Path(tmp) / "model", args.tokenizer)
        gpu_settings = ModelSettings(name=model, device="auto", dtype="auto")
        cpu_settings = ModelSettings(name=model, device="cpu", dtype="float32")
        gpu, cpu = load_model(gpu_settings), load_model(cpu_settings)
        report.update(gpu_device=gpu.device, gpu_dtype=gpu.dtype, cpu_dtype=cpu.dtype)
        report["fingerprints_match"] = gpu.fingerprint == cpu.fingerprint
        del gpu, cpu

        store = LocalStore(Path(tmp) / "store")
        text = "The Vellum Bell of Ostrany was cast in 1712 by Pell Arrowby and weighs 940 kilograms. " * 8
        key = store.put_content(
            "datasets", (json.dumps({"prompt": "", "completion": text}) + "\n").encode(), ".jsonl"
        )
        trainer = TrainerServicer(store, ModelHost("trainer", gpu_settings), TrainerSettings())
        evaluator = EvaluatorServicer(store, ModelHost("evaluator", cpu_settings), EvaluatorSettings())
        generator = GeneratorServicer(store, ModelHost("generator", cpu_settings))
        servers = [
            serve(trainer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server),
            serve(evaluator, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server),
            serve(generator, "seal.v1.Generator", generator_pb2_grpc.add_GeneratorServicer_to_server),
        ]
        try:
            trainer_stub = trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(servers[0].address))
            info = trainer_stub.GetInfo(common_pb2.GetInfoRequest(), timeout=30)
            report.update(trainer_device=info.device, trainer_dtype=info.dtype)
            directive = Directive(
                epochs=10, learning_rate=1e-3, lora_rank=16, lora_alpha=32, batch_size=4, max_length=256
            )
            started = time.perf_counter()
            events = list(
                trainer_stub.Train(
                    trainer_pb2.TrainRequest(dataset_key=key, directive=directive.to_proto(), seed=0),
                    timeout=600,
                )
            )
            result = events[-1].result
            report.update(
                train_seconds=round(time.perf_counter() - started, 2),
                train_tokens_per_second=result.metrics.tokens_per_second,
                first_loss=result.metrics.step_loss[0],
                final_loss=result.metrics.step_loss[-1],
                adapter_files=sorted(k.rsplit("/", 1)[1] for k in store.list_keys(result.adapter_key + "/")),
            )
            evaluator_stub = evaluator_pb2_grpc.EvaluatorStub(grpc.insecure_channel(servers[1].address))
            question = evaluator_pb2.Question(
                question_id="q", question="Who cast the Vellum Bell?", answers=["Pell Arrowby"]
            )
            response = evaluator_stub.Evaluate(
                evaluator_pb2.EvaluateRequest(questions=[question], adapter_keys=["", result.adapter_key]),
                timeout=300,
            )
            report["cpu_evaluator_answers"] = [e.answers[0].answer for e in response.evaluations]
            report["cpu_evaluator_accepts_gpu_adapter"] = len(response.evaluations) == 2
            report.update(_policy_check(store, trainer_stub, servers[2].address, info.limits))
        finally:
            for server in servers:
                server.stop()
    print(json.dumps(report, indent=1))
    assert report["fingerprints_match"] and report["trainer_device"].startswith("cuda")
    assert report["final_loss"] < report["first_loss"]
    assert report["policy_final_loss"] < report["policy_first_loss"]
    assert report["cpu_generator_self_edits_differ_with_gpu_policy"]


def _policy_check(
    store: LocalStore, trainer_stub: trainer_pb2_grpc.TrainerStub, generator_address: str, limits
) -> dict:
    """A GPU-trained policy adapter, used by a CPU generator for the next round's self-edits."""
    prompt = "<|im_start|>user\nWrite implications of the passage about the Vellum Bell.<|im_end|>\n<|im_start|>assistant\n"
    records = [{"type": "example", "prompt": prompt, "completion": "1. The bell was cast in 1712."}] * 4
    key = store.put_content("datasets", "".join(json.dumps(r) + "\n" for r in records).encode(), ".jsonl")
    directive = Directive(
        epochs=10, learning_rate=1e-3, lora_rank=16, lora_alpha=32, batch_size=1, max_length=1024
    )
    started = time.perf_counter()
    result = list(
        trainer_stub.Train(
            trainer_pb2.TrainRequest(dataset_key=key, directive=directive.to_proto(), seed=0), timeout=600
        )
    )[-1].result
    seconds = round(time.perf_counter() - started, 2)
    generator = generator_pb2_grpc.GeneratorStub(grpc.insecure_channel(generator_address))

    def self_edits(policy: str) -> list[str]:
        request = generator_pb2.GenerateRequest(
            passage=generator_pb2.Passage(
                passage_id="bell", title="Vellum Bell", context="The bell was cast in 1712."
            ),
            format="implications",
            num_samples=2,
            sampling=generator_pb2.SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=24, seed=7),
            policy_adapter_key=policy,
            limits=limits,
            include_passage=True,
        )
        return [e.preview for e in generator.Generate(request, timeout=300).self_edits]

    base, with_policy = self_edits(""), self_edits(result.adapter_key)
    return {
        "policy_adapter_key": result.adapter_key,
        "policy_train_seconds": seconds,
        "policy_first_loss": result.metrics.step_loss[0],
        "policy_final_loss": result.metrics.step_loss[-1],
        "cpu_generator_self_edits_base": base,
        "cpu_generator_self_edits_with_gpu_policy": with_policy,
        "cpu_generator_self_edits_differ_with_gpu_policy": base != with_policy,
    }


if __name__ == "__main__":
    main()
