"""MLflow tracking against a real tracking server (sqlite backend, local artifact store) started by the test:
a run on the fake services becomes an MLflow run with its params, per-job and per-round metrics, tags and
artifacts; the server killed mid-run and started again loses nothing, and the run never waits for it.

The server is the full `mlflow` package (Flask, SQLAlchemy...), which the coordinator does not need (its
extra is `mlflow-skinny`): the test runs SEAL_TEST_MLFLOW_SERVER (a path to an `mlflow` executable, e.g. in
a virtual environment of its own) or the `mlflow` beside this Python when the full package is installed here,
and is skipped without either. The client must be installed: pip install -e '.[mlflow]'.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.coordinator.run.jobs import JobName
from services.coordinator.settings import MlflowSettings
from tests.ui_stack import free_port, ui_stack

pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")

TOKEN = "mlflow-test-token"


def _server_command() -> str:
    configured = os.environ.get("SEAL_TEST_MLFLOW_SERVER")
    if configured:
        return configured
    beside = Path(sys.executable).with_name("mlflow")
    if beside.exists() and importlib.util.find_spec("flask") and importlib.util.find_spec("sqlalchemy"):
        return str(beside)
    pytest.skip("no MLflow server: pip install mlflow, or set SEAL_TEST_MLFLOW_SERVER=/path/to/mlflow")


class Server:
    """`mlflow server` on a loopback port, over a sqlite file and an artifact folder that outlive restarts."""

    def __init__(self, root: Path) -> None:
        self.command = _server_command()
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "mlflow.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.command,
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the MLflow server did not start in 240 s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)  # its own session: the server and its workers
            self.process.wait(30)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # MLflow's client retries a refused request for minutes by default; the writer retries on its own.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    running = Server(tmp_path / "mlflow")
    running.root.mkdir()
    running.start()
    try:
        yield running
    finally:
        running.kill()


def _until(condition: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_is_tracked_while_it_goes_and_a_server_outage_loses_nothing(server, tmp_path):
    from mlflow.tracking import MlflowClient

    settings = MlflowSettings(
        tracking_uri=server.url,
        experiment="seal-test",
        poll_seconds=0.2,
        max_backoff_seconds=1.0,
        git_commit="",
    )
    mlflow = MlflowClient(tracking_uri=server.url)
    with ui_stack(tmp_path / "coordinator", TOKEN, mlflow=settings) as stack:
        api = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        stack.hold_training()
        created = api.post(
            "/v1/runs",
            json={
                "name": "tracked",
                "dataset": "demo",
                "limit": 3,
                "config": {"k": 2, "heldout": 1, "retention": False},
            },
        )
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]

        def tracked_run() -> Any:
            experiment = mlflow.get_experiment_by_name("seal-test")
            if experiment is None:
                return None
            found = mlflow.search_runs([experiment.experiment_id], f"tags.`seal.run_id` = '{run_id}'")
            return found[0] if found else None

        started = _until(tracked_run, "the MLflow run")  # while the seal-lab run is still running
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        assert started.data.params["k"] == "2" and started.data.params["formats"] == "implications"
        assert started.data.params["policy_directive.epochs"] == "2"
        assert started.data.tags["seal.git_commit"] not in ("", "unknown")  # this checkout's commit
        assert started.info.run_name == "tracked"
        _until(
            lambda: mlflow.get_metric_history(started.info.run_id, "baseline.f1"), "a job's metric mid-run"
        )

        server.kill()  # down mid-run: the run goes on, the writes wait
        stack.release_training()
        finished = _until(
            lambda: api.get(f"/v1/runs/{run_id}").json()["status"] in ("succeeded", "failed"),
            "the run's end",
            60,
        )
        assert finished and api.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
        writer = stack.tracker.writer
        _until(lambda: writer.failures > 0, "a failed write while the server is down", 30)
        assert writer.pending > 0  # waiting, not dropped
        server.start()
        _until(lambda: writer.pending == 0, "the writes after the server came back", 120)
        run_detail = api.get(f"/v1/runs/{run_id}").json()

    run = mlflow.get_run(started.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["seal.base_model"] == "fake" and run.data.tags["seal.complete"] == "true"
    assert run.data.tags["seal.status"] == "succeeded"
    history = mlflow.get_metric_history(run.info.run_id, "progress.jobs_done")
    assert max(m.value for m in history) == run_detail["jobs_total"]
    jobs = [JobName.parse(e["job"]).step for e in run_detail["recent_events"] if e["kind"] == "job"]
    trainings = jobs.count("train")
    losses = mlflow.get_metric_history(run.info.run_id, "train.final_loss")
    assert sorted(m.step for m in losses) == list(range(trainings)) and trainings >= 4  # one per training job
    assert {m.value for m in losses} == {1.0}  # the fake trainer's last loss
    rounds = mlflow.get_metric_history(run.info.run_id, "round.mean_reward")
    assert [(m.step, round(m.value, 6)) for m in rounds] == [(0, 0.3)]
    assert run.data.metrics["condition.passage.gain"] == pytest.approx(0.3)
    artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
    assert {"results.json", "report.html", "adapters.json"} <= artifacts
    folder = Path(mlflow.download_artifacts(run.info.run_id, "adapters.json", str(tmp_path / "download")))
    assert '"key": "adapters/' in folder.read_text()
