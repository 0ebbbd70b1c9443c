"""Job names: every job of a run is named here, and its name read back here.

A name is the key of the job's write-once record (`runs/<id>/jobs/<name>.json`): a resumed run finds its
finished jobs by name, so the strings never change. Passage jobs start with the passage's index; rounds
after the first add their stage (`r1-`):
- training passages: `0000-baseline`, `0000-r1-generate-<format>`,
  `0000-r1-train-<format>-<sample>[-d<trial>][-s<seed>]`, `0000-r1-evaluate`, `0000-r1-retention`;
- held-out passages: `0002-heldout-<condition>-<step>`, the condition `passage`, `p<round>` or
  `teacher-<name>`, the step `edit`, `train`, `evaluate`, `control` or `retention`;
- the run: `policy-r<n>`, the policy trained on the winners of round n - 1;
- a continual run's streams: `0003-c<ordering>s<step>-<what>` (`CONTINUAL_STEPS`), the index that of the passage
  the job is about: the step's own (`generate`, `train-<sample>`, `candidates`, `candret`, `retention`), a seen
  one's accuracy after the step (`accuracy`), or the next unseen one's (`next`); its baselines are `0003-baseline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HELDOUT_STEPS = ("edit", "train", "evaluate", "control", "retention")
_ROUND_STEPS = ("baseline", "evaluate", "retention")

_INDEXED = re.compile(r"(?P<index>\d{4,})-(?P<label>.+)")
_POLICY = re.compile(r"policy-r(?P<number>[1-9]\d*)")
_STAGE = re.compile(r"r(?P<round>[1-9]\d*)-(?P<rest>.+)")
_GENERATE = re.compile(r"generate-(?P<format>.+)")
_TRAIN = re.compile(
    r"train-(?P<format>.+?)-(?P<sample>\d+)(?:-d(?P<trial>[1-9]\d*))?(?:-s(?P<seed>[1-9]\d*))?"
)
_HELDOUT = re.compile(r"heldout-(?P<condition>.+)-(?P<step>[a-z]+)")
#: A continual stream's jobs: what each step does (`train` carries the self-edit's sample index).
CONTINUAL_STEPS = ("generate", "train", "candidates", "candret", "accuracy", "next", "retention")
_CONTINUAL = re.compile(
    r"c(?P<ordering>0|[1-9]\d*)s(?P<position>0|[1-9]\d*)-(?P<step>[a-z]+)(?:-(?P<sample>0|[1-9]\d*))?"
)


def trial_suffix(trial: int) -> str:
    """The directive-search trial of a training job as its name (and the results) show it: "", "-d1"..."""
    return f"-d{trial}" if trial else ""


def policy_condition(round_index: int) -> str:
    """The held-out condition of the policy after `round_index` rounds (`p0` is the starting generator)."""
    return f"p{round_index}"


def teacher_condition(name: str) -> str:
    return f"teacher-{name}"


def is_teacher_condition(condition: str) -> bool:
    return condition.startswith("teacher-")


@dataclass(frozen=True)
class JobName:
    """One job of a run. `str()` gives its stored name; `JobName.parse` reads one back."""

    #: baseline, generate, train, evaluate, retention or policy; held-out: one of HELDOUT_STEPS.
    step: str
    #: The passage's index into the run's passages; None for a job of the whole run (a policy update).
    index: int | None = None
    #: The training round (a policy update: the round whose winners it learns from).
    round: int = 0
    format: str = ""
    sample: int = 0
    #: Directive-search variant: 0 is the self-edit's own directive.
    trial: int = 0
    #: Reward seed: 0 is the first.
    seed: int = 0
    #: The held-out condition; "" for jobs of the training rounds.
    condition: str = ""
    #: A continual stream's job: (ordering, step position in it); None for every other job.
    stream: tuple[int, int] | None = None

    @classmethod
    def baseline(cls, index: int) -> JobName:
        return cls("baseline", index)

    @classmethod
    def generate(cls, index: int, round_index: int, edit_format: str) -> JobName:
        return cls("generate", index, round_index, format=edit_format)

    @classmethod
    def train(
        cls, index: int, round_index: int, edit_format: str, sample: int, trial: int = 0, seed: int = 0
    ) -> JobName:
        return cls("train", index, round_index, format=edit_format, sample=sample, trial=trial, seed=seed)

    @classmethod
    def evaluate(cls, index: int, round_index: int) -> JobName:
        return cls("evaluate", index, round_index)

    @classmethod
    def retention(cls, index: int, round_index: int) -> JobName:
        return cls("retention", index, round_index)

    @classmethod
    def heldout(cls, index: int, condition: str, step: str) -> JobName:
        return cls(step, index, condition=condition)

    @classmethod
    def policy(cls, round_index: int) -> JobName:
        return cls("policy", round=round_index)

    @classmethod
    def continual(cls, ordering: int, position: int, step: str, index: int, sample: int = 0) -> JobName:
        """Step `position` of stream `ordering`: `step` (one of CONTINUAL_STEPS) about passage `index`."""
        if step not in CONTINUAL_STEPS:
            raise ValueError(f"not a continual step: {step!r}")
        return cls(step, index, sample=sample, stream=(ordering, position))

    @property
    def label(self) -> str:
        """The name without the passage's index (the job's name within its passage)."""
        if self.index is None:
            return f"policy-r{self.round + 1}"
        if self.condition:
            return f"heldout-{self.condition}-{self.step}"
        if self.stream is not None:
            sample = f"-{self.sample}" if self.step == "train" else ""
            return f"c{self.stream[0]}s{self.stream[1]}-{self.step}{sample}"
        stage = f"r{self.round}-" if self.round else ""
        if self.step == "generate":
            return f"{stage}generate-{self.format}"
        if self.step == "train":
            seed = f"-s{self.seed}" if self.seed else ""
            return f"{stage}train-{self.format}-{self.sample}{trial_suffix(self.trial)}{seed}"
        return f"{stage}{self.step}"

    def __str__(self) -> str:
        return self.label if self.index is None else f"{self.index:04d}-{self.label}"

    @classmethod
    def parse(cls, name: str) -> JobName:
        """The job a stored name stands for; ValueError for a name this version does not write."""
        job = _parse(name)
        if job is None or str(job) != name:
            raise ValueError(f"not a job name: {name!r}")
        return job


def _parse(name: str) -> JobName | None:
    if policy := _POLICY.fullmatch(name):
        return JobName.policy(int(policy["number"]) - 1)
    indexed = _INDEXED.fullmatch(name)
    if indexed is None:
        return None
    index, label = int(indexed["index"]), indexed["label"]
    if (heldout := _HELDOUT.fullmatch(label)) and heldout["step"] in HELDOUT_STEPS:
        return JobName.heldout(index, heldout["condition"], heldout["step"])
    if (stream := _CONTINUAL.fullmatch(label)) and stream["step"] in CONTINUAL_STEPS:
        if (stream["sample"] is not None) != (stream["step"] == "train"):
            return None
        ordering, position, sample = (
            int(stream["ordering"]),
            int(stream["position"]),
            int(stream["sample"] or 0),
        )
        return JobName.continual(ordering, position, stream["step"], index, sample)
    round_index = 0
    if stage := _STAGE.fullmatch(label):
        round_index, label = int(stage["round"]), stage["rest"]
    if generate := _GENERATE.fullmatch(label):
        return JobName.generate(index, round_index, generate["format"])
    if train := _TRAIN.fullmatch(label):
        return JobName.train(
            index,
            round_index,
            train["format"],
            int(train["sample"]),
            int(train["trial"] or 0),
            int(train["seed"] or 0),
        )
    if label in _ROUND_STEPS and not (label == "baseline" and round_index):
        return JobName(label, index, round_index)
    return None
