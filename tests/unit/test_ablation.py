"""benchmarks/ablation.py without a model: it refuses the held-out set except for the one final check, each
variant switches exactly the choice it names, the plain loop is issue 28's (in order, crude line cut), and
the paired comparison is taken per passage."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import ablation  # noqa: E402
import seed_check  # noqa: E402

from seal_lab.formats.passages import load_passages  # noqa: E402


@pytest.fixture(scope="module")
def every():
    return ablation.variants(ablation.seal_lab_choices())


def test_the_held_out_set_is_refused_by_path():
    passages = load_passages(ablation.FINAL_SET)
    with pytest.raises(ablation.HeldOutSetError, match="held out for issue 28's final check"):
        ablation.check_use(ablation.FINAL_SET, passages, ["plain", "title"], final_check=False)


def test_a_copy_of_one_held_out_passage_is_refused_by_content(tmp_path):
    tune = json.loads(ablation.TUNE_SET.read_text())
    final = json.loads(ablation.FINAL_SET.read_text())
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([*tune[:3], {**final[5], "context": "  " + final[5]["context"].upper()}]))
    with pytest.raises(ablation.HeldOutSetError, match=r"invented_final_20261208\.json"):
        ablation.check_use(mixed, load_passages(mixed), ["plain"], final_check=False)


def test_the_final_check_allows_only_plain_against_seal_lab_on_the_held_out_set():
    final = load_passages(ablation.FINAL_SET)
    ablation.check_use(ablation.FINAL_SET, final, ["seal-lab", "plain"], final_check=True)
    with pytest.raises(ablation.HeldOutSetError, match="only the plain loop with seal-lab's default"):
        ablation.check_use(ablation.FINAL_SET, final, ["plain", "all"], final_check=True)
    with pytest.raises(ablation.HeldOutSetError, match="only for the held-out set"):
        ablation.check_use(ablation.TUNE_SET, load_passages(ablation.TUNE_SET), ["plain", "seal-lab"], True)


def test_the_tune_set_is_allowed():
    ablation.check_use(
        ablation.TUNE_SET, load_passages(ablation.TUNE_SET), list(ablation.DEFAULT_VARIANTS), False
    )


def test_each_variant_switches_only_its_own_choices(every):
    plain = every["plain"]
    assert plain == seed_check.ISSUE28
    expected = {
        "self-edit": {"edit_prompt", "temperature", "edit_tokens", "line_cut"},
        "title": {"title_prefix"},
        "schedule": {"learning_rate", "schedule"},
        "steps": {"steps"},
        "order": {"shuffle"},
        "question": {"question"},
        "no-eos": {"eos"},
    }
    for name, fields in expected.items():
        assert set(ablation.changed(plain, every[name])) == fields, name
    assert set(ablation.changed(plain, every["all"])) == set().union(
        *(fields for name, fields in expected.items() if name != "no-eos")
    )
    assert every["schedule"].schedule.warmup_ratio > 0 and every["schedule"].learning_rate == 2e-3
    assert every["steps"].order(7, 0) == [i % 7 for i in range(24)]


def test_a_combination_switches_exactly_its_parts_choices(every):
    both = ablation.combination(every, "steps+title")
    assert set(ablation.changed(every["plain"], both)) == {"steps", "title_prefix"}
    assert both.steps == every["steps"].steps and both.title_prefix
    for bad in ("steps", "steps+steps", "steps+nope", "steps+all"):
        with pytest.raises(ValueError, match="combination"):
            ablation.combination(every, bad)


def test_the_wall_time_per_self_edit_is_known_only_where_it_is_one_loops():
    seconds = {"variants": 300.0, "seal-lab": 250.0}
    assert ablation.wall_per_edit("seal-lab", seconds, 10, trained=1) == 25.0
    assert ablation.wall_per_edit("plain", seconds, 10, trained=1) == 30.0
    assert ablation.wall_per_edit("plain", seconds, 10, trained=3) is None  # shared by three variants


def test_a_variant_equal_to_an_earlier_one_is_trained_once(every):
    chosen = {name: every[name] for name in ablation.DEFAULT_VARIANTS}
    # seal-lab's trainer ends plain text with EOS, as the plain loop does: nothing to ablate there.
    assert ablation.same_as_earlier(chosen) == {"eos": "plain"}


def test_only_the_question_variant_shares_the_plain_adapters(every):
    chosen = {name: every[name] for name in ablation.DEFAULT_VARIANTS if name != "eos"}
    shared = [names for names in ablation.trainings_of(chosen).values() if len(names) > 1]
    assert shared == [["plain", "question"]]
    assert len(ablation.trainings_of(chosen)) == 7


def test_the_plain_loop_cuts_lines_crudely():
    output = "1. Fellisford was chartered in 1264.\n- short one\n\n* The tower leans 80 centimetres.\n2."
    assert seed_check.ISSUE28.lines(output) == [
        "Fellisford was chartered in",  # the crude cut strips digits at the end too: the year is lost
        "The tower leans 80 centimetres",
    ]
    texts = seed_check.ISSUE28.texts("Fellisford", "A town.", ["Line one here"])
    assert texts == ["Fellisford\nA town.", "Line one here"]
    assert seed_check.replace(seed_check.ISSUE28, title_prefix=True).texts("T", "C", ["L"]) == [
        "T\nC",
        "T\nL",
    ]


def test_the_plain_loop_trains_in_order_and_issue_10s_shuffles_as_it_did():
    assert seed_check.ISSUE28.order(3, 5) == [0, 1, 2] * 5
    data = ["a", "b", "c", "d"]
    rng = random.Random(11)  # the old seed loop: each epoch a copy of the data shuffled by one rng
    before = []
    for _ in range(5):
        shuffled = list(data)
        rng.shuffle(shuffled)
        before += shuffled
    assert [data[i] for i in seed_check.ISSUE10.order(len(data), 11)] == before


def _loop(per_passage_f1: list[list[float]]) -> dict:
    def scores(f1: float) -> dict:
        return {"f1": f1, "contains": float(f1 > 0.5), "token_recall": f1, "exact_match": 0.0}

    return {
        "base_retention": {"f1": 0.5},
        "passages": [
            {
                "title": f"p{i}",
                "baseline": scores(0.0),
                "self_edits": [{"scores": scores(f), "retention": {"f1": 0.4}, "steps": 5} for f in edits],
            }
            for i, edits in enumerate(per_passage_f1)
        ],
    }


def test_variants_are_compared_with_the_plain_loop_per_passage():
    plain = _loop([[0.1, 0.3], [0.0, 0.0], [0.4, 0.6]])
    title = _loop([[0.4, 0.4], [0.2, 0.0], [0.6, 0.6]])
    versus = ablation.compare({"plain": plain, "title": title}, seed=0)
    f1 = versus["title"]["f1"]
    assert f1["n"] == 3
    assert f1["mean_diff"] == pytest.approx((0.2 + 0.1 + 0.1) / 3, abs=1e-6)
    assert f1["mde"] is not None and f1["mde"] > 0
    assert f1["ci95"][0] <= f1["mean_diff"] <= f1["ci95"][1]
    assert versus["title"]["contains"]["mean_diff"] == pytest.approx((0.0 + 0.0 + 0.5) / 3, abs=1e-6)


def test_results_are_never_overwritten(tmp_path):
    first = ablation._write(tmp_path, {"n": 1})
    second = ablation._write(tmp_path, {"n": 2})
    assert first != second
    assert json.loads(first.read_text()) == {"n": 1} and json.loads(second.read_text()) == {"n": 2}


def test_a_finished_adapter_is_kept_per_training_and_reused_only_for_the_styles_it_was_asked_in(
    tmp_path, every
):
    from types import SimpleNamespace

    loaded = SimpleNamespace(fingerprint="model-a")
    passage = load_passages(ablation.TUNE_SET)[0]
    kept = [(None, "What is the capital of France?", ("Paris",))]
    key = ablation.outcome_key(loaded, every["plain"], passage, 0, "a self-edit", kept)
    # The question style is not part of what an adapter is: the question variant shares the plain adapter.
    assert ablation.outcome_key(loaded, every["question"], passage, 0, "a self-edit", kept) == key
    for other in (
        ablation.outcome_key(loaded, every["steps"], passage, 0, "a self-edit", kept),
        ablation.outcome_key(loaded, every["plain"], passage, 1, "a self-edit", kept),
        ablation.outcome_key(loaded, every["plain"], passage, 0, "another self-edit", kept),
        ablation.outcome_key(
            SimpleNamespace(fingerprint="model-b"), every["plain"], passage, 0, "a self-edit", kept
        ),
    ):
        assert other != key

    assert ablation.cached_outcome(tmp_path, key, {"plain"}) is None
    record = {"scores": {"plain": {"scores": {"f1": 0.5}, "ask_seconds": 1.0}}, "steps": 10}
    ablation.keep_outcome(tmp_path, key, record)
    assert ablation.cached_outcome(tmp_path, key, {"plain"}) == record
    assert ablation.cached_outcome(tmp_path, key, {"plain", "seal-lab"}) is None  # asked again, trained again
    assert ablation.cached_outcome(None, key, {"plain"}) is None  # --no-cache
