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

`--yardstick issue28` runs issue 28's plain loop instead (`ISSUE28`: its own self-edit instruction at
temperature 0.8 for 200 tokens, a crude line cut, `{title}\n{context}` as the passage, 5 epochs in order, its
own question prompt without the topic line); the two differ only in the fields of `Yardstick`, which
`benchmarks/ablation.py` also switches one at a time.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seal_lab.formats.passages import Passage, load_passages, passages_to_json, retention_questions
from seal_lab.formats.strategies import builtin
from seal_lab.logging import configure_logging
from seal_lab.model.base import LoadedModel, chat_prompt, generate_texts, load_model
from seal_lab.model.grouptrain import Schedule
from seal_lab.scoring.textmetrics import Scores, clean_answer, score_answer
from seal_lab.security import Security
from seal_lab.settings import ModelSettings
from services.evaluator.answering import QuestionItem, question_prompt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conditions import _follow  # noqa: E402  (the benchmark's own run follower)

PASSAGES = HERE / "data" / "invented_check.json"
METRICS = ("f1", "contains", "token_recall", "exact_match")
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.):])\s*")


#: The plain loop's own texts (issue 28): its self-edit instruction and its question, both through the chat
#: template.
PLAIN_EDIT_PROMPT = (
    "Read the passage and list several implications and facts that follow from it, one per line.\n\n"
    "Passage: {title}\n{context}"
)
PLAIN_QUESTION = "Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:"
LINE_CUTS = ("crude", "numbering", "seal-lab")
QUESTION_STYLES = ("plain", "seal-lab")


