"""Which recipe? A pilot that measures what each difference from the old recipe does, in one process.

On SQuAD passages disjoint from the held-out pool of `conditions.py` (SEAL's 200 covered passages are never
used here), the embedded model writes one `implications` self-edit per passage; adapters are then trained on
passage + self-edit under each recipe below and asked the passage's questions closed-book, plus the retention
questions (forgetting). Evaluation-only factors (the question prompt) are scored on the same adapters.

    .venv/bin/python benchmarks/recipe_pilot.py                      # about 40 minutes on two cores
    .venv/bin/python benchmarks/recipe_pilot.py --passages 4 --recipes v1,new   # a quick look

Writes `benchmarks/results/recipe_pilot_<time>_cpu<cores>.json` (never overwrites) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.formats.passages import retention_questions
from seal_lab.formats.strategies import builtin
from seal_lab.logging import configure_logging
from seal_lab.model.base import LoadedModel, chat_prompt, generate_texts, load_model
from seal_lab.model.grouptrain import GroupJob, Schedule, train_group
from seal_lab.model.multilora import StackedLora, lora_targets, with_all_targets
from seal_lab.scoring.textmetrics import clean_answer, score_answer
from seal_lab.settings import ModelSettings
from services.evaluator.answering import gold_logprobs

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seal"
RAW_QUESTION = "Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:"


@dataclass(frozen=True)
class Recipe:
    directive: Directive
    schedule: Schedule
    text_eos: bool
    title: bool
    targets: str = "all-linear"


V1 = Recipe(Directive(epochs=5, learning_rate=3e-3), Schedule.constant(), text_eos=False, title=False)
NEW = Recipe(Directive(learning_rate=3e-3, batch_size=1, steps=24), Schedule(), text_eos=True, title=True)
RECIPES = {
    "v1": V1,  # the old default: 5 epochs, constant lr 3e-3, no EOS, no title
    "reference": replace(V1, directive=Directive(epochs=5, learning_rate=1e-3), text_eos=True),  # seed loop
    "new": NEW,
    "new-lr1e-3": replace(NEW, directive=replace(NEW.directive, learning_rate=1e-3)),
    "new-lr2e-3": replace(NEW, directive=replace(NEW.directive, learning_rate=2e-3)),
    "new-no-eos": replace(NEW, text_eos=False),
    "new-no-title": replace(NEW, title=False),
    "new-qv-r32": replace(
        NEW, directive=replace(NEW.directive, lora_rank=32, lora_alpha=64), targets="q_proj,v_proj"
    ),
    "new-12-steps": replace(NEW, directive=replace(NEW.directive, steps=12)),
    "new-48-steps": replace(NEW, directive=replace(NEW.directive, steps=48)),
}


def question_prompt(tokenizer: Any, question: str, topic: str, style: str) -> str:
    if style == "raw":
        return RAW_QUESTION.format(question=question)
    topic_line = f"Topic: {topic}\n" if style == "chat+topic" else ""
    text = f"Let's answer a question directly and concisely.\nQuestion: {topic_line}{question}\nAnswer:"
    return chat_prompt(tokenizer, text)


def choose(data_dir: Path, count: int, seed: int) -> list[dict]:
    """Passages outside SEAL's 200 covered (held-out) passages, seeded."""
    squad = json.loads((data_dir / "squad_val.json").read_text())
    covered = json.loads((data_dir / "selfedits_gpt4_1_val.json").read_text())
    held = {" ".join(p["context"].split()) for p in covered}
    pool = [p for p in squad if " ".join(p["context"].split()) not in held]
    return random.Random(seed).sample(pool, count)


def self_edits(loaded: LoadedModel, passages: list[dict], seed: int) -> list[list[str]]:
    fmt = builtin("implications")
    prompts = [chat_prompt(loaded.tokenizer, fmt.render(0, p["title"], p["context"], {})) for p in passages]
    outputs = generate_texts(loaded, prompts, max_new_tokens=192, temperature=0.7, top_p=0.95, seed=seed)
    return [fmt.training_texts(o.text) for o in outputs]


def examples(passage: dict, texts: list[str], title: bool) -> list[TrainingExample]:
    prefix = f"{passage['title']}\n" if title else ""
    return [TrainingExample("", f"{passage['title']}\n{passage['context']}")] + [
        TrainingExample("", prefix + t) for t in texts
    ]


