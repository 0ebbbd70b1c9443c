"""Issue 28's ablation: which of seal-lab's choices make it learn less than a plain 100-line loop?

The plain loop is issue 28's, exactly (`seed_check.ISSUE28`, written there once with plain peft + torch and
imported here). Each variant switches one of its choices to seal-lab's current default, read from the code
(`seal_lab_choices`: the coordinator's sampling defaults, `DEFAULT_DIRECTIVE`, the trainer's schedule and
EOS settings), so the variants follow the default when it changes:

    self-edit  SEAL's implications instruction at seal-lab's sampling, cut into lines by the generator's rule
    title      each line trained as `{title}\\n{line}`
    schedule   warmup + linear decay + gradient clipping at seal-lab's learning rate (against constant 1e-3)
    steps      seal-lab's step budget (24 steps) instead of 5 epochs over the examples
    order      each pass over the examples in a seeded shuffled order instead of in order
    eos        seal-lab's trainer setting for EOS after plain text (the same as the plain loop's since the
               recipe pilot: the variant is then reported as identical and not trained again)
    question   the evaluator's question prompt (SEAL's text with a Topic line) instead of the plain one
    all        every difference above together
    a+b        (named on the command line, e.g. `steps+title`) the choices of those variants together
    no-eos     (not in the default list) the plain loop without EOS: whether EOS matters at all
    seal-lab   (not in the default list) seal-lab's default loop end to end, the four services as a user runs
               them (`seed_check.seal_lab_loop`); its self-edits are its own

What stays the plain loop's in every variant (peft's LoRA initialisation, torch's AdamW with its weight decay
0.01, one example per forward pass) is what seal-lab's own trainer does differently and this harness does not
ablate; `all` against `seal-lab` measures it together with the directive the model writes.

Paired per passage: every variant writes K self-edits per passage with seeds seed..seed+K-1 and trains
adapter j with seed + j. A self-edit is generated once per (prompt, sampling, seed) and cached
(`--cache`), so the variants that do not change it train on the very same text; variants that differ only
in the question prompt share their adapters. The table gives per variant the mean F1 / contains per
self-edit, the paired difference against the plain loop (per-passage means; bootstrap 95% CI) and the
minimum detectable effect of the paired t test at 80% power (`seal_lab.scoring.stats.paired_test`), retention F1
(forgetting) beside them.

    .venv/bin/python benchmarks/ablation.py --k 2                 # the tune set, every variant
    .venv/bin/python benchmarks/ablation.py --squad 24 --k 2      # SQuAD passages outside SEAL's 200
    .venv/bin/python benchmarks/ablation.py --limit 1 --k 1 --variants plain,title --threads 1  # a look

Cost, from the smoke run (2026-12-07, this two-core machine shared with other jobs, load average about 8,
one torch thread; `--limit 1 --k 1 --variants plain,title`, 255 s in all, 1.5 GB resident): writing one
self-edit 24 s; training 39 s and 31 s (10 steps each: the plain prompt gave one long line); asking the 5
questions about 20 s, and as long for the 16 retention questions and for each baseline. So about 75-100 s per
adapter, more for self-edits with many lines (5 epochs over every line) and for `steps` (24 steps). A full
run trains one adapter per passage, self-edit and distinct variant: the 9 default variants are 7 distinct
trainings (`question` shares the plain adapters, `eos` equals the plain loop), 24 passages x K 2 x 7 = 336
adapters, i.e. roughly 8-10 hours here (an idle machine with both cores should be faster: not measured);
`--k 1` halves it. Plan the later session's runs accordingly (in parts: `--variants`).
Every finished adapter's scores are kept in the cache too (`outcomes/`, keyed by the model, the training,
the passage and its questions, the seed, the self-edit and the retention questions): a run stopped midway
resumes where it was, and a later run with other variants does not train the plain loop's adapters again.

`benchmarks/data/invented_final_20261208.json` is held out for issue 28's next final check and refused here (by
path and by content); `--final-check` allows it for that one use only, `--variants plain,seal-lab`. The set
before it (`invented_final_20261207.json`) had its one check on 2026-12-08 and may now be used to choose.

Seconds: `s / self-edit` is, for a harness variant, the time its own self-edits took (writing, training,
asking, retention), and for `seal-lab` its run's wall time per self-edit; `wall s / self-edit` is each loop's
whole wall time per self-edit (loading the model or starting the services, the baselines, the base model's
retention included), the like-for-like cost of the two loops of a final check (seed_check.py's seconds).

Writes `benchmarks/results/ablation_<time>_cpu<cores>.json` (never overwrites) and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seal_lab.formats.directive import DEFAULT_DIRECTIVE
from seal_lab.formats.passages import Passage, load_passages, parse_passages, retention_questions
from seal_lab.logging import configure_logging
from seal_lab.model.base import LoadedModel, chat_prompt
from seal_lab.model.grouptrain import Schedule
from seal_lab.scoring.stats import paired_test

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from resultfiles import write_new  # noqa: E402
from seed_check import (  # noqa: E402  (the plain loop, written once)
    ISSUE28,
    Yardstick,
    ask,
    mean_scores,
    questions_of,
    seal_lab_loop,
    summarise,
    train_adapter,
    write_self_edit,
)

TUNE_SET = HERE / "data" / "invented_tune_20261207.json"
FINAL_SET = HERE / "data" / "invented_final_20261208.json"
DEFAULT_CACHE = HERE.parent / ".seal" / "ablation-cache"
ONE_AT_A_TIME = ("self-edit", "title", "schedule", "steps", "order", "eos", "question")
DEFAULT_VARIANTS = ("plain", *ONE_AT_A_TIME, "all")
END_TO_END = "seal-lab"
KNOWN = (*DEFAULT_VARIANTS, "no-eos", END_TO_END)
METRICS = ("f1", "contains")


class HeldOutSetError(ValueError):
    """The passages are (or hold) the set kept for issue 28's final check, or `--final-check` is misused."""


