"""Turn a run's job records into results.

- per round: every passage's baseline, every self-edit's reward (with its directive trials), the best one;
- held-out: SEAL's conditions table (no adapter, passage only, each round's generator, teachers) with
  error bars, and the held-out score per round;
- what worked (reward by format and by directive), and what the adapters forgot (retention).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from seal_lab.data import Passage
from seal_lab.datasets import read_dataset
from seal_lab.errors import StoreUnavailable
from seal_lab.stats import describe, variance_components
from seal_lab.store import ObjectStore

from .comparisons import METRICS, compare, metric_table, planned_comparisons, power
from .schemas import RunConfig

DIRECTIVE_FIELDS = ("epochs", "learning_rate", "lora_rank", "lora_alpha", "batch_size", "steps")
#: Buckets for "which directives worked": (label, upper bound exclusive) per field.
DIRECTIVE_BUCKETS: dict[str, list[tuple[str, float]]] = {
    "epochs": [("1-2", 3), ("3-5", 6), ("6+", float("inf"))],
    "learning_rate": [
        ("<1e-3", 1e-3),
        ("1e-3 to <3e-3", 3e-3),
        ("3e-3 to <1e-2", 1e-2),
        (">=1e-2", float("inf")),
    ],
    "lora_rank": [("1-8", 9), ("9-16", 17), ("17+", float("inf"))],
}
EXAMPLES_PER_SIDE = 3


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def bucket(field: str, value: float) -> str:
    for label, upper in DIRECTIVE_BUCKETS[field]:
        if value < upper:
            return label
    raise AssertionError("the last bucket is unbounded")


def round_stage(round_index: int) -> str:
    """Job-name prefix of a round; round 0 keeps the plain names of a single inner loop."""
    return "" if round_index == 0 else f"r{round_index}-"


def _job_round(name: str) -> str:
    """The round stage of a passage job name without its index ("" for round 0 and shared jobs)."""
    head = name.split("-", 1)[0]
    return f"{head}-" if head[:1] == "r" and head[1:].isdigit() else ""


#: Training seeds of a self-edit's reward: config.seed, then + this stride per extra seed.
REWARD_SEED_STRIDE = 1000


def seed_suffix(number: int) -> str:
    """Job-name suffix of a self-edit's `number`-th reward seed ("" for the first)."""
    return f"-s{number}" if number else ""


def _trial_suffixes(config: RunConfig) -> list[str]:
    return [""] + [f"-d{number}" for number in range(1, len(config.directive_search) + 1)]


def _metric_of(evaluations: dict[str, Any], key: str | None, metric: str) -> float | None:
    """`key` "" is the base model; None (no adapter was trained) has no score."""
    if key is None:
        return None
    return evaluations.get(key, {}).get("mean", {}).get(metric)


