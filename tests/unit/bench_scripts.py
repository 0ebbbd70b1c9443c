"""The benchmark scripts (benchmarks/*.py, not a package) loaded as modules for their unit tests, and a fake
coordinator to post their runs to."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as module `bench_<name>`; the folder goes on sys.path, as the scripts import
    each other's machinery (`from conditions import ...`)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class FakeCoordinator:
    """The part of the coordinator's HTTP API that benchmarks/resume.py uses, over an httpx MockTransport: runs
    that finish as soon as they are posted (their results from `results_for(body)`), unless their body's name
    is in `interrupt`: then the first read of it raises KeyboardInterrupt (the Ctrl-C of a session while it
    follows the run) and it stays queued, as a run stopped with its stack, until it is resumed."""

    def __init__(self, results_for: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.results_for = results_for
        self.runs: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.posted: list[str] = []
        self.resumed: list[str] = []
        self.interrupt: set[str] = set()
        self.made = 0
        self.transport = httpx.MockTransport(self.handle)

    def client(self, url: str = "http://coordinator", *_: Any) -> httpx.Client:
        return httpx.Client(base_url=url, transport=self.transport)

    def add(self, status: str, body: dict[str, Any] | None = None) -> str:
        """A run already in the store, in `status`."""
        self.made += 1
        run_id = f"run-{self.made}"
        body = body or {"name": run_id}
        self.bodies[run_id] = body
        finished = status in ("succeeded", "completed_with_errors")
        self.runs[run_id] = {
            "id": run_id,
            "name": body.get("name", ""),
            "status": status,
            "error": "a service stayed away" if status == "failed" else "",
            "jobs_done": 0,
            "jobs_total": 3,
            "current": "",
            "results": self.results_for(body) if finished else None,
        }
        return run_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")  # v1 runs [id [resume]]
        if request.method == "POST" and parts == ["v1", "runs"]:
            body = json.loads(request.content)
            held = body.get("name") in self.interrupt
            run_id = self.add("queued" if held else "succeeded", body)
            self.posted.append(run_id)
            return httpx.Response(202, json={"id": run_id, "jobs_total": 3})
        run = self.runs.get(parts[2]) if len(parts) > 2 else None
        if run is None:
            return httpx.Response(404, json={"code": "run_not_found", "message": "no run"})
        if request.method == "POST" and parts[3:] == ["resume"]:
            if run["status"] in ("succeeded", "completed_with_errors", "cancelled"):
                code = "run_cancelled" if run["status"] == "cancelled" else "run_finished"
                return httpx.Response(409, json={"code": code, "message": f"run {run['status']}"})
            self.resumed.append(run["id"])
            run.update(status="succeeded", error="", results=self.results_for(self.bodies[run["id"]]))
            return httpx.Response(200, json={"id": run["id"], "status": "queued"})
        if run["name"] in self.interrupt:
            self.interrupt.discard(run["name"])
            raise KeyboardInterrupt  # the session stops while following the run; the run stays queued
        return httpx.Response(200, json=run)
