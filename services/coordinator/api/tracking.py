"""MLflow tracking (SEAL_MLFLOW_TRACKING_URI, the `mlflow` extra): every run of this coordinator becomes an
MLflow run, written while it goes.

- `RunTracker` (on the event loop) reads the runs through the public HTTP API, in process as the web UI does,
  every `poll_seconds`, and turns what is new into writes: the MLflow run with its tags (`seal.run_id`,
  `seal.base_model`, `seal.git_commit`) and params (the run's config, flattened); per job event a metric
  (`train.final_loss`, `evaluate.f1`, ...: the nth value of a metric is its step n); progress (`progress.jobs_done`, ...);
  once finished, per round (`round.mean_reward`, ... step = round) and the held-out conditions, and the
  artifacts: the results JSON, the HTML report and the adapters' keys with their cards.
- `MlflowWriter` (a thread of its own) sends the writes to the server in order. While the server is down it
  retries the oldest with capped exponential backoff: nothing is dropped, and neither the event loop nor a
  run ever waits for it. A restarted coordinator finds its MLflow runs again by their `seal.run_id` tag, and
  skips the events (`seal.events_seq`) and the finished runs (`seal.complete`) already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..run.jobs import JobName
from .ui.client import Api, ApiRefused
from .ui.views import FINISHED, flatten

log = logging.getLogger(__name__)

#: MLflow's limits: a param value's length, and how many params / metrics one log_batch call takes.
MAX_PARAM_CHARS = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
#: The MLflow status a finished run ends with.
END_STATUS = {
    "succeeded": "FINISHED",
    "completed_with_errors": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}
NOT_INSTALLED = "SEAL_MLFLOW_TRACKING_URI is set but MLflow is not installed: pip install 'seal-lab[mlflow]'"


@dataclass(frozen=True)
class Write:
    """One write to MLflow for one seal-lab run: start, params, metrics, tags, artifact or end."""

    run_id: str
    kind: str
    data: Any


def mlflow_client(tracking_uri: str) -> Any:
    """MLflow's client for `tracking_uri` (RuntimeError naming the extra when MLflow is not installed)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RuntimeError(NOT_INSTALLED) from None
    return MlflowClient(tracking_uri=tracking_uri)


