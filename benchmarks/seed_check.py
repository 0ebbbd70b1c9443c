"""Check: does seal-lab's default loop learn at least as much per self-edit as a seed-style loop?

Issue 10's yardstick is a 100-line "seed-style" loop on the same embedded model: it asks the model for
implications through its chat template, trains a fresh LoRA (rank 16, alpha 32, every linear layer,
dropout 0) on the passage and on each line as separate examples with EOS appended, 5 epochs at a constant
lr 1e-3 (AdamW, batch 1, shuffled each epoch), and asks the questions through the chat template (SEAL's
question text, greedy, 32 tokens). It is written here with plain peft + torch, none of seal-lab's training
or serving code, beside seal-lab's default loop run as a user runs it: the four services (LocalStack), one
`POST /v1/runs` with the passages and nothing but `k`, `seed` and the retention sample set.

Both loops write K self-edits per passage with the same sampling (temperature 0.7, top-p 0.95, 192 new
tokens), are asked the same questions with the same prompt and scored by the same scorer, and are scored on
the same retention questions (forgetting). The passages are invented (`benchmarks/data/invented_check.json`:
12 passages, 60 questions, written for this check and used for nothing else), so the base model cannot know
them.

    .venv/bin/python benchmarks/seed_check.py               # 12 passages, K = 2: about 40 minutes on two cores
    .venv/bin/python benchmarks/seed_check.py --limit 2 --k 1   # a quick look

Writes `benchmarks/results/seed_check_<time>_cpu<cores>.json` (never overwrites) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seal_lab.data import retention_questions
from seal_lab.logging import configure_logging
from seal_lab.models import LoadedModel, chat_prompt, generate_texts, load_model
from seal_lab.security import Security
from seal_lab.settings import ModelSettings
from seal_lab.textmetrics import Scores, clean_answer, score_answer
from services.evaluator.answering import QuestionItem, question_prompt
from services.generator.formats import get_format

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conditions import _follow  # noqa: E402  (the benchmark's own run follower)

PASSAGES = HERE / "data" / "invented_check.json"
METRICS = ("f1", "contains", "token_recall", "exact_match")
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.):])\s*")


def ask(loaded: LoadedModel, items: list[tuple[str, str, tuple[str, ...]]]) -> list[Scores]:
    """(topic, question, golds) -> scores; the evaluator's prompt (SEAL's question text in the chat template),
    greedy, 32 tokens."""
    prompts = [
        question_prompt(loaded.tokenizer, QuestionItem("", question, golds, topic or ""))
        for topic, question, golds in items
    ]
    outs = generate_texts(loaded, prompts, max_new_tokens=32, stop_at_newline=True, batch_size=32)
    return [score_answer(clean_answer(o.text), golds) for o, (_, _, golds) in zip(outs, items, strict=True)]


def mean_scores(rows: list[Scores]) -> dict[str, float]:
    return asdict(Scores.mean(rows))


def seed_loop(passages: list[dict], k: int, seed: int, retention: list, console: Console) -> dict[str, Any]:
    """The seed-style loop, in one process with plain peft and torch."""
    import torch
    from peft import LoraConfig, get_peft_model

    loaded = load_model(ModelSettings())
    model, tok = loaded.model, loaded.tokenizer
    fmt = get_format("implications")  # SEAL's instruction text
    kept = [(None, q.question, tuple(q.answers)) for q in retention]
    base_retention = mean_scores(ask(loaded, kept))
    prompts = [chat_prompt(tok, fmt.prompt(p["title"], p["context"])) for p in passages for _ in range(k)]
    outputs = generate_texts(
        loaded, prompts, max_new_tokens=192, temperature=0.7, top_p=0.95, seed=seed, batch_size=8
    )
    per_passage = []
    for pi, passage in enumerate(passages):
        questions = [(passage["title"], q["question"], (q["answer"],)) for q in passage["questions"]]
        baseline = mean_scores(ask(loaded, questions))
        edits = []
        for j in range(k):
            text = outputs[pi * k + j].text
            lines = [_NUMBERING.sub("", line).strip() for line in text.splitlines()]
            data = [passage["context"]] + [line for line in lines if line]
            torch.manual_seed(seed + j)
            peft_model = get_peft_model(
                model,
                LoraConfig(
                    r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
                ),
            )
            peft_model.train()
            optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
            order = random.Random(seed + j)
            steps = 0
            for _ in range(5):
                shuffled = list(data)
                order.shuffle(shuffled)
                for example in shuffled:
                    ids = tok(example + tok.eos_token, return_tensors="pt").input_ids[:, :1024]
                    loss = peft_model(input_ids=ids, labels=ids).loss
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()
                    steps += 1
            peft_model.eval()
            adapted = mean_scores(ask(loaded, questions))
            kept_scores = mean_scores(ask(loaded, kept))
            model = peft_model.unload()  # the base model again, without the adapter
            loaded = replace(loaded, model=model)
            edits.append(
                {"scores": adapted, "retention": kept_scores, "steps": steps, "lines": len(data) - 1}
            )
        per_passage.append({"title": passage["title"], "baseline": baseline, "self_edits": edits})
        scores = " ".join(f"{e['scores']['f1']:.2f}" for e in edits)
        console.print(
            f"seed loop {pi + 1}/{len(passages)} {passage['title']}: F1 {scores} "
            f"(baseline {baseline['f1']:.2f})"
        )
    return {"base_retention": base_retention, "passages": per_passage}


def seal_lab_loop(
    passages: list[dict], k: int, seed: int, retention_count: int, console: Console, workdir: Path
) -> dict[str, Any]:
    """seal-lab's default loop as a user runs it: the four services, one run, every other setting default."""
    from services.coordinator.cli.api_client import connect
    from services.coordinator.cli.launcher import LocalStack

    body = {
        "name": "seed check",
        "passages": passages,
        "config": {"k": k, "seed": seed, "retention_questions": retention_count},
    }
    with LocalStack(workdir, console) as stack, connect(stack.coordinator_url, 120, Security()) as client:
        created = client.post("/v1/runs", json=body)
        created.raise_for_status()
        detail = _follow(client, created.json()["id"], console)
    if detail["status"] != "succeeded":
        raise SystemExit(f"seal-lab run {detail['status']}: {detail.get('error')}")
    round0 = detail["results"]["rounds"][0]
    per_passage = []
    base_retention = None
    for p in round0["passages"]:
        base_retention = p["baseline_retention"]
        edits = [
            {
                "scores": e["scores"],
                "retention": {"f1": e["retention"]},
                "steps": (e["train"] or {}).get("steps"),
                "lines": e["num_texts"],
                "directive": e["directive"],
            }
            for e in p["self_edits"]
            if e["scores"] is not None
        ]
        per_passage.append({"title": p["title"], "baseline": p["baseline"], "self_edits": edits})
    return {"run_id": detail["id"], "base_retention": {"f1": base_retention}, "passages": per_passage}


