"""Benchmark (issue 9): self-edits per minute and training TFLOP/s of the batched inner loop on one GPU.

Trains G self-edits in one `train_group` call, then answers their questions under the G adapters and the base
model in one `answer_tasks` call: the trainer's and the evaluator's own code, on random-weight models of real
shapes (nothing is downloaded) with the embedded model's tokenizer. Self-edit generation is not timed.
    .venv/bin/python benchmarks/gpu_throughput.py [--shapes 135m,1.5b,7b] [--groups 1,8,32] [--out FILE]
    SEAL_MODEL_TORCH_THREADS=1 .venv/bin/python benchmarks/gpu_throughput.py --device cpu --shapes tiny \\
        --epochs 1 --passages 2 --out /tmp/smoke.json      # smoke test, under a minute on a laptop
Workload: SEAL's SQuAD passages with GPT-4.1's self-edits (shared/data/seal/selfedits_gpt4_1_val.json),
synthetic texts of a similar length when that file is missing. Prints a table to stderr and writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import DEFAULT_DIRECTIVE, Directive
from seal_lab.formats.strategies import builtin
from seal_lab.model.base import LoadedModel, prepare_model
from seal_lab.model.grouptrain import GroupJob, TrainOutcome, train_group
from seal_lab.model.multilora import lora_targets
from seal_lab.settings import ModelSettings
from services.evaluator.answering import AnswerTask, QuestionItem, answer_tasks
from services.evaluator.settings import EvaluatorSettings
from services.trainer.settings import TrainerSettings, group_defaults

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("shared/data/seal/selfedits_gpt4_1_val.json")
QUESTIONS_PER_PASSAGE = 5
CONFIG_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "tie_word_embeddings",
)
#: name: (config class, values of CONFIG_FIELDS, default group sizes). Real shapes, random weights.
SHAPES: dict[str, tuple[str, tuple, tuple[int, ...]]] = {
    "tiny": ("LlamaConfig", (64, 128, 2, 4, 2, 49152, True), (1, 4)),
    "135m": ("LlamaConfig", (576, 1536, 30, 9, 3, 49152, True), (1, 8, 32)),  # SmolLM2-135M
    "1.5b": ("Qwen2Config", (1536, 8960, 28, 12, 2, 151936, True), (1, 8, 32)),  # Qwen2.5-1.5B
    "7b": ("Qwen2Config", (3584, 18944, 28, 28, 4, 152064, False), (1, 8)),  # Qwen2.5-7B
}
FLOPS_NOTE = (
    "training FLOPs = 4 x matmul parameters x training tokens: forward 2, backward through the activations 2; "
    "the base is frozen, so there is no weight-gradient matmul (6 x params x tokens would overstate it). "
    "Matmul parameters = decoder layers + output head (the input embedding is a lookup). Not counted: "
    "attention scores and the LoRA paths; the head is counted on every token (it runs on label tokens only)."
)


@dataclass(frozen=True)
class Setup:
    """How the trainer and the evaluator run: their own settings and their defaults for the device."""

    target_modules: str
    tokens_per_step: int
    row_tokens: int
    evaluate_batch_size: int
    max_new_tokens: int


@dataclass
class SelfEdit:
    passage: str
    examples: list[TrainingExample]
    questions: list[QuestionItem]


def load_workload(path: Path | None, passages: int) -> tuple[list[SelfEdit], str]:
    """Every self-edit of the first `passages` passages: the passage plus the completion's training texts as
    the product builds them (`implications` format, passage included), and the passage's first questions."""
    if path is None:
        return _synthetic(passages), "synthetic: SEAL's self-edit file was not found"
    edit_format = builtin("implications")
    edits = []
    for p, record in enumerate(json.loads(path.read_text())[:passages]):
        questions = [
            QuestionItem(f"p{p}q{i}", q["question"], (q["answer"],))
            for i, q in enumerate(record["questions"][:QUESTIONS_PER_PASSAGE])
        ]
        passage = f"{record['title']}\n{record['context']}".strip()
        for completion in record["completions"]:
            texts = [passage, *edit_format.training_texts(completion)]
            edits.append(SelfEdit(f"p{p}", [TrainingExample("", t) for t in texts], questions))
    return edits, f"SEAL's SQuAD passages with GPT-4.1 self-edits ({path})"


def _synthetic(passages: int) -> list[SelfEdit]:
    """The real set's mean sizes: a 120-word passage, 5 self-edits of 14 lines of 20 words, 5 questions."""
    rng = random.Random(0)
    vocabulary = [f"w{rng.randrange(10_000)}" for _ in range(2000)]

    def text(words: int) -> str:
        return " ".join(rng.choices(vocabulary, k=words))

    edits = []
    for p in range(passages):
        questions = [QuestionItem(f"p{p}q{i}", text(12) + "?", (text(2),)) for i in range(5)]
        passage = text(120)
        for _ in range(5):
            texts = [passage] + [text(20) for _ in range(14)]
            edits.append(SelfEdit(f"p{p}", [TrainingExample("", t) for t in texts], questions))
    return edits


