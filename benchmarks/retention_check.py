"""Check the retention question set against the base model: which questions does it answer correctly?

Retention (forgetting) is measured by asking every adapter general questions the base model answers and
comparing with the base model, so every question in the set should be answered correctly by the base model.
This asks each question the way the evaluator does (SEAL's closed-book template wrapped in the chat
template, greedy, stop at the first line) and scores it with `score_answer(clean_answer(text), answers)`:
    .venv/bin/python benchmarks/retention_check.py                         # the packaged set
    .venv/bin/python benchmarks/retention_check.py --candidates /tmp/c.json # a candidate file, same format
Prints each question's answer and whether it is correct (contains == 1), then the overall scores, and writes
JSON (--out; default benchmarks/results/retention_check_<UTC time>_cpu<cores>.json, never overwritten).
The model is the configured one (SEAL_MODEL_*; default the embedded SmolLM2-135M-Instruct).
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

from seal_lab.formats.passages import retention_questions
from seal_lab.model.base import chat_prompt, generate_texts, load_model
from seal_lab.scoring.textmetrics import Scores, clean_answer, score_answer
from seal_lab.settings import ModelSettings

RESULTS = Path(__file__).resolve().parent / "results"
QUESTION_TEMPLATE = "Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:"


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _load_questions(candidates: Path | None) -> list[dict[str, Any]]:
    if candidates is None:
        return [{"question": q.question, "answers": list(q.answers)} for q in retention_questions()]
    records = json.loads(candidates.read_text())
    return [{"question": r["question"], "answers": list(r["answers"])} for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidates", type=Path, default=None, help="JSON list of {question, answers}")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64, help="the evaluator's default")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--out", type=Path, default=None, help="JSON output (never overwritten)")
    args = parser.parse_args()

    cores = _cores()
    started_at = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / f"retention_check_{started_at:%Y%m%d-%H%M%S}_cpu{cores}.json"
    if out.exists():
        sys.exit(f"{out} exists; results are never overwritten")

    questions = _load_questions(args.candidates)
    settings = ModelSettings(device=args.device, dtype=args.dtype)
    loaded = load_model(settings)
    prompts = [
        chat_prompt(loaded.tokenizer, QUESTION_TEMPLATE.format(question=q["question"])) for q in questions
    ]
    began = time.perf_counter()
    outputs = generate_texts(
        loaded, prompts, max_new_tokens=args.max_new_tokens, stop_at_newline=True, batch_size=args.batch_size
    )
    seconds = time.perf_counter() - began

    records, scores = [], []
    for q, output in zip(questions, outputs, strict=True):
        answer = clean_answer(output.text)
        s = score_answer(answer, q["answers"])
        scores.append(s)
        correct = s.contains == 1.0
        print(f"{'OK ' if correct else 'BAD'} {q['question']!r} -> {answer!r}  (gold {q['answers']})")
        records.append({**q, "output": output.text, "answer": answer, "correct": correct, **vars(s)})
    mean = Scores.mean(scores)
    kept = sum(r["correct"] for r in records)
    print(
        f"{kept}/{len(records)} correct; contains {mean.contains:.3f}, F1 {mean.f1:.3f}, "
        f"exact match {mean.exact_match:.3f} ({seconds:.1f}s generating)"
    )

    result = {
        "benchmark": "retention_check",
        "started_at": started_at.isoformat(),
        "source": str(args.candidates) if args.candidates else "seal_lab/data/retention_questions.json",
        "model": loaded.name,
        "fingerprint": loaded.fingerprint,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "cores": cores,
        "template": QUESTION_TEMPLATE,
        "chat_template": True,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "generate_seconds": round(seconds, 2),
        "questions": len(records),
        "correct": kept,
        "mean": vars(mean),
        "records": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
