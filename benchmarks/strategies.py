"""A tournament of self-edit strategies: every strategy on the same held-out passages at the same budget.

    .venv/bin/python benchmarks/strategies.py --preset smoke   # 2 demo passages, 2 strategies: minutes
    .venv/bin/python benchmarks/strategies.py --preset cpu     # 8 held-out SQuAD passages, 4 strategies (about 1-2 h)
    .venv/bin/python benchmarks/strategies.py --preset gpu     # 200 held-out passages, 8 strategies
    .venv/bin/python benchmarks/strategies.py --strategies implications,entigraph,./mine.yaml --reference implications
    .venv/bin/python benchmarks/strategies.py --preset cpu --budget tokens    # every adapter on 1,900 tokens

It uses the conditions benchmark's machinery (benchmarks/conditions.py: the passages, a local stack or a running
coordinator, the run follower): one run per strategy, each with the same held-out passages, seed, K, token
limit and the trainer's default directive (`conditions_directive: default`, so every adapter trains on the
same step budget and only the data differ). `--budget tokens` gives every held-out adapter the same number of
training tokens instead (`--tokens`, the run's `heldout_directive`): a strategy that writes long texts gets
more tokens per step than a terse one, so at equal steps it also trains on more text. Each run's held-out table has the no-adapter and passage-only rows
(the same in every run: taken from the first) and the strategy's row. The verdicts are paired by passage
against `--reference` (and passage-only against it too), Holm-corrected over all of them, with the minimum
detectable effect (seal_lab.scoring.stats). A strategy is a built-in name or a path to a strategy file (sent as
`strategy_files`). `--rounds 1` makes each row "strategy X after one ReST-EM round" (the policy trained on that
strategy's winning self-edits).

In parts, across sessions (benchmarks/resume.py): the local stack's store lives in
`.seal/bench/strategies-<preset>-<budget>` (printed at start; `--workdir` chooses another, `--fresh` starts over),
and a rerun of the same command reads back the strategies whose runs finished, resumes the one that was
interrupted from its last finished job, and runs the rest; the table comes when all have finished. Every
results file is a new dated one (`strategies_<preset>[_tokens]_<time>_cpu<cores>.json`), naming each run:

    timeout 50m make bench-strategies PRESET=cpu    # or Ctrl-C: the stack stops, the runs stay in the store
    make bench-strategies PRESET=cpu                # goes on where it stopped
    .venv/bin/python benchmarks/strategies.py --strategies implications,rewrite   # some now, the rest later
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seal_lab.formats.passages import demo_passages, passages_to_json
from seal_lab.formats.strategies import parse_strategy, read_strategy_file
from seal_lab.scoring.stats import describe, holm, paired_test, verdict
from seal_lab.security import security_from_environment
from services.coordinator.cli.api_client import connect

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import resume  # noqa: E402  (the work folder and the runs of earlier sessions)
from conditions import (  # noqa: E402  (the conditions benchmark's machinery)
    DATA_DIR,
    _num,
    add_stack_arguments,
    choose_passages,
    with_preset,
)
from resultfiles import write_new  # noqa: E402

#: Sizes. "smoke": two held-out passages, two strategies, 48 new tokens (checks the machinery, says nothing
#: about strategies; measured: 23 min on a 2-core machine shared with other jobs, about 9-13 min per strategy).
#: "cpu": 8 held-out passages and four strategies. Estimated, not measured: each held-out passage trains two
#: adapters (passage only and the strategy's) per strategy; at the smoke's loaded pace (about 3.5 min per
#: held-out passage and strategy) that is about 2 hours, and about an hour on an idle 2-core machine if
#: conditions.py's 40 s per adapter holds. "gpu": SEAL's 200 held-out passages, eight strategies.
#: `--budget tokens`: every held-out adapter trains on this many tokens. 1,900 is about what the step budget
#: gives `implications` on SQuAD: the median training tokens of its held-out adapters over 40 passages was
#: 1,896 at 24 steps (p0 of conditions run-20261130-004710-eee925, 192 new tokens; benchmarks/results/), so the
#: reference trains about as much under either budget and the others move to it. Not measured for the cpu
#: preset itself (160 new tokens): its step-budget table's "training tokens" column will say how close it is.
TOKEN_BUDGET = 1_900
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "heldout": 2,
        "train": 1,
        "k": 1,
        "max_new_tokens": 48,
        "strategies": "implications,entigraph",
        "retention": False,
        "tokens": TOKEN_BUDGET,
    },
    "cpu": {
        "heldout": 8,
        "train": 1,
        "k": 1,
        "max_new_tokens": 160,
        "strategies": "implications,rewrite,entigraph,active-reading",
        "retention": True,
        "tokens": TOKEN_BUDGET,
    },
    "gpu": {
        "heldout": 200,
        "train": 1,
        "k": 1,
        "max_new_tokens": 384,
        "strategies": "implications,implications-long,rewrite,self-qa,spa-key-concepts,spa-teacher,entigraph,"
        "active-reading",
        "retention": True,
        "tokens": TOKEN_BUDGET,
    },
}


def strategy_source(spec: str) -> tuple[str, str]:
    """(name, file text or "" for a built-in) of a `--strategies` entry: a built-in name or a file's path."""
    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        text = read_strategy_file(Path(spec))
        return parse_strategy(text, spec).name, text
    return spec, ""