def shape_config(shape: str) -> dict:
    return dict(zip(CONFIG_FIELDS, SHAPES[shape][1], strict=True))


def build_model(shape: str, tokenizer: Any, device: str) -> LoadedModel:
    import transformers

    config = getattr(transformers, SHAPES[shape][0])(**shape_config(shape))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    return LoadedModel(f"random:{shape}", model, tokenizer, f"random-{shape}", device, str(dtype)[6:], 0.0)


def matmul_parameters(model: Any) -> int:
    embedding = model.get_input_embeddings().weight
    body = sum(p.numel() for p in model.get_decoder().parameters() if p is not embedding)
    return body + model.get_output_embeddings().weight.numel()


def run_group(loaded: LoadedModel, edits: list[SelfEdit], directive: Directive, setup: Setup) -> dict:
    """Train the edits as one group, then answer their passages' questions under each adapter and the base."""
    cuda = loaded.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    jobs = [GroupJob(edit.examples, directive, seed=i) for i, edit in enumerate(edits)]
    started = time.perf_counter()
    outcomes = train_group(loaded, jobs, setup.target_modules, setup.tokens_per_step, setup.row_tokens)
    if cuda:
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    trained = [o for o in outcomes if isinstance(o, TrainOutcome)]
    if len(trained) < len(jobs):
        failed = next(o for o in outcomes if not isinstance(o, TrainOutcome))
        raise RuntimeError(f"{len(jobs) - len(trained)} of {len(jobs)} jobs did not train: {failed!r}")
    tasks = [AnswerTask(edit.questions, o.adapter) for edit, o in zip(edits, trained, strict=True)]
    baselines = {edit.passage: edit.questions for edit in edits}  # the base model once per passage
    tasks += [AnswerTask(questions, None) for questions in baselines.values()]
    targets = lora_targets(loaded.model, setup.target_modules)
    started = time.perf_counter()
    answer_tasks(loaded, tasks, targets, setup.max_new_tokens, setup.evaluate_batch_size)
    if cuda:
        torch.cuda.synchronize()
    evaluate_seconds = time.perf_counter() - started
    g, tokens = len(edits), sum(o.tokens for o in trained)
    flops = 4 * matmul_parameters(loaded.model) * tokens
    return {
        "group_size": g,
        "passages": len(baselines),
        "train_seconds": round(train_seconds, 3),
        "evaluate_seconds": round(evaluate_seconds, 3),
        "train_seconds_per_self_edit": round(train_seconds / g, 4),
        "evaluate_seconds_per_self_edit": round(evaluate_seconds / g, 4),
        "seconds_per_self_edit": round((train_seconds + evaluate_seconds) / g, 4),
        "self_edits_per_minute": round(60 * g / (train_seconds + evaluate_seconds), 1),
        "train_steps": max(len(o.step_loss) for o in trained),
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / train_seconds, 1),
        "train_tflops": round(flops / train_seconds / 1e12, 3),
        "evaluate_rows": sum(len(t.questions) for t in tasks),
        "first_loss_mean": round(statistics.fmean(o.step_loss[0] for o in trained), 4),
        "last_loss_mean": round(statistics.fmean(o.step_loss[-1] for o in trained), 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }


