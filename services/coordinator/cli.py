"""`seal-lab`: the command-line client of the coordinator (httpx). The commands that run models on this
machine (`demo`, `prepare-model`) live in `local.py` and need the `model` extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from . import local
from .api_client import (
    CoordinatorError,
    cancel_run,
    check,
    connect,
    console,
    delete_run,
    fail,
    finish,
    follow_run,
    iter_runs,
    out,
    save_report,
    start_run,
)

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="SEAL inner-loop runs on a seal-lab stack."
)

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="SEAL_COORDINATOR_URL",
        help="coordinator base URL; the token comes from SEAL_AUTH_TOKEN (or SEAL_AUTH_TOKEN_FILE), "
        "the CA for https:// from SEAL_TLS_CA_FILE",
    ),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def read_dataset(path: Path) -> list[Any]:
    """The file must be JSON (a list in SEAL format); the coordinator validates each record."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoordinatorError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CoordinatorError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(raw, list):
        raise CoordinatorError(f"{path}: expected a JSON list of passages, found {type(raw).__name__}")
    return raw


@app.command()
def run(
    dataset: Annotated[
        Path | None, typer.Option(help="SEAL-format JSON file; default: the built-in demo set")
    ] = None,
    k: Annotated[int, typer.Option(help="self-edits per passage")] = 3,
    formats: Annotated[
        str, typer.Option(help="comma-separated: implications,rewrite,self-qa")
    ] = "implications",
    seed: int = 0,
    limit: Annotated[int | None, typer.Option(help="only the first N passages")] = None,
    temperature: float = 0.7,
    max_new_tokens: int = 192,
    eval_max_new_tokens: Annotated[int, typer.Option(help="length of an answer to a question")] = 32,
    reward_metric: str = "f1",
    rounds: Annotated[int, typer.Option(help="ReST-EM rounds (policy updates); 0 = one inner loop")] = 0,
    heldout: Annotated[int, typer.Option(help="hold out N of the passages (seeded) for the conditions")] = 0,
    heldout_dataset: Annotated[
        Path | None, typer.Option(help="held-out passages from their own SEAL-format file")
    ] = None,
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=FILE: imported self-edits in SEAL's format (a `completions` list per passage)"
        ),
    ] = None,
    directive_search: Annotated[
        str,
        typer.Option(
            help="directives to also try per self-edit, e.g. 'epochs=2;epochs=8,learning_rate=1e-3'"
        ),
    ] = "",
    retention: Annotated[bool, typer.Option(help="score every adapter on the retention set")] = True,
    retention_questions: Annotated[
        int, typer.Option(help="only this many retention questions, evenly spaced (0 = all 64)")
    ] = 0,
    specificity_control: Annotated[
        bool, typer.Option(help="also ask each held-out adapter the next held-out passage's questions")
    ] = True,
    min_reward: Annotated[
        float, typer.Option(help="a passage's best self-edit trains the policy if its reward exceeds this")
    ] = 0.0,
    report: Annotated[
        Path | None, typer.Option(help="save the HTML report here when the run finishes")
    ] = None,
    name: str = "",
    follow: bool = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the machine-readable result")] = False,
    url: Url = DEFAULT_URL,
) -> None:
    """Start a run (one inner loop, or ReST-EM rounds with held-out conditions) and follow it to the results."""
    try:
        body: dict[str, Any] = {
            "name": name,
            "limit": limit,
            "config": {
                "k": k,
                "formats": [f.strip() for f in formats.split(",") if f.strip()],
                "seed": seed,
                "temperature": temperature,
                "max_new_tokens": max_new_tokens,
                "eval_max_new_tokens": eval_max_new_tokens,
                "reward_metric": reward_metric,
                "rounds": rounds,
                "heldout": heldout,
                "retention": retention,
                "retention_questions": retention_questions,
                "specificity_control": specificity_control,
                "min_reward": min_reward,
                "directive_search": parse_directive_search(directive_search),
            },
            "teachers": [read_teacher(spec) for spec in teacher or []],
        }
        if dataset is None:
            body["dataset"] = "demo"
        else:
            body["passages"] = read_dataset(dataset)[:limit]  # every passage sent counts against the cap
        if heldout_dataset is not None:
            body["heldout_passages"] = read_dataset(heldout_dataset)
        with connect(url, timeout=60) as client:
            created = start_run(client, body)
            console.print(
                f"run {created['id']}: {created['passages']} passages, {created['jobs_total']} jobs"
            )
            if not follow:
                out.print(created["id"])
                return
            try:
                detail = follow_run(client, created["id"], quiet=as_json)
            except KeyboardInterrupt:  # stop following, not the run: it goes on on the coordinator
                console.print(
                    f"stopped following run {created['id']}; it goes on. "
                    f"Follow it again: seal-lab follow {created['id']}  Stop it: seal-lab cancel {created['id']}"
                )
                raise typer.Exit(130) from None
            if report is not None:
                save_report(client, created["id"], report)
            finish(detail, as_json)
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))


