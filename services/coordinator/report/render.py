"""The HTML report of a run: plots (inline SVG), SEAL's conditions table, examples, reproducibility.

One self-contained page: no script, no external resource, so it opens from a file as well as from the API.
The page is `templates/report.html.j2` (Jinja2, autoescaped); this module gathers what it shows: the charts
(SVG from `plots`, each with its data as a CSV `data:` link) and the rows that need arithmetic.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from pydantic import BaseModel, Field, field_validator

from ..run.records import PolicyRecord, RunServices
from ..run.result_schemas import (
    Comparisons,
    ConditionRow,
    ContinualResults,
    Example,
    HeldoutResults,
    MetricEstimate,
    Power,
    RoundSummary,
    RunResults,
    SearchTrial,
)
from . import plots
from .plots import Bar, LineSeries, ScatterGroup

_ENV = Environment(
    loader=PackageLoader("services.coordinator.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Chart:
    """An inline SVG chart and its data: `csv_href` is a `data:text/csv` URI, saved as `filename`."""

    svg: Markup
    csv_href: str
    filename: str


def _chart(svg: str, title: str, rows: list[list[object]]) -> Chart:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "chart"
    # The SVG is built by `plots`, which escapes every text it places.
    return Chart(
        Markup(svg), "data:text/csv;charset=utf-8," + quote(buffer.getvalue(), safe=""), f"{slug}.csv"
    )


def line_chart(title: str, x_label: str, y_label: str, series: list[LineSeries]) -> Chart:
    svg = plots.line_chart(title, x_label, y_label, series)
    return _chart(svg, title, plots.line_rows(x_label, y_label, series))


def bar_chart(title: str, y_label: str, bars: list[Bar]) -> Chart:
    return _chart(plots.bar_chart(title, y_label, bars), title, plots.bar_rows(y_label, bars))


def scatter_chart(title: str, x_label: str, y_label: str, groups: list[ScatterGroup]) -> Chart:
    svg = plots.scatter_chart(title, x_label, y_label, groups)
    return _chart(svg, title, plots.scatter_rows(x_label, y_label, groups))


class ReportRun(BaseModel):
    """What the report shows of a run: as in its manifest (a run without results has not finished)."""

    id: str
    name: str = ""
    status: str
    services: RunServices = Field(default_factory=RunServices)
    results: RunResults | None = None

    @field_validator("results", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None


def heatmap_chart(
    title: str, x_label: str, y_label: str, rows: list[str], columns: list[str], values: list[list[Any]]
) -> Chart:
    svg = plots.heatmap_chart(title, x_label, y_label, rows, columns, values)
    return _chart(svg, title, plots.heatmap_rows(rows, columns, values))


def _continual(continual: ContinualResults) -> dict[str, Any]:
    """A continual run: the accuracy matrix as a heat map (one stream: its passages; several: by position,
    SEAL's figure), the mean over seen passages and retention after each step beside it, a table per stream."""
    streams, metric = continual.streams, continual.metric
    if len(streams) == 1:
        shown = streams[0]
        rows, values = shown.titles, shown.matrix
        title = "Accuracy matrix: passage (row) after step (column)"
    else:
        values = continual.by_position.matrix
        rows = [f"passage {i + 1}" for i in range(len(values))]
        title = f"Accuracy by position, mean of {continual.by_position.streams} orderings"
    columns = [str(j + 1) for j in range(len(values))]
    charts = [
        heatmap_chart(title, "after step", f"{metric} on the passage's questions", rows, columns, values)
    ]
    curves = [
        LineSeries(
            f"ordering {s.ordering}: mean over seen",
            [(j + 1, v, None) for j, v in enumerate(s.mean_seen)],
        )
        for s in streams[:6]
    ]
    curves += [
        LineSeries(
            f"ordering {s.ordering}: retention",
            [(step.position + 1, step.retention, None) for step in s.steps],
        )
        for s in streams[:2]
    ]
    charts.append(line_chart("Mean over seen passages and retention", "after step", metric, curves))
    return {"charts": charts, "streams": streams, "summary": continual.summary, "metric": metric}


def _directive(values: Mapping[str, float | int]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in values.items())


def _heldout_charts(heldout: HeldoutResults) -> list[Chart]:
    metric, conditions, by_round = heldout.metric, heldout.conditions, heldout.by_round
    series = [LineSeries("self-edits of the round's policy", [(r.round, r.mean, r.stderr) for r in by_round])]
    for reference in ("base", "passage"):
        row = next((c for c in conditions if c.condition == reference), None)
        if row and row.mean is not None:
            series.append(LineSeries(row.label, [(r.round, row.mean, None) for r in by_round]))
    return [
        line_chart(f"Held-out {metric} per round", "round (policy updates)", f"mean {metric}", series),
        bar_chart(
            f"SEAL's conditions on the held-out passages ({metric})",
            f"mean {metric}",
            [Bar(c.short_label, c.mean, c.stderr, c.n) for c in conditions],
        ),
    ]


@dataclass(frozen=True)
class HeldoutView:
    """The held-out section: the conditions table, the metric table and the planned comparisons."""

    metric: str
    passages: int
    charts: list[Chart]
    conditions: list[ConditionRow]
    base: ConditionRow | None
    #: Where retention was scored on some of the held-out passages only (`retention_heldout`).
    retention_n: int | None
    metric_names: list[str]
    metrics: dict[str, dict[str, MetricEstimate]]
    labels: dict[str, str]
    comparisons: Comparisons | None
    power: Power | None


def _heldout(heldout: HeldoutResults) -> HeldoutView:
    conditions = heldout.conditions
    metrics, comparisons = heldout.metrics, heldout.comparisons
    partial = [c for c in conditions if c.condition != "base" and 0 < c.retention_n < c.n]
    return HeldoutView(
        metric=heldout.metric,
        passages=len(heldout.passages),
        charts=_heldout_charts(heldout),
        conditions=conditions,
        base=next((c for c in conditions if c.condition == "base"), None),
        retention_n=partial[0].retention_n if partial else None,
        metric_names=list(next(iter(metrics.values()))) if comparisons and metrics else [],
        metrics=metrics,
        labels={c.condition: c.label for c in conditions},
        comparisons=comparisons if metrics else None,
        power=heldout.power,
    )


@dataclass(frozen=True)
class RoundView:
    round: int
    key: str
    s: RoundSummary
    winners: int


def _rounds(results: RunResults) -> list[RoundView]:
    rows = []
    for r in results.rounds:
        s, update = r.summary, r.policy_update
        key = r.policy_adapter_key or "base model"
        if update is None:
            winners = s.positive_best
        else:  # a failed policy update has none
            winners = len(update.winners) if isinstance(update, PolicyRecord) else 0
        rows.append(RoundView(r.round, key if isinstance(key, str) else ", ".join(key), s, winners))
    return rows


@dataclass(frozen=True)
class WorkedView:
    charts: list[Chart]
    #: Each directive-search trial with its override in words (`change`).
    directive_search: list[tuple[SearchTrial, str]]
    scatter: Chart


def _what_worked(results: RunResults) -> WorkedView:
    worked = results.what_worked
    charts = [
        bar_chart(
            "Reward per self-edit format",
            "mean reward (gain over no adapter)",
            [Bar(name, d.mean, d.stderr, d.n) for name, d in worked.reward_by_format.items()],
        )
    ]
    for field, buckets in worked.reward_by_directive_bucket.items():
        charts.append(
            bar_chart(
                f"Reward by {field.replace('_', ' ')}",
                "mean reward",
                [Bar(label, d.mean, d.stderr, d.n) for label, d in buckets.items()],
            )
        )
    groups: dict[str, list[tuple[float, float | None]]] = {}
    for point in results.gain_vs_retention:
        groups.setdefault(point.group, []).append((point.gain, point.retention))
    scatter = scatter_chart(
        "Gain vs retention, one dot per adapter",
        "gain on the passage's questions",
        "retention-set score",
        [ScatterGroup(name, pts) for name, pts in groups.items()],  # type: ignore[arg-type]
    )
    search = [(t, _directive(t.override)) for t in worked.directive_search]
    return WorkedView(charts, search, scatter)


def _examples(results: RunResults) -> list[tuple[str, list[tuple[Example, str]]]]:
    """Per side, each example with its directive in words."""
    examples = results.examples or {}
    return [
        (heading, [(ex, _directive(ex.directive.values())) for ex in examples.get(side, [])])
        for side, heading in (("best", "Best rewarded"), ("worst", "Worst rewarded"))
    ]


def render_report(run: ReportRun) -> str:
    results = run.results
    evaluator = run.services.evaluator
    context: dict[str, object] = {
        "title": f"seal-lab run {run.id}",
        "name": run.name,
        "status": run.status,
        "model_name": evaluator.model_name
        if evaluator is not None and "model_name" in evaluator.model_fields_set
        else "?",
        "results": results,
        "continual": None,
    }
    reproducibility = results.reproducibility.model_dump() if results and results.reproducibility else {}
    if results and results.continual:
        context |= {
            "summary": results.summary,
            "continual": _continual(results.continual),
            "reproducibility": json.dumps(reproducibility, indent=1, sort_keys=True),
        }
    elif results:
        context |= {
            "summary": results.summary,
            "heldout": _heldout(results.heldout) if results.heldout else None,
            "rounds": _rounds(results),
            "worked": _what_worked(results),
            "examples": _examples(results),
            "reproducibility": json.dumps(reproducibility, indent=1, sort_keys=True),
        }
    return _ENV.get_template("report.html.j2").render(context)