def answer(loaded: LoadedModel, rows: list[tuple[int, str, tuple[str, ...]]], adapters: list, targets: list):
    """rows: (adapter slot or -1, prompt, golds) -> (answer, scores, gold log-likelihood per token) per row,
    in one batched generate and one batched teacher-forced pass (as the evaluator does)."""
    import contextlib

    import torch

    prompts = [r[1] for r in rows]
    slots = [r[0] for r in rows]
    golds = [r[2][0].strip() for r in rows]
    route = None
    context = contextlib.nullcontext()
    if adapters:
        stack = StackedLora(
            loaded.model, targets, [with_all_targets(a, loaded.model, targets) for a in adapters]
        )
        context = stack.applied()
    with context as routing:
        if adapters:
            route = lambda s, e: routing.per_row(torch.tensor(slots[s:e]))  # noqa: E731
        outs = generate_texts(
            loaded, prompts, max_new_tokens=32, stop_at_newline=True, batch_size=64, before_batch=route
        )
        likelihoods = gold_logprobs(loaded, prompts, golds, batch_size=64, before_batch=route)
    return [
        (clean_answer(o.text), score_answer(clean_answer(o.text), r[2]), ll)
        for o, r, ll in zip(outs, rows, likelihoods, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--passages-file",
        type=Path,
        default=None,
        help="passages in SEAL's format (e.g. the demo set) instead of SQuAD passages outside the held-out pool",
    )
    parser.add_argument("--k", type=int, default=1, help="self-edits (and adapters) per passage and recipe")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--styles", default="raw,chat+topic", help="question prompts: raw, chat, chat+topic")
    parser.add_argument("--retention", type=int, default=16, help="retention questions per adapter")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    configure_logging("WARNING")
    console = Console(stderr=True)
    started = time.perf_counter()
    loaded = load_model(ModelSettings())
    if args.passages_file is not None:
        passages = json.loads(args.passages_file.read_text())[: args.passages]
    else:
        passages = choose(args.data_dir, args.passages, args.seed)
    # K self-edits per passage: each copy of a passage gets its own sampled self-edit and its own adapter.
    passages = [p for p in passages for _ in range(args.k)]
    edits = self_edits(loaded, passages, args.seed)
    console.print(f"self-edits: {[len(e) for e in edits]} lines ({time.perf_counter() - started:.0f} s)")
    retention = retention_questions()[: args.retention]
    styles = tuple(args.styles.split(","))
    base_rows = [
        (-1, question_prompt(loaded.tokenizer, q["question"], p["title"], style), (q["answer"],))
        for style in styles
        for p in passages
        for q in p["questions"]
    ]
    base_rows += [
        (-1, question_prompt(loaded.tokenizer, q.question, "", "chat"), q.answers) for q in retention
    ]
    base = answer(loaded, base_rows, [], [])
    results: dict[str, Any] = {"base": _summarise(base, passages, retention, styles), "recipes": {}}
    for name in args.recipes.split(","):
        recipe = RECIPES[name]
        t0 = time.perf_counter()
        jobs = [
            GroupJob(examples(p, e, recipe.title), recipe.directive, args.seed)
            for p, e in zip(passages, edits, strict=True)
        ]
        outcomes = []
        for job in jobs:  # one at a time: on a CPU a group is no faster, and results stay exact
            (outcome,) = train_group(
                loaded,
                [job],
                recipe.targets if recipe.targets == "all-linear" else recipe.targets.split(","),
                4096,
                256,
                recipe.schedule,
                recipe.text_eos,
            )
            outcomes.append(outcome)
        train_seconds = time.perf_counter() - t0
        adapters = [o.adapter for o in outcomes]
        targets = lora_targets(loaded.model, "all-linear")
        rows = []
        for slot, p in enumerate(passages):
            for style in styles:
                rows += [
                    (
                        slot,
                        question_prompt(loaded.tokenizer, q["question"], p["title"], style),
                        (q["answer"],),
                    )
                    for q in p["questions"]
                ]
            rows += [
                (slot, question_prompt(loaded.tokenizer, q.question, "", "chat"), q.answers)
                for q in retention
            ]
        scored = answer(loaded, rows, adapters, targets)
        summary = _summarise_adapted(scored, passages, retention, styles)
        summary.update(
            train_seconds=round(train_seconds, 1),
            steps=statistics.fmean(len(o.step_loss) for o in outcomes),
            tokens=statistics.fmean(o.tokens for o in outcomes),
            recipe={
                "directive": recipe.directive.as_dict(),
                "schedule": recipe.schedule.__dict__,
                "text_eos": recipe.text_eos,
                "title": recipe.title,
                "targets": recipe.targets,
            },
            examples=[a for a, _, _ in scored[:6]],
        )
        results["recipes"][name] = summary
        console.print(
            f"{name}: {json.dumps({k: v for k, v in summary.items() if k not in ('recipe', 'examples', 'per_passage')})}"
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["passages"] = [p["title"] for p in passages]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.out / f"recipe_pilot_{stamp}_cpu{os.cpu_count()}.json"
    path.write_text(json.dumps(results, indent=1))
    table = Table(
        title=f"recipe pilot: {len(passages)} adapters per recipe ({args.k} self-edit(s) per passage), seed {args.seed}"
    )
    last = styles[-1]
    for column in (
        "recipe",
        "steps",
        "tokens",
        "train s",
        *(f"F1 {s}" for s in styles),
        *(f"contains {s}" for s in styles),
        "retention",
        f"log-lik gain {last}",
    ):
        table.add_column(column, justify="right")
    b = results["base"]
    table.add_row(
        "no adapter",
        "-",
        "-",
        "-",
        *(f"{b[s]['f1']:.3f}" for s in styles),
        *(f"{b[s]['contains']:.3f}" for s in styles),
        f"{b['retention']:.3f}",
        "",
    )
    for name, r in results["recipes"].items():
        table.add_row(
            name,
            f"{r['steps']:.0f}",
            f"{r['tokens']:.0f}",
            f"{r['train_seconds']:.0f}",
            *(f"{r[s]['f1']:.3f}" for s in styles),
            *(f"{r[s]['contains']:.3f}" for s in styles),
            f"{r['retention']:.3f}",
            f"{r[last]['gold_logprob'] - b[last]['gold_logprob']:+.3f}",
        )
    Console(width=200).print(table)
    console.print(f"wrote {path}")


def _means(scored: list) -> dict[str, float]:
    return {
        "f1": round(statistics.fmean(s.f1 for _, s, _ in scored), 4),
        "contains": round(statistics.fmean(s.contains for _, s, _ in scored), 4),
        "exact_match": round(statistics.fmean(s.exact_match for _, s, _ in scored), 4),
        "token_recall": round(statistics.fmean(s.token_recall for _, s, _ in scored), 4),
        "gold_logprob": round(statistics.fmean(ll for _, _, ll in scored), 4),
    }


def _summarise(scored: list, passages: list[dict], retention: list, styles: tuple) -> dict[str, Any]:
    n = sum(len(p["questions"]) for p in passages)
    out: dict[str, Any] = {style: _means(scored[i * n : (i + 1) * n]) for i, style in enumerate(styles)}
    out["retention"] = _means(scored[len(styles) * n :])["contains"]
    per_passage: dict[str, list] = {}
    for i, style in enumerate(styles):
        at = i * n
        per_passage[style] = []
        for p in passages:
            per_passage[style].append(_means(scored[at : at + len(p["questions"])]))
            at += len(p["questions"])
    out["per_passage"] = per_passage
    return out


def _summarise_adapted(scored: list, passages: list[dict], retention: list, styles: tuple) -> dict[str, Any]:
    by_style: dict[str, list] = {s: [] for s in styles}
    kept: list = []
    per_passage: dict[str, list] = {s: [] for s in styles}
    at = 0
    for p in passages:
        n = len(p["questions"])
        for style in styles:
            by_style[style] += scored[at : at + n]
            per_passage[style].append(_means(scored[at : at + n]))
            at += n
        kept += scored[at : at + len(retention)]
        at += len(retention)
    out: dict[str, Any] = {style: _means(rows) for style, rows in by_style.items()}
    out["retention"] = _means(kept)["contains"]
    out["per_passage"] = per_passage
    return out


if __name__ == "__main__":
    main()
