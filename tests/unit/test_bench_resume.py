"""benchmarks/resume.py: a long benchmark in parts. A piece's run is posted once; the next session reads it back
when it finished, resumes it when it was interrupted or failed, and posts a new one only when it was cancelled,
is gone, or the request changed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.unit.bench_scripts import FakeCoordinator, load_benchmark

resume = load_benchmark("resume")
BODY = {"name": "continual none P=2 O=1", "config": {"mode": "continual", "orderings": 1}}


def results_for(body: dict) -> dict:
    return {"echo": body["name"]}


def quiet() -> Console:
    return Console(quiet=True)


def test_a_piece_is_posted_once_and_read_back_in_the_next_session(tmp_path):
    fake = FakeCoordinator(results_for)
    with fake.client() as client:
        first = resume.obtain(client, BODY, "none", resume.Ledger(tmp_path), "local", quiet())
        again = resume.obtain(client, BODY, "none", resume.Ledger(tmp_path), "local", quiet())
    assert (first.how, again.how) == ("new", "finished earlier")
    assert fake.posted == ["run-1"] and again.detail["results"] == {"echo": BODY["name"]}
    (entry,) = json.loads((tmp_path / resume.LEDGER).read_text()).values()
    assert (entry["run_id"], entry["label"], entry["coordinator"]) == ("run-1", "none", "local")


@pytest.mark.parametrize("status", ["queued", "running", "failed"])
def test_an_interrupted_or_failed_run_is_resumed_not_posted_again(tmp_path, status):
    fake = FakeCoordinator(results_for)
    ledger = resume.Ledger(tmp_path)
    ledger.record("local", BODY, "none", fake.add(status, BODY))
    with fake.client() as client:
        piece = resume.obtain(client, BODY, "none", resume.Ledger(tmp_path), "local", quiet())
    assert piece.how == "resumed" and fake.resumed == ["run-1"] and fake.posted == []
    assert piece.detail["status"] == "succeeded" and piece.detail["results"] == {"echo": BODY["name"]}


@pytest.mark.parametrize("gone", ["cancelled", "deleted"])
def test_a_cancelled_or_vanished_run_is_replaced_by_a_new_one_in_the_ledger(tmp_path, gone):
    fake = FakeCoordinator(results_for)
    ledger = resume.Ledger(tmp_path)
    old = fake.add("cancelled", BODY)
    if gone == "deleted":
        del fake.runs[old]
    ledger.record("local", BODY, "none", old)
    with fake.client() as client:
        piece = resume.obtain(client, BODY, "none", ledger, "local", quiet())
    assert piece.how == "new" and fake.posted == ["run-2"] and fake.resumed == []
    assert resume.Ledger(tmp_path).run_id("local", BODY) == "run-2"


def test_another_request_or_another_coordinator_is_another_run(tmp_path):
    fake = FakeCoordinator(results_for)
    other = {**BODY, "config": {**BODY["config"], "orderings": 3}}
    with fake.client() as client:
        resume.obtain(client, BODY, "none", resume.Ledger(tmp_path), "local", quiet())
        resume.obtain(client, other, "none", resume.Ledger(tmp_path), "local", quiet())
        elsewhere = resume.obtain(client, BODY, "none", resume.Ledger(tmp_path), "http://lab:8000", quiet())
    assert fake.posted == ["run-1", "run-2", "run-3"] and elsewhere.how == "new"
    assert len(resume.Ledger(tmp_path).entries) == 3


def test_the_work_folder_is_kept_per_preset_and_fresh_moves_it_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "BENCH_ROOT", tmp_path / "bench")
    stack = load_benchmark("conditions").add_stack_arguments(argparse.ArgumentParser())
    parser = resume.add_resume_arguments(stack)
    args = parser.parse_args([])
    folder = resume.prepare_workdir(args, "continual-cpu", quiet())
    assert folder == tmp_path / "bench" / "continual-cpu" == args.workdir and folder.is_dir()
    (folder / resume.LEDGER).write_text("{}")
    assert resume.prepare_workdir(parser.parse_args([]), "continual-cpu", quiet()) == folder
    assert (folder / resume.LEDGER).exists()  # the next session finds it as it was
    fresh = resume.prepare_workdir(parser.parse_args(["--fresh"]), "continual-cpu", quiet())
    assert fresh == folder and list(fresh.iterdir()) == []
    (aside,) = [p for p in (tmp_path / "bench").iterdir() if p != folder]
    assert aside.name.startswith("continual-cpu.") and (aside / resume.LEDGER).exists()


def test_the_bench_folder_is_git_ignored():
    root = Path(resume.__file__).resolve().parents[1]
    assert root / ".seal" / "bench" == resume.BENCH_ROOT
    assert ".seal/" in (root / ".gitignore").read_text().splitlines()


def test_the_local_stack_resumes_no_run_by_itself():
    from services.coordinator.settings import CoordinatorSettings

    name, value = next(iter(resume.LOCAL_STACK_ENV.items()))
    field = name.removeprefix("SEAL_COORDINATOR_").lower()
    assert CoordinatorSettings.model_fields[field].default is True and value == "false"
