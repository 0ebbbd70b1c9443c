"""benchmarks/conditions.py against a coordinator that is already running (the Kubernetes Job's mode): it starts
no local stack, sends the shared token, and the Job's command line is one the script accepts.

The coordinator is a stand-in HTTP server on an ephemeral port that records what it was sent and answers that
the run failed (so the script stops before its report, which needs a real run's results).
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from tests.unit.bench_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "k8s-bench-token-" + "7" * 24


conditions = load_benchmark("conditions")


class FakeCoordinator(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, self.headers.get("Authorization")))
        self._answer({"id": "run-1", "jobs_total": 3})

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path.split("?")[0], self.headers.get("Authorization")))
        self._answer(
            {"id": "run-1", "status": "failed", "error": "stand-in", "jobs_done": 0, "jobs_total": 3}
            | {"current": "", "results": None}
        )

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def coordinator() -> Iterator[str]:
    FakeCoordinator.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCoordinator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def seal_data(tmp_path: Path) -> Path:
    """SEAL's files in miniature: one covered passage (held out) and one other (training)."""
    question = [{"question": "Colour?", "answer": "red"}]
    covered = {"title": "A", "context": "The lamp is red.", "questions": question}
    other = {"title": "B", "context": "The door is blue.", "questions": question}
    (tmp_path / "squad_val.json").write_text(json.dumps([covered, other]))
    for name in conditions.TEACHERS.values():
        (tmp_path / name).write_text(json.dumps([covered | {"completions": ["It is red."]}]))
    return tmp_path


def test_with_a_coordinator_url_it_starts_no_stack_and_sends_the_token_on_every_request(
    coordinator, seal_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("SEAL_AUTH_TOKEN", TOKEN)
    monkeypatch.setattr("services.coordinator.cli.launcher.LocalStack", None)  # any use would fail loudly
    args = ["--coordinator-url", coordinator, "--data-dir", str(seal_data), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stopped:
        conditions.main([*args, "--heldout", "1", "--train", "1", "--k", "1", "--rounds", "0"])
    assert stopped.value.code == 1  # the stand-in's run failed
    assert FakeCoordinator.seen[0] == ("POST", "/v1/runs", f"Bearer {TOKEN}")
    assert ("GET", "/v1/runs/run-1", f"Bearer {TOKEN}") in FakeCoordinator.seen
    assert {auth for _, _, auth in FakeCoordinator.seen} == {f"Bearer {TOKEN}"}


def test_the_old_url_flag_still_names_the_coordinator_and_without_a_token_none_is_sent(
    coordinator, seal_data, tmp_path, monkeypatch
):
    monkeypatch.delenv("SEAL_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("SEAL_AUTH_TOKEN_FILE", raising=False)
    args = ["--url", coordinator, "--data-dir", str(seal_data), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        conditions.main([*args, "--heldout", "1", "--train", "1"])
    assert FakeCoordinator.seen[0] == ("POST", "/v1/runs", None)


def test_the_kubernetes_job_runs_the_script_with_flags_it_accepts():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "jobs" / "bench-conditions.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    script = pod["containers"][0]["command"][-1]
    words = shlex.split(script.split("exec python", 1)[1].replace("\\\n", " "))
    assert words[0] == "/bench/conditions.py"
    args = conditions.build_parser().parse_args(words[1:])
    assert args.url == "http://seal-coordinator:8000"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {str(args.data_dir), str(args.out), "/bench"} <= mounts
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["SEAL_AUTH_TOKEN_FILE"].startswith("/run/secrets/seal-auth/")
    # The coordinator's NetworkPolicy lets this label in.
    assert job["spec"]["template"]["metadata"]["labels"]["seal-lab/api-client"] == "true"


def test_a_preset_fills_the_options_left_unset_and_the_command_line_wins():
    parser = conditions.build_parser()
    preset = conditions.PRESETS["cpu"]
    filled = conditions.with_preset(parser.parse_args(["--preset", "cpu"]), conditions.PRESETS)
    assert all(getattr(filled, name) == value for name, value in preset.items())
    name = next(n for n, v in preset.items() if isinstance(v, int) and not isinstance(v, bool))
    given = conditions.with_preset(
        parser.parse_args(["--preset", "cpu", f"--{name.replace('_', '-')}", str(preset[name] + 1)]),
        conditions.PRESETS,
    )
    assert getattr(given, name) == preset[name] + 1
