"""Benchmark: service start-up times and seconds per self-edit (train + evaluate 5 questions).

Runs the real services as processes (LocalStack) on the embedded model, with the default directive limits:
    make bench            # or: .venv/bin/python benchmarks/inner_loop.py --samples 3 --passage 0
Prints a table and writes JSON (--out). The model conversion (first run only) is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from seal.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from seal_lab.data import demo_passages
from services.coordinator.launcher import GRPC_SERVICES, LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=3, help="self-edits to generate, train and evaluate")
    parser.add_argument("--passage", type=int, default=0, help="index in the demo set")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    console = Console(stderr=True)
    passage = demo_passages()[args.passage]

    with tempfile.TemporaryDirectory(prefix="seal-bench-") as workdir:
        stack = LocalStack(Path(workdir), console)
        stack.logs.mkdir(parents=True, exist_ok=True)
        stack._prepare_model()  # conversion is a one-off, not part of start-up
        startup = {}
        try:
            # One service at a time, so each figure is that service's own start-up on an idle machine.
            for service in (*GRPC_SERVICES, "coordinator"):
                started = time.perf_counter()
                stack.start_service(service)
                startup[service] = round(time.perf_counter() - started, 2)
            figures = _measure(stack, passage, args.samples, args.max_new_tokens)
            loads = {
                s: sum(" loaded " in line for line in (stack.logs / f"{s}.log").read_text().splitlines())
                for s in GRPC_SERVICES
            }
        finally:
            stack.stop()

    result = {"startup_seconds": startup, "model_loads_per_process": loads, **figures}
    table = Table(
        title=f"seal-lab inner loop on the embedded model ({passage.title!r}, {args.samples} self-edits)"
    )
    table.add_column("measure")
    table.add_column("seconds", justify="right")
    for service, seconds in startup.items():
        table.add_row(f"start-up: {service} (to SERVING / healthy)", f"{seconds:.1f}")
    table.add_row(
        "generate one self-edit (K batched, incl. directive)", f"{figures['generate_per_self_edit']:.1f}"
    )
    table.add_row("train one adapter (mean)", f"{figures['train_mean']:.1f}")
    table.add_row(
        f"evaluate one adapter on {len(passage.questions)} questions (mean)",
        f"{figures['evaluate_mean']:.1f}",
    )
    table.add_row("per self-edit: train + evaluate", f"{figures['per_self_edit']:.1f}")
    Console().print(table)
    Console().print(
        f"training throughput: {figures['train_tokens_per_second']:.0f} tokens/s; model loads: {loads}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if any(count != 1 for count in loads.values()):
        sys.exit(f"a service loaded its model more than once: {loads}")


def _measure(stack: LocalStack, passage, samples: int, max_new_tokens: int) -> dict:
    generator = generator_pb2_grpc.GeneratorStub(grpc.insecure_channel(stack.address("generator")))
    trainer = trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(stack.address("trainer")))
    evaluator = evaluator_pb2_grpc.EvaluatorStub(grpc.insecure_channel(stack.address("evaluator")))
    limits = trainer.GetInfo(common_pb2.GetInfoRequest(), timeout=10).limits
    questions = [
        evaluator_pb2.Question(question_id=q.question_id, question=q.question, answers=list(q.answers))
        for q in passage.questions
    ]
    evaluator.Evaluate(evaluator_pb2.EvaluateRequest(questions=questions, adapter_keys=[""]), timeout=600)

    started = time.perf_counter()
    generated = generator.Generate(
        generator_pb2.GenerateRequest(
            passage=generator_pb2.Passage(
                passage_id=passage.passage_id, title=passage.title, context=passage.context
            ),
            format="implications",
            num_samples=samples,
            sampling=generator_pb2.SamplingParams(
                temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens, seed=0
            ),
            limits=limits,
            include_passage=True,
        ),
        timeout=1800,
    )
    generate_seconds = time.perf_counter() - started
    train_seconds, evaluate_seconds, throughput = [], [], []
    for edit in generated.self_edits:
        started = time.perf_counter()
        request = trainer_pb2.TrainRequest(dataset_key=edit.dataset_key, directive=edit.directive, seed=0)
        result = list(trainer.Train(request, timeout=3600))[-1].result
        train_seconds.append(time.perf_counter() - started)
        throughput.append(result.metrics.tokens_per_second)
        started = time.perf_counter()
        evaluator.Evaluate(
            evaluator_pb2.EvaluateRequest(questions=questions, adapter_keys=[result.adapter_key]), timeout=600
        )
        evaluate_seconds.append(time.perf_counter() - started)
    return {
        "generate_per_self_edit": generate_seconds / samples,
        "train_mean": statistics.fmean(train_seconds),
        "evaluate_mean": statistics.fmean(evaluate_seconds),
        "per_self_edit": statistics.fmean(
            t + e for t, e in zip(train_seconds, evaluate_seconds, strict=True)
        ),
        "train_tokens_per_second": statistics.fmean(throughput),
        "train_seconds": train_seconds,
        "evaluate_seconds": evaluate_seconds,
    }


if __name__ == "__main__":
    main()
