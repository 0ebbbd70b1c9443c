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
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

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


def heatmap_chart(
    title: str, x_label: str, y_label: str, rows: list[str], columns: list[str], values: list[list[Any]]
) -> Chart:
    svg = plots.heatmap_chart(title, x_label, y_label, rows, columns, values)
    return _chart(svg, title, plots.heatmap_rows(rows, columns, values))


def _continual(continual: dict[str, Any]) -> dict[str, Any]:
    """A continual run: the accuracy matrix as a heat map (one stream: its passages; several: by position,
    SEAL's figure), the mean over seen passages and retention after each step beside it, a table per stream."""
    streams, metric = continual["streams"], continual["metric"]
    if len(streams) == 1:
        shown = streams[0]
        rows, values = shown["titles"], shown["matrix"]
        title = "Accuracy matrix: passage (row) after step (column)"
    else:
        values = continual["by_position"]["matrix"]
        rows = [f"passage {i + 1}" for i in range(len(values))]
        title = f"Accuracy by position, mean of {continual['by_position']['streams']} orderings"
    columns = [str(j + 1) for j in range(len(values))]
    charts = [
        heatmap_chart(title, "after step", f"{metric} on the passage's questions", rows, columns, values)
    ]
    curves = [
        LineSeries(
            f"ordering {s['ordering']}: mean over seen",
            [(j + 1, v, None) for j, v in enumerate(s["mean_seen"])],
        )
        for s in streams[:6]
    ]
    curves += [
        LineSeries(
            f"ordering {s['ordering']}: retention",
            [(step["position"] + 1, step["retention"], None) for step in s["steps"]],
        )
        for s in streams[:2]
    ]
    charts.append(line_chart("Mean over seen passages and retention", "after step", metric, curves))
    return {"charts": charts, "streams": streams, "summary": continual["summary"], "metric": metric}


def _directive(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in values.items())


def _heldout_charts(heldout: dict[str, Any]) -> list[Chart]:
    metric, conditions, by_round = heldout["metric"], heldout["conditions"], heldout["by_round"]
    series = [
        LineSeries(
            "self-edits of the round's policy", [(r["round"], r["mean"], r["stderr"]) for r in by_round]
        )
    ]
    for reference in ("base", "passage"):
        row = next((c for c in conditions if c["condition"] == reference), None)
        if row and row["mean"] is not None:
            series.append(LineSeries(row["label"], [(r["round"], row["mean"], None) for r in by_round]))
    return [
        line_chart(f"Held-out {metric} per round", "round (policy updates)", f"mean {metric}", series),
        bar_chart(
            f"SEAL's conditions on the held-out passages ({metric})",
            f"mean {metric}",
            [Bar(c["short_label"], c["mean"], c["stderr"], c["n"]) for c in conditions],
        ),
    ]


def _heldout(heldout: dict[str, Any]) -> dict[str, Any]:
    conditions = heldout["conditions"]
    metrics, comparisons = heldout.get("metrics"), heldout.get("comparisons")
    partial = [c for c in conditions if c["condition"] != "base" and 0 < c.get("retention_n", 0) < c["n"]]
    return {
        "metric": heldout["metric"],
        "passages": len(heldout["passages"]),
        "charts": _heldout_charts(heldout),
        "conditions": conditions,
        "base": next((c for c in conditions if c["condition"] == "base"), None),
        # Where retention was scored on some of the held-out passages only (`retention_heldout`).
        "retention_n": partial[0]["retention_n"] if partial else None,
        "metric_names": list(next(iter(metrics.values()))) if comparisons and metrics else [],
        "metrics": metrics or {},
        "labels": {c["condition"]: c["label"] for c in conditions},
        "comparisons": comparisons if metrics else None,
        "power": heldout.get("power") or {},
    }


def _rounds(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in results["rounds"]:
        s, update = r["summary"], r.get("policy_update") or {}
        key = r["policy_adapter_key"] or "base model"
        rows.append(
            {
                "round": r["round"],
                "key": key if isinstance(key, str) else ", ".join(key),
                "s": s,
                "winners": len(update.get("winners", [])) if update else s["positive_best"],
            }
        )
    return rows


def _what_worked(results: dict[str, Any]) -> dict[str, Any]:
    worked = results["what_worked"]
    charts = [
        bar_chart(
            "Reward per self-edit format",
            "mean reward (gain over no adapter)",
            [Bar(name, d["mean"], d["stderr"], d["n"]) for name, d in worked["reward_by_format"].items()],
        )
    ]
    for field, buckets in worked["reward_by_directive_bucket"].items():
        charts.append(
            bar_chart(
                f"Reward by {field.replace('_', ' ')}",
                "mean reward",
                [Bar(label, d["mean"], d["stderr"], d["n"]) for label, d in buckets.items()],
            )
        )
    groups: dict[str, list[tuple[float, float]]] = {}
    for point in results.get("gain_vs_retention", []):
        groups.setdefault(point["group"], []).append((point["gain"], point["retention"]))
    scatter = scatter_chart(
        "Gain vs retention, one dot per adapter",
        "gain on the passage's questions",
        "retention-set score",
        [ScatterGroup(name, pts) for name, pts in groups.items()],
    )
    search = [{**t, "change": _directive(t["override"])} for t in worked["directive_search"]]
    return {"charts": charts, "directive_search": search, "scatter": scatter}


def _examples(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    examples = results.get("examples") or {}
    return [
        (heading, [{**ex, "directive_text": _directive(ex["directive"])} for ex in examples.get(side, [])])
        for side, heading in (("best", "Best rewarded"), ("worst", "Worst rewarded"))
    ]


def render_report(run: dict[str, Any]) -> str:
    """`run`: id, name, status, config, services and results (as in the run's manifest)."""
    results = run.get("results") or {}
    context: dict[str, Any] = {
        "title": f"seal-lab run {run['id']}",
        "name": run.get("name"),
        "status": run["status"],
        "model_name": run.get("services", {}).get("evaluator", {}).get("model_name", "?"),
        "results": results,
        "continual": None,
    }
    if results and results.get("continual"):
        context |= {
            "summary": results["summary"],
            "continual": _continual(results["continual"]),
            "reproducibility": json.dumps(results.get("reproducibility", {}), indent=1, sort_keys=True),
        }
    elif results:
        context |= {
            "summary": results["summary"],
            "heldout": _heldout(results["heldout"]) if results.get("heldout") else None,
            "rounds": _rounds(results),
            "worked": _what_worked(results),
            "examples": _examples(results),
            "reproducibility": json.dumps(results.get("reproducibility", {}), indent=1, sort_keys=True),
        }
    return _ENV.get_template("report.html.j2").render(context)
