"""benchmarks/continual.py's pure parts: one run per option on the same passages and orderings, and the paired
comparisons against no option (by ordering and passage for accuracy, by ordering for retention)."""

from __future__ import annotations

import pytest

from services.coordinator.run.schemas import RunCreate
from tests.unit.bench_scripts import load_benchmark

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
    size = len(last_column)
    matrix = [[None] * (size - 1) + [v] for v in last_column]
    return {
        "ordering": ordering,
        "order": [f"p{i}" for i in range(size)],
        "steps_done": size,
        "matrix": matrix,
        "steps": [{"retention": None}] * (size - 1) + [{"retention": retention}],
    }


def test_options_are_compared_with_none_in_pairs():
    results = {
        "none": {"streams": [stream(0, [0.2, 0.5], 0.6), stream(1, [0.1, 0.4], 0.5)]},
        "replay": {"streams": [stream(0, [0.3, 0.5], 0.7), stream(1, [0.3, 0.5], 0.6)]},
    }
    rows = continual.compare(results)
    accuracy, retention = rows
    assert (accuracy["option"], accuracy["measure"], accuracy["n"]) == ("replay", "final accuracy", 4)
    assert accuracy["mean_diff"] == pytest.approx((0.1 + 0 + 0.2 + 0.1) / 4)
    assert (retention["n"], retention["mean_diff"]) == (2, pytest.approx(0.1))
    assert accuracy["mde"] is not None and "replay" in accuracy["verdict"]