def summarise(loop: dict[str, Any]) -> dict[str, Any]:
    """Means over every self-edit, and the s.e. over passages of the per-passage mean."""
    edits = [e for p in loop["passages"] for e in p["self_edits"]]
    out: dict[str, Any] = {"self_edits": len(edits)}
    for m in METRICS:
        out[m] = statistics.fmean(e["scores"][m] for e in edits)
        out[f"baseline_{m}"] = statistics.fmean(p["baseline"][m] for p in loop["passages"])
        per = [statistics.fmean(e["scores"][m] for e in p["self_edits"]) for p in loop["passages"]]
        out[f"{m}_se"] = statistics.stdev(per) / len(per) ** 0.5 if len(per) > 1 else 0.0
    out["retention_f1"] = statistics.fmean(e["retention"]["f1"] for e in edits)
    out["base_retention_f1"] = loop["base_retention"]["f1"]
    out["steps"] = statistics.fmean(e["steps"] or 0 for e in edits)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=Path, default=PASSAGES)
    parser.add_argument("--limit", type=int, default=0, help="only the first N passages (0 = all)")
    parser.add_argument("--k", type=int, default=2, help="self-edits per passage, in both loops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retention", type=int, default=16, help="retention questions (evenly spaced)")
    parser.add_argument("--loops", default="seed,seal-lab", help="which loops to run")
    parser.add_argument("--workdir", type=Path, default=None, help="the seal-lab stack's store and logs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    configure_logging("WARNING")
    console = Console(stderr=True)
    passages = json.loads(args.passages.read_text())
    if args.limit:
        passages = passages[: args.limit]
    retention = retention_questions(args.retention)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "passages_file": args.passages.name,
        "passages": len(passages),
        "questions": sum(len(p["questions"]) for p in passages),
        "k": args.k,
        "seed": args.seed,
        "retention_questions": len(retention),
        "loops": {},
        "seconds": {},
    }
    for name in args.loops.split(","):
        t0 = time.perf_counter()
        if name == "seed":
            loop = seed_loop(passages, args.k, args.seed, retention, console)
        elif name == "seal-lab":
            workdir = args.workdir or Path(tempfile.mkdtemp(prefix="seal-seed-check-"))
            loop = seal_lab_loop(passages, args.k, args.seed, args.retention, console, workdir)
        else:
            raise SystemExit(f"unknown loop {name!r}; known: seed, seal-lab")
        results["loops"][name] = {"summary": summarise(loop), **loop}
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"seed_check_{time.strftime('%Y%m%d-%H%M%S')}_cpu{os.cpu_count()}.json"
    path.write_text(json.dumps(results, indent=1))
    table = Table(
        title=f"{len(passages)} invented passages ({results['questions']} questions), K = {args.k} self-edits "
        f"each, seed {args.seed}; means over self-edits (± s.e. over passages)"
    )
    for column in (
        "loop",
        "self-edits",
        "baseline F1",
        "F1",
        "contains",
        "token recall",
        "steps",
        "retention F1",
    ):
        table.add_column(column, justify="left" if column == "loop" else "right")
    for name, loop in results["loops"].items():
        s = loop["summary"]
        table.add_row(
            name,
            str(s["self_edits"]),
            f"{s['baseline_f1']:.3f}",
            f"{s['f1']:.3f} ± {s['f1_se']:.3f}",
            f"{s['contains']:.3f} ± {s['contains_se']:.3f}",
            f"{s['token_recall']:.3f}",
            f"{s['steps']:.0f}",
            f"{s['retention_f1']:.3f} (base {s['base_retention_f1']:.3f})",
        )
    Console(width=160).print(table)
    console.print(f"wrote {path} ({results['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