def run_body(name: str, text: str, train: list, heldout: list, args: argparse.Namespace) -> dict[str, Any]:
    """The run of one strategy: the same passages and budget as every other, only the strategy changes."""
    return {
        "name": f"strategy {name} N={len(heldout)}",
        "passages": train,
        "heldout_passages": heldout,
        "config": {
            "formats": [name],
            "heldout_format": name,
            "strategy_files": [text] if text else [],
            "k": args.k,
            "rounds": args.rounds,
            "seed": args.seed,
            "max_new_tokens": args.max_new_tokens,
            "retention": args.retention,
            "conditions_directive": "default",
            "question_topic": True,  # SEAL's question text, as the conditions table
            **budget_config(args),
        },
    }


def budget_config(args: argparse.Namespace) -> dict[str, Any]:
    """What a run sets for the budget: nothing for steps (the trainer's default directive), else a token budget
    for every held-out condition (refused by the coordinator when outside the trainer's limits)."""
    return {"heldout_directive": {"tokens": args.tokens}} if args.budget == "tokens" else {}


def budget_label(args: argparse.Namespace) -> str:
    if args.budget == "tokens":
        return f"token budget {args.tokens:,} tokens per adapter"
    return "step budget (the trainer's default directive)"


def passages(args: argparse.Namespace) -> tuple[list, list]:
    if args.preset == "smoke" and args.data_dir == DATA_DIR and not (DATA_DIR / "squad_val.json").exists():
        demo = passages_to_json(demo_passages())
        return demo[: args.train], demo[args.train : args.train + args.heldout]
    train, heldout, _ = choose_passages(args.data_dir, args.heldout, args.train, args.seed)
    return train, heldout


def the_row(args: argparse.Namespace) -> str:
    """The held-out condition that holds the strategy's self-edits: the last round's generator."""
    return f"p{args.rounds}"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def tournament(details: dict[str, dict[str, Any]], row: str, reference: str, metric: str) -> dict[str, Any]:
    """Per-passage scores of every strategy (and of no adapter and passage only, from the first run), their
    means, and the paired comparisons against `reference`, Holm-corrected together."""
    first = next(iter(details.values()))["results"]["heldout"]["passages"]
    ids = [p["passage_id"] for p in first]
    scores: dict[str, list[float | None]] = {
        "no adapter": [p["scores"].get("base") for p in first],
        "passage only": [p["scores"].get("passage") for p in first],
    }
    tokens: dict[str, float | None] = {
        "passage only": _mean([p["training"].get("passage", {}).get("tokens") for p in first])
    }
    # What each row's adapters kept of the general questions (the base model's for no adapter): forgetting.
    retention: dict[str, float | None] = {
        "no adapter": _mean([p.get("retention", {}).get("base") for p in first]),
        "passage only": _mean([p.get("retention", {}).get("passage") for p in first]),
    }
    for name, detail in details.items():
        by_id = {p["passage_id"]: p for p in detail["results"]["heldout"]["passages"]}
        scores[name] = [by_id.get(i, {}).get("scores", {}).get(row) for i in ids]
        tokens[name] = _mean([by_id[i]["training"].get(row, {}).get("tokens") for i in ids if i in by_id])
        retention[name] = _mean([by_id[i].get("retention", {}).get(row) for i in ids if i in by_id])
    others = [name for name in scores if name not in (reference, "no adapter")]
    tests = [paired_test(scores[name], scores[reference]) for name in others]
    adjusted = holm([t.get("t_p") for t in tests])
    comparisons = [
        {
            "a": name,
            "b": reference,
            **test,
            "holm_p": p,
            "verdict": verdict(test, adjusted_p=p, label_a=name, label_b=reference),
        }
        for name, test, p in zip(others, tests, adjusted, strict=True)
    ]
    rows = {
        name: {
            **describe([v for v in values if v is not None]),
            "tokens": tokens.get(name),
            "retention": retention.get(name),
        }
        for name, values in scores.items()
    }
    return {
        "metric": metric,
        "reference": reference,
        "passages": ids,
        "scores": scores,
        "rows": rows,
        "comparisons": comparisons,
    }


