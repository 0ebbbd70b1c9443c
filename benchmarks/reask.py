"""Ask a finished run's adapters their passages' questions again, with SEAL's Topic line and without it.

Issue 28 asks whether the question text, not what the adapters learned, explains a gap. This takes the
adapters a run already trained (its local store, e.g. the `--workdir` of `benchmarks/ablation.py --variants
plain,seal-lab`), asks every self-edit's adapter its passage's questions both ways (`seed_check.ask`: the
evaluator's prompt with "Topic: {title}", and the plain loop's without it; greedy, 32 tokens, through the chat
template) and pairs each with the plain loop's adapters of an ablation results file, per passage.

    .venv/bin/python benchmarks/reask.py --store WORKDIR/store --passages benchmarks/data/invented_tune_20261207.json \\
        --plain benchmarks/results/ablation_<time>_cpu2.json

The "topic" column reproduces the evaluator's scores (same prompt, same greedy decoding): a check that the two
ways are asked alike. Writes `benchmarks/results/reask_<time>_cpu<cores>.json` (never overwrites).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from resultfiles import write_new  # noqa: E402
from seed_check import ask, mean_scores, questions_of  # noqa: E402

STYLES = {"topic": "seal-lab", "no_topic": "plain"}
METRICS = ("f1", "contains")


def run_results(store: Path) -> dict[str, Any]:
    """The results of the one finished run in a local store."""
    runs = sorted(p for p in (store / "runs").iterdir() if (p / "manifest.json").exists())
    if len(runs) != 1:
        raise SystemExit(f"{store / 'runs'} holds {len(runs)} finished runs; expected one")
    return json.loads((runs[0] / "manifest.json").read_text())["results"] | {"run_id": runs[0].name}


def plain_means(path: Path) -> dict[str, dict[str, float]]:
    """Title -> the plain loop's per-passage means in an ablation results file."""
    loop = json.loads(path.read_text())["variants"]["plain"]
    return {
        p["title"]: {m: statistics.fmean(e["scores"][m] for e in p["self_edits"]) for m in METRICS}
        for p in loop["passages"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, required=True, help="the run's local store")
    parser.add_argument("--passages", type=Path, required=True, help="the run's passages (SEAL's format)")
    parser.add_argument("--plain", type=Path, required=True, help="an ablation results file with `plain`")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from peft import PeftModel

    from seal_lab.formats.passages import load_passages
    from seal_lab.model.base import load_model
    from seal_lab.scoring.stats import paired_test
    from seal_lab.settings import ModelSettings

    results = run_results(args.store)
    by_title = {p.title: p for p in load_passages(args.passages)}
    plain = plain_means(args.plain)
    loaded = load_model(ModelSettings(torch_threads=args.threads))
    passages = []
    for record in results["rounds"][0]["passages"]:
        passage = by_title[record["title"]]
        edits = []
        for edit in record["self_edits"]:
            if not edit.get("adapter_key"):
                continue
            model = PeftModel.from_pretrained(loaded.model, str(args.store / edit["adapter_key"]))
            adapted = replace(loaded, model=model)
            asked = {
                name: mean_scores(ask(adapted, questions_of(passage), style))
                for name, style in STYLES.items()
            }
            loaded = replace(loaded, model=model.unload())
            edits.append({"adapter_key": edit["adapter_key"], "evaluator": edit["scores"], **asked})
        passages.append({"title": passage.title, "self_edits": edits})
        print(passage.title, {n: round(edits[0][n]["f1"], 3) for n in STYLES} if edits else "-", flush=True)

    titles = [p["title"] for p in passages if p["self_edits"]]
    summary: dict[str, Any] = {}
    for name in STYLES:
        for metric in METRICS:
            ours = [
                statistics.fmean(e[name][metric] for e in p["self_edits"])
                for p in passages
                if p["self_edits"]
            ]
            summary[f"{name}_{metric}"] = {
                "mean": statistics.fmean(ours),
                "versus_plain": paired_test(ours, [plain[t][metric] for t in titles], 0),
            }
    out = {
        "run_id": results["run_id"],
        "store": str(args.store),
        "passages_file": args.passages.name,
        "plain_file": args.plain.name,
        "summary": summary,
        "passages": passages,
    }
    for key, value in summary.items():
        test = value["versus_plain"]
        print(
            f"{key}: {value['mean']:.3f}, vs plain {test['mean_diff']:+.3f} {test['ci95']} (MDE {test['mde']})"
        )
    print(f"wrote {write_new(args.out, 'reask', out)}")


if __name__ == "__main__":
    main()