def round_passages(
    passages: list[Passage],
    indices: list[int],
    jobs: dict[str, dict[str, Any]],
    config: RunConfig,
    stage: str,
) -> list[dict[str, Any]]:
    """Per training passage of one round: baseline, each self-edit with its rewards, and the best."""
    metric = config.reward_metric
    results = []
    for index in indices:
        passage = passages[index]
        prefix = f"{index:04d}-"
        baseline = jobs.get(prefix + "baseline", {}).get("evaluations", {}).get("")
        evaluations = jobs.get(f"{prefix}{stage}evaluate", {}).get("evaluations", {})
        retention = jobs.get(f"{prefix}{stage}retention", {}).get("evaluations", {})
        base_retention = _metric_of(retention, "", metric)
        errors = [
            f"{name.removeprefix(prefix)}: {job['error']}"
            for name, job in jobs.items()
            if name.startswith(prefix + stage)
            and "error" in job
            and _job_round(name.removeprefix(prefix)) == stage
        ]
        edits = []
        policy_key = ""
        for edit_format in config.formats:
            generated = jobs.get(f"{prefix}{stage}generate-{edit_format}", {})
            policy_key = generated.get("policy_adapter_key", policy_key)
            for edit in generated.get("self_edits", []):
                trials = []
                for suffix in _trial_suffixes(config):
                    name = f"{prefix}{stage}train-{edit_format}-{edit['sample_index']}{suffix}"
                    train = jobs.get(name, {})
                    key = train.get("adapter_key")
                    evaluation = evaluations.get(key) if key else None
                    kept = _metric_of(retention, key, metric)
                    seed_rewards = []
                    for number in range(config.reward_seeds):
                        seed_key = jobs.get(name + seed_suffix(number), {}).get("adapter_key")
                        score = _metric_of(evaluations, seed_key, metric)
                        if score is not None and baseline is not None and metric in baseline["mean"]:
                            seed_rewards.append(score - baseline["mean"][metric])
                    # The reward of a self-edit: its gain averaged over the seeds it was trained with.
                    reward = None
                    if evaluation is not None and seed_rewards:
                        reward = round(statistics.fmean(seed_rewards), 4)
                    trials.append(
                        {
                            "trial": suffix,
                            "directive": train.get("directive", edit["directive"]),
                            "adapter_key": key,
                            "train": train.get("metrics"),
                            "train_reused": train.get("reused", False),
                            "train_error": train.get("error"),
                            "scores": evaluation["mean"] if evaluation else None,
                            "answers": evaluation["answers"] if evaluation else [],
                            "reward": reward,
                            "seed_rewards": [round(r, 4) for r in seed_rewards],
                            # What the adapter made the model forget: retention-set score vs the base's.
                            "retention": kept,
                            "forgetting": None
                            if kept is None or base_retention is None
                            else round(base_retention - kept, 4),
                        }
                    )
                own = trials[0]
                scored = [t for t in trials if t["reward"] is not None]
                best_trial = max(scored, key=lambda t: t["reward"], default=None)
                edits.append(
                    {
                        **edit,
                        **{k: own[k] for k in ("adapter_key", "train", "train_error", "scores", "answers")},
                        "reward": own["reward"],
                        "retention": own["retention"],
                        "forgetting": own["forgetting"],
                        "trials": trials,
                        "best_trial": None if best_trial is None else best_trial["trial"],
                        "best_reward": None if best_trial is None else best_trial["reward"],
                    }
                )
        candidates = [(e, t) for e in edits for t in e["trials"] if t["reward"] is not None]
        best = max(candidates, key=lambda pair: pair[1]["reward"], default=None)
        results.append(
            {
                "passage_id": passage.passage_id,
                "title": passage.title,
                "questions": [
                    {"question_id": q.question_id, "question": q.question, "answers": list(q.answers)}
                    for q in passage.questions
                ],
                "policy_adapter_key": policy_key,
                "baseline": baseline["mean"] if baseline else None,
                "baseline_answers": baseline["answers"] if baseline else [],
                "baseline_retention": base_retention,
                "self_edits": edits,
                "best": None
                if best is None
                else {
                    "format": best[0]["format"],
                    "sample_index": best[0]["sample_index"],
                    "dataset_key": best[0]["dataset_key"],
                    "adapter_key": best[1]["adapter_key"],
                    "directive": best[1]["directive"],
                    "directive_trial": best[1]["trial"],
                    "reward": best[1]["reward"],
                    "scores": best[1]["scores"],
                    "positive": best[1]["reward"] > 0,
                },
                "errors": errors,
            }
        )
    return results


