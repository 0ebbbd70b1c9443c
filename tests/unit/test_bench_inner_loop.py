"""benchmarks/inner_loop.py's last two lines (`make bench`): the figures, their rounding and the ratios."""

from __future__ import annotations

import pytest

from benchmarks.inner_loop import summary_lines


def test_the_two_lines_compare_now_with_float32_one_at_a_time():
    now = {"train_tokens_per_second": 351.4, "per_self_edit": 5.04}
    old = {"train_tokens_per_second": 103.0, "per_self_edit": 16.2}
    assert summary_lines(now, old) == [
        "training: 351 tokens/s now vs 103 tokens/s float32 one at a time (3.4x)",
        "per self-edit: 5.0 s now vs 16.2 s float32 one at a time (3.2x)",
    ]


def test_ratios_come_from_the_unrounded_figures():
    # 149.6 / 100.4 = 1.49 -> 1.5 (as printed, 150 / 100 = 1.5); 9.96 / 6.04 = 1.649 -> 1.6 (as printed,
    # 10.0 / 6.0 = 1.667 -> 1.7)
    now = {"train_tokens_per_second": 149.6, "per_self_edit": 6.04}
    old = {"train_tokens_per_second": 100.4, "per_self_edit": 9.96}
    training, per_edit = summary_lines(now, old)
    assert training == "training: 150 tokens/s now vs 100 tokens/s float32 one at a time (1.5x)"
    assert per_edit == "per self-edit: 6.0 s now vs 10.0 s float32 one at a time (1.6x)"


def test_a_slower_now_shows_a_ratio_below_one():
    now = {"train_tokens_per_second": 80.0, "per_self_edit": 20.0}
    old = {"train_tokens_per_second": 100.0, "per_self_edit": 16.0}
    training, per_edit = summary_lines(now, old)
    assert training.endswith("(0.8x)")
    assert per_edit.endswith("(0.8x)")


@pytest.mark.parametrize("measure", ["train_tokens_per_second", "per_self_edit"])
def test_a_figure_that_is_not_positive_is_refused(measure):
    now = {"train_tokens_per_second": 300.0, "per_self_edit": 5.0}
    old = {"train_tokens_per_second": 100.0, "per_self_edit": 15.0, measure: 0.0}
    with pytest.raises(ValueError, match=f"old: {measure} is 0.0"):
        summary_lines(now, old)
