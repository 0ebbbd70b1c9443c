"""Benchmark: continual knowledge incorporation (issue 31). A stream of SQuAD passages outside SEAL's 200
learned one after another into one model, in several seeded orderings; each option against forgetting
(replay, a retention-aware pick, a smaller update) run on the same passages and orderings as no option, and
compared with it in pairs: the final accuracy on every passage seen (paired by ordering and passage) and the
final retention (paired by ordering), each with its minimum detectable effect.

    .venv/bin/python benchmarks/continual.py --preset smoke   # 2 passages, 1 ordering, none vs replay: minutes
    .venv/bin/python benchmarks/continual.py                  # cpu: 8 passages, 3 orderings, every option
    .venv/bin/python benchmarks/continual.py --preset gpu     # SEAL's size: 8 passages, 64 orderings

Starts the four services (LocalStack) unless --coordinator-url points at a running coordinator. Prints the
accuracy matrix of the first option (passage i after step j), a table of every option (final mean over seen
passages, retention, forgetting) and the paired comparisons with verdicts; writes a new dated
`continual_<preset>_<time>_cpu<cores>.json` (never an existing file; it names each option's run id) and one
HTML report per run (`continual_<run id>.html`, written once) to --out.

In parts, across sessions (benchmarks/resume.py): the local stack's store lives in `.seal/bench/continual-<preset>`
(printed at start; `--workdir` chooses another, `--fresh` starts over), and a rerun of the same command reads
back the options that finished, resumes the one that was interrupted from its last finished step, and runs the
rest. So the cpu preset (about 25 min per option and ordering) can run a session at a time:

    timeout 50m make bench-continual PRESET=cpu     # or Ctrl-C: the stack stops, the runs stay in the store
    make bench-continual PRESET=cpu                 # goes on; the table comes when every option has finished
    .venv/bin/python benchmarks/continual.py --options none,replay   # some options now, the rest later:
    .venv/bin/python benchmarks/continual.py                         # reads those back, runs the others
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
from seal_lab.scoring.stats import paired_test, verdict
from seal_lab.security import security_from_environment
from services.coordinator.cli.api_client import connect
from services.coordinator.cli.display import render_continual
from services.coordinator.report.render import ReportRun, render_report
from services.coordinator.run.result_schemas import ContinualResults

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import conditions  # noqa: E402  (the conditions benchmark's machinery: passages, runs, the stack)
import resume  # noqa: E402  (the work folder and the runs of earlier sessions)
from resultfiles import write_new  # noqa: E402

#: Each option against forgetting as the run settings it sets; "none" is the stream as SEAL ran it (the first
#: self-edit, one adapter carried on, nothing against forgetting).
OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "replay": {"continual_replay": 4},
    "retention": {"continual_pick": "best", "retention_lambda": 1.0},
    "smaller": {"continual_update": {"lora_rank": 4, "learning_rate": 1e-3}},
}

#: Sizes. "smoke": checks the machinery (2 passages, 1 ordering, none vs replay), says nothing about forgetting.
#: "cpu": 8 passages, 3 orderings, every option (not measured here: each ordering trains 8 adapters per option,
#: about 40 s each on two idle cores, plus 36 accuracy evaluations; roughly 25 min per option and ordering).
#: "gpu": SEAL's continual experiment (8 passages, 64 orderings).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"passages": 2, "orderings": 1, "k": 2, "max_new_tokens": 48, "options": "none,replay"},
    "cpu": {"passages": 8, "orderings": 3, "k": 2, "max_new_tokens": 160, "options": ",".join(OPTIONS)},
    "gpu": {"passages": 8, "orderings": 64, "k": 3, "max_new_tokens": 384, "options": ",".join(OPTIONS)},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes; flags override")
    parser.add_argument("--passages", type=int, default=None, help="passages in the stream")
    parser.add_argument("--orderings", type=int, default=None, help="seeded orderings of them")
    parser.add_argument("--k", type=int, default=None, help="self-edits per step (the retention-aware pick)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--options", default=None, help=f"comma-separated, among {', '.join(OPTIONS)}")
    parser.add_argument("--retention-questions", type=int, default=16, help="retention questions scored")
    parser.add_argument("--seed", type=int, default=0)
    return resume.add_resume_arguments(conditions.add_stack_arguments(parser))


def stream_passages(args: argparse.Namespace) -> list[dict[str, Any]]:
    """SQuAD passages outside SEAL's 200 covered ones (seeded); the demo set for a smoke run without data."""
    if args.preset == "smoke" and not (args.data_dir / "squad_val.json").exists():
        return passages_to_json(demo_passages())[: args.passages]
    train, _, _ = conditions.choose_passages(args.data_dir, 0, args.passages, args.seed)
    return train


