"""The UI's pages: runs (list, start, one run, cancel, delete), compare, adapters and services. Each reads the
public API through `client.api` and renders a template; a refusal of the API is shown with its message."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from prometheus_client.parser import text_string_to_metric_families

from ...report.plots import LineSeries, line_chart
from . import views
from .auth import FormUser, User
from .client import Api, ApiRefused, api
from .render import render

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 20
#: The top-level keys of a run request (`POST /v1/runs`): a file with any of them is a whole request, a file
#: without them is a run's config.
REQUEST_KEYS = {"name", "dataset", "passages", "limit", "heldout_passages", "teachers", "config"}
MAX_UPLOAD_BYTES = 8 * 1024 * 1024


def _refused(request: Request, exc: ApiRefused, title: str = "The coordinator refused") -> Response:
    return render(request, "message.html.j2", title=title, message=exc.message, code=exc.status)


@router.get("")
@router.get("/")
async def home(user: User) -> Response:
    return RedirectResponse("/ui/runs", status_code=303)


async def _headlines(client: Api, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's headline score, as its summary in `GET /v1/runs` has it: no read per run. Only a run with
    results whose summary lacks it (indexed by an older coordinator) costs one read of its detail
    (`GET /v1/runs/{id}`), after which the coordinator lists it too."""

    async def one(run: dict[str, Any]) -> tuple[str, Any]:
        if run.get("headline") is not None or run["status"] not in views.WITH_RESULTS:
            return run["id"], run.get("headline")
        try:
            detail = await client.get(f"/v1/runs/{run['id']}", events=0)
        except ApiRefused:
            return run["id"], None
        return run["id"], detail.get("headline")

    return dict(await asyncio.gather(*(one(run) for run in runs)))


@router.get("/runs")
async def runs_page(
    request: Request,
    user: User,
    status: Annotated[str, Query(max_length=40)] = "",
    page_token: Annotated[str, Query(max_length=1000)] = "",
) -> Response:
    """The runs, newest first, PAGE_SIZE at a time; `status` filters. htmx asks for the table alone."""
    async with api(request) as client:
        try:
            page = await client.get("/v1/runs", page_size=PAGE_SIZE, status=status, page_token=page_token)
        except ApiRefused as exc:
            return _refused(request, exc)
        headlines = await _headlines(client, page["runs"])
    context = {
        "runs": page["runs"],
        "next_page_token": page["next_page_token"],
        "status": status,
        "page_token": page_token,
        "headlines": headlines,
        "progress": {r["id"]: views.progress(r) for r in page["runs"]},
        "user": user,
    }
    template = "runs_table.html.j2" if request.headers.get("hx-request") else "runs.html.j2"
    return render(request, template, **context)


async def _read_upload(upload: UploadFile | None) -> Any:
    if upload is None or not upload.filename:
        return None
    raw = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{upload.filename} is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{upload.filename} is not JSON or YAML: {str(exc).splitlines()[0]}") from None


def run_body(form: dict[str, Any], config_file: Any, passages_file: Any) -> dict[str, Any]:
    """The body of POST /v1/runs from the start form: a config file (a whole request, or a run's config) when
    given, else the form's fields; the form's dataset (or passages file), name and limit fill what the file
    leaves out. The API validates the result (its 422 message is shown)."""
    if config_file is not None and not isinstance(config_file, dict):
        raise ValueError("the config file must hold a mapping (a run request or a run's config)")
    if config_file is not None and REQUEST_KEYS & set(config_file):
        body = dict(config_file)
    elif config_file is not None:
        body = {"config": config_file}
    else:
        config: dict[str, Any] = {
            "k": form["k"],
            "rounds": form["rounds"],
            "heldout": form["heldout"],
            "seed": form["seed"],
            "reward_metric": form["reward_metric"],
            "retention": form["retention"],
            "formats": [f.strip() for f in form["formats"].split(",") if f.strip()],
        }
        body = {"config": config}
    if "dataset" not in body and "passages" not in body:
        if passages_file is not None:
            body["passages"] = passages_file
        else:
            body["dataset"] = form["dataset"]
    if form["name"] and "name" not in body:
        body["name"] = form["name"]
    if form["limit"] and "limit" not in body:
        body["limit"] = form["limit"]
    return body


