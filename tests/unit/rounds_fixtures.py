"""Synthetic job records of a two-round ReST-EM run with held-out conditions (shared by the unit tests).

Two training passages (A = index 0, B = index 1) and two held-out passages (H1 = index 2, H2 = index 3);
`RunConfig(k=2, rounds=2, self_edit_directive="generated", directive_search=[{"epochs": 1}])` (every
self-edit trains with its own directive), one teacher "gpt". Every score is chosen so the
expected results can be worked out by hand (see the tests for the arithmetic).
"""

from __future__ import annotations

from typing import Any

from seal_lab.formats.passages import Passage, Question
from services.coordinator.results.build import build_results
from services.coordinator.run.jobs import JobName, trial_suffix
from services.coordinator.run.schemas import RunConfig
from services.coordinator.run.split import Split

FORMAT = "implications"
BASE_RETENTION = 0.8


def passage(passage_id: str, title: str, context: str) -> Passage:
    question = Question(f"{passage_id}-q0", f"What about {title}?", (title.lower(),))
    return Passage(passage_id, title, context, (question,))


TRAIN_PASSAGES = [
    passage("p-a", "Alpha", "Alpha is the first letter."),
    passage("p-b", "Beta", "Beta is the second letter."),
]
HELDOUT_PASSAGES = [
    passage("p-h1", "Gamma", "Gamma is the third letter."),
    passage("p-h2", "Delta", "Delta is the fourth letter."),
]
PASSAGES = TRAIN_PASSAGES + HELDOUT_PASSAGES
HELDOUT_IDS = frozenset(p.passage_id for p in HELDOUT_PASSAGES)
SPLIT = Split.of(PASSAGES, HELDOUT_IDS)
TEACHERS: dict[str, Any] = {"gpt": (FORMAT, {"p-h1": "Gamma comes after beta."})}


def config(**overrides: Any) -> RunConfig:
    return RunConfig(
        **{
            "k": 2,
            "rounds": 2,
            "self_edit_directive": "generated",
            "directive_search": [{"epochs": 1}],
            **overrides,
        }
    )


def scores(f1: float) -> dict[str, float]:
    return {"exact_match": 0.0, "f1": f1, "contains": 0.0}


def evaluation(f1: float) -> dict[str, Any]:
    # One answer, shaped as an evaluation record keeps it (run/records.py Answer).
    return {
        "mean": scores(f1),
        "answers": [{"question_id": "q0", "answer": f"answer {f1}", "scores": scores(f1)}],
    }


def directive(epochs: int, learning_rate: float, lora_rank: int) -> dict[str, float | int]:
    return {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "lora_rank": lora_rank,
        "lora_alpha": 32,
        "batch_size": 1,
    }


def self_edit(name: str, sample_index: int, own: dict[str, Any], source: str = "parsed") -> dict[str, Any]:
    return {
        "dataset_key": f"datasets/{name}.jsonl",
        "format": FORMAT,
        "sample_index": sample_index,
        "directive": own,
        "directive_source": source,
        "directive_notes": [],
        "num_texts": 3,
        "preview": f"preview of {name}",
        "generated_tokens": 40,
    }


# One training passage in one round: (own directive, directive source, own score, own retention,
# own train seconds, -d1 score, -d1 retention, -d1 train seconds, -d1 reused) per self-edit.
EditSpec = tuple[dict[str, Any], str, float, float, float, float, float, float, bool]

TRAINING: dict[tuple[int, int], dict[str, Any]] = {
    # round 0, passage A (baseline 0.2): rewards 0.3 / 0.1 and 0.0 / 0.4 -> the -d1 trial of edit 1 wins.
    (0, 0): {
        "generate_seconds": 20.0,
        "policy": "",
        "edits": [
            (directive(5, 3e-3, 16), "parsed", 0.5, 0.7, 10.0, 0.3, 0.8, 2.0, False),
            (directive(10, 1e-3, 8), "parsed", 0.2, 0.6, 12.0, 0.6, 0.75, 3.0, True),
        ],
    },
    # round 0, passage B (baseline 0.1): rewards 0.25 / 0.05 and -0.05 / 0.0 -> its own edit 0 wins.
    (0, 1): {
        "generate_seconds": 30.0,
        "policy": "",
        "edits": [
            (directive(3, 5e-3, 32), "parsed", 0.35, 0.7, 8.0, 0.15, 0.8, 2.0, False),
            (directive(2, 2e-2, 4), "default", 0.05, 0.8, 9.0, 0.1, 0.8, 1.0, False),
        ],
    },
    # round 1, passage A: rewards 0.5 / 0.2 and 0.3 / 0.1 -> own edit 0 wins.
    (1, 0): {
        "generate_seconds": 25.0,
        "policy": "adapters/policy1",
        "edits": [
            (directive(4, 2e-3, 16), "parsed", 0.7, 0.6, 5.0, 0.4, 0.7, 1.0, False),
            (directive(6, 3e-3, 16), "parsed", 0.5, 0.7, 6.0, 0.3, 0.8, 1.0, False),
        ],
    },
    # round 1, passage B: rewards 0.3 / 0.2 and 0.2 / 0.4 -> the -d1 trial of edit 1 wins.
    (1, 1): {
        "generate_seconds": 25.0,
        "policy": "adapters/policy1",
        "edits": [
            (directive(2, 5e-4, 8), "parsed", 0.4, 0.75, 4.0, 0.3, 0.8, 1.0, False),
            (directive(8, 5e-3, 16), "parsed", 0.3, 0.7, 7.0, 0.5, 0.65, 2.0, False),
        ],
    },
}
BASELINES = {0: 0.2, 1: 0.1, 2: 0.1, 3: 0.3}
#: Seconds of each round's evaluate and retention jobs, per passage.
EVALUATE_SECONDS = {0: (4.0, 2.0), 1: (5.0, 3.0)}
BASELINE_SECONDS = 1.0