def seal_lab_choices() -> dict[str, Any]:
    """seal-lab's current defaults for each difference, read from the code that applies them."""
    from services.coordinator.run.schemas import RunConfig
    from services.trainer.settings import TrainerSettings

    run = RunConfig.model_fields
    trainer = TrainerSettings.model_fields
    return {
        "temperature": run["temperature"].default,
        "top_p": run["top_p"].default,
        "max_new_tokens": run["max_new_tokens"].default,
        "learning_rate": DEFAULT_DIRECTIVE.learning_rate,
        "steps": DEFAULT_DIRECTIVE.steps,
        "epochs": DEFAULT_DIRECTIVE.epochs,
        "schedule": Schedule(
            trainer["warmup_ratio"].default, trainer["lr_decay"].default, trainer["max_grad_norm"].default
        ),
        "text_eos": trainer["text_eos"].default,
    }


def variants(choices: dict[str, Any], plain: Yardstick = ISSUE28) -> dict[str, Yardstick]:
    """Every named variant: the plain loop with one choice (or, for `all`, every one) switched to seal-lab's."""
    one = {
        "self-edit": replace(
            plain,
            edit_prompt="seal",
            temperature=choices["temperature"],
            top_p=choices["top_p"],
            edit_tokens=choices["max_new_tokens"],
            line_cut="seal-lab",
        ),
        "title": replace(plain, title_prefix=True),
        "schedule": replace(plain, learning_rate=choices["learning_rate"], schedule=choices["schedule"]),
        "steps": replace(plain, steps=choices["steps"], epochs=choices["epochs"]),
        "order": replace(plain, shuffle=True),
        "eos": replace(plain, eos=choices["text_eos"]),
        "question": replace(plain, question="seal-lab"),
    }
    together = {name: getattr(y, name) for y in one.values() for name in changed(plain, y)}
    return {"plain": plain, **one, "all": replace(plain, **together), "no-eos": replace(plain, eos=False)}


