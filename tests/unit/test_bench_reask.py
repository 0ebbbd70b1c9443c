"""benchmarks/reask.py's pure parts: which run it reads and the plain loop's per-passage means."""

from __future__ import annotations

import json

import pytest

from .bench_scripts import load_benchmark

reask = load_benchmark("reask")


def _edit(f1: float, contains: float) -> dict:
    return {"scores": {"f1": f1, "contains": contains}}


def test_the_plain_loops_means_are_per_passage(tmp_path):
    path = tmp_path / "ablation.json"
    passages = [
        {"title": "A", "self_edits": [_edit(0.2, 1.0), _edit(0.0, 0.0)]},
        {"title": "B", "self_edits": [_edit(0.1, 0.0)]},
    ]
    path.write_text(json.dumps({"variants": {"plain": {"passages": passages}}}))
    assert reask.plain_means(path) == {"A": {"f1": 0.1, "contains": 0.5}, "B": {"f1": 0.1, "contains": 0.0}}


def test_it_reads_the_one_finished_run_of_a_store_and_refuses_a_store_with_several(tmp_path):
    run = tmp_path / "runs" / "run-1"
    run.mkdir(parents=True)
    (tmp_path / "runs" / "run-unfinished").mkdir()  # no manifest yet: not a finished run
    (run / "manifest.json").write_text(json.dumps({"results": {"rounds": []}}))
    assert reask.run_results(tmp_path) == {"rounds": [], "run_id": "run-1"}
    other = tmp_path / "runs" / "run-2"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"results": {}}))
    with pytest.raises(SystemExit, match="holds 2 finished runs"):
        reask.run_results(tmp_path)
