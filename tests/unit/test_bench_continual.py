"""benchmarks/continual.py's pure parts: one run per option on the same passages and orderings, and the paired
comparisons against no option (by ordering and passage for accuracy, by ordering for retention)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.coordinator.run.result_schemas import ContinualResults
from services.coordinator.run.schemas import RunCreate
from tests.unit.bench_scripts import FakeCoordinator, load_benchmark

continual = load_benchmark("continual")


def test_every_option_is_a_valid_run_on_the_same_stream(tmp_path):
    args = continual.conditions.with_preset(
        continual.build_parser().parse_args(["--data-dir", str(tmp_path)]), continual.PRESETS
    )
    assert (args.passages, args.orderings) == (8, 3)
    args.preset, args.passages = "smoke", 2  # the demo set: no data needed
    args.options = ",".join(continual.OPTIONS)
    passages = continual.stream_passages(args)
    runs = continual.bodies(args, passages)
    assert list(runs) == list(continual.OPTIONS)
    for body in runs.values():
        request = RunCreate.model_validate(body)  # the coordinator would accept it
        assert request.config.mode == "continual" and request.config.orderings == 3
        assert request.passages == passages
    assert RunCreate.model_validate(runs["replay"]).config.continual_replay == 4


def test_an_unknown_option_is_refused(tmp_path):
    args = continual.conditions.with_preset(
        continual.build_parser().parse_args(["--preset", "smoke", "--options", "none,magic"]),
        continual.PRESETS,
    )
    with pytest.raises(SystemExit, match="unknown options"):
        continual.bodies(args, [])


def stream(ordering: int, last_column: list[float], retention: float) -> dict:
    """A finished stream's record, as the API sends it: only the last column of its matrix filled."""
    size = len(last_column)
    matrix = [[None] * (size - 1) + [v] for v in last_column]
    return {
        "ordering": ordering,
        "order": [f"p{i}" for i in range(size)],
        "steps_done": size,
        "matrix": matrix,
        "steps": [{"position": j, "retention": retention if j == size - 1 else None} for j in range(size)],
    }


def results_of(*streams: dict) -> ContinualResults:
    return ContinualResults.model_validate(
        {"metric": "f1", "pick": "first", "carry": "adapter", "streams": streams}
        | {"by_position": {}, "per_stream": [], "summary": {}}
    )


def test_options_are_compared_with_none_in_pairs():
    results = {
        "none": results_of(stream(0, [0.2, 0.5], 0.6), stream(1, [0.1, 0.4], 0.5)),
        "replay": results_of(stream(0, [0.3, 0.5], 0.7), stream(1, [0.3, 0.5], 0.6)),
    }
    rows = continual.compare(results)
    accuracy, retention = rows
    assert (accuracy["option"], accuracy["measure"], accuracy["n"]) == ("replay", "final accuracy", 4)
    assert accuracy["mean_diff"] == pytest.approx((0.1 + 0 + 0.2 + 0.1) / 4)
    assert (retention["n"], retention["mean_diff"]) == (2, pytest.approx(0.1))
    assert accuracy["mde"] is not None and "replay" in accuracy["verdict"]


SMOKE = "continual_smoke_run-20261207-194428-073529.json"


def test_a_stored_benchmark_result_reads_typed_and_dumps_back_to_the_same_json():
    """The smoke run's JSON (written when the results were dicts) is what the typed models read and write."""
    path = Path(__file__).parents[2] / "benchmarks" / "results" / SMOKE
    stored = json.loads(path.read_text())
    typed = {name: ContinualResults.model_validate(r) for name, r in stored["results"].items()}
    assert typed["replay"].streams[0].steps[0].dataset_key.startswith("datasets/")
    dumped = {name: r.model_dump(mode="json") for name, r in typed.items()}
    assert json.dumps(dumped, indent=1) == json.dumps(stored["results"], indent=1)
    assert continual.finals(typed["none"])[1] == {0: typed["none"].per_stream[0].final_retention}


def test_a_preset_run_in_sessions_assembles_every_option_and_never_overwrites_a_results_file(
    tmp_path, monkeypatch
):
    """Session 1 runs `--options none`; session 2 (every option) is interrupted while replay runs; session 3
    reads none back, resumes replay, and writes the whole table to a new file. The fake coordinator is the
    store the sessions share (the work folder's); its results are the stored smoke run's."""
    stored = json.loads((Path(__file__).parents[2] / "benchmarks" / "results" / SMOKE).read_text())
    page = json.loads((Path(__file__).parents[1] / "fixtures" / "report_results.json").read_text())
    fake = FakeCoordinator(lambda body: {**page, "continual": stored["results"][body["name"].split()[1]]})
    monkeypatch.setattr(continual, "connect", fake.client)
    out, work = tmp_path / "out", tmp_path / "work"
    common = ["--preset", "smoke", "--data-dir", str(tmp_path), "--url", "http://lab:8000"]
    common += ["--workdir", str(work), "--out", str(out)]

    continual.main([*common, "--options", "none"])
    (first,) = out.glob("continual_smoke_*.json")
    first_text = first.read_text()
    assert json.loads(first_text)["obtained"] == {"none": "new"}

    fake.interrupt.add("continual replay P=2 O=1")
    with pytest.raises(SystemExit) as stopped:
        continual.main(common)
    assert stopped.value.code == 130 and len(list(out.glob("continual_smoke_*.json"))) == 1

    continual.main(common)
    assert fake.posted == ["run-1", "run-2"] and fake.resumed == ["run-2"]  # nothing posted twice
    files = sorted(out.glob("continual_smoke_*.json"))
    assert len(files) == 2 and first.read_text() == first_text  # a new file; the first is as it was
    (second,) = [f for f in files if f != first]
    summary = json.loads(second.read_text())
    assert summary["obtained"] == {"none": "finished earlier", "replay": "resumed"}
    assert summary["runs"] == {"none": "run-1", "replay": "run-2"}
    assert set(summary["results"]) == {"none", "replay"} and summary["workdir"] == str(work)
    assert {c["option"] for c in summary["comparisons"]} == {"replay"}
    assert {p.name for p in out.glob("*.html")} == {"continual_run-1.html", "continual_run-2.html"}