def bodies(args: argparse.Namespace, passages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One run per option, the same passages, orderings and seed (so they pair by ordering and passage)."""
    names = [name.strip() for name in args.options.split(",") if name.strip()]
    unknown = sorted(set(names) - set(OPTIONS))
    if unknown or not names:
        raise SystemExit(f"unknown options {unknown}; choose among {', '.join(OPTIONS)}")
    base = {
        "mode": "continual",
        "orderings": args.orderings,
        "k": args.k,
        "seed": args.seed,
        "max_new_tokens": args.max_new_tokens,
        "retention_questions": args.retention_questions,
        "question_topic": True,  # SEAL's question text, as its continual experiment
    }
    return {
        name: {
            "name": f"continual {name} P={len(passages)} O={args.orderings}",
            "passages": passages,
            "config": {**base, **OPTIONS[name]},
        }
        for name in names
    }


def finals(
    continual: ContinualResults,
) -> tuple[dict[tuple[int, int], float | None], dict[int, float | None]]:
    """Per (ordering, row) the final accuracy of each passage of a finished stream, and per ordering its final
    retention: what the comparisons pair."""
    accuracy, retention = {}, {}
    for stream in continual.streams:
        if stream.steps_done != len(stream.order):
            continue
        last = stream.steps_done - 1
        for row in range(len(stream.order)):
            accuracy[(stream.ordering, row)] = stream.matrix[row][last]
        retention[stream.ordering] = stream.steps[last].retention
    return accuracy, retention


def compare(results: dict[str, ContinualResults], reference: str = "none") -> list[dict[str, Any]]:
    """Each option against `reference`: paired tests of the final accuracy over seen passages and of retention."""
    if reference not in results:
        return []
    ref_acc, ref_ret = finals(results[reference])
    rows = []
    for name, continual in results.items():
        if name == reference:
            continue
        acc, ret = finals(continual)
        for measure, mine, theirs in (("final accuracy", acc, ref_acc), ("retention", ret, ref_ret)):
            keys = sorted(set(mine) & set(theirs))
            test = paired_test([mine[k] for k in keys], [theirs[k] for k in keys])
            rows.append(
                {
                    "option": name,
                    "measure": measure,
                    **test,
                    "verdict": verdict(test, label_a=name, label_b=reference),
                }
            )
    return rows


def report(results: dict[str, ContinualResults], comparisons: list[dict[str, Any]], console: Console) -> None:
    out = Console(width=170)
    first = next(iter(results))
    out.print(f"[bold]{first}[/bold]:")
    render_continual(out, results[first])
    table = Table(title="Options against forgetting: final figures, mean over orderings")
    for column in ("option", "streams", "final mean over seen", "retention (base)", "mean forgetting"):
        table.add_column(column, justify="left" if column == "option" else "right")
    for name, continual in results.items():
        s = continual.summary
        table.add_row(
            name,
            f"{s.streams_finished}/{s.streams}",
            conditions._num(s.final_mean_seen),
            f"{conditions._num(s.final_retention)} ({conditions._num(s.retention_base)})",
            conditions._num(s.mean_forgetting),
        )
    out.print(table)
    for row in comparisons:
        mde = "-" if row["mde"] is None else f"{row['mde']:.3f}"
        out.print(f"  {row['option']} vs none, {row['measure']} (n={row['n']}, MDE {mde}): {row['verdict']}")


def main(argv: list[str] | None = None) -> None:
    args = conditions.with_preset(build_parser().parse_args(argv), PRESETS)
    console = Console(stderr=True)
    passages = stream_passages(args)
    runs = bodies(args, passages)
    workdir = resume.prepare_workdir(args, f"continual-{args.preset}", console)
    ledger = resume.Ledger(workdir)
    started = time.perf_counter()
    security = security_from_environment("continual.py")
    pieces: dict[str, resume.Piece] = {}

    def run_all(url: str) -> None:
        with connect(url, 120, security) as client:
            for name, body in runs.items():
                console.print(f"[bold]{name}[/bold]: {body['config']}")
                where = resume.coordinator_name(args)
                pieces[name] = resume.obtain(client, body, name, ledger, where, console)

    resume.on_coordinator_in_parts(args, console, security, run_all)
    wall = time.perf_counter() - started
    details = {name: piece.detail for name, piece in pieces.items()}
    failed = {
        name: d["error"] for name, d in details.items() if not (d.get("results") or {}).get("continual")
    }
    if failed:
        console.print(f"[red]runs without results: {failed}[/red] (the same command resumes them)")
        sys.exit(1)
    results = {
        name: ContinualResults.model_validate(d["results"]["continual"]) for name, d in details.items()
    }
    comparisons = compare(results)
    report(results, comparisons, console)
    summary = summarize(args, passages, pieces, results, wall, comparisons)
    path = write_new(args.out, f"continual_{args.preset}", summary)
    for detail in details.values():  # named by run id, written once: a run read back keeps its page
        page = args.out / f"continual_{detail['id']}.html"
        if not page.exists():
            page.write_text(render_report(ReportRun.model_validate(detail)))
    console.print(f"wrote {path}; wall time of this session {wall:.0f}s ({wall / 60:.1f} min)")


def summarize(
    args: argparse.Namespace,
    passages: list[dict[str, Any]],
    pieces: dict[str, resume.Piece],
    results: dict[str, ContinualResults],
    wall: float,
    comparisons: list[dict[str, Any]],
) -> dict[str, Any]:
    """The results file: every option's run, how this session got it, its results, and the comparisons."""
    return {
        "preset": args.preset,
        "passages": [p["title"] for p in passages],
        "orderings": args.orderings,
        "seed": args.seed,
        "wall_seconds": round(wall, 1),
        "workdir": str(args.workdir),
        "runs": {name: piece.detail["id"] for name, piece in pieces.items()},
        "obtained": {name: piece.how for name, piece in pieces.items()},
        "options": {name: OPTIONS[name] for name in results},
        "results": {name: continual.model_dump(mode="json") for name, continual in results.items()},
        "comparisons": comparisons,
    }


if __name__ == "__main__":
    main()