def combination(every: dict[str, Yardstick], name: str) -> Yardstick:
    """`steps+title`: the plain loop with the choices of several one-at-a-time variants switched together."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in ONE_AT_A_TIME]
    if len(parts) < 2 or unknown or len(set(parts)) != len(parts):
        raise ValueError(
            f"unknown variant {name!r}: a combination joins two or more of {', '.join(ONE_AT_A_TIME)} with '+'"
        )
    together = {f: getattr(every[p], f) for p in parts for f in changed(ISSUE28, every[p])}
    return replace(ISSUE28, **together)


def changed(a: Yardstick, b: Yardstick) -> list[str]:
    """The fields in which two yardsticks differ."""
    return [f.name for f in fields(Yardstick) if getattr(a, f.name) != getattr(b, f.name)]


def same_as_earlier(chosen: dict[str, Yardstick]) -> dict[str, str]:
    """Variant -> the first earlier variant equal to it (trained once, reported under both names)."""
    order = list(chosen)
    return {
        name: next(m for m in order[:i] if chosen[m] == chosen[name])
        for i, name in enumerate(order)
        if any(chosen[m] == chosen[name] for m in order[:i])
    }


def _normalised(text: str) -> str:
    return " ".join(text.split()).lower()


def check_use(path: Path | None, passages: list[Passage], names: list[str], final_check: bool) -> None:
    """Refuse the held-out set (by path, or any of its passages by content) unless `final_check`, and allow
    `final_check` only on that set and only for the plain loop against seal-lab's default."""
    held = {_normalised(p.context) for p in load_passages(FINAL_SET)}
    is_held = (path is not None and path.resolve() == FINAL_SET.resolve()) or any(
        _normalised(p.context) in held for p in passages
    )
    if is_held and not final_check:
        raise HeldOutSetError(
            f"{path or 'these passages'} holds passages of {FINAL_SET.name}, held out for issue 28's final "
            "check and never used to choose anything; ablate on the tune set or SQuAD (--squad). Its one "
            f"use: --final-check --variants plain,{END_TO_END}"
        )
    if final_check and not is_held:
        raise HeldOutSetError(f"--final-check is only for the held-out set {FINAL_SET.name}")
    if final_check and sorted(names) != sorted(["plain", END_TO_END]):
        raise HeldOutSetError(
            f"--final-check compares only the plain loop with seal-lab's default (--variants plain,{END_TO_END}); "
            f"got {','.join(names)}"
        )