class MlflowWriter:
    """Sends writes to MLflow from a thread of its own, in order, retrying the oldest until it goes through."""

    def __init__(
        self,
        client: Callable[[], Any],
        experiment: str,
        max_backoff_seconds: float,
        initial_backoff_seconds: float = 1.0,
    ) -> None:
        self._client_factory = client
        self._client: Any = None
        self.experiment = experiment
        self.max_backoff = max_backoff_seconds
        self.initial_backoff = min(initial_backoff_seconds, max_backoff_seconds)
        self._pending: deque[Write] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._deadline: float | None = None
        self._experiment_id: str | None = None
        #: seal-lab run id -> MLflow run id; the last event seq written; runs already complete in MLflow.
        self.ids: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self._complete: set[str] = set()
        self.failures = 0
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="mlflow-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, write: Write) -> None:
        """Queue a write; returns at once."""
        with self._cond:
            self._pending.append(write)
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._busy

    def stop(self, flush_seconds: float) -> None:
        """Keep writing for up to `flush_seconds`, then stop (what is left is lost with the process)."""
        with self._cond:
            self._deadline = time.monotonic() + flush_seconds
            self._cond.notify()
        self._thread.join(flush_seconds + 5)

    def _stopping(self) -> bool:
        return self._deadline is not None and (not self._pending or time.monotonic() >= self._deadline)

    def _loop(self) -> None:
        backoff = self.initial_backoff
        outage = False
        while True:
            with self._cond:
                while not self._pending and self._deadline is None:
                    self._cond.wait()
                if self._stopping():
                    return
                write = self._pending[0]
                self._busy = True
            try:
                self._apply(write)
            except Exception as exc:  # any failure of the server or the network: retry
                self.failures += 1
                if not outage:
                    log.warning("MLflow tracking server unavailable (%s); retrying, nothing is dropped", exc)
                outage = True
                with self._cond:
                    self._busy = False
                    wait = (
                        backoff if self._deadline is None else min(backoff, self._deadline - time.monotonic())
                    )
                    if wait > 0:
                        self._cond.wait(wait)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if outage:
                log.info("MLflow tracking server back; %d writes waiting", len(self._pending) - 1)
            outage = False
            backoff = self.initial_backoff
            with self._cond:
                self._pending.popleft()
                self._busy = False
                self.written += 1

    def _mlflow(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _experiment(self, client: Any) -> str:
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        return self._experiment_id

    def _apply(self, write: Write) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self._mlflow()
        run_id = write.run_id
        if write.kind == "start":
            experiment = self._experiment(client)
            found = client.search_runs(
                [experiment], filter_string=f"tags.`seal.run_id` = '{run_id}'", max_results=1
            )
            if found:
                tags = found[0].data.tags
                self.ids[run_id] = found[0].info.run_id
                self._seq[run_id] = int(tags.get("seal.events_seq", -1))
                if tags.get("seal.complete") == "true":
                    self._complete.add(run_id)
            else:
                created = client.create_run(experiment, run_name=write.data["name"], tags=write.data["tags"])
                self.ids[run_id] = created.info.run_id
                self._seq[run_id] = -1
            return
        if run_id in self._complete:
            return  # written whole before (a restarted coordinator)
        mlflow_id = self.ids[run_id]
        if write.kind == "params":
            params = [Param(k, v[:MAX_PARAM_CHARS]) for k, v in write.data.items()]
            for i in range(0, len(params), PARAMS_PER_BATCH):
                client.log_batch(mlflow_id, params=params[i : i + PARAMS_PER_BATCH])
        elif write.kind == "metrics":
            seq, rows = write.data["seq"], write.data["metrics"]
            if seq is not None and seq <= self._seq[run_id]:
                return  # these events were written before a restart
            metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in rows]
            for i in range(0, len(metrics), METRICS_PER_BATCH):
                client.log_batch(mlflow_id, metrics=metrics[i : i + METRICS_PER_BATCH])
            if seq is not None:
                client.set_tag(mlflow_id, "seal.events_seq", str(seq))
                self._seq[run_id] = seq
        elif write.kind == "tags":
            client.log_batch(mlflow_id, tags=[RunTag(k, v) for k, v in write.data.items()])
        elif write.kind == "artifact":
            with tempfile.TemporaryDirectory(prefix="seal-mlflow-") as folder:
                path = Path(folder) / write.data["name"]
                path.write_bytes(write.data["content"])
                client.log_artifact(mlflow_id, str(path))
        elif write.kind == "end":
            client.set_tag(mlflow_id, "seal.complete", "true")
            client.set_terminated(mlflow_id, status=write.data)
            self._complete.add(run_id)
        else:
            raise ValueError(f"unknown write {write.kind!r}")


def git_commit(configured: str) -> str:
    """The configured commit, else the source tree's `git rev-parse HEAD`, else `unknown`."""
    if configured:
        return configured
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def params_of(config: dict[str, Any]) -> dict[str, str]:
    """A run's config as MLflow params: flattened keys (`policy_directive.epochs`), brackets as dots."""
    return {key.replace("[", ".").replace("]", ""): value for key, value in flatten(config).items()}


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


@dataclass
class _Tracked:
    """What the tracker has queued for one run."""

    updated_at: str = ""
    last_seq: int = -1
    steps: dict[str, int] = field(default_factory=dict)
    ended: bool = False

    def step(self, key: str) -> int:
        """The next step of metric `key` (0, 1, 2... per key)."""
        value = self.steps.get(key, -1) + 1
        self.steps[key] = value
        return value


