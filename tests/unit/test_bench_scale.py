"""benchmarks/scale.py: its synthetic store holds N valid finished runs under their own ids, and N adapters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from seal_lab.formats.adapters import list_adapter_keys
from seal_lab.store.local import LocalStore
from services.coordinator.engine.state import load_run

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_synthetic_store_holds_n_finished_runs_and_n_adapters(tmp_path):
    bench = _bench()
    template = tmp_path / "template"
    run_id = bench.template_run(template)
    bench.build_local(tmp_path / "store", template, run_id, 3)
    store = LocalStore(tmp_path / "store")
    runs = [load_run(store, run_id) for run_id in store.list_folders("runs/")]
    assert len({run.id for run in runs}) == 3 and len({run.created_at for run in runs}) == 3
    for run in runs:
        assert run.status == "succeeded" and not run.load_problems
        assert len(run.passages) == bench.PASSAGES and run.results is not None
        assert store.get_json(f"runs/{run.id}/manifest.json")["id"] == run.id
    assert len(list_adapter_keys(store, 10)) == 3