def cached_self_edit(
    loaded: LoadedModel, yardstick: Yardstick, passage: Passage, seed: int, cache: Path | None
) -> str:
    """`write_self_edit`, once per (model, prompt, sampling, seed): every variant that keeps the plain
    loop's self-edit trains on the same text."""
    if cache is None:
        return write_self_edit(loaded, yardstick, passage, seed)
    key = {
        "model": loaded.fingerprint,
        "prompt": chat_prompt(loaded.tokenizer, yardstick.edit_request(passage.title, passage.context)),
        "temperature": yardstick.temperature,
        "top_p": yardstick.top_p,
        "max_new_tokens": yardstick.edit_tokens,
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    path = cache / f"{digest}.json"
    if path.exists():
        return json.loads(path.read_text())["text"]
    text = write_self_edit(loaded, yardstick, passage, seed)
    _write_whole(path, {**key, "text": text})
    return text


def outcome_key(
    loaded: LoadedModel, training: Yardstick, passage: Passage, seed: int, text: str, kept: list
) -> str:
    """What one adapter's scores depend on: the model, how it is trained, the passage and its questions, the
    seed, the self-edit's text and the retention questions (not the question style: scores are kept per style)."""
    key = {
        "model": loaded.fingerprint,
        "training": replace(training, question="plain"),
        "passage": [passage.title, passage.context, [list(q) for q in questions_of(passage)]],
        "seed": seed,
        "self_edit": text,
        "retention": [list(q) for q in kept],
    }
    encoded = json.dumps(key, sort_keys=True, default=lambda o: o.__dict__)
    return hashlib.sha256(encoded.encode()).hexdigest()


def cached_outcome(cache: Path | None, key: str, styles: set[str]) -> dict[str, Any] | None:
    """A finished adapter's record, when every question style asked is in it: an interrupted run resumes
    there, and a later run with other variants does not train the plain loop's adapters again."""
    if cache is None:
        return None
    path = cache / "outcomes" / f"{key}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if styles <= set(record["scores"]) else None


def keep_outcome(cache: Path | None, key: str, record: dict[str, Any]) -> None:
    if cache is None:
        return
    path = cache / "outcomes" / f"{key}.json"
    _write_whole(path, record)


def _write_whole(path: Path, record: dict[str, Any]) -> None:
    """A cache file written whole or not at all (a run killed mid-write leaves no half file to read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record))
    partial.replace(path)


def trainings_of(chosen: dict[str, Yardstick]) -> dict[Yardstick, list[str]]:
    """What each adapter is trained with -> the variants that ask it (they differ only in the question)."""
    trainings: dict[Yardstick, list[str]] = {}
    for name, y in chosen.items():
        trainings.setdefault(replace(y, question="plain"), []).append(name)
    return trainings


def run_variants(
    loaded: LoadedModel,
    passages: list[Passage],
    chosen: dict[str, Yardstick],
    k: int,
    seed: int,
    retention: list,
    cache: Path | None,
    console: Console,
) -> dict[str, dict[str, Any]]:
    """Each variant as a loop record in `seed_check`'s shape ({base_retention, passages: [{title, baseline,
    self_edits}]}). One adapter per distinct training; the question styles it is asked in are its variants'."""
    kept = [(None, q.question, tuple(q.answers)) for q in retention]
    base_retention = mean_scores(ask(loaded, kept, "plain"))  # no topic: both styles ask the same prompt
    trainings = trainings_of(chosen)
    loops = {name: {"base_retention": base_retention, "passages": []} for name in chosen}
    for pi, passage in enumerate(passages):
        questions = questions_of(passage)
        styles = {y.question for y in chosen.values()}
        baseline = {style: mean_scores(ask(loaded, questions, style)) for style in styles}
        edits: dict[str, list] = {name: [] for name in chosen}
        for training, names in trainings.items():
            asked = {chosen[name].question for name in names}
            for j in range(k):
                t0 = time.perf_counter()
                text = cached_self_edit(loaded, training, passage, seed + j, cache)
                t1 = time.perf_counter()
                key = outcome_key(loaded, training, passage, seed + j, text, kept)
                record = cached_outcome(cache, key, asked)
                if record is None:
                    record = train_and_ask(loaded, training, passage, seed + j, text, kept, questions, asked)
                    loaded = record.pop("loaded")
                    record["self_edit_seconds"] = round(t1 - t0, 2)
                    keep_outcome(cache, key, record)
                for name in names:
                    asked_as = record["scores"][chosen[name].question]
                    edits[name].append(
                        {
                            "scores": asked_as["scores"],
                            "retention": record["retention"],
                            "steps": record["steps"],
                            "lines": record["lines"],
                            "self_edit_seconds": record["self_edit_seconds"],
                            "train_seconds": record["train_seconds"],
                            "ask_seconds": asked_as["ask_seconds"],
                            "retention_seconds": record["retention_seconds"],
                        }
                    )
        for name, y in chosen.items():
            loops[name]["passages"].append(
                {"title": passage.title, "baseline": baseline[y.question], "self_edits": edits[name]}
            )
        shown = ", ".join(f"{n} {statistics.fmean(e['scores']['f1'] for e in edits[n]):.2f}" for n in chosen)
        console.print(f"{pi + 1}/{len(passages)} {passage.title}: F1 {shown}")
    return loops


def train_and_ask(
    loaded: LoadedModel,
    training: Yardstick,
    passage: Passage,
    seed: int,
    text: str,
    kept: list,
    questions: list,
    styles: set[str],
) -> dict[str, Any]:
    """Train one adapter on `text`, ask the retention questions and the passage's in every style; the record
    carries the base model back under "loaded" (not cached)."""
    t1 = time.perf_counter()
    data = training.texts(passage.title, passage.context, training.lines(text))
    peft_model, steps = train_adapter(loaded, data, training, seed)
    t2 = time.perf_counter()
    kept_scores = mean_scores(ask(loaded, kept, "plain"))
    retention_seconds = round(time.perf_counter() - t2, 2)
    scores = {}
    for style in sorted(styles):
        t3 = time.perf_counter()
        asked = mean_scores(ask(loaded, questions, style))
        scores[style] = {"scores": asked, "ask_seconds": round(time.perf_counter() - t3, 2)}
    return {
        "scores": scores,
        "retention": kept_scores,
        "steps": steps,
        "lines": len(data) - 1,
        "train_seconds": round(t2 - t1, 2),
        "retention_seconds": retention_seconds,
        "loaded": replace(loaded, model=peft_model.unload()),  # the base model again
    }


