"""The HTML report of a run: plots (inline SVG), SEAL's conditions table, examples, reproducibility.

One self-contained page: no script, no external resource, so it opens from a file as well as from the API.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .plots import Bar, LineSeries, ScatterGroup, bar_chart, line_chart, scatter_chart

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.45}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f5f5f5}
.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;
margin:10px 0}pre{white-space:pre-wrap;background:#f8f8f8;padding:8px;font-size:.9em;max-height:22em;overflow:auto}
.muted{color:#666}.good{color:#1a7f37}.bad{color:#b42318}code{font-size:.9em}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    if value is None:
        return "n/a"
    css = "good" if value > 0 else "bad" if value < 0 else "muted"
    return f'<span class="{css}">{value:+.3f}</span>'


def _error(stats: dict[str, Any]) -> str:
    if stats.get("mean") is None:
        return "n/a"
    text = f"{stats['mean']:.3f}"
    if stats.get("stderr") is not None:
        text += f" ± {stats['stderr']:.3f}"
    if stats.get("ci95"):
        text += f' <span class="muted">[{stats["ci95"][0]:.3f}, {stats["ci95"][1]:.3f}]</span>'
    return text


def _conditions_section(heldout: dict[str, Any]) -> list[str]:
    metric = heldout["metric"]
    conditions = heldout["conditions"]
    base = next((c for c in conditions if c["condition"] == "base"), None)
    by_round = heldout["by_round"]
    series = [
        LineSeries(
            "self-edits of the round's policy", [(r["round"], r["mean"], r["stderr"]) for r in by_round]
        )
    ]
    for reference in ("base", "passage"):
        row = next((c for c in conditions if c["condition"] == reference), None)
        if row and row["mean"] is not None:
            series.append(LineSeries(row["label"], [(r["round"], row["mean"], None) for r in by_round]))
    out = [
        "<h2>Held-out passages: does the generator learn to write better self-edits?</h2>",
        f"<p>{len(heldout['passages'])} passages never used to train the policy. After each round: one self-edit "
        f"per passage from the current policy, one adapter, the passage's questions without the passage. "
        f"Error bars: standard error over passages; brackets: 95% bootstrap interval. Metric: {metric}.</p>",
        line_chart(f"Held-out {metric} per round", "round (policy updates)", f"mean {metric}", series),
        bar_chart(
            f"SEAL's conditions on the held-out passages ({metric})",
            f"mean {metric}",
            [Bar(c["short_label"], c["mean"], c["stderr"], c["n"]) for c in conditions],
        ),
        "<table><tr><th>condition</th><th>n</th><th>mean ± s.e. [95% CI]</th><th>gain over no adapter</th>"
        "<th>training steps</th><th>retention</th><th>gain on another passage</th></tr>",
    ]
    for c in conditions:
        gain, base_row = c["gain"], c["condition"] == "base"
        steps = (c.get("steps") or {}).get("mean")
        out.append(
            f"<tr><td>{_e(c['label'])}</td><td>{c['n']}</td><td>{_error(c)}</td>"
            f"<td>{'' if base_row else _error(gain)}</td><td>{'' if base_row else _num(steps, 0)}</td>"
            f"<td>{_num(c['retention'])}</td>"
            f"<td>{'' if base_row else _error(c.get('control_gain') or {})}</td></tr>"
        )
    out.append("</table>")
    out += _comparisons(heldout)
    if base and base["mean"] is not None:
        out.append(
            f'<p class="muted">No adapter: {base["mean"]:.3f}. Retention is the {metric} on the built-in '
            "general-knowledge questions (what the adapter made the model forget)"
            + _retention_scope(conditions)
            + ".</p>"
        )
    return out


def _comparisons(heldout: dict[str, Any]) -> list[str]:
    """Every metric's gain per condition, and the planned paired comparisons with their verdicts."""
    comparisons, metrics = heldout.get("comparisons"), heldout.get("metrics")
    if not comparisons or not metrics:
        return []
    names = list(next(iter(metrics.values())))
    labels = {c["condition"]: c["label"] for c in heldout["conditions"]}
    out = [
        '<h3>Every metric: gain over no adapter (± s.e.)</h3><div style="overflow-x:auto"><table><tr>'
        "<th>condition</th>" + "".join(f"<th>{_e(m)}</th>" for m in names) + "</tr>"
    ]
    for condition, row in metrics.items():
        if condition != "base":
            cells = "".join(f"<td>{_error(row[m]['gain'])}</td>" for m in names)
            out.append(f"<tr><td>{_e(labels.get(condition, condition))}</td>{cells}</tr>")
    out.append("</table></div>")
    primary = comparisons["primary_metric"]
    out.append(
        f"<h3>Planned comparisons (paired by passage, Holm-corrected; primary metric {_e(primary)})</h3><ul>"
    )
    out += [f"<li>{_e(test['verdict'])}</li>" for test in comparisons["by_metric"][primary]]
    out.append("</ul>")
    power = heldout.get("power") or {}
    if power.get("mde") is not None:
        out.append(
            f'<p class="muted">Minimum detectable effect at N={power["n"]} (paired t, alpha 0.05, power 0.8): '
            f"{power['mde']:.3f} on {_e(power['metric'])}.</p>"
        )
    return out