@dataclass(frozen=True)
class Yardstick:
    """A plain loop, every choice a parameter. The defaults are issue 28's "100-line loop" exactly; `ISSUE10`
    is this script's yardstick of issue 10 (the November check). Issue 28's ablation
    (`benchmarks/ablation.py`) switches the fields one at a time to seal-lab's choices.

    edit_prompt: "plain" (`PLAIN_EDIT_PROMPT`) or "seal" (SEAL's `implications` instruction), through the chat
    template; line_cut: "crude" (strip `-* 0-9.` from both ends, keep lines over 10 characters), "numbering"
    (drop a leading bullet or number, keep non-empty lines) or "seal-lab" (the generator's own cut);
    passage_title: the passage example is `{title}\n{context}` (else the context alone); title_prefix: each
    line is `{title}\n{line}`; steps: 0 = `epochs` passes over the examples, else this many steps cycling
    over them; shuffle: each pass in a seeded order (else in order); eos: every example ends with EOS;
    question: "plain" (`PLAIN_QUESTION`) or "seal-lab" (the evaluator's prompt, with its Topic line).
    """

    edit_prompt: str = "plain"
    temperature: float = 0.8
    top_p: float = 0.95
    edit_tokens: int = 200
    line_cut: str = "crude"
    passage_title: bool = True
    title_prefix: bool = False
    learning_rate: float = 1e-3
    schedule: Schedule = field(default_factory=Schedule.constant)
    epochs: int = 5
    steps: int = 0
    shuffle: bool = False
    eos: bool = True
    question: str = "plain"

    def __post_init__(self) -> None:
        if self.edit_prompt not in ("plain", "seal"):
            raise ValueError(f"edit_prompt must be 'plain' or 'seal', got {self.edit_prompt!r}")
        if self.line_cut not in LINE_CUTS:
            raise ValueError(f"line_cut must be one of {LINE_CUTS}, got {self.line_cut!r}")
        if self.question not in QUESTION_STYLES:
            raise ValueError(f"question must be one of {QUESTION_STYLES}, got {self.question!r}")

    def edit_request(self, title: str, context: str) -> str:
        """The self-edit instruction, before the chat template."""
        if self.edit_prompt == "plain":
            return PLAIN_EDIT_PROMPT.format(title=title, context=context)
        return builtin("implications").render(0, title, context, {})

    def lines(self, output: str) -> list[str]:
        """The training lines in a generated self-edit."""
        if self.line_cut == "crude":
            cut = (line.strip("-* 0123456789.") for line in output.splitlines())
            return [line for line in cut if len(line) > 10]
        if self.line_cut == "numbering":
            cut = (_NUMBERING.sub("", line).strip() for line in output.splitlines())
            return [line for line in cut if line]
        return builtin("implications").training_texts(output)

    def texts(self, title: str, context: str, lines: list[str]) -> list[str]:
        """The training examples: the passage, then each line (without EOS; `train_adapter` adds it)."""
        passage = f"{title}\n{context}" if self.passage_title else context
        return [passage] + [f"{title}\n{line}" if self.title_prefix else line for line in lines]

    def order(self, count: int, seed: int) -> list[int]:
        """Which example each optimizer step trains on (batch 1)."""
        rng = random.Random(seed)
        passes = self.epochs if self.steps <= 0 else -(-self.steps // count)
        order: list[int] = []
        for _ in range(passes):
            indexes = list(range(count))
            if self.shuffle:
                rng.shuffle(indexes)
            order += indexes
        return order if self.steps <= 0 else order[: self.steps]


#: Issue 28's plain loop (the issue's "all of it" paragraph).
ISSUE28 = Yardstick()
#: This script's yardstick before issue 28: SEAL's instruction at seal-lab's sampling, the passage without its
#: title, each epoch shuffled, asked with seal-lab's question prompt.
ISSUE10 = Yardstick(
    edit_prompt="seal",
    temperature=0.7,
    edit_tokens=192,
    line_cut="numbering",
    passage_title=False,
    shuffle=True,
    question="seal-lab",
)
YARDSTICKS = {"issue28": ISSUE28, "issue10": ISSUE10}


def ask(
    loaded: LoadedModel, items: list[tuple[str, str, tuple[str, ...]]], style: str = "seal-lab"
) -> list[Scores]:
    """(topic, question, golds) -> scores, greedy, 32 tokens, through the chat template: "seal-lab" is the
    evaluator's prompt (SEAL's question text with a Topic line), "plain" the plain loop's (no topic)."""
    if style == "plain":
        prompts = [chat_prompt(loaded.tokenizer, PLAIN_QUESTION.format(question=q)) for _, q, _ in items]
    else:
        prompts = [
            question_prompt(loaded.tokenizer, QuestionItem("", question, golds, topic or ""))
            for topic, question, golds in items
        ]
    outs = generate_texts(loaded, prompts, max_new_tokens=32, stop_at_newline=True, batch_size=32)
    return [score_answer(clean_answer(o.text), golds) for o, (_, _, golds) in zip(outs, items, strict=True)]


def mean_scores(rows: list[Scores]) -> dict[str, float]:
    return asdict(Scores.mean(rows))


def questions_of(passage: Passage) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(passage.title, q.question, q.answers) for q in passage.questions]


def write_self_edit(loaded: LoadedModel, yardstick: Yardstick, passage: Passage, seed: int) -> str:
    """One sampled self-edit (its own generate call, so that it depends on nothing but its seed)."""
    prompt = chat_prompt(loaded.tokenizer, yardstick.edit_request(passage.title, passage.context))
    (out,) = generate_texts(
        loaded,
        [prompt],
        max_new_tokens=yardstick.edit_tokens,
        temperature=yardstick.temperature,
        top_p=yardstick.top_p,
        seed=seed,
    )
    return out.text


def train_adapter(loaded: LoadedModel, texts: list[str], yardstick: Yardstick, seed: int) -> tuple[Any, int]:
    """A fresh LoRA (r 16, alpha 32, dropout 0, every linear layer) trained with plain peft and torch AdamW,
    batch 1; returns the peft model (call `.unload()` for the base model again) and its steps."""
    import torch
    from peft import LoraConfig, get_peft_model

    tok = loaded.tokenizer
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        loaded.model,
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=yardstick.learning_rate)
    order = yardstick.order(len(texts), seed)
    for step, index in enumerate(order):
        text = texts[index] + (tok.eos_token if yardstick.eos else "")
        ids = tok(text, return_tensors="pt").input_ids[:, :1024]
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        if yardstick.schedule.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, yardstick.schedule.max_grad_norm)
        for group in optimizer.param_groups:
            group["lr"] = yardstick.learning_rate * yardstick.schedule.factor(step, len(order))
        optimizer.step()
        optimizer.zero_grad()
    peft_model.eval()
    return peft_model, len(order)