def end_to_end(
    passages: list[Passage], k: int, seed: int, retention: int, workdir: Path | None, console: Console
) -> dict[str, Any]:
    """seal-lab's default loop through its services, per passage in `passages`' order."""
    loop = seal_lab_loop(
        passages, k, seed, retention, console, workdir or Path(tempfile.mkdtemp(prefix="seal-ablation-"))
    )
    by_title = {p["title"]: p for p in loop["passages"]}
    loop["passages"] = [by_title[p.title] for p in passages]
    return loop


def per_passage(loop: dict[str, Any], metric: str) -> list[float | None]:
    return [
        statistics.fmean(e["scores"][metric] for e in p["self_edits"]) if p["self_edits"] else None
        for p in loop["passages"]
    ]


def compare(loops: dict[str, dict[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    """Every variant against the plain loop, paired per passage (means over its self-edits)."""
    if "plain" not in loops:
        return {}
    return {
        name: {m: paired_test(per_passage(loop, m), per_passage(loops["plain"], m), seed) for m in METRICS}
        for name, loop in loops.items()
        if name != "plain"
    }


def _ci(test: dict[str, Any]) -> str:
    if test["mean_diff"] is None:
        return "-"
    ci = test["ci95"]
    shown = f"{test['mean_diff']:+.3f}"
    return shown + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _mde(versus: dict[str, Any] | None, metric: str) -> str:
    mde = versus[metric]["mde"] if versus else None
    return "-" if mde is None else f"{mde:.3f}"


def table(results: dict[str, Any]) -> Table:
    out = Table(
        title=f"{results['passages']} passages ({results['passages_file']}), K = {results['k']} self-edits each, "
        f"seed {results['seed']}; per self-edit means; Δ = variant - plain, paired per passage, bootstrap 95% CI; "
        "MDE: paired t, alpha 0.05, power 0.8"
    )
    for column in (
        "variant",
        "changes",
        "self-edits",
        "F1",
        "contains",
        "ΔF1 [95% CI]",
        "MDE F1",
        "Δcontains [95% CI]",
        "MDE contains",
        "retention F1",
        "steps",
        "s / self-edit",
        "wall s / self-edit",
    ):
        out.add_column(column, justify="left" if column in ("variant", "changes") else "right")
    for name, loop in results["variants"].items():
        s = loop["summary"]
        vs = results["versus_plain"].get(name)
        out.add_row(
            name,
            ", ".join(loop.get("changes", [])) or "-",
            str(s["self_edits"]),
            f"{s['f1']:.3f}",
            f"{s['contains']:.3f}",
            _ci(vs["f1"]) if vs else "",
            _mde(vs, "f1"),
            _ci(vs["contains"]) if vs else "",
            _mde(vs, "contains"),
            f"{s['retention_f1']:.3f} (base {s['base_retention_f1']:.3f})",
            f"{s['steps']:.0f}",
            f"{loop['seconds_per_self_edit']:.1f}",
            "-"
            if loop.get("wall_seconds_per_self_edit") is None
            else f"{loop['wall_seconds_per_self_edit']:.1f}",
        )
    return out


def wall_per_edit(name: str, seconds: dict[str, float], edits: int, trained: int) -> float | None:
    """A loop's wall seconds per self-edit: seal-lab's run, or the harness when it trained only this variant."""
    if name == END_TO_END:
        return round(seconds[END_TO_END] / max(1, edits), 2)
    if trained == 1 and "variants" in seconds:
        return round(seconds["variants"] / max(1, edits), 2)
    return None


def _squad(count: int, seed: int) -> list[Passage]:
    from recipe_pilot import DATA_DIR, choose  # SQuAD passages outside SEAL's 200, as the recipe pilot chose

    return parse_passages(choose(DATA_DIR, count, seed), "SQuAD outside SEAL's 200", extra="ignore")


def _write(out: Path, results: dict[str, Any]) -> Path:
    """A new dated file; never one that exists."""
    return write_new(out, "ablation", results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=Path, default=TUNE_SET, help="a passages file (SEAL or SQuAD)")
    parser.add_argument("--squad", type=int, default=0, help="N SQuAD passages outside SEAL's 200 instead")
    parser.add_argument("--limit", type=int, default=0, help="only the first N passages (0 = all)")
    parser.add_argument("--k", type=int, default=2, help="self-edits per passage, shared across variants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"of {', '.join(KNOWN)}")
    parser.add_argument("--retention", type=int, default=16, help="retention questions (evenly spaced)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="where self-edits and finished adapters' scores are cached",
    )
    parser.add_argument("--no-cache", action="store_true", help="generate every self-edit afresh")
    parser.add_argument("--workdir", type=Path, default=None, help="the seal-lab stack's store and logs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--final-check",
        action="store_true",
        help=f"issue 28's one final check on {FINAL_SET.name} (only with --variants plain,{END_TO_END})",
    )
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in KNOWN and "+" not in n]
    if unknown or not names:
        parser.error(
            f"unknown variants {unknown}; known: {', '.join(KNOWN)}, or a combination such as steps+title"
        )
    if args.k < 1 or args.limit < 0 or args.squad < 0:
        parser.error("--k must be at least 1; --limit and --squad must not be negative")
    configure_logging("WARNING")
    console = Console(stderr=True)
    if args.squad:
        passages, source = _squad(args.squad, args.seed), f"squad:{args.squad}"
    else:
        passages, source = load_passages(args.passages), args.passages.name
    if args.limit:
        passages = passages[: args.limit]
    try:
        check_use(None if args.squad else args.passages, passages, names, args.final_check)
    except HeldOutSetError as exc:
        parser.error(str(exc))
    choices = seal_lab_choices()
    every = variants(choices)
    try:
        every.update({n: combination(every, n) for n in names if "+" in n})
    except ValueError as exc:
        parser.error(str(exc))
    chosen = {n: every[n] for n in names if n != END_TO_END}
    identical = same_as_earlier(chosen)
    retention = retention_questions(args.retention)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "passages_file": source,
        "passages": len(passages),
        "questions": sum(len(p.questions) for p in passages),
        "k": args.k,
        "seed": args.seed,
        "retention_questions": len(retention),
        "seal_lab_choices": {**choices, "schedule": choices["schedule"].__dict__},
        "identical": identical,
        "variants": {},
        "seconds": {},
    }
    loops: dict[str, dict[str, Any]] = {}
    distinct: dict[str, Yardstick] = {}
    if chosen:
        from seal_lab.model.base import load_model
        from seal_lab.settings import ModelSettings

        loaded = load_model(ModelSettings(torch_threads=args.threads))
        distinct = {n: y for n, y in chosen.items() if n not in identical}
        t0 = time.perf_counter()
        loops = run_variants(
            loaded,
            passages,
            distinct,
            args.k,
            args.seed,
            retention,
            None if args.no_cache else args.cache,
            console,
        )
        results["seconds"]["variants"] = round(time.perf_counter() - t0, 1)
        for name, same in identical.items():
            loops[name] = loops[same]
    if END_TO_END in names:
        t0 = time.perf_counter()
        loops[END_TO_END] = end_to_end(passages, args.k, args.seed, args.retention, args.workdir, console)
        results["seconds"][END_TO_END] = round(time.perf_counter() - t0, 1)
    for name in names:
        loop = loops[name]
        edits = [e for p in loop["passages"] for e in p["self_edits"]]
        if name == END_TO_END:
            per_edit = results["seconds"][END_TO_END] / max(1, len(edits))
        else:
            per_edit = statistics.fmean(
                e["self_edit_seconds"] + e["train_seconds"] + e["ask_seconds"] + e.get("retention_seconds", 0)
                for e in edits
            )
        results["variants"][name] = {
            "changes": changed(ISSUE28, chosen[name]) if name in chosen else ["everything: the services"],
            # The loop's whole wall time per self-edit (model loading, baselines, retention of the base model
            # included), as seed_check.py times its loops: known for seal-lab's run, and for a harness variant
            # when it was the only one trained here (else the harness's time is shared between variants).
            "wall_seconds_per_self_edit": wall_per_edit(name, results["seconds"], len(edits), len(distinct)),
            "yardstick": None
            if name not in chosen
            else {**chosen[name].__dict__, "schedule": chosen[name].schedule.__dict__},
            "summary": summarise(loop),
            "seconds_per_self_edit": round(per_edit, 2),
            **loop,
        }
    results["versus_plain"] = compare(loops, args.seed)
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    path = _write(args.out, results)
    Console(width=220).print(table(results))
    if identical:
        console.print(
            "identical to another variant (not trained again): "
            + ", ".join(f"{n} = {m}" for n, m in identical.items())
        )
    console.print(f"wrote {path} ({results['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
