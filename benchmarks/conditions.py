"""Benchmark: SEAL's conditions table on SQuAD passages, with ReST-EM rounds, on the embedded model.

Held-out passages are drawn (seeded) from the 200 passages that SEAL's self-edit files cover, so that
GPT-4.1 (`selfedits_gpt4_1_val.json`) and SEAL's trained 7B model (`selfedits_iter2_val.json`) can serve as
teachers; training passages come from the rest of `squad_val.json` (disjoint by passage text).

    .venv/bin/python benchmarks/conditions.py                   # N = 40: self-edits vs passage, 2 cores
    .venv/bin/python benchmarks/conditions.py --preset gpu      # N = 200 (all of SEAL's), K = 5, 2 rounds, teachers
    .venv/bin/python benchmarks/conditions.py --heldout 4 --train 2 --k 2 --rounds 1   # a quick look

Starts the four services (LocalStack) unless --coordinator-url (or --url) points at a running coordinator:
then it only posts the run and follows it, with the token from SEAL_AUTH_TOKEN or SEAL_AUTH_TOKEN_FILE (and
the TLS files from SEAL_TLS_*), as the Kubernetes Job deploy/k8s/jobs/bench-conditions.yaml runs it:

    python benchmarks/conditions.py --coordinator-url http://seal-coordinator:8000 --data-dir /data --out /results

Prints the table with
N, seeds and wall time, every metric's gain, the training steps of every condition, retention and the
specificity control, then each planned comparison with its paired tests and a verdict in words, and the
minimum detectable effect at this N. Writes `conditions_<run id>.json` and `conditions_<run id>.html` (a
rerun never overwrites an earlier one).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

from seal_lab.security import Security, security_from_environment
from services.coordinator.cli.api_client import connect

T = TypeVar("T")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seal"
TEACHERS = {"gpt4_1": "selfedits_gpt4_1_val.json", "seal_iter2": "selfedits_iter2_val.json"}
#: Sizes: "cpu" for two cores in about an hour: SEAL's primary comparison (round-0 self-edits vs the passage)
#: on 40 held-out passages, retention on the first 10 of them (on two cores the trainer, at about 40 s per
#: adapter, sets the pace: every further condition adds about 27 minutes); "gpu" for every one of SEAL's 200
#: covered passages with two ReST-EM rounds and both teachers on a GPU box.
PRESETS: dict[str, dict[str, int]] = {
    "cpu": {
        "heldout": 40,
        "train": 1,
        "k": 2,
        "rounds": 0,
        "reward_seeds": 1,
        "retention_heldout": 10,
        "teachers": 0,
    },
    "gpu": {
        "heldout": 200,
        "train": 50,
        "k": 5,
        "rounds": 2,
        "reward_seeds": 3,
        "retention_heldout": 0,
        "teachers": 1,
    },
}


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
        if detail["status"] in ("succeeded", "completed_with_errors", "failed", "cancelled"):
            return detail
        time.sleep(5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes; flags override")
    parser.add_argument("--heldout", type=int, default=None, help="N held-out passages")
    parser.add_argument("--train", type=int, default=None, help="training passages per round")
    parser.add_argument("--k", type=int, default=None, help="self-edits per training passage")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--reward-seeds", type=int, default=None, help="training seeds per reward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--retention", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--retention-heldout",
        type=int,
        default=None,
        help="retention on the first N held-out passages (0 = all)",
    )
    parser.add_argument(
        "--teachers", action=argparse.BooleanOptionalAction, default=None, help="GPT-4.1 and SEAL-7B rows"
    )
    return add_stack_arguments(parser)


def add_stack_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every benchmark that posts runs shares: the data, the coordinator (or a local stack's
    folder) and the folder of its results."""
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--coordinator-url",
        "--url",
        dest="url",
        default="",
        help="a running coordinator (its token from SEAL_AUTH_TOKEN); default: start a local stack",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="the local stack's store and logs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the results")
    return parser


