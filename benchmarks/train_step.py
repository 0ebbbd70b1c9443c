"""Benchmark: training tokens per second of `train_group` itself, on the embedded model, for a few step shapes.

No services, no store: one process, the trainer's own training function, the same work every time (the first
demo passage and each of its sentences as training texts, the default directive with `--steps` steps). Each
shape is trained `--repeats` times after a warm-up and the best is kept (these machines are noisy):

    .venv/bin/python benchmarks/train_step.py                  # 2 threads, float32, the shapes below
    .venv/bin/python benchmarks/train_step.py --threads 1 --dtype bfloat16

Shapes: one example a step in a group of one (the CPU default), `batch_size` 4 in a group of one, and four
one-example jobs as a group of four. Prints a line per shape and writes
`benchmarks/results/train_step_<UTC time>_cpu<cores>.json` (never overwrites).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {"one example, group of one": (1, 1), "batch_size 4, group of one": (1, 4), "group of four": (4, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--row-tokens", type=int, default=1024)
    args = parser.parse_args()

    import torch

    from seal_lab.formats.datasets import TrainingExample
    from seal_lab.formats.directive import Directive
    from seal_lab.formats.passages import demo_passages
    from seal_lab.model.base import cpu_has_native_bf16, load_model
    from seal_lab.model.grouptrain import GroupJob, train_group
    from seal_lab.settings import ModelSettings

    torch.set_num_threads(args.threads)
    started_at = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"train_step_{started_at:%Y%m%d-%H%M%S}_cpu{os.cpu_count()}.json"
    if out.exists():
        sys.exit(f"{out} exists; results are never overwritten")
    loaded = load_model(ModelSettings(device="cpu", dtype=args.dtype))
    passage = demo_passages()[0]
    sentences = [s.strip() + "." for s in passage.context.split(".") if len(s.strip()) > 10]
    examples = [TrainingExample("", f"{passage.title}\n{passage.context}")]
    examples += [TrainingExample("", f"{passage.title}\n{s}") for s in sentences]

    def train(group: int, batch: int, steps: int) -> tuple[int, float]:
        jobs = [GroupJob(examples, Directive(steps=steps, batch_size=batch), seed=i) for i in range(group)]
        begun = time.perf_counter()
        outcomes = train_group(loaded, jobs, tokens_per_step=4096, row_tokens=args.row_tokens)
        return sum(o.tokens for o in outcomes), time.perf_counter() - begun

    train(1, 1, 2)  # warm-up
    figures = {}
    for name, (group, batch) in SHAPES.items():
        best = max(
            tokens / seconds
            for tokens, seconds in (train(group, batch, args.steps) for _ in range(args.repeats))
        )
        figures[name] = round(best, 1)
        print(f"{name}: {best:.1f} training tokens/s (best of {args.repeats})", flush=True)
    result = {
        "benchmark": "train_step",
        "date": started_at.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "threads": args.threads, "native_bf16": cpu_has_native_bf16()},
        "dtype": args.dtype,
        "steps": args.steps,
        "row_tokens": args.row_tokens,
        "tokens_per_second": figures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
