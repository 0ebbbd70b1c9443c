"""Benchmark: the inner loop's old path against today's defaults, on the same self-edits, in one run.

Runs the real services as processes (LocalStack) on the embedded model with the default directive limits:
    make bench            # or: .venv/bin/python benchmarks/inner_loop.py --samples 5 --passage 0 --threads 2
K self-edits are generated once (by the first stack). Then two stacks on the same store, one after the other,
train and evaluate them:
  - float32 one at a time, the path before issue 27: every service in float32 (SEAL_MODEL_DTYPE=float32),
    a trainer with groups of one (SEAL_TRAINER_MAX_GROUP_SIZE=1) packing rows of 256 tokens (the old CPU
    default, SEAL_TRAINER_ROW_TOKENS=256), one Train call after another;
  - now: no dtype or trainer setting at all, so each service picks what its defaults pick on this machine
    (GetInfo says which dtype), and the Train calls go out as the coordinator sends them: up to the
    trainer's advertised `max_group_size` in flight at once (on a CPU the default is 1, so one after another).
Both modes evaluate the way the coordinator does: one Evaluate call for the K adapters (one batched
generate), after the baseline was evaluated (and cached) beforehand. The settings above are the only
difference: the code is today's in both, so speed-ups in the code itself show in both columns. Each service
gets --threads torch threads (default: every usable core; one phase runs at a time here). The two modes
train with different seeds (the store would otherwise hand the second mode the first one's adapters); a
seed changes the examples' order, not the work.

Training tokens/s = the tokens the trainer's Train responses report, summed, over the wall time of the
mode's training phase (each call's dataset load, adapter save and group wait included); each job's own
tokens/s as the trainer measured it is in the JSON too. Per self-edit = (training wall + evaluation wall) / K.
Prints a table, writes JSON (--out; default benchmarks/results/inner_loop_<UTC time>_cpu<cores>.json, never
overwritten) with both modes' figures, the dtype each service reported and the machine (cores, whether the
CPU has native BF16), and ends with two lines:
    training: <now> tokens/s now vs <old> tokens/s float32 one at a time (<r>x)
    per self-edit: <now> s now vs <old> s float32 one at a time (<r>x)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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
# The path before issue 27, as settings: float32 everywhere, groups of one, rows of 256 tokens (the CPU
# default until 374c491 raised it to 1024).
OLD_PATH = {
    "SEAL_MODEL_DTYPE": "float32",
    "SEAL_TRAINER_MAX_GROUP_SIZE": "1",
    "SEAL_TRAINER_ROW_TOKENS": "256",
}
# Settings that would make "now" something other than the defaults if the caller's environment set them.
NOT_DEFAULTS = (*OLD_PATH, "SEAL_TRAINER_TOKENS_PER_STEP", "SEAL_MODEL_TORCH_THREADS")
OLD, NOW = "float32_one_at_a_time", "now"


def summary_lines(now: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """The bench's last two lines: training tokens/s and seconds per self-edit, now against the old path.
    Ratios are taken before rounding (now over old for tokens/s, old over now for seconds)."""
    for mode, figures in (("now", now), ("old", old)):
        for measure in ("train_tokens_per_second", "per_self_edit"):
            if not figures[measure] > 0:
                raise ValueError(f"{mode}: {measure} is {figures[measure]!r}, not a positive figure")
    training = now["train_tokens_per_second"] / old["train_tokens_per_second"]
    per_edit = old["per_self_edit"] / now["per_self_edit"]
    return [
        f"training: {now['train_tokens_per_second']:.0f} tokens/s now vs "
        f"{old['train_tokens_per_second']:.0f} tokens/s float32 one at a time ({training:.1f}x)",
        f"per self-edit: {now['per_self_edit']:.1f} s now vs "
        f"{old['per_self_edit']:.1f} s float32 one at a time ({per_edit:.1f}x)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5, help="K: self-edits to generate, train, evaluate")
    parser.add_argument("--passage", type=int, default=0, help="index in the demo set")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per service (default: cores)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON output (never overwritten)")
    args = parser.parse_args()
    console = Console(stderr=True)
    set_here = [name for name in NOT_DEFAULTS if name in os.environ]
    if set_here:
        sys.exit(f"unset {', '.join(set_here)}: the bench sets them itself, and 'now' means the defaults")
    if args.samples < 1:
        sys.exit("--samples must be at least 1")
    passage = demo_passages()[args.passage]
    cores = usable_cores()
    threads = args.threads or cores
    started_at = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / f"inner_loop_{started_at:%Y%m%d-%H%M%S}_cpu{cores}.json"
    if out.exists():
        sys.exit(f"{out} exists; results are never overwritten")

    with tempfile.TemporaryDirectory(prefix="seal-bench-") as workdir:
        store = str(Path(workdir) / "store")
        # One phase at a time here, so every service may use every core.
        common = {"SEAL_MODEL_TORCH_THREADS": str(threads), "SEAL_STORE_LOCAL_ROOT": store}
        old_stack = LocalStack(Path(workdir) / "old", console, {**common, **OLD_PATH})
        startup = _start(old_stack)
        try:
            edits, generate_seconds = _generate(old_stack, passage, args.samples, args.max_new_tokens)
            old = _train_and_evaluate(old_stack, passage, edits, seed=1, in_flight=1)
            old["settings"] = OLD_PATH
        finally:
            old_stack.stop()
        now_stack = LocalStack(Path(workdir) / "now", console, common)
        _start(now_stack)
        try:
            now = _train_and_evaluate(now_stack, passage, edits, seed=2, in_flight=None)
            now["settings"] = {}
        finally:
            now_stack.stop()

    lines = summary_lines(now, old)
    result = {
        "benchmark": "inner_loop",
        "date": started_at.isoformat(timespec="seconds"),
        "machine": _machine(cores, threads),
        "passage": passage.title,
        "self_edits": len(edits),
        "startup_seconds": startup,
        "generate_per_self_edit": generate_seconds / len(edits),
        OLD: old,
        NOW: now,
        "speedup": {
            "training": round(now["train_tokens_per_second"] / old["train_tokens_per_second"], 2),
            "per_self_edit": round(old["per_self_edit"] / now["per_self_edit"], 2),
        },
        "summary": lines,
    }
    _print_table(result, len(passage.questions))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    console.print(f"figures written to {out}")
    loads = {mode: result[mode]["model_loads_per_process"] for mode in (OLD, NOW)}
    if any(count != 1 for counts in loads.values() for count in counts.values()):
        sys.exit(f"a service loaded its model more than once: {loads}")
    print("\n".join(lines))


def _machine(cores: int, threads: int) -> dict[str, Any]:
    from seal_lab.model.base import cpu_has_native_bf16

    cpu = platform.processor()
    try:
        names = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    return {"cores": cores, "torch_threads": threads, "cpu": cpu, "cpu_native_bf16": cpu_has_native_bf16()}


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


def _train(trainer: Any, edit: Any, seed: int) -> trainer_pb2.TrainResult:
    request = trainer_pb2.TrainRequest(dataset_key=edit.dataset_key, directive=edit.directive, seed=seed)
    result = list(trainer.Train(request, timeout=3600))[-1].result
    if result.reused:
        raise SystemExit("the trainer reused an adapter: the store is not fresh")
    return result


def _evaluate(evaluator: Any, passage: Any, keys: list[str]) -> float:
    started = time.perf_counter()
    response = evaluator.Evaluate(
        evaluator_pb2.EvaluateRequest(questions=_questions(passage), adapter_keys=keys), timeout=1800
    )
    if any(e.cached for e in response.evaluations if e.adapter_key):
        raise SystemExit("an adapter's evaluation came from the cache: the store is not fresh")
    return time.perf_counter() - started


def _train_and_evaluate(
    stack: LocalStack, passage: Any, edits: list, seed: int, in_flight: int | None
) -> dict[str, Any]:
    """Train the K edits with at most `in_flight` Train calls at once (None: the trainer's advertised group
    size, as the coordinator sends them), then evaluate the K adapters in one call."""
    generator, trainer, evaluator = _stubs(stack)
    info = {
        name: stub.GetInfo(common_pb2.GetInfoRequest(), timeout=10)
        for name, stub in (("generator", generator), ("trainer", trainer), ("evaluator", evaluator))
    }
    in_flight = in_flight or max(1, info["trainer"].max_group_size)
    _evaluate(evaluator, passage, [""])  # the baseline, cached: not part of a self-edit's time
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        trained = list(pool.map(lambda edit: _train(trainer, edit, seed), edits))
    train_wall = time.perf_counter() - started
    keys = list(dict.fromkeys(result.adapter_key for result in trained))
    evaluate_wall = _evaluate(evaluator, passage, keys)
    tokens = sum(result.metrics.tokens for result in trained)
    return {
        "dtype": {name: i.dtype for name, i in info.items()},
        "device": info["trainer"].device,
        "max_group_size": max(1, info["trainer"].max_group_size),
        "train_calls_in_flight": in_flight,
        "train_mean": train_wall / len(edits),
        "evaluate_mean": evaluate_wall / len(edits),
        "per_self_edit": (train_wall + evaluate_wall) / len(edits),
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / train_wall,
        "train_wall_seconds": train_wall,
        "evaluate_wall_seconds": evaluate_wall,
        "trainer_job_tokens_per_second": [result.metrics.tokens_per_second for result in trained],
        "trainer_job_tokens_per_second_mean": statistics.fmean(
            result.metrics.tokens_per_second for result in trained
        ),
        "group_sizes": [result.metrics.group_size for result in trained],
        "model_loads_per_process": _model_loads(stack),
    }


def _print_table(result: dict[str, Any], questions: int) -> None:
    old, now = result[OLD], result[NOW]
    machine = result["machine"]
    table = Table(
        title=f"seal-lab inner loop on the embedded model ({result['passage']!r}, {result['self_edits']} "
        f"self-edits, {machine['cores']} cores, {machine['torch_threads']} torch threads, native BF16: "
        f"{'yes' if machine['cpu_native_bf16'] else 'no'})"
    )
    table.add_column("measure")
    table.add_column("float32 one at a time", justify="right")
    table.add_column("now (defaults)", justify="right")
    for service, seconds in result["startup_seconds"].items():
        table.add_row(f"start-up: {service} (to SERVING / healthy)", f"{seconds:.1f}", "")
    table.add_row("generate one self-edit (K in one batch)", f"{result['generate_per_self_edit']:.1f}", "")
    table.add_row(
        "dtype: generator / trainer / evaluator",
        " / ".join(old["dtype"].values()),
        " / ".join(now["dtype"].values()),
    )
    table.add_row(
        "trainer group size (Train calls in flight)", str(old["max_group_size"]), str(now["max_group_size"])
    )
    table.add_row("train one adapter", f"{old['train_mean']:.1f}", f"{now['train_mean']:.1f}")
    table.add_row(
        f"evaluate one adapter on {questions} questions (one call for all)",
        f"{old['evaluate_mean']:.1f}",
        f"{now['evaluate_mean']:.1f}",
    )
    table.add_row(
        "per self-edit: train + evaluate", f"{old['per_self_edit']:.1f}", f"{now['per_self_edit']:.1f}"
    )
    table.add_row(
        "training tokens/s (training phase wall)",
        f"{old['train_tokens_per_second']:.0f}",
        f"{now['train_tokens_per_second']:.0f}",
    )
    table.add_row(
        "training tokens/s (trainer's own, mean per job)",
        f"{old['trainer_job_tokens_per_second_mean']:.0f}",
        f"{now['trainer_job_tokens_per_second_mean']:.0f}",
    )
    Console(stderr=True).print(table)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
