"""`seal-lab`: the command-line client of the coordinator (httpx). The commands that run models on this
machine (`demo`, `prepare-model`) live in `demo.py`, `up` and `down` in `updown.py`; they need the `model`
extra (`down` does not)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import load_passages, passages_to_json

from . import adapters, demo, strategies, updown
from .api_client import (
    CoordinatorError,
    cancel_run,
    check,
    console,
    delete_run,
    finish,
    follow_run,
    iter_runs,
    out,
    save_report,
    session,
    start_run,
)
from .display import print_json
from .runbody import (
    CONFIG_OPTIONS,
    RUN_BODY_PATHS,
    config_value,
    merge_options,
    parse_teacher_spec,
    read_config,
    with_config_options,
)

# add_completion: `seal-lab --install-completion` (bash, zsh, fish, PowerShell) completes commands and options.
app = typer.Typer(no_args_is_help=True, help="SEAL inner-loop runs on a seal-lab stack.")
Json = Annotated[bool, typer.Option("--json", help="print machine-readable JSON (only that) on stdout")]

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


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """A passages file in SEAL's format, SQuAD v1.1 JSON or squad JSON lines (`seal_lab.formats.passages` tells them
    apart and checks every record here, naming the record or line), sent as SEAL-format records."""
    try:
        return passages_to_json(load_passages(path))
    except InvalidArgument as exc:
        raise CoordinatorError(exc.message) from None


def read_json_list(path: Path) -> list[Any]:
    """The file must be a JSON list (teachers' self-edits); the coordinator validates each entry."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoordinatorError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CoordinatorError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(raw, list):
        raise CoordinatorError(f"{path}: expected a JSON list of passages, found {type(raw).__name__}")
    return raw


#: Where an option's value comes from when it was not typed: then a config file's value stands. (By name:
#: typer ships its own copy of click, whose ParameterSource is not `click.core`'s.)
_NOT_GIVEN = ("DEFAULT", "DEFAULT_MAP")


@app.command()
@with_config_options()
def run(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="the run as a file (JSON or YAML): the body of POST /v1/runs; options given here override it",
        ),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="passages: SEAL-format JSON, SQuAD v1.1 JSON or squad JSON lines; default: the demo set"
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N passages")] = None,
    heldout_dataset: Annotated[
        Path | None, typer.Option(help="held-out passages from their own file (any --dataset format)")
    ] = None,
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=FILE or NAME:FORMAT[:INDEX]=FILE: imported self-edits in SEAL's format (a `completions` "
            "list per passage), split as FORMAT (implications), training on completion INDEX (0)"
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="save the HTML report here when the run finishes")
    ] = None,
    name: str = "",
    follow: bool = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the machine-readable result")] = False,
    continual: Annotated[
        bool,
        typer.Option(
            "--continual", help="a continual run: the passages as one stream (--mode continual; see --order)"
        ),
    ] = False,
    url: Url = DEFAULT_URL,
    **config: Any,  # one option per field of RunConfig (runbody.with_config_options)
) -> None:
    """Start a run (one inner loop, ReST-EM rounds with held-out conditions, or a continual stream) and follow
    it to the results."""
    with session(url, timeout=60) as client:  # no request yet: a bad option or file fails first
        body = run_request(ctx, config_file)
        if continual:
            body.setdefault("config", {})["mode"] = "continual"
        created = start_run(client, body)
        console.print(f"run {created['id']}: {created['passages']} passages, {created['jobs_total']} jobs")
        if not follow:
            if as_json:
                print_json(out, created)
            else:
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


def run_request(ctx: typer.Context, config_file: Path | None) -> dict[str, Any]:
    """The body of POST /v1/runs: the config file's, with the options typed on the command line over it;
    without a file, every option (their defaults are the coordinator's)."""
    given = {
        option: ctx.params[option]
        for option in RUN_BODY_PATHS
        if config_file is None or _source(ctx, option) not in _NOT_GIVEN
    }
    dataset, heldout_dataset = given.pop("dataset", None), given.pop("heldout_dataset", None)
    options: dict[str, Any] = {}
    for option, value in given.items():
        if option in CONFIG_OPTIONS:
            value = config_value(option, value)
        elif option == "teacher":
            value = [read_teacher(spec) for spec in value or []]
        if value is not None or option == "limit":
            options[option] = value
    body = merge_options(read_config(config_file) if config_file else {}, options)
    if dataset is not None:
        body.pop("dataset", None)
        limit = body.get("limit")  # the coordinator judges a bad one; here it only cuts what is sent
        cut = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
        body["passages"] = read_dataset(dataset)[:cut]  # every passage sent counts against the cap
    elif "passages" not in body and "dataset" not in body:
        body["dataset"] = "demo"
    if heldout_dataset is not None:
        body["heldout_passages"] = read_dataset(heldout_dataset)
    return body