#: Held-out scores per passage index and condition: (score, retention).
HELDOUT: dict[int, dict[str, tuple[float, float]]] = {
    2: {
        "passage": (0.3, 0.75),
        "p0": (0.2, 0.7),
        "p1": (0.4, 0.65),
        "p2": (0.5, 0.6),
        "teacher-gpt": (0.6, 0.7),
    },
    # The teacher has no self-edit for H2: its row has one passage.
    3: {
        "passage": (0.4, 0.75),
        "p0": (0.3, 0.8),
        "p1": (0.5, 0.7),
        "p2": (0.8, 0.6),
    },
}


def adapter_key(round_index: int, index: int, sample_index: int, suffix: str) -> str:
    return f"adapters/r{round_index}-{index}-{sample_index}{suffix}"


def _training_jobs(jobs: dict[str, dict[str, Any]], round_index: int, index: int) -> None:
    spec = TRAINING[(round_index, index)]
    edits = []
    evaluations: dict[str, Any] = {}
    retention: dict[str, Any] = {"": evaluation(BASE_RETENTION)}
    for sample_index, edit_spec in enumerate(spec["edits"]):
        own, source, score, kept, seconds, d_score, d_kept, d_seconds, d_reused = edit_spec
        edits.append(self_edit(f"r{round_index}-{index}-{sample_index}", sample_index, own, source))
        full = {**own, "max_length": 256}
        trials = (
            (0, full, score, kept, seconds, False),
            (1, {**full, "epochs": 1}, d_score, d_kept, d_seconds, d_reused),
        )
        for trial, trained_directive, trial_score, trial_kept, trial_seconds, reused in trials:
            key = adapter_key(round_index, index, sample_index, trial_suffix(trial))
            jobs[str(JobName.train(index, round_index, FORMAT, sample_index, trial))] = {
                "adapter_key": key,
                "directive": trained_directive,
                "reused": reused,
                "trainer": "127.0.0.1:1",
                "metrics": {"steps": 3, "tokens": 90, "seconds": trial_seconds, "final_loss": 1.0},
            }
            evaluations[key] = evaluation(trial_score)
            retention[key] = evaluation(trial_kept)
    jobs[str(JobName.generate(index, round_index, FORMAT))] = {
        "seconds": spec["generate_seconds"],
        "self_edits": edits,
        "policy_adapter_key": spec["policy"],
    }
    evaluate_seconds, retention_seconds = EVALUATE_SECONDS[round_index]
    jobs[str(JobName.evaluate(index, round_index))] = {
        "seconds": evaluate_seconds,
        "evaluations": evaluations,
    }
    jobs[str(JobName.retention(index, round_index))] = {
        "seconds": retention_seconds,
        "evaluations": retention,
    }


def _heldout_jobs(jobs: dict[str, dict[str, Any]], index: int) -> None:
    for condition, (score, kept) in HELDOUT[index].items():
        name = {
            step: str(JobName.heldout(index, condition, step))
            for step in ("edit", "train", "evaluate", "retention")
        }
        key = f"adapters/heldout-{index}-{condition}"
        edit = self_edit(f"heldout-{index}-{condition}", 0, directive(5, 3e-3, 16))
        jobs[name["edit"]] = {"seconds": 2.0, "self_edits": [edit], "policy_adapter_key": ""}
        jobs[name["train"]] = {
            "adapter_key": key,
            "directive": {**directive(5, 3e-3, 16), "max_length": 256},
            "reused": False,
            "metrics": {"seconds": 4.0},
        }
        jobs[name["evaluate"]] = {"seconds": 1.0, "evaluations": {key: evaluation(score)}}
        jobs[name["retention"]] = {
            "seconds": 1.0,
            "evaluations": {"": evaluation(BASE_RETENTION), key: evaluation(kept)},
        }


def _winners(round_index: int) -> list[dict[str, Any]]:
    return [{"passage_id": p.passage_id, "round": round_index} for p in TRAIN_PASSAGES]


def build_jobs(heldout: bool = True) -> dict[str, dict[str, Any]]:
    """Job records of the whole run: both rounds, both policy updates, all held-out conditions."""
    jobs: dict[str, dict[str, Any]] = {}
    indices = [0, 1, 2, 3] if heldout else [0, 1]
    for index in indices:
        jobs[str(JobName.baseline(index))] = {
            "seconds": BASELINE_SECONDS,
            "evaluations": {"": evaluation(BASELINES[index])},
        }
    for round_index, index in TRAINING:
        _training_jobs(jobs, round_index, index)
    if heldout:
        for index in HELDOUT:
            _heldout_jobs(jobs, index)
    jobs[str(JobName.policy(0))] = {
        "round": 0,
        "previous_policy_adapter_key": "",
        "winners": _winners(0),
        "adapter_key": "adapters/policy1",
        "directive": {"epochs": 2},
        "reused": False,
        "metrics": {"seconds": 40.0},
        "dataset_key": "datasets/policy1.jsonl",
        "examples": 4,
    }
    # The second policy adapter already existed: its training time is not this run's.
    jobs[str(JobName.policy(1))] = {
        "round": 1,
        "previous_policy_adapter_key": "adapters/policy1",
        "winners": _winners(1),
        "adapter_key": "adapters/policy2",
        "directive": {"epochs": 2},
        "reused": True,
        "metrics": {"seconds": 45.0},
        "dataset_key": "datasets/policy2.jsonl",
        "examples": 4,
    }
    return jobs


def build_run_results() -> dict[str, Any]:
    return build_results(PASSAGES, build_jobs(), config(), SPLIT, TEACHERS).model_dump()