def report(table: dict[str, Any], args: argparse.Namespace, wall: float) -> None:
    out = Console(width=170)
    view = Table(
        title=f"Strategies on N={len(table['passages'])} held-out passages, K={args.k}, "
        f"max_new_tokens {args.max_new_tokens}, {args.rounds} rounds, seed {args.seed}, {budget_label(args)} "
        f"(metric {table['metric']}, ± s.e.)"
    )
    for column in ("row", "n", table["metric"], "± s.e.", "training tokens", "retention"):
        view.add_column(column, justify="left" if column == "row" else "right")
    for name, row in table["rows"].items():
        view.add_row(
            name,
            str(row["n"]),
            _num(row["mean"]),
            _num(row["stderr"]),
            _num(row["tokens"], ".0f"),
            _num(row.get("retention")),
        )
    out.print(view)
    out.print(f"[bold]Paired against {table['reference']}[/bold] (Holm over {len(table['comparisons'])}):")
    for test in table["comparisons"]:
        out.print(f"  {test['verdict']}")
    out.print(f"wall time of this session {wall:.0f}s ({wall / 60:.1f} min)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes; flags override")
    parser.add_argument("--strategies", default=None, help="comma-separated built-in names or file paths")
    parser.add_argument(
        "--reference", default="implications", help="the strategy every other is compared with"
    )
    parser.add_argument("--heldout", type=int, default=None)
    parser.add_argument("--train", type=int, default=None, help="training passages (a run needs one)")
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=0, help="1: each strategy after one ReST-EM round")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--retention", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget",
        choices=("steps", "tokens"),
        default="steps",
        help="what every held-out adapter gets the same of: optimizer steps (the trainer's default directive) "
        "or training tokens (--tokens)",
    )
    parser.add_argument(
        "--tokens", type=int, default=None, help=f"with --budget tokens (default {TOKEN_BUDGET:,})"
    )
    return resume.add_resume_arguments(add_stack_arguments(parser))


def main(argv: list[str] | None = None) -> None:
    args = with_preset(build_parser().parse_args(argv), PRESETS)
    console = Console(stderr=True)
    sources = dict(strategy_source(spec.strip()) for spec in args.strategies.split(",") if spec.strip())
    if args.budget == "tokens" and args.tokens < 1:
        console.print(f"[red]--tokens {args.tokens}: a token budget needs at least one token")
        sys.exit(2)
    if args.reference not in sources:
        console.print(f"[red]--reference {args.reference!r} is not one of --strategies {list(sources)}")
        sys.exit(2)
    train, heldout = passages(args)
    ledger = resume.Ledger(resume.prepare_workdir(args, f"strategies-{args.preset}-{args.budget}", console))
    security = security_from_environment("strategies.py")
    started = time.perf_counter()
    pieces: dict[str, resume.Piece] = {}

    def run_all(url: str) -> None:
        with connect(url, 120, security) as client:
            for name, text in sources.items():
                body = run_body(name, text, train, heldout, args)
                piece = resume.obtain(client, body, name, ledger, resume.coordinator_name(args), console)
                if piece.detail["status"] == "failed" or not piece.detail.get("results"):
                    console.print(
                        f"[red]strategy {name}: run failed: {piece.detail.get('error')}[/red] "
                        "(the same command resumes it)"
                    )
                    sys.exit(1)
                pieces[name] = piece

    resume.on_coordinator_in_parts(args, console, security, run_all)
    wall = time.perf_counter() - started
    details = {name: piece.detail for name, piece in pieces.items()}
    metric = next(iter(details.values()))["results"]["heldout"]["metric"]
    table = tournament(details, the_row(args), args.reference, metric)
    table["runs"] = {name: detail["id"] for name, detail in details.items()}
    table["obtained"] = {name: piece.how for name, piece in pieces.items()}
    table["preset"], table["wall_seconds"] = args.preset, round(wall, 1)
    table["workdir"] = str(args.workdir)
    table["budget"] = {"kind": args.budget, **({"tokens": args.tokens} if args.budget == "tokens" else {})}
    kind = "_tokens" if args.budget == "tokens" else ""
    path = write_new(args.out, f"strategies_{args.preset}{kind}", table)
    console.print(f"wrote {path}")
    report(table, args, wall)


if __name__ == "__main__":
    main()