def with_preset(args: argparse.Namespace, presets: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """Fill every option left unset (None) from the chosen preset; an option given on the command line wins."""
    for name, value in presets[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = with_preset(build_parser().parse_args(argv), PRESETS)
    console = Console(stderr=True)
    if not (args.data_dir / "squad_val.json").exists():
        console.print(f"[red]no squad_val.json in {args.data_dir}[/red] (pass --data-dir)")
        sys.exit(2)
    train, heldout, teachers = choose_passages(args.data_dir, args.heldout, args.train, args.seed)
    body = {
        "name": f"conditions N={args.heldout}",
        "passages": train,
        "heldout_passages": heldout,
        "teachers": teachers if args.teachers else [],
        "config": {
            "k": args.k,
            "rounds": args.rounds,
            "seed": args.seed,
            "max_new_tokens": args.max_new_tokens,
            "retention": args.retention,
            "retention_heldout": args.retention_heldout,
            "reward_seeds": args.reward_seeds,
            "question_topic": True,  # SEAL's question text, as its table was measured
        },
    }
    started = time.perf_counter()
    # The token and TLS files of this machine (an entry point: from the environment); none set, none sent.
    security = security_from_environment("conditions.py")
    detail = on_coordinator(
        args,
        "seal-conditions-",
        console,
        security,
        lambda url: _run(url, body, console, report_dir=args.out, security=security),
    )
    wall = time.perf_counter() - started
    if detail["status"] == "failed":
        console.print(f"[red]run failed: {detail['error']}")
        sys.exit(1)
    report(detail, args, wall, console)


def on_coordinator(
    args: argparse.Namespace,
    prefix: str,
    console: Console,
    security: Security,
    work: Callable[[str], T],
    extra_env: dict[str, str] | None = None,
) -> T:
    """`work(url)` on the coordinator at --coordinator-url, or else on a local stack of the four services
    started for it in --workdir (a fresh folder named `prefix...` without one), kept afterwards: its store
    holds every self-edit, adapter and job record of the runs. `extra_env`: the local stack's own settings."""
    if args.url:
        return work(args.url)
    from services.coordinator.cli.launcher import LocalStack

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    console.print(f"store and logs in {workdir}")
    with LocalStack(workdir, console, extra_env=extra_env, security=security) as stack:
        return work(stack.coordinator_url)


def post_run(client: httpx.Client, body: dict[str, Any], console: Console) -> str:
    """Start a run; its id. A refusal (bad input, a budget) ends the benchmark with the coordinator's answer."""
    created = client.post("/v1/runs", json=body)
    if created.status_code >= 400:
        console.print(f"[red]{created.status_code}: {created.text}")
        sys.exit(2)
    run_id: str = created.json()["id"]
    console.print(f"run {run_id}: {created.json()['jobs_total']} jobs")
    return run_id


def _run(
    url: str, body: dict, console: Console, report_dir: Path | None = None, security: Security | None = None
) -> dict[str, Any]:
    with connect(url, 120, security or Security()) as client:
        run_id = post_run(client, body, console)
        detail = _follow(client, run_id, console)
        if detail["results"] and report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            # Named by run id: a rerun never overwrites an earlier result.
            (report_dir / f"conditions_{run_id}.html").write_text(
                client.get(f"/v1/runs/{run_id}/report").text
            )
            (report_dir / f"conditions_{run_id}.json").write_text(json.dumps(detail["results"], indent=1))
            console.print(f"wrote {report_dir}/conditions_{run_id}.json and .html")
        return detail


def report(detail: dict[str, Any], args: argparse.Namespace, wall: float, console: Console) -> None:
    results = detail["results"]
    heldout = results["heldout"]
    metric = heldout["metric"]
    out = Console(width=170)
    table = Table(
        title=f"Held-out conditions, N={args.heldout} held-out SQuAD passages, {args.train} training passages "
        f"x K={args.k}, {args.rounds} rounds, seed {args.seed}; gains over no adapter, ± s.e."
    )
    for column in (
        "condition",
        "n",
        metric,
        "gain",
        "contains gain",
        "recall gain",
        "log-lik gain",
        "steps",
        "tokens",
        "retention (n)",
        "control gain",
    ):
        table.add_column(column, justify="left" if column == "condition" else "right")
    metrics = heldout["metrics"]
    for c in heldout["conditions"]:
        row = metrics[c["condition"]]
        base = c["condition"] == "base"
        table.add_row(
            c["label"],
            str(c["n"]),
            _num(c["mean"]),
            "" if base else _gain(row[metric]["gain"]),
            "" if base else _gain(row["contains"]["gain"]),
            "" if base else _gain(row["token_recall"]["gain"]),
            "" if base else _gain(row["gold_logprob"]["gain"]),
            "" if base else _num(c["steps"]["mean"], ".0f"),
            "" if base else _num(c["tokens"], ".0f"),
            f"{_num(c['retention'])} ({c.get('retention_n', 0)})",
            "" if base else _gain(c["control_gain"]),
        )
    out.print(table)
    comparisons = heldout["comparisons"]
    power = heldout["power"]
    out.print(
        f"[bold]Planned comparisons[/bold] (paired by passage; primary metric {metric}; Holm over "
        f"{len(comparisons['planned'])} comparisons):"
    )
    for test in comparisons["by_metric"][metric]:
        out.print(f"  {test['a']} vs {test['b']}: {test['verdict']}")
    for other in ("contains", "gold_logprob"):
        if other != metric:
            out.print(f"  [dim]on {other}:[/dim]")
            for test in comparisons["by_metric"][other]:
                out.print(f"  [dim]{test['a']} vs {test['b']}: {test['verdict']}[/dim]")
    if power["mde"] is not None:
        out.print(
            f"Minimum detectable effect at N={power['n']} (paired t, alpha 0.05, power 0.8) on {metric}: "
            f"{power['mde']:.3f} (SD of paired differences {power['sd_of_differences']:.3f}); "
            + ("within" if power["mde"] <= MDE_TARGET else "above")
            + f" the target of {MDE_TARGET}"
        )
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
    variance = results["rounds"][0]["summary"].get("reward_variance")
    if variance and variance.get("icc") is not None:
        out.print(
            f"reward variance: {variance['icc']:.0%} belongs to the self-edit, the rest is seed noise "
            f"({variance['n_groups']} self-edits x {variance['mean_group_size']} seeds)"
        )
    out.print("phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    out.print(f"wall time {wall:.0f}s ({wall / 60:.1f} min), seed {args.seed}, run {detail['id']}")


#: Issue 10's bar: at its N the benchmark must be able to detect an effect this large on the primary metric.
MDE_TARGET = 0.05


def _num(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _gain(described: dict[str, Any]) -> str:
    if described.get("mean") is None:
        return "-"
    return f"{described['mean']:+.3f} ± {described['stderr'] or 0:.3f}"


if __name__ == "__main__":
    main()