def measure_shape(
    shape: str,
    groups: list[int],
    edits: list[SelfEdit],
    tokenizer: Any,
    directive: Directive,
    setup: Setup,
    device: str,
) -> tuple[dict, list[dict]]:
    """(warm-up row, counted rows); each group takes the next self-edits of the workload (wrapping round)."""
    loaded = build_model(shape, tokenizer, device)
    params = matmul_parameters(loaded.model)
    console = Console(stderr=True)
    console.print(f"{shape}: {params / 1e6:.0f}M matmul parameters, groups {groups}")
    rows, offset = [], 0
    for n, size in enumerate([min(groups), *groups]):  # the first warms kernels, allocator, autotuning
        chosen = [edits[(offset + i) % len(edits)] for i in range(size)]
        offset += size
        row = run_group(loaded, chosen, directive, setup)
        rows.append({"shape": shape, "matmul_parameters": params, **row})
        console.print(
            f"  G={size}{' (warm-up, not counted)' if n == 0 else ''}: {row['seconds_per_self_edit']:.3f} s "
            f"per self-edit, {row['self_edits_per_minute']:.0f}/min, {row['train_tflops']:.2f} TFLOP/s"
        )
    del loaded
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows[0], rows[1:]


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is first imported: models are built, not fetched
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shapes", default="135m,1.5b,7b", help=f"comma list of: {', '.join(SHAPES)}")
    parser.add_argument("--groups", default="", help="comma list of group sizes (default: per shape)")
    parser.add_argument("--epochs", type=int, default=None, help="instead of the default directive's")
    parser.add_argument("--passages", type=int, default=40, help="passages to draw self-edits from (5 each)")
    parser.add_argument("--max-new-tokens", type=int, default=EvaluatorSettings().max_new_tokens)
    parser.add_argument("--data", type=Path, default=None, help=f"default: {DATA} in or beside the checkout")
    parser.add_argument("--tokenizer", type=Path, default=None, help="default: the embedded model's")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (never overwritten)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible (--device cpu for a smoke test)")
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if unknown := [s for s in shapes if s not in SHAPES]:
        sys.exit(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    now = datetime.now(UTC)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower().removeprefix("nvidia ")).strip("-") if gpu else "cpu"
    out = args.out or ROOT / f"benchmarks/results/gpu_throughput_{now:%Y%m%dT%H%M%SZ}_{slug}.json"
    if out.exists():
        sys.exit(f"{out} exists; not overwriting it")

    trainer, evaluator, model_settings = TrainerSettings(), EvaluatorSettings(), ModelSettings()
    defaults = group_defaults(trainer, args.device)
    setup = Setup(
        trainer.target_modules,
        defaults.tokens_per_step,
        defaults.row_tokens,
        evaluator.batch_size,
        args.max_new_tokens,
    )
    directive = replace(DEFAULT_DIRECTIVE, epochs=args.epochs or DEFAULT_DIRECTIVE.epochs)
    data = args.data or next((p for p in (ROOT / DATA, ROOT.parent / DATA) if p.is_file()), None)
    edits, workload = load_workload(data, args.passages)
    if model_settings.torch_threads:  # SEAL_MODEL_TORCH_THREADS, honoured as load_model does
        torch.set_num_threads(model_settings.torch_threads)
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(args.tokenizer or prepare_model(model_settings))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # as load_model: generation pads on the left
    results, warmups = [], []
    for shape in shapes:
        groups = [int(g) for g in args.groups.split(",")] if args.groups else list(SHAPES[shape][2])
        warmup, rows = measure_shape(shape, groups, edits, tokenizer, directive, setup, args.device)
        warmups.append(warmup)
        results += rows

    report = {
        "benchmark": "gpu_throughput (issue 9: a batched inner loop)",
        "date": now.isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": gpu or platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "settings": {
            "shapes": {s: {"config": SHAPES[s][0], **shape_config(s)} for s in shapes},
            "directive": asdict(directive),
            **asdict(setup),
            "questions_per_passage": QUESTIONS_PER_PASSAGE,
            "dtype": "bfloat16" if args.device == "cuda" else "float32",
            "torch_threads": torch.get_num_threads(),
        },
        "workload": {
            "source": workload,
            "synthetic": data is None,
            "self_edits_available": len(edits),
            "examples_per_self_edit_mean": round(statistics.fmean(len(e.examples) for e in edits), 2),
            "description": "a self-edit = its passage (title and context) plus the training texts of one "
            "completion (the product's `implications` format: one per line, bullets removed, 3 words or more), "
            "each a TrainingExample with an empty prompt. G of them train in one train_group call; then the G "
            "adapters, and the base model once per passage, answer their passage's questions in one "
            "answer_tasks call. Weights are random, so most answers run to max_new_tokens (the worst case). "
            "One warm-up group per shape runs first and is not counted. Self-edit generation is not timed.",
        },
        "flops_note": FLOPS_NOTE,
        "targets": {"135m_self_edits_per_minute_at_least": 300, "7b_seconds_per_self_edit_at_most": 1.0},
        "results": results,
        "warmup": warmups,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "x") as handle:  # "x": never overwrite
        handle.write(json.dumps(report, indent=1) + "\n")
    print_table(results, report["device_name"])
    Console(stderr=True).print(f"wrote {out}")


def print_table(results: list[dict], device_name: str) -> None:
    console = Console(stderr=True)
    table = Table(title=f"Per self-edit on {device_name}: train G together, then evaluate G + base")
    for column in ("shape", "G", "train s", "eval s", "s/edit", "edits/min", "tok/s", "TFLOP/s", "GiB"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r["shape"],
            str(r["group_size"]),
            f"{r['train_seconds_per_self_edit']:.3f}",
            f"{r['evaluate_seconds_per_self_edit']:.3f}",
            f"{r['seconds_per_self_edit']:.3f}",
            f"{r['self_edits_per_minute']:.0f}",
            f"{r['train_tokens_per_second']:.0f}",
            f"{r['train_tflops']:.2f}",
            "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}",
        )
    console.print(table)
    for shape, target in (("135m", "at least 300 self-edits/min"), ("7b", "at most 1 s per self-edit")):
        rows = [r for r in results if r["shape"] == shape]
        if rows:
            best = max(rows, key=lambda r: r["self_edits_per_minute"])
            console.print(
                f"target {shape}: {target}; best G={best['group_size']}: "
                f"{best['self_edits_per_minute']:.0f}/min, {best['seconds_per_self_edit']:.3f} s each"
            )


if __name__ == "__main__":
    main()
