"""Inline SVG charts: well-formed XML, the right number of marks, escaping and edge cases."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from services.coordinator.report.plots import (
    Bar,
    LineSeries,
    ScatterGroup,
    _ticks,
    bar_chart,
    bar_rows,
    line_chart,
    line_rows,
    scatter_chart,
    scatter_rows,
)

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    assert svg.startswith("<svg")
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("viewBox") and root.get("width") and root.get("height")
    return root


def _title(root: ET.Element) -> str:
    title = root.find(f"{NS}title")
    assert title is not None
    return title.text or ""


def _cls(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.get("class") == name]


def _texts(root: ET.Element, name: str) -> list[str]:
    return ["".join(el.itertext()) for el in _cls(root, name)]


def _legend_entries(root: ET.Element) -> int:
    legends = _cls(root, "legend")
    return 0 if not legends else len(legends[0].findall(f"{NS}rect"))


# --- line chart ---------------------------------------------------------------------------------


def test_line_chart_markers_errorbars_lines_and_legend():
    series = [
        LineSeries("baseline", [(0, 0.1, 0.02), (1, 0.2, 0.03), (2, 0.25, None)]),
        LineSeries("adapted", [(0, 0.15, None), (1, 0.3, None), (2, 0.4, None)]),
    ]
    root = _parse(line_chart("F1 per round", "round", "F1", series))
    assert _title(root) == "F1 per round"
    assert "F1 per round" in _texts(root, "chart-title")
    assert len(_cls(root, "point")) == 6
    assert len(_cls(root, "errorbar")) == 2
    assert len(_cls(root, "line")) == 2
    assert _legend_entries(root) == 2
    assert {"round", "F1"} <= set(_texts(root, "axis-label"))


def test_line_chart_integer_x_gets_integer_ticks():
    root = _parse(
        line_chart("t", "round", "y", [LineSeries("s", [(0, 1.0, None), (1, 2.0, None), (2, 1.5, None)])])
    )
    ticks = _texts(root, "tick")
    assert "0" in ticks and "1" in ticks and "2" in ticks
    x_ticks = [el for el in _cls(root, "tick") if el.get("text-anchor") == "middle"]
    assert x_ticks and all("." not in "".join(el.itertext()) for el in x_ticks)


def test_line_chart_single_series_has_no_legend_and_none_y_is_skipped_and_breaks_line():
    points = [(0, 1.0, 0.1), (1, None, 0.2), (2, 2.0, None), (3, 3.0, None), (4, math.nan, None)]
    root = _parse(line_chart("t", "x", "y", [LineSeries("only", points)]))
    assert len(_cls(root, "point")) == 3
    assert len(_cls(root, "errorbar")) == 1  # the error on the None point is dropped with it
    assert len(_cls(root, "line")) == 1  # (0) alone, then (2, 3) joined
    assert _legend_entries(root) == 0


def test_line_chart_single_point_and_equal_values():
    root = _parse(line_chart("one", "x", "y", [LineSeries("s", [(3, 5.0, None)])]))
    assert len(_cls(root, "point")) == 1
    assert len(_cls(root, "tick")) > 4  # both axes got a span around the lone point
    root = _parse(line_chart("flat", "x", "y", [LineSeries("s", [(0, 2.0, None), (1, 2.0, None)])]))
    ys = {float(el.get("cy")) for el in _cls(root, "point")}
    assert len(ys) == 1
    (y,) = ys
    assert 40 < y < 312  # inside the plot area, not on its edge


@pytest.mark.parametrize(
    "series",
    [[], [LineSeries("s", [])], [LineSeries("s", [(0, None, None), (1, None, 0.5)])]],
)
def test_line_chart_no_data(series):
    root = _parse(line_chart("Empty", "x", "y", series))
    assert _title(root) == "Empty"
    assert _texts(root, "no-data") == ["no data"]
    assert not _cls(root, "point")


# --- bar chart ----------------------------------------------------------------------------------


def test_bar_chart_bars_errors_counts_and_zero_line():
    bars = [Bar("implications", 0.4, 0.05, 12), Bar("rewrite", 0.3, None, 8), Bar("qa", 0.1, 0.02)]
    root = _parse(bar_chart("Reward by format", "reward", bars))
    assert _title(root) == "Reward by format"
    assert len(_cls(root, "bar")) == 3
    assert len(_cls(root, "errorbar")) == 2
    assert len(_cls(root, "zero")) == 1
    assert _texts(root, "count") == ["n=12", "n=8"]
    assert "".join(_texts(root, "category")).replace(" ", "") == "implicationsrewriteqa"
    assert "reward" in _texts(root, "axis-label")


def test_bar_chart_negative_bar_goes_below_zero_line():
    root = _parse(bar_chart("r", "reward", [Bar("up", 0.5), Bar("down", -0.25)]))
    zero = float(_cls(root, "zero")[0].get("y1"))
    up, down = _cls(root, "bar")
    assert float(up.get("y")) + float(up.get("height")) == pytest.approx(zero, abs=0.2)
    assert float(down.get("y")) == pytest.approx(zero, abs=0.2)
    assert float(down.get("height")) > 0
    assert any(t.startswith("-") for t in _texts(root, "tick"))
    assert up.get("fill") != down.get("fill")


def test_bar_chart_none_value_is_an_na_slot():
    root = _parse(bar_chart("r", "y", [Bar("a", 1.0), Bar("missing", None, 0.3, 0), Bar("c", 2.0)]))
    assert len(_cls(root, "bar")) == 2
    assert _texts(root, "na") == ["n/a"]
    assert not _cls(root, "errorbar")
    assert "n=0" in _texts(root, "count")
    root = _parse(bar_chart("all missing", "y", [Bar("a", None), Bar("b", None)]))
    assert _texts(root, "na") == ["n/a", "n/a"]


def test_bar_chart_equal_values_and_single_bar():
    root = _parse(bar_chart("r", "y", [Bar("a", 0.0), Bar("b", 0.0)]))
    assert len(_cls(root, "bar")) == 2
    root = _parse(bar_chart("r", "y", [Bar("only", 3.0, 0.5, 4)]))
    assert len(_cls(root, "bar")) == 1 and len(_cls(root, "errorbar")) == 1


def test_bar_chart_many_long_labels_rotate():
    bars = [Bar(f"a rather long category label number {i}", float(i), None, i) for i in range(12)]
    root = _parse(bar_chart("many", "y", bars))
    assert len(_cls(root, "bar")) == 12
    cats = _cls(root, "category")
    assert len(cats) == 12 and all("rotate" in (el.get("transform") or "") for el in cats)
    assert "n=3" in "".join(cats[3].itertext())


def test_bar_chart_no_data():
    root = _parse(bar_chart("Nothing", "y", []))
    assert _texts(root, "no-data") == ["no data"]


# --- scatter chart ------------------------------------------------------------------------------


def test_scatter_chart_dots_and_legend():
    groups = [
        ScatterGroup("parsed", [(0.1, 0.2), (0.3, 0.5), (0.7, -0.1)]),
        ScatterGroup("fallback", [(0.2, 0.1), (0.9, 0.0)]),
    ]
    root = _parse(scatter_chart("Reward vs loss", "loss", "reward", groups))
    assert _title(root) == "Reward vs loss"
    dots = _cls(root, "dot")
    assert len(dots) == 5
    assert len({d.get("fill") for d in dots}) == 2
    assert all(float(d.get("fill-opacity")) < 1 for d in dots)
    assert _legend_entries(root) == 2


def test_scatter_chart_skips_missing_and_handles_edge_cases():
    groups = [ScatterGroup("g", [(1.0, None), (None, 2.0), (2.0, 2.0), (math.inf, 1.0)])]  # type: ignore[list-item]
    root = _parse(scatter_chart("s", "x", "y", groups))
    assert len(_cls(root, "dot")) == 1
    assert _legend_entries(root) == 0
    root = _parse(scatter_chart("s", "x", "y", [ScatterGroup("g", [(1.0, 1.0), (1.0, 1.0)])]))
    assert len(_cls(root, "dot")) == 2
    root = _parse(scatter_chart("empty", "x", "y", [ScatterGroup("g", [])]))
    assert _texts(root, "no-data") == ["no data"]


# --- escaping and ticks -------------------------------------------------------------------------


def test_text_is_escaped_everywhere():
    evil = 'a<b & "c"'
    svgs = [
        line_chart(evil, evil, evil, [LineSeries(evil, [(0, 1.0, 0.1)]), LineSeries("x", [(1, 2.0, None)])]),
        bar_chart(evil, evil, [Bar(evil, 1.0, None, 2)]),
        bar_chart(evil, evil, [Bar(evil * 5, float(i)) for i in range(15)]),
        scatter_chart(evil, evil, evil, [ScatterGroup(evil, [(0.0, 1.0)]), ScatterGroup("y", [(1.0, 0.0)])]),
        line_chart(evil, "x", "y", []),
    ]
    for svg in svgs:
        assert "a<b" not in svg and "a&lt;b &amp; " in svg
        root = _parse(svg)
        assert _title(root) == evil


@pytest.mark.parametrize(
    ("lo", "hi", "integer", "expected"),
    [
        (0.0, 1.0, False, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.0, 2.0, True, [0.0, 1.0, 2.0]),
        (-0.3, 0.45, False, [-0.4, -0.2, 0.0, 0.2, 0.4, 0.6]),
        (5.0, 5.0, True, [4.0, 5.0, 6.0]),
    ],
)
def test_ticks_are_round_and_cover_the_range(lo, hi, integer, expected):
    assert _ticks(lo, hi, integer) == pytest.approx(expected)


# --- the data behind each chart (the report's CSV links) -------------------------------------------


def test_chart_rows_hold_every_point_and_leave_missing_values_empty():
    series = [LineSeries("a", [(0, 0.5, 0.1), (1, None, None)]), LineSeries("b", [(0, math.nan, None)])]
    assert line_rows("round", "F1", series) == [
        ["series", "round", "F1", "error (s.e.)"],
        ["a", 0, 0.5, 0.1],
        ["a", 1, "", ""],
        ["b", 0, "", ""],
    ]
    assert bar_rows("reward", [Bar("x", 0.25, None, 3), Bar("y", None)]) == [
        ["label", "reward", "error (s.e.)", "n"],
        ["x", 0.25, "", 3],
        ["y", "", "", ""],
    ]
    groups = [ScatterGroup("g", [(0.1, 0.9)]), ScatterGroup("h", [(math.inf, 0.2)])]
    assert scatter_rows("gain", "retention", groups) == [
        ["group", "gain", "retention"],
        ["g", 0.1, 0.9],
        ["h", "", 0.2],
    ]