def parse_directive_search(text: str) -> list[dict[str, float]]:
    """'epochs=2;epochs=8,learning_rate=1e-3' -> [{"epochs": 2}, {"epochs": 8, "learning_rate": 0.001}]."""
    trials = []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        trial: dict[str, float] = {}
        for pair in filter(None, (p.strip() for p in chunk.split(","))):
            key, sep, value = pair.partition("=")
            try:
                trial[key.strip()] = float(value)
            except ValueError:
                raise CoordinatorError(f"--directive-search: {pair!r} is not FIELD=NUMBER") from None
            if not sep or not key.strip():
                raise CoordinatorError(f"--directive-search: {pair!r} is not FIELD=NUMBER")
        trials.append({k: int(v) if v.is_integer() and k != "learning_rate" else v for k, v in trial.items()})
    return trials


def read_teacher(spec: str) -> dict[str, Any]:
    """NAME=FILE, FILE in SEAL's self-edit format; only the fields the coordinator needs are sent."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise CoordinatorError(f"--teacher {spec!r}: expected NAME=FILE")
    entries = read_dataset(Path(path))
    passages = [
        {"context": e.get("context"), "completions": e.get("completions")}
        for e in entries
        if isinstance(e, dict)
    ]
    return {"name": name, "passages": passages}


@app.command("report")
def report_command(
    run_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write")] = Path("report.html"),
    results_json: Annotated[
        Path | None, typer.Option("--json", help="also save the results JSON here")
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Save a run's HTML report (plots, conditions table, examples) and optionally its results JSON."""
    try:
        with connect(url, timeout=60) as client:
            save_report(client, run_id, output)
            if results_json is not None:
                results = check(client.get(f"/v1/runs/{run_id}/results"))
                results_json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))


@app.command()
def status(
    run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False, url: Url = DEFAULT_URL
) -> None:
    """Show a run: status, and results when finished."""
    try:
        with connect(url, timeout=30) as client:
            detail = check(client.get(f"/v1/runs/{run_id}"))
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))
    if not as_json:
        console.print(
            f"{detail['id']}: {detail['status']} {detail['jobs_done']}/{detail['jobs_total']} jobs, "
            f"{detail['retries']} retries {detail['error']}"
        )
    finish(detail, as_json)


@app.command()
def follow(
    run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False, url: Url = DEFAULT_URL
) -> None:
    """Follow a running run with a progress bar."""
    try:
        with connect(url, timeout=60) as client:
            finish(follow_run(client, run_id, quiet=as_json), as_json)
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))


@app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="only runs with this status, e.g. failed")] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """List the coordinator's runs, newest first."""
    try:
        with connect(url, timeout=30) as client:
            runs = list(iter_runs(client, status))
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))
    for r in runs:
        out.print(f"{r['id']}  {r['status']:<22} {r['jobs_done']}/{r['jobs_total']} jobs  {r['name']}")


@app.command()
def resume(run_id: str, url: Url = DEFAULT_URL) -> None:
    """Resume a failed run from its last finished job."""
    try:
        with connect(url, timeout=30) as client:
            check(client.post(f"/v1/runs/{run_id}/resume"))
            finish(follow_run(client, run_id), False)
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))


@app.command()
def cancel(run_id: str, url: Url = DEFAULT_URL) -> None:
    """Stop a run for good: its jobs on the services are cancelled and no coordinator resumes it."""
    try:
        with connect(url, timeout=30) as client:
            summary = cancel_run(client, run_id)
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))
    out.print(
        f"{summary['id']}: {summary['status']} after {summary['jobs_done']}/{summary['jobs_total']} jobs"
    )


@app.command()
def delete(run_id: str, url: Url = DEFAULT_URL) -> None:
    """Remove a finished run's records (its adapters and datasets stay); cancel a running one first."""
    try:
        with connect(url, timeout=30) as client:
            delete_run(client, run_id)
    except (CoordinatorError, httpx.TransportError) as exc:
        fail(str(exc))
    out.print(f"{run_id}: deleted")


# The commands that need the `model` extra (each says so when it is missing).
app.command("prepare-model")(local.prepare_model)
app.command()(local.demo)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