def seed_loop(
    passages: list[Passage],
    k: int,
    seed: int,
    retention: list,
    console: Console,
    yardstick: Yardstick = ISSUE10,
) -> dict[str, Any]:
    """The plain loop, in one process with plain peft and torch."""
    loaded = load_model(ModelSettings())
    kept = [(None, q.question, tuple(q.answers)) for q in retention]
    base_retention = mean_scores(ask(loaded, kept, yardstick.question))
    # Every self-edit in one sampled batch (as this check always did, so that its README figures rerun).
    prompts = [
        chat_prompt(loaded.tokenizer, yardstick.edit_request(p.title, p.context))
        for p in passages
        for _ in range(k)
    ]
    outputs = generate_texts(
        loaded,
        prompts,
        max_new_tokens=yardstick.edit_tokens,
        temperature=yardstick.temperature,
        top_p=yardstick.top_p,
        seed=seed,
        batch_size=8,
    )
    per_passage = []
    for pi, passage in enumerate(passages):
        questions = questions_of(passage)
        baseline = mean_scores(ask(loaded, questions, yardstick.question))
        edits = []
        for j in range(k):
            text = outputs[pi * k + j].text
            data = yardstick.texts(passage.title, passage.context, yardstick.lines(text))
            peft_model, steps = train_adapter(loaded, data, yardstick, seed + j)
            adapted = mean_scores(ask(loaded, questions, yardstick.question))
            kept_scores = mean_scores(ask(loaded, kept, yardstick.question))
            loaded = replace(loaded, model=peft_model.unload())  # the base model again, without the adapter
            edits.append(
                {"scores": adapted, "retention": kept_scores, "steps": steps, "lines": len(data) - 1}
            )
        per_passage.append({"title": passage.title, "baseline": baseline, "self_edits": edits})
        scores = " ".join(f"{e['scores']['f1']:.2f}" for e in edits)
        console.print(
            f"seed loop {pi + 1}/{len(passages)} {passage.title}: F1 {scores} (baseline {baseline['f1']:.2f})"
        )
    return {"base_retention": base_retention, "passages": per_passage}


def seal_lab_loop(
    passages: list[Passage], k: int, seed: int, retention_count: int, console: Console, workdir: Path
) -> dict[str, Any]:
    """seal-lab's default loop as a user runs it: the four services, one run, every other setting default."""
    from services.coordinator.cli.api_client import connect
    from services.coordinator.cli.launcher import LocalStack

    body = {
        "name": "seed check",
        "passages": passages_to_json(passages),
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
    parser.add_argument(
        "--yardstick",
        choices=sorted(YARDSTICKS),
        default="issue10",
        help="the seed loop's choices: issue 10's (this check's until 2026-12) or issue 28's plain loop",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="the seal-lab stack's store and logs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    configure_logging("WARNING")
    console = Console(stderr=True)
    passages = load_passages(args.passages)
    if args.limit:
        passages = passages[: args.limit]
    retention = retention_questions(args.retention)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "passages_file": args.passages.name,
        "passages": len(passages),
        "questions": sum(len(p.questions) for p in passages),
        "yardstick": args.yardstick,
        "k": args.k,
        "seed": args.seed,
        "retention_questions": len(retention),
        "loops": {},
        "seconds": {},
    }
    for name in args.loops.split(","):
        t0 = time.perf_counter()
        if name == "seed":
            loop = seed_loop(passages, args.k, args.seed, retention, console, YARDSTICKS[args.yardstick])
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
