"""Turn a run's job records into results: per passage baseline, every self-edit's reward, the best one."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from seal_lab.data import Passage

from .schemas import RunConfig

DIRECTIVE_FIELDS = ("epochs", "learning_rate", "lora_rank", "lora_alpha", "batch_size")


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def build_results(
    passages: list[Passage], jobs: dict[str, dict[str, Any]], config: RunConfig
) -> dict[str, Any]:
    metric = config.reward_metric
    passage_results = []
    rewards_by_format: dict[str, list[float]] = defaultdict(list)
    rewards_by_source: dict[str, list[float]] = defaultdict(list)
    # Which directives worked: reward per value of each directive field.
    rewards_by_directive: dict[str, dict[float, list[float]]] = {
        f: defaultdict(list) for f in DIRECTIVE_FIELDS
    }
    seconds = {"generate": 0.0, "train": 0.0, "evaluate": 0.0}
    for index, passage in enumerate(passages):
        prefix = f"{index:04d}-"
        baseline_job = jobs.get(prefix + "baseline", {})
        evaluate_job = jobs.get(prefix + "evaluate", {})
        retention_job = jobs.get(prefix + "retention", {})
        seconds["evaluate"] += sum(
            job.get("seconds", 0.0) for job in (baseline_job, evaluate_job, retention_job)
        )
        retention = retention_job.get("evaluations", {})
        base_retention = retention.get("", {}).get("mean", {}).get(metric)
        baseline = baseline_job.get("evaluations", {}).get("")
        evaluations = evaluate_job.get("evaluations", {})
        errors = [
            f"{name.removeprefix(prefix)}: {job['error']}"
            for name, job in jobs.items()
            if name.startswith(prefix) and "error" in job
        ]
        edits = []
        for edit_format in config.formats:
            generated = jobs.get(f"{prefix}generate-{edit_format}", {})
            seconds["generate"] += generated.get("seconds", 0.0)
            for edit in generated.get("self_edits", []):
                train = jobs.get(f"{prefix}train-{edit_format}-{edit['sample_index']}", {})
                seconds["train"] += (
                    train.get("metrics", {}).get("seconds", 0.0) if not train.get("reused") else 0.0
                )
                evaluation = evaluations.get(train.get("adapter_key", ""))
                kept = retention.get(train.get("adapter_key", ""), {}).get("mean", {}).get(metric)
                reward = None
                if evaluation is not None and baseline is not None:
                    reward = round(evaluation["mean"][metric] - baseline["mean"][metric], 4)
                    rewards_by_format[edit_format].append(reward)
                    rewards_by_source[edit["directive_source"]].append(reward)
                    for name in DIRECTIVE_FIELDS:
                        rewards_by_directive[name][edit["directive"].get(name, 0)].append(reward)
                edits.append(
                    {
                        **edit,
                        "adapter_key": train.get("adapter_key"),
                        "train": train.get("metrics"),
                        "train_error": train.get("error"),
                        "scores": evaluation["mean"] if evaluation else None,
                        "answers": evaluation["answers"] if evaluation else [],
                        "reward": reward,
                        # What the adapter made the model forget: its score on the retention set vs the base's.
                        "retention": kept,
                        "forgetting": None
                        if kept is None or base_retention is None
                        else round(base_retention - kept, 4),
                    }
                )
        scored = [e for e in edits if e["reward"] is not None]
        best = max(scored, key=lambda e: e["reward"], default=None)
        passage_results.append(
            {
                "passage_id": passage.passage_id,
                "title": passage.title,
                "questions": [
                    {"question_id": q.question_id, "question": q.question, "answers": list(q.answers)}
                    for q in passage.questions
                ],
                "baseline": baseline["mean"] if baseline else None,
                "baseline_answers": baseline["answers"] if baseline else [],
                "baseline_retention": base_retention,
                "self_edits": edits,
                "best": None
                if best is None
                else {
                    "format": best["format"],
                    "sample_index": best["sample_index"],
                    "dataset_key": best["dataset_key"],
                    "adapter_key": best["adapter_key"],
                    "reward": best["reward"],
                    "scores": best["scores"],
                    "positive": best["reward"] > 0,
                },
                "errors": errors,
            }
        )
    baselines = [p["baseline"][metric] for p in passage_results if p["baseline"]]
    bests = [p["best"]["scores"][metric] for p in passage_results if p["best"]]
    all_scores = [e["scores"][metric] for p in passage_results for e in p["self_edits"] if e["scores"]]
    summary = {
        "metric": metric,
        "passages": len(passages),
        "passages_scored": len(bests),
        "mean_baseline": _mean(baselines),
        "mean_adapted": _mean(all_scores),
        "mean_best": _mean(bests),
        "mean_best_gain": _mean([p["best"]["reward"] for p in passage_results if p["best"]]),
        "mean_retention_base": _mean(
            [p["baseline_retention"] for p in passage_results if p["baseline_retention"] is not None]
        ),
        "mean_retention_adapted": _mean(
            [e["retention"] for p in passage_results for e in p["self_edits"] if e["retention"] is not None]
        ),
        "mean_forgetting": _mean(
            [e["forgetting"] for p in passage_results for e in p["self_edits"] if e["forgetting"] is not None]
        ),
        "positive_best": sum(1 for p in passage_results if p["best"] and p["best"]["positive"]),
        "self_edits": sum(len(p["self_edits"]) for p in passage_results),
        "reward_by_format": {k: _mean(v) for k, v in sorted(rewards_by_format.items())},
        "reward_by_directive_source": {k: _mean(v) for k, v in sorted(rewards_by_source.items())},
        "reward_by_directive": {
            name: {f"{value:g}": _mean(rewards) for value, rewards in sorted(by_value.items())}
            for name, by_value in rewards_by_directive.items()
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    return {"summary": summary, "passages": passage_results}