def job_metrics(
    event: dict[str, Any], tracked: _Tracked, timestamp: int
) -> list[tuple[str, float, int, int]]:
    """The metrics of one `job` event: `<step>.<field>` for a training's or generation's numbers
    (`train.final_loss`, `train.tokens`, `generate.self_edits`...), `<step>.<metric>` per adapter evaluated
    (`evaluate.f1`) and `baseline.<metric>`; the nth value of a metric is its step n."""
    try:
        kind = JobName.parse(event.get("job", "")).step
    except ValueError:
        return []
    data = event.get("data") or {}
    rows: list[tuple[str, float]] = []
    if kind in ("train", "policy", "generate", "edit"):
        rows += [(f"{kind}.{k}", v) for k, v in sorted(_numbers(data).items())]
    else:  # an evaluation: scores per adapter (each one a step of its own), or the base model's
        for adapter, scores in sorted(data.items()):
            if isinstance(scores, dict):
                prefix = "baseline" if adapter == "baseline" else kind
                rows += [(f"{prefix}.{k}", v) for k, v in sorted(_numbers(scores).items())]
    return [(key, value, timestamp, tracked.step(key)) for key, value in rows]


def result_metrics(results: dict[str, Any], timestamp: int) -> list[tuple[str, float, int, int]]:
    """A finished run's numbers: the summary (step 0), each round's summary (step = round), the held-out
    score by round (step = round) and each held-out condition's mean and gain (step 0)."""
    rows = [(f"summary.{k}", v, timestamp, 0) for k, v in _numbers(results.get("summary") or {}).items()]
    for rnd in results.get("rounds", []):
        rows += [
            (f"round.{k}", v, timestamp, rnd["round"]) for k, v in _numbers(rnd.get("summary") or {}).items()
        ]
    for point in (results.get("summary") or {}).get("heldout_by_round", []):
        if isinstance(point.get("mean"), int | float):
            rows.append(("heldout.mean", float(point["mean"]), timestamp, point["round"]))
    for row in (results.get("heldout") or {}).get("conditions", []):
        name = row["condition"].replace(":", ".")
        if isinstance(row.get("mean"), int | float):
            rows.append((f"condition.{name}.mean", float(row["mean"]), timestamp, 0))
        gain = (row.get("gain") or {}).get("mean")
        if isinstance(gain, int | float) and row["condition"] != "base":
            rows.append((f"condition.{name}.gain", float(gain), timestamp, 0))
    return rows


def adapter_keys(results: dict[str, Any]) -> list[str]:
    """Every adapter a run's results name: each passage's best, the policy adapters of the rounds."""
    keys = set()
    for rnd in results.get("rounds", []):
        policy = rnd.get("policy_adapter_key")
        keys.update([policy] if isinstance(policy, str) else policy or [])
        for passage in rnd.get("passages", []):
            best = passage.get("best") or {}
            if isinstance(best, dict) and best.get("adapter_key"):
                keys.add(best["adapter_key"])
    for passage in results.get("passages", []):
        best = passage.get("best") or {}
        if isinstance(best, dict) and best.get("adapter_key"):
            keys.add(best["adapter_key"])
    return sorted(k for k in keys if k)


