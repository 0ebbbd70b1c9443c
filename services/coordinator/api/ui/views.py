"""What the pages compute from the API's JSON (pure): ages, numbers, the differences between runs' configs, and
a results table as CSV. (A run's headline score comes computed: its summary's `headline`.)"""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from typing import Any

STATUSES = (
    "queued",
    "running",
    "paused",
    "cancelling",
    "succeeded",
    "completed_with_errors",
    "failed",
    "cancelled",
)
FINISHED = ("succeeded", "completed_with_errors", "failed", "cancelled")
#: The statuses of runs with results (and so a headline in their summary).
WITH_RESULTS = ("succeeded", "completed_with_errors")


def seconds_of(timestamp: str | float) -> float:
    """An API time (RFC 3339) as seconds since the epoch."""
    if isinstance(timestamp, int | float):
        return float(timestamp)
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def age(timestamp: str | float, now: float | None = None) -> str:
    """`3 s`, `5 min`, `2 h`, `4 d`: how long ago."""
    seconds = max(0.0, (time.time() if now is None else now) - seconds_of(timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def num(value: Any, digits: int = 3) -> str:
    return "n/a" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.{digits}f}"


def signed(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:+.3f}"


def short_key(key: str, keep: int = 12) -> str:
    """`adapters/3f2a...` cut to its first `keep` digest characters (the full key goes in a title)."""
    prefix, _, digest = key.rpartition("/")
    return f"{prefix + '/' if prefix else ''}{digest[:keep]}{'…' if len(digest) > keep else ''}"


def progress(summary: dict[str, Any]) -> int:
    """Percent of the planned jobs done (0-100)."""
    total = summary.get("jobs_total") or 0
    return min(100, round(100 * (summary.get("jobs_done") or 0) / total)) if total else 0


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A config as `a.b.c -> value` lines (lists as JSON-ish text), for side-by-side comparison."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        out = {}
        for index, inner in enumerate(value):
            out.update(flatten(inner, f"{prefix}[{index}]"))
        return out or {prefix: "[]"}
    if isinstance(value, list):
        return {prefix: ", ".join(map(str, value)) if value else "[]"}
    return {prefix: "" if value is None else str(value)}


def config_rows(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per config field over all runs: its values and whether they differ; differing rows first."""
    flat = [flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    rows = [
        {"key": k, "values": [f.get(k, "—") for f in flat], "differs": len({f.get(k, "—") for f in flat}) > 1}
        for k in keys
    ]
    return sorted(rows, key=lambda r: not r["differs"])


def condition_table(runs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Held-out conditions over runs: (condition labels in first-seen order, per run {label: row})."""
    labels: list[str] = []
    per_run = []
    for run in runs:
        rows = {}
        for row in ((run.get("results") or {}).get("heldout") or {}).get("conditions", []):
            label = row.get("label") or row["condition"]
            rows[label] = row
            if label not in labels:
                labels.append(label)
        per_run.append(rows)
    return labels, per_run


#: The tables a run's results offer as CSV: name -> (header, rows from the results).
def tables(results: dict[str, Any]) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    metric = (results.get("summary") or {}).get("metric", "f1")
    out["passages"] = [
        [
            "passage_id",
            "title",
            f"baseline_{metric}",
            "best_reward",
            "best_format",
            "best_adapter_key",
            "errors",
        ]
    ]
    for p in results.get("passages", []):
        baseline = p.get("baseline") if isinstance(p.get("baseline"), dict) else {}
        best = p.get("best") if isinstance(p.get("best"), dict) else {}
        out["passages"].append(
            [
                p.get("passage_id"),
                p.get("title"),
                baseline.get(metric),
                best.get("reward"),
                best.get("format"),
                best.get("adapter_key"),
                len(p.get("errors") or []),
            ]
        )
    out["rounds"] = [
        ["round", "policy_adapter_key", "self_edits", "mean_baseline", "mean_reward", "mean_best"]
    ] + [
        [
            r.get("round"),
            r.get("policy_adapter_key")
            if isinstance(r.get("policy_adapter_key"), str)
            else " ".join(r["policy_adapter_key"]),
            (r.get("summary") or {}).get("self_edits"),
            (r.get("summary") or {}).get("mean_baseline"),
            (r.get("summary") or {}).get("mean_reward"),
            (r.get("summary") or {}).get("mean_best"),
        ]
        for r in results.get("rounds", [])
    ]
    heldout = results.get("heldout") or {}
    if heldout.get("conditions"):
        out["conditions"] = [
            ["condition", "label", "n", "mean", "stderr", "gain", "gain_stderr", "retention"]
        ] + [
            [
                c.get("condition"),
                c.get("label"),
                c.get("n"),
                c.get("mean"),
                c.get("stderr"),
                (c.get("gain") or {}).get("mean"),
                (c.get("gain") or {}).get("stderr"),
                c.get("retention"),
            ]
            for c in heldout["conditions"]
        ]
    return out


def to_csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["" if v is None else v for v in row] for row in rows])
    return buffer.getvalue()