@router.post("/runs")
async def start_run(
    request: Request,
    user: FormUser,
    name: Annotated[str, Form(max_length=200)] = "",
    dataset: Annotated[str, Form(max_length=40)] = "demo",
    limit: Annotated[int | None, Form(ge=1)] = None,
    k: Annotated[int, Form(ge=1)] = 3,
    rounds: Annotated[int, Form(ge=0)] = 0,
    heldout: Annotated[int, Form(ge=0)] = 0,
    seed: Annotated[int, Form(ge=0)] = 0,
    reward_metric: Annotated[str, Form(max_length=40)] = "f1",
    formats: Annotated[str, Form(max_length=400)] = "implications",
    retention: Annotated[bool, Form()] = False,
    config_file: UploadFile | None = None,
    passages_file: UploadFile | None = None,
) -> Response:
    form = {
        "name": name,
        "dataset": dataset,
        "limit": limit,
        "k": k,
        "rounds": rounds,
        "heldout": heldout,
        "seed": seed,
        "reward_metric": reward_metric,
        "formats": formats,
        "retention": retention,
    }
    try:
        body = run_body(form, await _read_upload(config_file), await _read_upload(passages_file))
    except ValueError as exc:
        return render(request, "message.html.j2", title="Cannot start the run", message=str(exc), code=400)
    async with api(request) as client:
        try:
            created = await client.post("/v1/runs", body)
        except ApiRefused as exc:
            return _refused(request, exc, "Cannot start the run")
    return RedirectResponse(f"/ui/runs/{created['id']}", status_code=303)


@router.get("/runs/{run_id}")
async def run_page(request: Request, user: User, run_id: str) -> Response:
    async with api(request) as client:
        try:
            run = await client.get(f"/v1/runs/{run_id}", events=200)
        except ApiRefused as exc:
            return _refused(request, exc, "No such run")
    results = run.get("results")
    return render(
        request,
        "run.html.j2",
        run=run,
        user=user,
        progress=views.progress(run),
        headline=run.get("headline"),
        tables=sorted(views.tables(results)) if results else [],
        config_json=json.dumps(run["config"], indent=1, sort_keys=True),
    )


@router.get("/runs/{run_id}/csv/{table}.csv")
async def run_csv(request: Request, user: User, run_id: str, table: str) -> Response:
    async with api(request) as client:
        try:
            results = await client.get(f"/v1/runs/{run_id}/results")
        except ApiRefused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
    rows = views.tables(results).get(table)
    if rows is None:
        return PlainTextResponse(
            f"no table {table!r}: {', '.join(sorted(views.tables(results)))}", status_code=404
        )
    return Response(
        views.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{run_id}-{table}.csv"'},
    )


ACTIONS = {
    "cancel": (
        "Cancel",
        "It stops for good: its service calls are dropped (a continual run's streams each finish their step in "
        "flight first, shown as cancelling) and it cannot be resumed.",
    ),
    "delete": ("Delete", "Its records are removed from the store; the adapters it made stay."),
    "resume": ("Resume", "It continues from its last finished job."),
}


def _no_action(request: Request, action: str) -> Response:
    message = f"no action {action!r}: {', '.join(ACTIONS)}"
    return render(request, "message.html.j2", title="Not found", message=message, code=404)


@router.get("/runs/{run_id}/{action}")
async def confirm_page(request: Request, user: User, run_id: str, action: str) -> Response:
    if action not in ACTIONS:
        return _no_action(request, action)
    async with api(request) as client:
        try:
            run = await client.get(f"/v1/runs/{run_id}", events=0)
        except ApiRefused as exc:
            return _refused(request, exc, "No such run")
    verb, consequence = ACTIONS[action]
    return render(
        request, "confirm.html.j2", run=run, action=action, verb=verb, consequence=consequence, user=user
    )


@router.post("/runs/{run_id}/{action}")
async def act(request: Request, user: FormUser, run_id: str, action: str) -> Response:
    if action not in ACTIONS:
        return _no_action(request, action)
    async with api(request) as client:
        try:
            if action == "delete":
                await client.delete(f"/v1/runs/{run_id}")
            else:
                await client.post(f"/v1/runs/{run_id}/{action}")
        except ApiRefused as exc:
            return _refused(request, exc, f"Cannot {action} the run")
    return RedirectResponse("/ui/runs" if action == "delete" else f"/ui/runs/{run_id}", status_code=303)