def _round_summary(
    passage_results: list[dict[str, Any]],
    indices: list[int],
    jobs: dict[str, dict[str, Any]],
    config: RunConfig,
    stage: str,
) -> dict[str, Any]:
    metric = config.reward_metric
    edits = [e for p in passage_results for e in p["self_edits"]]
    rewards_by_format: dict[str, list[float]] = defaultdict(list)
    rewards_by_source: dict[str, list[float]] = defaultdict(list)
    rewards_by_directive: dict[str, dict[float, list[float]]] = {
        f: defaultdict(list) for f in DIRECTIVE_FIELDS
    }
    for edit in edits:
        if edit["reward"] is not None:
            rewards_by_format[edit["format"]].append(edit["reward"])
            rewards_by_source[edit["directive_source"]].append(edit["reward"])
        for trial in edit["trials"]:
            if trial["reward"] is not None:
                for name in DIRECTIVE_FIELDS:
                    rewards_by_directive[name][trial["directive"].get(name, 0)].append(trial["reward"])
    seconds = {"generate": 0.0, "train": 0.0, "evaluate": 0.0}
    for index in indices:
        prefix = f"{index:04d}-"
        evaluations = [f"{prefix}{stage}evaluate", f"{prefix}{stage}retention"] + (
            [] if stage else [prefix + "baseline"]
        )
        seconds["evaluate"] += sum(jobs.get(name, {}).get("seconds", 0.0) for name in evaluations)
        for edit_format in config.formats:
            seconds["generate"] += jobs.get(f"{prefix}{stage}generate-{edit_format}", {}).get("seconds", 0.0)
    for edit in edits:
        for trial in edit["trials"]:
            if trial["train"] and not trial["train_reused"]:
                seconds["train"] += trial["train"]["seconds"]
    baselines = [p["baseline"][metric] for p in passage_results if p["baseline"]]
    bests = [p["best"]["scores"][metric] for p in passage_results if p["best"]]
    return {
        "metric": metric,
        "passages": len(passage_results),
        "passages_scored": len(bests),
        "mean_baseline": _mean(baselines),
        "mean_adapted": _mean([e["scores"][metric] for e in edits if e["scores"]]),
        "mean_best": _mean(bests),
        "mean_best_gain": _mean([p["best"]["reward"] for p in passage_results if p["best"]]),
        "mean_reward": _mean([e["reward"] for e in edits if e["reward"] is not None]),
        "mean_retention_base": _mean(
            [p["baseline_retention"] for p in passage_results if p["baseline_retention"] is not None]
        ),
        "mean_retention_adapted": _mean([e["retention"] for e in edits if e["retention"] is not None]),
        "mean_forgetting": _mean([e["forgetting"] for e in edits if e["forgetting"] is not None]),
        "positive_best": sum(1 for p in passage_results if p["best"] and p["best"]["positive"]),
        "self_edits": len(edits),
        "reward_by_format": {k: _mean(v) for k, v in sorted(rewards_by_format.items())},
        "reward_by_directive_source": {k: _mean(v) for k, v in sorted(rewards_by_source.items())},
        "reward_by_directive": {
            name: {f"{value:g}": _mean(rewards) for value, rewards in sorted(by_value.items())}
            for name, by_value in rewards_by_directive.items()
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        # How much of a reward belongs to the self-edit and how much is seed noise (reward_seeds >= 2).
        "reward_variance": variance_components(
            [e["trials"][0]["seed_rewards"] for e in edits if len(e["trials"][0]["seed_rewards"]) >= 2]
        )
        if config.reward_seeds >= 2
        else None,
    }


# ---- held-out conditions ---------------------------------------------------------------------------------


def condition_names(config: RunConfig, teachers: list[str]) -> list[tuple[str, str, str]]:
    """(job key, label, short label for plots) of SEAL's table rows, in order."""
    rows = [
        ("base", "no adapter", "no adapter"),
        ("passage", "passage only", "passage only"),
        ("p0", "passage + self-edits (round-0 generator)", "passage + round 0"),
    ]
    rows += [
        (f"p{r}", f"passage + self-edits (policy after round {r})", f"passage + round {r}")
        for r in range(1, config.rounds + 1)
    ]
    rows += [(f"teacher-{name}", f"passage + {name} self-edits", f"passage + {name}") for name in teachers]
    return rows


def heldout_results(
    passages: list[Passage],
    indices: list[int],
    jobs: dict[str, dict[str, Any]],
    config: RunConfig,
    teachers: list[str],
) -> dict[str, Any]:
    metric = config.reward_metric
    rows = condition_names(config, teachers)
    per_passage = []
    for index in indices:
        passage = passages[index]
        prefix = f"{index:04d}-"
        baseline = jobs.get(prefix + "baseline", {}).get("evaluations", {}).get("")
        scores: dict[str, float] = {} if baseline is None else {"base": baseline["mean"][metric]}
        metrics: dict[str, dict[str, float]] = {} if baseline is None else {"base": _known(baseline["mean"])}
        control: dict[
            str, dict[str, float]
        ] = {}  # condition -> metric -> gain on another passage's questions
        training: dict[str, dict[str, Any]] = {}
        retention: dict[str, float] = {}
        edits: dict[str, Any] = {}
        for condition, _, _ in rows[1:]:
            job = f"{prefix}heldout-{condition}-"
            made = jobs.get(job + "edit", {}).get("self_edits", [])
            key = jobs.get(job + "train", {}).get("adapter_key")
            evaluations = jobs.get(job + "evaluate", {}).get("evaluations", {})
            score = _metric_of(evaluations, key, metric)
            kept = jobs.get(job + "retention", {}).get("evaluations", {})
            if score is not None:
                scores[condition] = score
                metrics[condition] = _known(evaluations[key]["mean"])
            trained = jobs.get(job + "train", {}).get("metrics")
            if trained:
                training[condition] = {k: trained.get(k) for k in ("steps", "tokens", "seconds")}
            other = jobs.get(job + "control", {}).get("evaluations", {})
            if key and key in other and "" in other:
                mine, theirs = _known(other[key]["mean"]), _known(other[""]["mean"])
                control[condition] = {m: round(mine[m] - theirs[m], 5) for m in mine if m in theirs}
            if _metric_of(kept, key, metric) is not None:
                retention[condition] = _metric_of(kept, key, metric)
                retention["base"] = _metric_of(kept, "", metric)
            if made:
                edit = made[0]
                edits[condition] = {
                    "dataset_key": edit["dataset_key"],
                    "adapter_key": key,
                    "preview": edit["preview"],
                    "num_texts": edit["num_texts"],
                    "directive": jobs.get(job + "train", {}).get("directive", edit["directive"]),
                }
        per_passage.append(
            {
                "passage_id": passage.passage_id,
                "title": passage.title,
                "scores": scores,
                "metrics": metrics,
                "control_gain": control,
                "training": training,
                "retention": retention,
                "self_edits": edits,
                "errors": [
                    f"{name.removeprefix(prefix)}: {job['error']}"
                    for name, job in jobs.items()
                    if name.startswith(prefix) and "error" in job
                ],
            }
        )
    conditions = []
    for condition, label, short in rows:
        values = [p["scores"][condition] for p in per_passage if condition in p["scores"]]
        gains = [
            p["scores"][condition] - p["scores"]["base"]
            for p in per_passage
            if condition in p["scores"] and "base" in p["scores"]
        ]
        kept = [p["retention"][condition] for p in per_passage if condition in p["retention"]]
        if condition == "base":
            kept = [p["retention"]["base"] for p in per_passage if "base" in p["retention"]][:1]
        conditions.append(
            {
                "condition": condition,
                "label": label,
                "short_label": short,
                **describe(values, config.seed),
                "gain": describe(gains, config.seed),
                "retention": _mean(kept),
                "retention_n": len(kept),
            }
        )
    by_round = [
        {"round": r, **next(c for c in conditions if c["condition"] == f"p{r}")}
        for r in range(config.rounds + 1)
    ]
    keys = [condition for condition, _, _ in rows]
    labels = {condition: label for condition, label, _ in rows}
    pairs = planned_comparisons(keys, config.rounds)
    for row in conditions:  # the budget each condition trained with, and its gain on other passages
        spent = [p["training"][row["condition"]] for p in per_passage if row["condition"] in p["training"]]
        row["steps"] = describe([t["steps"] for t in spent if t.get("steps") is not None], config.seed)
        row["tokens"] = _mean([t["tokens"] for t in spent if t.get("tokens") is not None])
        row["control_gain"] = describe(
            [
                p["control_gain"][row["condition"]][metric]
                for p in per_passage
                if metric in p["control_gain"].get(row["condition"], {})
            ],
            config.seed,
        )
    return {
        "metric": metric,
        "passages": per_passage,
        "conditions": conditions,
        "by_round": by_round,
        "metrics": metric_table(per_passage, keys, config.seed),
        "comparisons": compare(per_passage, labels, pairs, metric, config.seed),
        "power": power(per_passage, pairs, metric),
    }


def _known(mean: dict[str, Any]) -> dict[str, float]:
    """The metrics of an evaluation's mean that it has (records written before a metric existed lack it)."""
    return {m: mean[m] for m in METRICS if isinstance(mean.get(m), int | float)}


# ---- the whole run ------------------------------------------------------------------------------------


def _what_worked(rounds: list[dict[str, Any]], config: RunConfig) -> dict[str, Any]:
    """Across every round: reward by format, by directive bucket, and what directive search found."""
    by_format: dict[str, list[float]] = defaultdict(list)
    by_bucket: dict[str, dict[str, list[float]]] = {f: defaultdict(list) for f in DIRECTIVE_BUCKETS}
    by_trial: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for round_result in rounds:
        for passage in round_result["passages"]:
            for edit in passage["self_edits"]:
                if edit["reward"] is not None:
                    by_format[edit["format"]].append(edit["reward"])
                for trial in edit["trials"]:
                    if trial["reward"] is None:
                        continue
                    for name in DIRECTIVE_BUCKETS:
                        value = trial["directive"].get(name)
                        if value is not None:
                            by_bucket[name][bucket(name, value)].append(trial["reward"])
                    if trial["trial"] and edit["reward"] is not None:
                        by_trial[trial["trial"]].append((trial["reward"], edit["reward"]))
    search = []
    for number, override in enumerate(config.directive_search, start=1):
        pairs = by_trial.get(f"-d{number}", [])
        search.append(
            {
                "trial": f"-d{number}",
                "override": override.fields_set(),
                "n": len(pairs),
                "mean_reward": _mean([a for a, _ in pairs]),
                "own_mean_reward": _mean([b for _, b in pairs]),
                "better_than_own": sum(1 for a, b in pairs if a > b),
                "worse_than_own": sum(1 for a, b in pairs if a < b),
            }
        )
    return {
        "reward_by_format": {k: describe(v, config.seed) for k, v in sorted(by_format.items())},
        "reward_by_directive_bucket": {
            name: {
                label: describe(by_bucket[name][label], config.seed)
                for label, _ in DIRECTIVE_BUCKETS[name]
                if by_bucket[name][label]
            }
            for name in DIRECTIVE_BUCKETS
        },
        "directive_search": search,
    }


def _gain_vs_retention(rounds: list[dict[str, Any]], heldout: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One point per adapter with both a gain and a retention score."""
    points = []
    for round_result in rounds:
        for passage in round_result["passages"]:
            for edit in passage["self_edits"]:
                for trial in edit["trials"]:
                    if trial["reward"] is not None and trial["retention"] is not None:
                        points.append(
                            {
                                "group": f"round {round_result['round']}",
                                "gain": trial["reward"],
                                "retention": trial["retention"],
                            }
                        )
    if heldout:
        labels = {c["condition"]: c["short_label"].removeprefix("passage + ") for c in heldout["conditions"]}
        for passage in heldout["passages"]:
            for condition, kept in passage["retention"].items():
                if condition != "base" and condition in passage["scores"] and "base" in passage["scores"]:
                    gain = round(passage["scores"][condition] - passage["scores"]["base"], 4)
                    points.append(
                        {
                            "group": f"held-out: {labels.get(condition, condition)}",
                            "gain": gain,
                            "retention": kept,
                        }
                    )
    return points


def build_results(
    passages: list[Passage],
    jobs: dict[str, dict[str, Any]],
    config: RunConfig,
    heldout_ids: frozenset[str] | set[str] = frozenset(),
    teachers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    train = [i for i, p in enumerate(passages) if p.passage_id not in heldout_ids]
    held = [i for i, p in enumerate(passages) if p.passage_id in heldout_ids]
    rounds = []
    for round_index in range(max(1, config.rounds)):
        stage = round_stage(round_index)
        passage_results = round_passages(passages, train, jobs, config, stage)
        summary = _round_summary(passage_results, train, jobs, config, stage)
        policy = jobs.get(f"policy-r{round_index + 1}") if config.rounds else None
        if policy and "error" not in policy and not policy.get("skipped") and not policy.get("reused"):
            summary["seconds"]["policy_train"] = round(policy.get("metrics", {}).get("seconds", 0.0), 1)
        policy_keys = {p["policy_adapter_key"] for p in passage_results if p["self_edits"]}
        rounds.append(
            {
                "round": round_index,
                "policy_adapter_key": policy_keys.pop() if len(policy_keys) == 1 else sorted(policy_keys),
                "summary": summary,
                "policy_update": None
                if policy is None
                else {k: v for k, v in policy.items() if k not in ("directive",)},
                "passages": passage_results,
            }
        )
    heldout = heldout_results(passages, held, jobs, config, list(teachers or {})) if held else None
    summary = dict(rounds[0]["summary"])
    summary["rounds"] = config.rounds
    summary["training_passages"] = len(train)
    summary["heldout_passages"] = len(held)
    if heldout:
        summary["heldout_by_round"] = [
            {"round": r["round"], "mean": r["mean"], "stderr": r["stderr"], "n": r["n"]}
            for r in heldout["by_round"]
        ]
    return {
        "summary": summary,
        "passages": rounds[0]["passages"],
        "rounds": rounds,
        "heldout": heldout,
        "what_worked": _what_worked(rounds, config),
        "gain_vs_retention": _gain_vs_retention(rounds, heldout),
    }


def _dataset_texts(store: ObjectStore, key: str) -> dict[str, Any]:
    """The raw self-edit and the training texts of a stored dataset."""
    dataset = read_dataset(store, key)
    return {
        "raw_output": dataset.raw_output,
        "directive_text": dataset.directive_text,
        "texts": [e.completion for e in dataset.examples],
    }


def attach_examples(results: dict[str, Any], store: ObjectStore) -> None:
    """The best and worst self-edits of the training rounds, with their full text, into `results`."""
    scored = [
        (round_result["round"], passage, edit)
        for round_result in results["rounds"]
        for passage in round_result["passages"]
        for edit in passage["self_edits"]
        if edit["reward"] is not None
    ]
    scored.sort(key=lambda item: (item[2]["reward"], item[0], item[1]["passage_id"], item[2]["sample_index"]))
    picks = {"best": scored[::-1][:EXAMPLES_PER_SIDE], "worst": scored[:EXAMPLES_PER_SIDE]}
    examples: dict[str, list[dict[str, Any]]] = {}
    for side, items in picks.items():
        examples[side] = []
        for round_index, passage, edit in items:
            try:
                text = _dataset_texts(store, edit["dataset_key"])
            except StoreUnavailable:  # the store is away: the caller waits for it, so results do not change
                raise
            except Exception as exc:  # a missing dataset must not cost the run its results
                text = {
                    "raw_output": edit.get("preview", ""),
                    "directive_text": "",
                    "texts": [],
                    "error": str(exc),
                }
            examples[side].append(
                {
                    "round": round_index,
                    "passage_id": passage["passage_id"],
                    "title": passage["title"],
                    "format": edit["format"],
                    "sample_index": edit["sample_index"],
                    "reward": edit["reward"],
                    "scores": edit["scores"],
                    "retention": edit["retention"],
                    "directive": edit["directive"],
                    "directive_source": edit["directive_source"],
                    **text,
                }
            )
    results["examples"] = examples
