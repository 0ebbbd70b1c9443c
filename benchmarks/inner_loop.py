"""Benchmark: seconds per self-edit (train + evaluate 5 questions), one at a time and batched, in one run.

Runs the real services as processes (LocalStack) on the embedded model with the default directive limits:
    make bench            # or: .venv/bin/python benchmarks/inner_loop.py --samples 5 --passage 0
First K self-edits are generated once. Then two stacks on the same store, one after the other, train and
evaluate them:
  - one at a time: a trainer with groups of one (SEAL_TRAINER_MAX_GROUP_SIZE=1), one Train call after
    another, one Evaluate call per adapter;
  - batched: a trainer with groups of up to 8 (SEAL_TRAINER_MAX_GROUP_SIZE=8; on a CPU the default is 1),
    all K Train calls at once (trained as one group), one Evaluate call for all K adapters (one batched
    generate).
The two modes train with different seeds (the store would otherwise hand the second mode the first one's
adapters); a seed changes the examples' order, not the work. The baseline is evaluated (cached) beforehand in
both. Prints a table, writes JSON (--out; default benchmarks/results/inner_loop_<UTC time>_cpu<cores>.json),
and ends with the line `per self-edit: <batched> s batched vs <single> s one at a time (<ratio>x)`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from seal_lab.formats.passages import demo_passages
from services.coordinator.cli.launcher import GRPC_SERVICES, LocalStack, usable_cores

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5, help="K: self-edits to generate, train, evaluate")
    parser.add_argument("--passage", type=int, default=0, help="index in the demo set")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--out", type=Path, default=None, help="JSON output (never overwritten)")
    args = parser.parse_args()
    console = Console(stderr=True)
    passage = demo_passages()[args.passage]
    cores = usable_cores()
    started_at = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / f"inner_loop_{started_at:%Y%m%d-%H%M%S}_cpu{cores}.json"
    if out.exists():
        sys.exit(f"{out} exists; results are never overwritten")

    with tempfile.TemporaryDirectory(prefix="seal-bench-") as workdir:
        store = str(Path(workdir) / "store")
        # One phase at a time here, so every service may use every core.
        common = {"SEAL_MODEL_TORCH_THREADS": str(cores), "SEAL_STORE_LOCAL_ROOT": store}
        single_stack = LocalStack(
            Path(workdir) / "single", console, {**common, "SEAL_TRAINER_MAX_GROUP_SIZE": "1"}
        )
        startup = _start(single_stack)
        try:
            edits, limits_seconds = _generate(single_stack, passage, args.samples, args.max_new_tokens)
            single = _one_at_a_time(single_stack, passage, edits, seed=1)
            loads = _model_loads(single_stack)
        finally:
            single_stack.stop()
        batched_stack = LocalStack(
            Path(workdir) / "batched", console, {**common, "SEAL_TRAINER_MAX_GROUP_SIZE": "8"}
        )
        _start(batched_stack)
        try:
            batched = _batched(batched_stack, passage, edits, seed=2)
        finally:
            batched_stack.stop()

    ratio = single["per_self_edit"] / batched["per_self_edit"]
    result = {
        "benchmark": "inner_loop",
        "date": started_at.isoformat(timespec="seconds"),
        "machine": {"cores": cores, "torch_threads": cores},
        "passage": passage.title,
        "self_edits": len(edits),
        "startup_seconds": startup,
        "model_loads_per_process": loads,
        "generate_per_self_edit": limits_seconds / len(edits),
        "one_at_a_time": single,
        "batched": batched,
        "speedup": round(ratio, 2),
    }
    _print_table(result, len(passage.questions))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    console.print(f"figures written to {out}")
    if any(count != 1 for count in loads.values()):
        sys.exit(f"a service loaded its model more than once: {loads}")
    print(
        f"per self-edit: {batched['per_self_edit']:.1f} s batched vs "
        f"{single['per_self_edit']:.1f} s one at a time ({ratio:.1f}x)"
    )


def _start(stack: LocalStack) -> dict[str, float]:
    """Each service started alone, so each figure is its own start-up on an idle machine."""
    stack.logs.mkdir(parents=True, exist_ok=True)
    stack._prepare_model()  # conversion is a one-off, not part of start-up
    startup = {}
    for service in (*GRPC_SERVICES, "coordinator"):
        started = time.perf_counter()
        stack.start_service(service)
        startup[service] = round(time.perf_counter() - started, 2)
    return startup


def _model_loads(stack: LocalStack) -> dict[str, int]:
    return {
        s: sum(" loaded " in line for line in (stack.logs / f"{s}.log").read_text().splitlines())
        for s in GRPC_SERVICES
    }


def _stubs(stack: LocalStack) -> tuple[Any, Any, Any]:
    return (
        generator_pb2_grpc.GeneratorStub(grpc.insecure_channel(stack.address("generator"))),
        trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(stack.address("trainer"))),
        evaluator_pb2_grpc.EvaluatorStub(grpc.insecure_channel(stack.address("evaluator"))),
    )


def _questions(passage: Any) -> list[evaluator_pb2.Question]:
    return [
        evaluator_pb2.Question(question_id=q.question_id, question=q.question, answers=list(q.answers))
        for q in passage.questions
    ]


def _generate(stack: LocalStack, passage: Any, samples: int, max_new_tokens: int) -> tuple[list, float]:
    generator, trainer, _ = _stubs(stack)
    limits = trainer.GetInfo(common_pb2.GetInfoRequest(), timeout=10).limits
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
    return list(generated.self_edits), time.perf_counter() - started


def _train(trainer: Any, edit: Any, seed: int) -> tuple[trainer_pb2.TrainResult, float]:
    started = time.perf_counter()
    request = trainer_pb2.TrainRequest(dataset_key=edit.dataset_key, directive=edit.directive, seed=seed)
    result = list(trainer.Train(request, timeout=3600))[-1].result
    if result.reused:
        raise SystemExit("the trainer reused an adapter: the store is not fresh")
    return result, time.perf_counter() - started


def _evaluate(evaluator: Any, passage: Any, keys: list[str]) -> float:
    started = time.perf_counter()
    response = evaluator.Evaluate(
        evaluator_pb2.EvaluateRequest(questions=_questions(passage), adapter_keys=keys), timeout=1800
    )
    if any(e.cached for e in response.evaluations if e.adapter_key):
        raise SystemExit("an adapter's evaluation came from the cache: the store is not fresh")
    return time.perf_counter() - started


def _one_at_a_time(stack: LocalStack, passage: Any, edits: list, seed: int) -> dict[str, Any]:
    _, trainer, evaluator = _stubs(stack)
    _evaluate(evaluator, passage, [""])  # the baseline, cached for both modes
    train_seconds, evaluate_seconds, throughput, groups = [], [], [], []
    for edit in edits:
        result, seconds = _train(trainer, edit, seed)
        train_seconds.append(seconds)
        throughput.append(result.metrics.tokens_per_second)
        groups.append(result.metrics.group_size)
        evaluate_seconds.append(_evaluate(evaluator, passage, [result.adapter_key]))
    return {
        "train_mean": statistics.fmean(train_seconds),
        "evaluate_mean": statistics.fmean(evaluate_seconds),
        "per_self_edit": statistics.fmean(
            t + e for t, e in zip(train_seconds, evaluate_seconds, strict=True)
        ),
        "train_tokens_per_second": statistics.fmean(throughput),
        "train_seconds": train_seconds,
        "evaluate_seconds": evaluate_seconds,
        "group_sizes": groups,
    }


def _batched(stack: LocalStack, passage: Any, edits: list, seed: int) -> dict[str, Any]:
    _, trainer, evaluator = _stubs(stack)
    _evaluate(evaluator, passage, [""])
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(edits)) as pool:
        trained = list(pool.map(lambda edit: _train(trainer, edit, seed), edits))
    train_wall = time.perf_counter() - started
    keys = list(dict.fromkeys(result.adapter_key for result, _ in trained))
    evaluate_wall = _evaluate(evaluator, passage, keys)
    tokens = sum(result.metrics.tokens for result, _ in trained)
    return {
        "train_mean": train_wall / len(edits),
        "evaluate_mean": evaluate_wall / len(edits),
        "per_self_edit": (train_wall + evaluate_wall) / len(edits),
        "train_tokens_per_second": tokens / train_wall,
        "train_wall_seconds": train_wall,
        "evaluate_wall_seconds": evaluate_wall,
        "group_sizes": [result.metrics.group_size for result, _ in trained],
    }


def _print_table(result: dict[str, Any], questions: int) -> None:
    single, batched = result["one_at_a_time"], result["batched"]
    table = Table(
        title=f"seal-lab inner loop on the embedded model ({result['passage']!r}, "
        f"{result['self_edits']} self-edits, {result['machine']['cores']} cores)"
    )
    table.add_column("measure")
    table.add_column("one at a time", justify="right")
    table.add_column("batched", justify="right")
    for service, seconds in result["startup_seconds"].items():
        table.add_row(f"start-up: {service} (to SERVING / healthy)", f"{seconds:.1f}", "")
    table.add_row("generate one self-edit (K in one batch)", f"{result['generate_per_self_edit']:.1f}", "")
    table.add_row("train one adapter", f"{single['train_mean']:.1f}", f"{batched['train_mean']:.1f}")
    table.add_row(
        f"evaluate one adapter on {questions} questions",
        f"{single['evaluate_mean']:.1f}",
        f"{batched['evaluate_mean']:.1f}",
    )
    table.add_row(
        "per self-edit: train + evaluate", f"{single['per_self_edit']:.1f}", f"{batched['per_self_edit']:.1f}"
    )
    table.add_row(
        "training tokens/s",
        f"{single['train_tokens_per_second']:.0f}",
        f"{batched['train_tokens_per_second']:.0f}",
    )
    Console(stderr=True).print(table)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
