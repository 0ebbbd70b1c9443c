"""MLflow tracking's parts without a server: the writer (in order, retried while the server is down, never
blocking whoever queues, skipping what a restarted coordinator finds already written) over a recording
client, and what runs turn into (params, per-job and per-round metrics, adapter keys). The whole thing
against a real tracking server: tests/service/test_mlflow_tracking.py."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from services.coordinator.api.app import internal_host
from services.coordinator.api.tracking import (
    MlflowWriter,
    Write,
    _Tracked,
    adapter_keys,
    git_commit,
    job_metrics,
    params_of,
    result_metrics,
)


class RecordingClient:
    """What MlflowWriter calls of MlflowClient; `down` makes every call fail; `gate` makes them wait."""

    def __init__(self, existing: dict[str, str] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.down = False
        self.gate = threading.Event()
        self.gate.set()
        self.existing = existing

    def _call(self, name: str, value: Any) -> None:
        self.gate.wait(10)
        if self.down:
            raise ConnectionError("connection refused")
        self.calls.append((name, value))

    def get_experiment_by_name(self, name: str) -> Any:
        self._call("get_experiment_by_name", name)
        return SimpleNamespace(experiment_id="7")

    def search_runs(self, experiments: list[str], filter_string: str, max_results: int) -> list[Any]:
        self._call("search_runs", filter_string)
        if self.existing is None:
            return []
        return [SimpleNamespace(info=SimpleNamespace(run_id="old"), data=SimpleNamespace(tags=self.existing))]

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
        self._call("create_run", (run_name, tags))
        return SimpleNamespace(info=SimpleNamespace(run_id="m1"))

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        self._call("log_batch", (run_id, [m.key for m in metrics], [(p.key, p.value) for p in params]))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._call("set_tag", (run_id, key, value))

    def set_terminated(self, run_id: str, status: str) -> None:
        self._call("set_terminated", (run_id, status))


@pytest.fixture(autouse=True)
def _entities() -> None:
    pytest.importorskip(
        "mlflow.entities", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'"
    )


def _writer(client: RecordingClient) -> MlflowWriter:
    writer = MlflowWriter(lambda: client, "seal", max_backoff_seconds=0.02, initial_backoff_seconds=0.01)
    writer.start()
    return writer


def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def _start(run_id: str = "run-1") -> Write:
    return Write(run_id, "start", {"name": "tiny", "tags": {"seal.run_id": run_id}})


def _metrics(seq: int | None, *keys: str) -> Write:
    return Write("run-1", "metrics", {"seq": seq, "metrics": [(k, 1.0, 0, 0) for k in keys]})


def test_writes_go_in_order_and_wait_out_an_outage_without_dropping_any():
    client = RecordingClient()
    client.down = True
    writer = _writer(client)
    for write in (
        _start(),
        Write("run-1", "params", {"k": "2"}),
        _metrics(3, "a"),
        Write("run-1", "end", "FINISHED"),
    ):
        writer.put(write)
    _until(lambda: writer.failures >= 3)
    assert writer.pending == 4 and client.calls == []
    client.down = False
    _until(lambda: writer.pending == 0)
    names = [name for name, _ in client.calls]
    assert names == [
        "get_experiment_by_name",
        "search_runs",
        "create_run",
        "log_batch",
        "log_batch",
        "set_tag",
        "set_tag",
        "set_terminated",
    ]
    assert client.calls[3][1] == ("m1", [], [("k", "2")]) and client.calls[5][1] == (
        "m1",
        "seal.events_seq",
        "3",
    )
    assert writer.written == 4
    writer.stop(1)


def test_queueing_never_waits_for_the_server():
    client = RecordingClient()
    client.gate.clear()  # every call hangs
    writer = _writer(client)
    started = time.monotonic()
    for i in range(1000):
        writer.put(_metrics(i, "m"))
    assert time.monotonic() - started < 0.5
    client.gate.set()
    writer.stop(0.5)


def test_a_restarted_coordinator_skips_what_mlflow_already_holds():
    client = RecordingClient(existing={"seal.events_seq": "5"})
    writer = _writer(client)
    for write in (_start(), _metrics(4, "old"), _metrics(None, "result"), _metrics(6, "new")):
        writer.put(write)
    _until(lambda: writer.pending == 0)
    batches = [value[1] for name, value in client.calls if name == "log_batch"]
    assert batches == [["result"], ["new"]]  # seq 4 was written before the restart
    assert "create_run" not in [name for name, _ in client.calls] and writer.ids == {"run-1": "old"}
    complete = RecordingClient(existing={"seal.complete": "true"})
    writer = _writer(complete)
    writer.put(_start())
    writer.put(_metrics(9, "x"))
    writer.put(Write("run-1", "end", "FINISHED"))
    _until(lambda: writer.pending == 0)
    assert [name for name, _ in complete.calls] == ["get_experiment_by_name", "search_runs"]


def test_params_are_the_flattened_config():
    params = params_of(
        {
            "k": 2,
            "formats": ["a", "b"],
            "policy_directive": {"epochs": 2},
            "directive_search": [{"epochs": 1}],
        }
    )
    assert params == {
        "k": "2",
        "formats": "a, b",
        "policy_directive.epochs": "2",
        "directive_search.0.epochs": "1",
    }


def test_job_events_become_metrics_with_a_step_per_value():
    tracked = _Tracked()
    train = {
        "job": "0000-train-implications-0",
        "data": {"final_loss": 1.0, "tokens": 100, "reused": False, "adapter_key": "a"},
    }
    assert job_metrics(train, tracked, 5) == [("train.final_loss", 1.0, 5, 0), ("train.tokens", 100.0, 5, 0)]
    assert job_metrics(train, tracked, 6)[0] == ("train.final_loss", 1.0, 6, 1)
    evaluate = {"job": "0000-evaluate", "data": {"adapters/a": {"f1": 0.4}, "adapters/b": {"f1": 0.5}}}
    assert job_metrics(evaluate, tracked, 7) == [("evaluate.f1", 0.4, 7, 0), ("evaluate.f1", 0.5, 7, 1)]
    baseline = {"job": "0000-baseline", "data": {"baseline": {"f1": 0.1}}}
    assert job_metrics(baseline, tracked, 8) == [("baseline.f1", 0.1, 8, 0)]
    assert job_metrics({"job": "not-a-job-name", "data": {}}, tracked, 9) == []


def test_results_become_round_and_condition_metrics_and_adapter_keys():
    results = {
        "summary": {"metric": "f1", "mean_reward": 0.3, "heldout_by_round": [{"round": 0, "mean": 0.4}]},
        "rounds": [
            {
                "round": 0,
                "policy_adapter_key": "",
                "summary": {"mean_reward": 0.3},
                "passages": [{"best": {"adapter_key": "adapters/x"}}],
            },
            {"round": 1, "policy_adapter_key": "adapters/p", "summary": {"mean_reward": 0.5}, "passages": []},
        ],
        "passages": [{"best": {"adapter_key": "adapters/x"}}],
        "heldout": {
            "conditions": [
                {"condition": "base", "mean": 0.1, "gain": {"mean": 0.0}},
                {"condition": "teacher:gpt", "mean": 0.5, "gain": {"mean": 0.4}},
            ]
        },
    }
    rows = {(key, step): value for key, value, _, step in result_metrics(results, 0)}
    assert rows[("round.mean_reward", 1)] == 0.5 and rows[("summary.mean_reward", 0)] == 0.3
    assert rows[("heldout.mean", 0)] == 0.4 and rows[("condition.teacher.gpt.gain", 0)] == 0.4
    assert ("condition.base.gain", 0) not in rows
    assert adapter_keys(results) == ["adapters/p", "adapters/x"]


def test_the_git_commit_and_the_internal_host():
    assert git_commit("abc123") == "abc123"
    commit = git_commit("")
    assert commit == "unknown" or len(commit) == 40  # this checkout's HEAD
    assert internal_host(["coordinator", "localhost"]) == "coordinator"
    assert internal_host(["*.example.org"]) == "coordinator.example.org"
    assert internal_host(["*"]) == "localhost"