class RunTracker:
    """Reads the runs through the API every `poll_seconds` and queues what is new on `writer`."""

    def __init__(
        self,
        api: Callable[[], AbstractAsyncContextManager[Api]],
        writer: MlflowWriter,
        poll_seconds: float,
        commit: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.writer = writer
        self.poll_seconds = poll_seconds
        self.commit = commit
        self.clock = clock
        self.tracked: dict[str, _Tracked] = {}

    async def run_forever(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # tracking never stops the coordinator; the next poll tries again
                log.exception("MLflow tracking: reading the runs failed")
            await asyncio.sleep(self.poll_seconds)

    async def poll(self) -> None:
        async with self.api() as client:
            token = None
            while True:
                page = await client.get("/v1/runs", page_size=200, page_token=token)
                for summary in page["runs"]:
                    with contextlib.suppress(ApiRefused):  # deleted meanwhile
                        await self._track(client, summary)
                token = page["next_page_token"]
                if not token:
                    return

    async def _track(self, client: Api, summary: dict[str, Any]) -> None:
        run_id = summary["id"]
        tracked = self.tracked.get(run_id)
        if tracked is not None and (tracked.ended or tracked.updated_at == summary["updated_at"]):
            return
        detail = await client.get(f"/v1/runs/{run_id}", events=2000)
        now = int(self.clock() * 1000)
        if tracked is None:
            tracked = self.tracked[run_id] = _Tracked()
            evaluator = (detail.get("services") or {}).get("evaluator") or {}
            tags = {
                "seal.run_id": run_id,
                "seal.base_model": evaluator.get("model_name", ""),
                "seal.git_commit": self.commit,
                "seal.status": detail["status"],
            }
            self.writer.put(Write(run_id, "start", {"name": detail["name"] or run_id, "tags": tags}))
            self.writer.put(Write(run_id, "params", params_of(detail["config"])))
        tracked.updated_at = summary["updated_at"]
        events = [e for e in detail["recent_events"] if e["seq"] > tracked.last_seq]
        rows: list[tuple[str, float, int, int]] = []
        for event in events:
            if event["kind"] == "job":
                rows += job_metrics(event, tracked, now)
        step = detail["jobs_done"]
        for key in ("jobs_done", "jobs_failed", "retries", "round"):
            rows.append((f"progress.{key}", float(detail[key]), now, step))
        seq = events[-1]["seq"] if events else None
        if seq is not None:
            tracked.last_seq = seq
        self.writer.put(Write(run_id, "metrics", {"seq": seq, "metrics": rows}))
        if detail["status"] in FINISHED:
            await self._finish(client, detail, now)
            tracked.ended = True
        else:
            self.writer.put(Write(run_id, "tags", {"seal.status": detail["status"]}))

    async def _finish(self, client: Api, detail: dict[str, Any], now: int) -> None:
        run_id = detail["id"]
        evaluator = (detail.get("services") or {}).get("evaluator") or {}
        self.writer.put(
            Write(
                run_id,
                "tags",
                {"seal.status": detail["status"], "seal.base_model": evaluator.get("model_name", "")},
            )
        )
        results = detail.get("results")
        if results:
            self.writer.put(Write(run_id, "metrics", {"seq": None, "metrics": result_metrics(results, now)}))
            content = json.dumps(results, indent=1).encode()
            self.writer.put(Write(run_id, "artifact", {"name": "results.json", "content": content}))
            cards = []
            for key in adapter_keys(results):
                try:
                    card = await client.get(f"/v1/adapters/{key.rpartition('/')[2]}")
                except ApiRefused:
                    card = {"key": key, "missing": "not in the store"}
                cards.append(card)
            adapters = json.dumps({"adapters": cards}, indent=1).encode()
            self.writer.put(Write(run_id, "artifact", {"name": "adapters.json", "content": adapters}))
        report = (await client.call("GET", f"/v1/runs/{run_id}/report")).content
        self.writer.put(Write(run_id, "artifact", {"name": "report.html", "content": report}))
        self.writer.put(Write(run_id, "end", END_STATUS.get(detail["status"], "FINISHED")))


@contextlib.asynccontextmanager
async def tracking(
    api: Callable[[], AbstractAsyncContextManager[Api]],
    tracking_uri: str,
    experiment: str,
    poll_seconds: float,
    max_backoff_seconds: float,
    commit: str,
    client: Callable[[], Any] | None = None,
) -> AsyncIterator[RunTracker]:
    """Track the coordinator's runs in MLflow while the block runs; at its end, a last poll and up to ten
    seconds to flush the writes. RuntimeError at once when MLflow is not installed."""
    if client is None and importlib.util.find_spec("mlflow") is None:
        raise RuntimeError(NOT_INSTALLED)
    writer = MlflowWriter(client or (lambda: mlflow_client(tracking_uri)), experiment, max_backoff_seconds)
    writer.start()
    tracker = RunTracker(api, writer, poll_seconds, git_commit(commit))
    task = asyncio.create_task(tracker.run_forever(), name="mlflow-tracking")
    try:
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await tracker.poll()
        await asyncio.to_thread(writer.stop, 10.0)
