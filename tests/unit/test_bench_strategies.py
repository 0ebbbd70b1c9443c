"""benchmarks/strategies.py: the run of each strategy, and the tournament table from the runs' results."""

from __future__ import annotations

import json

import pytest

from tests.unit.bench_scripts import FakeCoordinator, load_benchmark

bench = load_benchmark("strategies")


def _detail(run_id: str, row_scores: list[float], base: list[float], passage: list[float]) -> dict:
    return {
        "id": run_id,
        "status": "succeeded",
        "results": {
            "heldout": {
                "metric": "f1",
                "passages": [
                    {
                        "passage_id": f"q{i}",
                        "scores": {"base": b, "passage": p, "p0": s},
                        "training": {"p0": {"tokens": 100 + i}, "passage": {"tokens": 50}},
                        "retention": {"base": 0.4, "passage": 0.2, "p0": 0.3 if i % 2 else 0.1},
                    }
                    for i, (s, b, p) in enumerate(zip(row_scores, base, passage, strict=True))
                ],
            }
        },
    }


def test_every_strategy_is_compared_with_the_reference_paired_and_holm_corrected():
    base, passage = [0.1] * 8, [0.2, 0.25, 0.2, 0.3, 0.2, 0.25, 0.2, 0.3]
    details = {
        "implications": _detail("r1", [0.3, 0.35, 0.3, 0.4, 0.3, 0.35, 0.3, 0.4], base, passage),
        "entigraph": _detail("r2", [0.3, 0.36, 0.31, 0.4, 0.3, 0.35, 0.29, 0.41], [9.0] * 8, [9.0] * 8),
    }
    table = bench.tournament(details, "p0", "implications", "f1")
    # no adapter and passage only come from the first run
    assert table["rows"]["no adapter"]["mean"] == 0.1 and table["rows"]["passage only"]["n"] == 8
    assert (
        table["rows"]["implications"]["mean"] == pytest.approx(0.3375)
        and table["rows"]["entigraph"]["tokens"] == 103.5
    )
    # Forgetting beside every row: what each row's adapters kept of the general questions.
    assert [table["rows"][r]["retention"] for r in ("no adapter", "passage only")] == pytest.approx(
        [0.4, 0.2]
    )
    assert table["rows"]["entigraph"]["retention"] == pytest.approx(0.2)
    assert table["rows"]["passage only"]["tokens"] == 50
    (passage_vs, enti_vs) = table["comparisons"]
    assert (passage_vs["a"], enti_vs["a"], enti_vs["b"]) == ("passage only", "entigraph", "implications")
    assert (
        "implications beats passage only" in passage_vs["verdict"]
        and "Holm-adjusted" in passage_vs["verdict"]
    )
    assert enti_vs["verdict"].startswith("No detectable difference") and "MDE" in enti_vs["verdict"]
    assert passage_vs["holm_p"] >= passage_vs["t_p"]


def test_each_strategy_runs_with_the_same_passages_and_budget_and_a_file_is_sent(tmp_path):
    args = bench.build_parser().parse_args(["--preset", "smoke"])
    for name, value in bench.PRESETS["smoke"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    mine = tmp_path / "mine.yaml"
    from seal_lab.formats.strategies import builtin_texts

    mine.write_text(builtin_texts()["entigraph"].replace("name: entigraph", "name: mine"))
    name, text = bench.strategy_source(str(mine))
    assert name == "mine" and "name: mine" in text and bench.strategy_source("rewrite") == ("rewrite", "")
    a = bench.run_body("rewrite", "", ["t"], ["h"], args)
    b = bench.run_body(name, text, ["t"], ["h"], args)
    assert a["config"]["strategy_files"] == [] and b["config"]["strategy_files"] == [text]
    assert (b["config"]["formats"], b["config"]["heldout_format"]) == (["mine"], "mine")
    same = ("k", "rounds", "seed", "max_new_tokens", "conditions_directive")
    assert {k: a["config"][k] for k in same} == {k: b["config"][k] for k in same}
    from services.coordinator.run.schemas import RunConfig

    RunConfig(**b["config"])  # the coordinator accepts it


def test_a_token_budget_run_gives_every_heldout_condition_the_same_tokens():
    args = bench.with_preset(
        bench.build_parser().parse_args(["--preset", "cpu", "--budget", "tokens"]), bench.PRESETS
    )
    assert args.tokens == bench.TOKEN_BUDGET == 1_900
    body = bench.run_body("rewrite", "", ["t"], ["h"], args)
    assert body["config"]["heldout_directive"] == {"tokens": 1_900}
    assert bench.budget_label(args) == "token budget 1,900 tokens per adapter"
    from services.coordinator.run.schemas import RunConfig

    assert RunConfig(**body["config"]).heldout_directive.fields_set() == {"tokens": 1_900}
    # --tokens overrides the preset; the step budget sets no override (the trainer's default directive).
    given = bench.with_preset(
        bench.build_parser().parse_args(["--preset", "smoke", "--budget", "tokens", "--tokens", "800"]),
        bench.PRESETS,
    )
    assert bench.run_body("rewrite", "", ["t"], ["h"], given)["config"]["heldout_directive"] == {
        "tokens": 800
    }
    steps = bench.with_preset(bench.build_parser().parse_args(["--preset", "smoke"]), bench.PRESETS)
    assert "heldout_directive" not in bench.run_body("rewrite", "", ["t"], ["h"], steps)["config"]
    assert bench.budget_label(steps).startswith("step budget")


def test_strategies_run_in_parts_make_one_table_and_a_new_file_each_time(tmp_path, monkeypatch):
    """`--strategies implications` now, every strategy of the preset later: the second session reads the first's
    run back, runs only entigraph, and writes the whole table to a new file."""
    base, passage = [0.1, 0.1], [0.2, 0.3]
    scores = {"implications": [0.3, 0.4], "entigraph": [0.2, 0.5]}
    fake = FakeCoordinator(
        lambda body: _detail("x", scores[body["name"].split()[1]], base, passage)["results"]
    )
    monkeypatch.setattr(bench, "connect", fake.client)
    monkeypatch.setattr(
        bench, "passages", lambda args: ([{"title": "t"}], [{"title": "h1"}, {"title": "h2"}])
    )
    out = tmp_path / "out"
    common = [
        "--preset",
        "smoke",
        "--url",
        "http://lab:8000",
        "--workdir",
        str(tmp_path / "w"),
        "--out",
        str(out),
    ]

    bench.main([*common, "--strategies", "implications"])
    bench.main(common)
    assert fake.posted == ["run-1", "run-2"] and fake.resumed == []
    first, second = sorted(out.glob("strategies_smoke_*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert set(json.loads(first.read_text())["runs"]) == {"implications"}
    table = json.loads(second.read_text())
    assert table["runs"] == {"implications": "run-1", "entigraph": "run-2"}
    assert table["obtained"] == {"implications": "finished earlier", "entigraph": "new"}
    assert table["rows"]["entigraph"]["mean"] == pytest.approx(0.35) and table["budget"] == {"kind": "steps"}
    assert [c["a"] for c in table["comparisons"]] == ["passage only", "entigraph"]