def _rounds_section(results: dict[str, Any]) -> list[str]:
    out = [
        "<h2>Training rounds (ReST-EM)</h2>",
        "<table><tr><th>round</th><th>policy adapter</th><th>self-edits</th><th>mean baseline</th>"
        "<th>mean reward</th><th>mean best</th><th>winners</th><th>retention</th><th>generate s</th>"
        "<th>train s</th><th>evaluate s</th><th>policy s</th></tr>",
    ]
    for r in results["rounds"]:
        s = r["summary"]
        update = r.get("policy_update") or {}
        winners = len(update.get("winners", [])) if update else s["positive_best"]
        key = r["policy_adapter_key"] or "base model"
        sec = s["seconds"]
        out.append(
            f"<tr><td>{r['round']}</td><td><code>{_e(key)}</code></td><td>{s['self_edits']}</td>"
            f"<td>{_num(s['mean_baseline'])}</td><td>{_signed(s.get('mean_reward'))}</td>"
            f"<td>{_num(s['mean_best'])}</td><td>{winners}/{s['passages']}</td>"
            f"<td>{_num(s['mean_retention_adapted'])}</td><td>{sec['generate']:.0f}</td>"
            f"<td>{sec['train']:.0f}</td><td>{sec['evaluate']:.0f}</td><td>{sec.get('policy_train', 0):.0f}</td></tr>"
        )
    out.append("</table>")
    return out


def _what_worked_section(results: dict[str, Any]) -> list[str]:
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
    out = ["<h2>What worked</h2>", '<div class="grid">', *charts, "</div>"]
    if worked["directive_search"]:
        out.append(
            "<h3>Directive search: the same self-edit trained with other directives</h3><table><tr><th>directive "
            "change</th><th>n</th><th>mean reward</th><th>own directive</th><th>better</th><th>worse</th></tr>"
        )
        for trial in worked["directive_search"]:
            change = ", ".join(f"{k}={v:g}" for k, v in trial["override"].items())
            out.append(
                f"<tr><td>{_e(change)}</td><td>{trial['n']}</td><td>{_signed(trial['mean_reward'])}</td>"
                f"<td>{_signed(trial['own_mean_reward'])}</td><td>{trial['better_than_own']}</td>"
                f"<td>{trial['worse_than_own']}</td></tr>"
            )
        out.append("</table>")
    points = results.get("gain_vs_retention", [])
    groups: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        groups.setdefault(point["group"], []).append((point["gain"], point["retention"]))
    out += [
        "<h2>Gain vs forgetting</h2>",
        "<p>Each dot is one adapter: its gain on its passage's questions against its score on general questions "
        "the base model answers (higher retention = less forgotten).</p>",
        scatter_chart(
            "Gain vs retention, one dot per adapter",
            "gain on the passage's questions",
            "retention-set score",
            [ScatterGroup(name, pts) for name, pts in groups.items()],
        ),
    ]
    return out


def _examples_section(results: dict[str, Any]) -> list[str]:
    examples = results.get("examples") or {}
    out = ["<h2>Example self-edits</h2>"]
    for side, heading in (("best", "Best rewarded"), ("worst", "Worst rewarded")):
        out.append(f"<h3>{heading}</h3>")
        for ex in examples.get(side, []):
            directive = ", ".join(f"{k}={v:g}" for k, v in ex["directive"].items())
            out.append(
                f'<div class="card"><b>{_e(ex["title"])}</b> <span class="muted">round {ex["round"]}, '
                f"{_e(ex['format'])} #{ex['sample_index']}</span> reward {_signed(ex['reward'])}, retention "
                f'{_num(ex["retention"])}<br><span class="muted">directive ({_e(ex["directive_source"])}): '
                f"{_e(directive)}</span><pre>{_e(ex['raw_output'])}</pre></div>"
            )
        if not examples.get(side):
            out.append('<p class="muted">none scored</p>')
    return out


def render_report(run: dict[str, Any]) -> str:
    """`run`: id, name, status, config, services and results (as in the run's manifest)."""
    results = run.get("results") or {}
    title = f"seal-lab run {run['id']}"
    body = [
        f"<h1>{_e(title)}{' · ' + _e(run['name']) if run.get('name') else ''}</h1>",
        f"<p>Status <b>{_e(run['status'])}</b>. Base model <code>"
        f"{_e(run.get('services', {}).get('evaluator', {}).get('model_name', '?'))}</code>.</p>",
    ]
    if not results:
        body.append("<p>No results yet: the run has not finished.</p>")
    else:
        summary = results["summary"]
        body.append(
            f"<p>{summary['training_passages']} training passages, {summary['heldout_passages']} held-out, "
            f"{summary['rounds']} ReST-EM rounds, metric {summary['metric']}.</p>"
        )
        if results.get("heldout"):
            body += _conditions_section(results["heldout"])
        body += _rounds_section(results)
        body += _what_worked_section(results)
        body += _examples_section(results)
        body += [
            "<h2>Reproducibility</h2>",
            "<details><summary>seeds, splits, configuration, model and policy hashes, library versions</summary>"
            f"<pre>{_e(json.dumps(results.get('reproducibility', {}), indent=1, sort_keys=True))}</pre></details>",
        ]
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def _retention_scope(conditions: list[dict[str, Any]]) -> str:
    """Where retention was scored on some of the held-out passages only (`retention_heldout`)."""
    partial = [c for c in conditions if c["condition"] != "base" and 0 < c.get("retention_n", 0) < c["n"]]
    if not partial:
        return ""
    return f", scored on the first {partial[0]['retention_n']} held-out passages of each condition"
