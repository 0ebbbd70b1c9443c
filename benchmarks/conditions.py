"""Benchmark: SEAL's conditions table on SQuAD passages, with ReST-EM rounds, on the embedded model.

Held-out passages are drawn (seeded) from the 200 passages that SEAL's self-edit files cover, so that
GPT-4.1 (`selfedits_gpt4_1_val.json`) and SEAL's trained 7B model (`selfedits_iter2_val.json`) can serve as
teachers; training passages come from the rest of `squad_val.json` (disjoint by passage text).

    .venv/bin/python benchmarks/conditions.py                   # defaults sized for about an hour on 2 cores
    .venv/bin/python benchmarks/conditions.py --heldout 4 --train 2 --k 2 --rounds 2   # a quick look

Starts the four services (LocalStack) unless --url points at a running coordinator. Prints the table with
N, seeds and wall time, the seconds of every phase, and writes the results JSON and the HTML report.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seal"
TEACHERS = {"gpt4_1": "selfedits_gpt4_1_val.json", "seal_iter2": "selfedits_iter2_val.json"}


def _norm(text: str) -> str:
    return " ".join(text.split())


def choose_passages(data_dir: Path, heldout: int, train: int, seed: int) -> tuple[list, list, list[dict]]:
    """(training passages, held-out passages, teacher imports) in SEAL's format."""
    squad = json.loads((data_dir / "squad_val.json").read_text())
    covered = json.loads((data_dir / TEACHERS["gpt4_1"]).read_text())
    rng = random.Random(seed)
    held = rng.sample(covered, heldout)
    covered_contexts = {_norm(p["context"]) for p in covered}
    pool = [p for p in squad if _norm(p["context"]) not in covered_contexts]
    chosen = rng.sample(pool, train)
    strip = lambda p: {"title": p["title"], "context": p["context"], "questions": p["questions"]}  # noqa: E731
    wanted = {_norm(p["context"]) for p in held}
    teachers = []
    for name, filename in TEACHERS.items():
        entries = json.loads((data_dir / filename).read_text())
        teachers.append(
            {
                "name": name,
                "passages": [
                    {"context": e["context"], "completions": e["completions"][:1]}
                    for e in entries
                    if _norm(e["context"]) in wanted
                ],
            }
        )
    return [strip(p) for p in chosen], [strip(p) for p in held], teachers


def _follow(client: httpx.Client, run_id: str, console: Console) -> dict[str, Any]:
    last = ""
    while True:
        detail = client.get(f"/v1/runs/{run_id}", params={"events": 2000}).json()
        line = f"{detail['jobs_done']}/{detail['jobs_total']} {detail['current'][:100]}"
        if line != last:
            console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}")
            last = line
        if detail["status"] in ("succeeded", "completed_with_errors", "failed"):
            return detail
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heldout", type=int, default=8, help="N held-out passages")
    parser.add_argument("--train", type=int, default=8, help="training passages per round")
    parser.add_argument("--k", type=int, default=4, help="self-edits per training passage")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--retention", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--url", default="", help="a running coordinator; default: start a local stack")
    parser.add_argument("--workdir", type=Path, default=None, help="the local stack's store and logs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for JSON + HTML")
    args = parser.parse_args()
    console = Console(stderr=True)
    if not (args.data_dir / "squad_val.json").exists():
        console.print(f"[red]no squad_val.json in {args.data_dir}[/red] (pass --data-dir)")
        sys.exit(2)
    train, heldout, teachers = choose_passages(args.data_dir, args.heldout, args.train, args.seed)
    body = {
        "name": f"conditions N={args.heldout}",
        "passages": train,
        "heldout_passages": heldout,
        "teachers": teachers,
        "config": {
            "k": args.k,
            "rounds": args.rounds,
            "seed": args.seed,
            "max_new_tokens": args.max_new_tokens,
            "retention": args.retention,
        },
    }
    started = time.perf_counter()
    if args.url:
        detail = _run(args.url, body, console, report_dir=args.out)
    else:
        from services.coordinator.launcher import LocalStack

        # Kept afterwards: the store holds every self-edit, adapter and job record of the run.
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="seal-conditions-"))
        console.print(f"store and logs in {workdir}")
        with LocalStack(workdir, console) as stack:
            detail = _run(stack.coordinator_url, body, console, report_dir=args.out)
    wall = time.perf_counter() - started
    if detail["status"] == "failed":
        console.print(f"[red]run failed: {detail['error']}")
        sys.exit(1)
    report(detail, args, wall, console)


def _run(url: str, body: dict, console: Console, report_dir: Path | None = None) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=120) as client:
        created = client.post("/v1/runs", json=body)
        if created.status_code >= 400:
            console.print(f"[red]{created.status_code}: {created.text}")
            sys.exit(2)
        run_id = created.json()["id"]
        console.print(f"run {run_id}: {created.json()['jobs_total']} jobs")
        detail = _follow(client, run_id, console)
        if detail["results"] and report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / "conditions_report.html").write_text(client.get(f"/v1/runs/{run_id}/report").text)
            (report_dir / "conditions_results.json").write_text(json.dumps(detail["results"], indent=1))
        return detail


def report(detail: dict[str, Any], args: argparse.Namespace, wall: float, console: Console) -> None:
    results = detail["results"]
    heldout = results["heldout"]
    out = Console(width=150)
    table = Table(
        title=f"Held-out conditions ({heldout['metric']}), N={args.heldout} held-out SQuAD passages, "
        f"{args.train} training passages x K={args.k}, {args.rounds} rounds, seed {args.seed}"
    )
    for column in ("condition", "n", "mean", "s.e.", "95% CI", "gain vs no adapter"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    for c in heldout["conditions"]:
        ci = f"[{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]" if c["ci95"] else "-"
        gain = c["gain"]
        table.add_row(
            c["label"],
            str(c["n"]),
            f"{c['mean']:.3f}" if c["mean"] is not None else "-",
            f"{c['stderr']:.3f}" if c["stderr"] is not None else "-",
            ci,
            ""
            if c["condition"] == "base" or gain["mean"] is None
            else f"{gain['mean']:+.3f} ± {gain['stderr'] or 0:.3f}",
        )
    out.print(table)
    rounds = Table(title="Training rounds: where the time goes (seconds)")
    for column in (
        "round",
        "wall",
        "generate",
        "train",
        "evaluate",
        "policy update",
        "mean reward",
        "winners",
    ):
        rounds.add_column(column, justify="right")
    phases = results.get("phase_seconds", {})
    for r in results["rounds"]:
        number = r["round"]
        s, sec = r["summary"], r["summary"]["seconds"]
        update = r.get("policy_update") or {}
        rounds.add_row(
            str(r["round"]),
            f"{phases.get(f'round-{number}', 0):.0f}",
            f"{sec['generate']:.0f}",
            f"{sec['train']:.0f}",
            f"{sec['evaluate']:.0f}",
            f"{phases.get(f'policy-r{number + 1}', 0):.0f}",
            f"{s['mean_reward']:+.3f}" if s["mean_reward"] is not None else "-",
            f"{len(update.get('winners', []))}/{s['passages']}",
        )
    out.print(rounds)
    out.print("phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    out.print(f"wall time {wall:.0f}s ({wall / 60:.1f} min), seed {args.seed}, run {detail['id']}")


if __name__ == "__main__":
    main()