def _source(ctx: typer.Context, option: str) -> str:
    source = ctx.get_parameter_source(option)
    return "DEFAULT" if source is None else source.name


def read_teacher(spec: str) -> dict[str, Any]:
    """NAME[:FORMAT[:INDEX]]=FILE, FILE in SEAL's self-edit format; only the fields the coordinator needs are sent."""
    teacher, path = parse_teacher_spec(spec)
    entries = read_json_list(path)
    teacher["passages"] = [
        {"context": e.get("context"), "completions": e.get("completions")}
        for e in entries
        if isinstance(e, dict)
    ]
    return teacher


@app.command("report")
def report_command(
    run_id: str,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="HTML file to write (default report.html, none with --json)"),
    ] = None,
    results_file: Annotated[
        Path | None, typer.Option("--results", help="also save the results JSON here")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the results JSON on stdout (only that)")
    ] = False,
    url: Url = DEFAULT_URL,
) -> None:
    """Save a run's HTML report (plots, conditions table, examples); its results JSON too, or print it."""
    if output is None and not as_json:
        output = Path("report.html")
    with session(url, timeout=60) as client:
        if output is not None:
            save_report(client, run_id, output)
        if results_file is not None or as_json:
            results = check(client.get(f"/v1/runs/{run_id}/results"))
        if results_file is not None:
            results_file.write_text(json.dumps(results, indent=1), encoding="utf-8")
        if as_json:
            print_json(out, results)


@app.command()
def status(run_id: str, as_json: Json = False, url: Url = DEFAULT_URL) -> None:
    """Show a run: status, and results when finished."""
    with session(url, timeout=30) as client:
        detail = check(client.get(f"/v1/runs/{run_id}"))
    if not as_json:
        console.print(
            f"{detail['id']}: {detail['status']} {detail['jobs_done']}/{detail['jobs_total']} jobs, "
            f"{detail['retries']} retries {detail['error']}"
        )
    finish(detail, as_json)


@app.command()
def follow(run_id: str, as_json: Json = False, url: Url = DEFAULT_URL) -> None:
    """Follow a running run: a progress bar on a terminal, a line per finished job otherwise."""
    with session(url, timeout=60) as client:
        finish(follow_run(client, run_id, quiet=as_json), as_json)


@app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="only runs with this status, e.g. failed")] = None,
    as_json: Json = False,
    url: Url = DEFAULT_URL,
) -> None:
    """List the coordinator's runs, newest first."""
    with session(url, timeout=30) as client:
        runs = list(iter_runs(client, status))
    if as_json:
        print_json(out, runs)
        return
    for r in runs:
        out.print(f"{r['id']}  {r['status']:<22} {r['jobs_done']}/{r['jobs_total']} jobs  {r['name']}")


@app.command()
def resume(run_id: str, as_json: Json = False, url: Url = DEFAULT_URL) -> None:
    """Resume a failed run from its last finished job."""
    with session(url, timeout=30) as client:
        check(client.post(f"/v1/runs/{run_id}/resume"))
        finish(follow_run(client, run_id, quiet=as_json), as_json)


@app.command()
def cancel(run_id: str, as_json: Json = False, url: Url = DEFAULT_URL) -> None:
    """Stop a run for good: its jobs on the services are cancelled (a continual run's streams each finish their
    step in flight first: "cancelling" until then) and no coordinator resumes it."""
    with session(url, timeout=30) as client:
        summary = cancel_run(client, run_id)
    if as_json:
        print_json(out, summary)
        return
    out.print(
        f"{summary['id']}: {summary['status']} after {summary['jobs_done']}/{summary['jobs_total']} jobs"
    )
    if summary["status"] == "cancelling":
        out.print(
            f"its work in flight finishes first; `seal-lab follow {summary['id']}` shows when it has stopped"
        )


@app.command()
def delete(run_id: str, url: Url = DEFAULT_URL) -> None:
    """Remove a finished run's records (its adapters and datasets stay); cancel a running one first."""
    with session(url, timeout=30) as client:
        delete_run(client, run_id)
    out.print(f"{run_id}: deleted")


# The commands that need the `model` extra (each says so when it is missing).
app.command("prepare-model")(demo.prepare_model)
app.command()(demo.demo)
app.command()(updown.up)
app.command()(updown.down)
app.add_typer(adapters.app, name="adapters")
app.add_typer(strategies.app, name="strategies")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
