"""The `seal-lab` commands that run models on this machine: `demo` (the four services as local processes) and
`prepare-model` (the base model converted once into the cache). They need the `model` extra; without it they
say which packages are missing instead of failing inside a service."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from seal_lab.runtime import MODEL_EXTRA_HINT, missing_model_packages

from .api_client import (
    console,
    fail,
    finish,
    follow_run,
    out,
    save_report,
    session,
    start_run,
)


def require_model_extra(command: str) -> None:
    missing = missing_model_packages()
    if missing:
        needs = ", ".join(missing)
        fail(f"`seal-lab {command}` runs models on this machine and needs {needs}: {MODEL_EXTRA_HINT}")


def prepare_model() -> None:
    """Convert the configured base model once into the cache (the embedded GGUF -> safetensors).
    Needs the model extra."""
    require_model_extra("prepare-model")
    from seal_lab.logging import configure_logging
    from seal_lab.model.base import prepare_model as prepare
    from seal_lab.settings import ModelSettings

    configure_logging()
    out.print(prepare(ModelSettings()))


def demo(
    k: Annotated[int, typer.Option(help="self-edits per passage")] = 3,
    limit: Annotated[int | None, typer.Option(help="only the first N demo passages")] = None,
    workdir: Annotated[Path, typer.Option(help="store, model cache and logs")] = Path(".seal"),
    rounds: Annotated[int, typer.Option(help="ReST-EM rounds (policy updates); 0 = one inner loop")] = 0,
    heldout: Annotated[int, typer.Option(help="hold out N demo passages for the conditions table")] = 0,
    retention_questions: Annotated[
        int, typer.Option(help="retention questions per adapter, evenly spaced (0 = all 64)")
    ] = 16,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start the four services on loopback, run the demo set, print the table, save the report, stop them.
    Needs the model extra."""
    require_model_extra("demo")
    from seal_lab.security import security_from_environment

    from .launcher import LocalStack

    # The services inherit this environment: a SEAL_AUTH_TOKEN or SEAL_TLS_* set here applies to them too.
    security = security_from_environment("seal-lab")

    started = time.perf_counter()
    config = {"k": k, "rounds": rounds, "heldout": heldout, "retention_questions": retention_questions}
    with (
        LocalStack(workdir, console, security=security) as stack,
        session(stack.coordinator_url, timeout=60, security=security) as client,
    ):
        created = start_run(client, {"dataset": "demo", "limit": limit, "config": config, "name": "demo"})
        console.print(f"run {created['id']}: {created['passages']} passages, {created['jobs_total']} jobs")
        detail = follow_run(client, created["id"], quiet=as_json)
        if detail.get("results"):
            save_report(client, created["id"], workdir / f"report-{created['id']}.html")
    console.print(f"demo finished in {time.perf_counter() - started:.0f}s; store and logs in {workdir}/")
    finish(detail, as_json)