@router.get("/compare")
async def compare_page(
    request: Request, user: User, run: Annotated[list[str] | None, Query()] = None
) -> Response:
    """Two or more runs side by side (at most 8); with fewer, a form to pick them."""
    run = list(dict.fromkeys(run or []))[:8]
    async with api(request) as client:
        if len(run) < 2:
            try:
                recent = await client.get("/v1/runs", page_size=50)
            except ApiRefused as exc:
                return _refused(request, exc)
            return render(request, "compare_pick.html.j2", runs=recent["runs"], chosen=run, user=user)
        try:
            runs = list(await asyncio.gather(*(client.get(f"/v1/runs/{r}", events=0) for r in run)))
        except ApiRefused as exc:
            return _refused(request, exc, "Cannot compare")
    labels, per_run = views.condition_table(runs)
    charts = [chart for chart in (_heldout_chart(runs), _reward_chart(runs)) if chart]
    return render(
        request,
        "compare.html.j2",
        runs=runs,
        headlines=[r.get("headline") for r in runs],
        config_rows=views.config_rows([r["config"] for r in runs]),
        labels=labels,
        per_run=per_run,
        charts=charts,
        user=user,
    )


def _label(run: dict[str, Any]) -> str:
    return run["name"] or run["id"]


def _heldout_chart(runs: list[dict[str, Any]]) -> str:
    """Each run's held-out score by round, one line per run ("" when no run has a held-out set)."""
    curves = [
        LineSeries(
            _label(r),
            [
                (point["round"], point.get("mean"), point.get("stderr"))
                for point in ((r.get("results") or {}).get("summary") or {}).get("heldout_by_round", [])
            ],
        )
        for r in runs
    ]
    return (
        line_chart("Held-out score by round", "round", "score", curves)
        if any(c.points for c in curves)
        else ""
    )


def _reward_chart(runs: list[dict[str, Any]]) -> str:
    """Each run's mean reward of the training self-edits by round, one line per run."""
    curves = [
        LineSeries(
            _label(r),
            [
                (rnd["round"], (rnd.get("summary") or {}).get("mean_reward"), None)
                for rnd in (r.get("results") or {}).get("rounds", [])
            ],
        )
        for r in runs
    ]
    return (
        line_chart("Mean reward by round", "round", "reward", curves) if any(c.points for c in curves) else ""
    )


@router.get("/adapters")
async def adapters_page(
    request: Request, user: User, after: Annotated[str, Query(max_length=300)] = ""
) -> Response:
    async with api(request) as client:
        try:
            listing = await client.get("/v1/adapters", limit=50, after=after)
        except ApiRefused as exc:
            return _refused(request, exc)
    return render(request, "adapters.html.j2", listing=listing, after=after, user=user)


@router.get("/adapters/{digest}")
async def adapter_page(request: Request, user: User, digest: str) -> Response:
    async with api(request) as client:
        try:
            adapter = await client.get(f"/v1/adapters/{digest}")
        except ApiRefused as exc:
            return _refused(request, exc, "No such adapter")
    origin = f"{request.url.scheme}://{request.headers.get('host', 'localhost')}"
    return render(
        request,
        "adapter.html.j2",
        adapter=adapter,
        digest=adapter["key"].rpartition("/")[2],
        origin=origin,
        meta_json=json.dumps(adapter.get("meta"), indent=1, sort_keys=True),
        config_json=json.dumps(adapter.get("config"), indent=1, sort_keys=True),
        user=user,
    )


def _metrics(text: str) -> dict[str, Any]:
    """The service-side numbers of GET /metrics: per service its calls in flight, errors and retries, and
    the trainers' slots."""
    values: dict[str, Any] = {"pending": {}, "errors": {}, "retries": {}, "jobs": {}, "runs": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "seal_pending_service_calls":
                values["pending"][labels["service"]] = int(value)
            elif sample.name in ("seal_service_call_errors_total", "seal_service_call_retries_total"):
                kind = "errors" if "errors" in sample.name else "retries"
                values[kind][labels["service"]] = values[kind].get(labels["service"], 0) + int(value)
            elif sample.name == "seal_jobs_in_progress":
                values["jobs"][labels["kind"]] = int(value)
            elif sample.name == "seal_runs":
                values["runs"][labels["status"]] = int(value)
            elif sample.name in (
                "seal_trainer_slots",
                "seal_trainer_slots_busy",
                "seal_pending_training_jobs",
            ):
                values[sample.name] = int(value)
    return values


@router.get("/services")
async def services_page(request: Request, user: User) -> Response:
    """What the coordinator sees: its health, every service as it answered just now (GET /v1/services: its
    model, capacity and load, or why it did not answer), and the calls' queues and failures (/metrics)."""
    async with api(request) as client:
        try:
            health, metrics, services = await asyncio.gather(
                client.http.get("/healthz"), client.text("/metrics"), client.get("/v1/services")
            )
        except ApiRefused as exc:
            return _refused(request, exc)
    return render(
        request,
        "services.html.j2",
        health=health.json(),
        health_code=health.status_code,
        metrics=_metrics(metrics),
        services=services,
        user=user,
    )
