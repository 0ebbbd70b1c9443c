"""Benchmark: generation throughput of the evaluator's and the generator's model work, by batch size and dtype.

No services, no store: one process, the embedded model, the services' own functions (issue 27, item 5):
  - evaluator: `answer_questions` (greedy answers of up to 32 tokens plus each question's gold log-likelihood,
    as an Evaluate call computes them) for 8 demo questions, `batch_size` rows per generate;
  - generator: `generate_texts` sampling `batch_size` self-edits of one demo passage in one batch (the
    generator's K samples, temperature 0.7, top-p 0.95, `--gen-tokens` new tokens at most).
Each (dtype, workload, batch size) is run `--repeats` times after a warm-up and the best is kept (these
machines are noisy):

    .venv/bin/python benchmarks/generate_eval.py                         # 2 threads, float32 and bfloat16
    .venv/bin/python benchmarks/generate_eval.py --dtypes float32 --batch-sizes 1 8 --repeats 1

bfloat16 is only meaningful on a CPU with native BF16 (AVX-512 BF16 or AMX); elsewhere torch emulates it,
and the JSON says so (`cpu_native_bf16`). Prints a line per measurement and writes
`benchmarks/results/generate_eval_<UTC time>_cpu<cores>.json` (never overwritten).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = 8


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"]
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument(
        "--gen-tokens", type=int, default=96, help="generator: new tokens per self-edit at most"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON output (never overwritten)")
    args = parser.parse_args()
    if any(size < 1 for size in args.batch_sizes) or args.repeats < 1 or args.gen_tokens < 1:
        sys.exit("--batch-sizes, --repeats and --gen-tokens must be at least 1")

    import torch

    from seal_lab.formats.passages import demo_passages
    from seal_lab.formats.strategies import builtin
    from seal_lab.model.base import chat_prompt, cpu_has_native_bf16, load_model
    from seal_lab.settings import ModelSettings
    from services.evaluator.answering import QuestionItem

    torch.set_num_threads(args.threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    started_at = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / f"generate_eval_{started_at:%Y%m%d-%H%M%S}_cpu{cores}.json"
    if out.exists():
        sys.exit(f"{out} exists; results are never overwritten")
    passages = demo_passages()
    questions = [
        QuestionItem(q.question_id, q.question, tuple(q.answers), p.title)
        for p in passages
        for q in p.questions
    ][:QUESTIONS]
    passage = passages[0]
    edit_prompt = builtin("implications").render(0, passage.title, passage.context, {})
    native = cpu_has_native_bf16()

    def best(work: Any) -> tuple[float, Any]:
        seconds, value = float("inf"), None
        for _ in range(args.repeats):
            started = time.perf_counter()
            value = work()
            seconds = min(seconds, time.perf_counter() - started)
        return seconds, value

    measurements = []
    for dtype in args.dtypes:
        loaded = load_model(ModelSettings(device="cpu", dtype=dtype))
        measurements += _measure(loaded, chat_prompt(loaded.tokenizer, edit_prompt), questions, args, best)
        del loaded  # one model in memory at a time

    result = {
        "benchmark": "generate_eval",
        "date": started_at.isoformat(timespec="seconds"),
        "machine": {"cores": cores, "torch_threads": args.threads, "cpu_native_bf16": native},
        "bfloat16_note": "native" if native else "emulated by torch on this CPU (no AVX-512 BF16 or AMX)",
        "settings": {
            "questions": len(questions),
            "answer_tokens": 32,
            "gen_tokens": args.gen_tokens,
            "repeats": args.repeats,
        },
        "measurements": measurements,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"figures written to {out}")


def _measure(loaded: Any, chat: str, questions: list, args: argparse.Namespace, best: Any) -> list[dict]:
    """The evaluator's and the generator's work on `loaded`, at each batch size."""
    from seal_lab.model.base import generate_texts
    from services.evaluator.answering import answer_questions

    rows: list[dict] = []
    answer_questions(loaded, questions[:2], 8, 2)  # warm-up: first-call allocations are not the model's speed
    for size in args.batch_sizes:
        seconds, _ = best(lambda s=size: answer_questions(loaded, questions, 32, s))
        row = {
            "dtype": loaded.dtype,
            "workload": "evaluator",
            "batch_size": size,
            "seconds": round(seconds, 3),
            "questions": len(questions),
            "seconds_per_question": round(seconds / len(questions), 4),
        }
        rows.append(row)
        print(f"{loaded.dtype} evaluator batch {size}: {row['seconds_per_question']:.3f} s per question")
    for size in args.batch_sizes:
        seconds, texts = best(
            lambda s=size: generate_texts(
                loaded,
                [chat],
                max_new_tokens=args.gen_tokens,
                temperature=0.7,
                top_p=0.95,
                seed=0,
                num_return_sequences=s,
            )
        )
        tokens = sum(t.tokens for t in texts)
        row = {
            "dtype": loaded.dtype,
            "workload": "generator",
            "batch_size": size,
            "seconds": round(seconds, 3),
            "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1),
            "seconds_per_self_edit": round(seconds / size, 3),
        }
        rows.append(row)
        print(
            f"{loaded.dtype} generator batch {size}: {row['tokens_per_second']:.0f} tokens/s, "
            f"{row['seconds_per_self_edit']:.2f} s per self-edit"
        )
    return rows


if __name__ == "__main__":
    main()
