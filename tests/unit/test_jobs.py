"""Job names: the stored strings stay exactly as they are, and every one reads back as the job it names."""

from __future__ import annotations

import pytest

from services.coordinator.run.jobs import JobName, policy_condition, teacher_condition

# Every kind of name a run writes, as stored records of earlier runs hold them.
STORED = [
    (JobName.baseline(0), "0000-baseline"),
    (JobName.generate(3, 0, "implications"), "0003-generate-implications"),
    (JobName.generate(3, 2, "self-qa"), "0003-r2-generate-self-qa"),
    (JobName.train(0, 0, "implications", 1), "0000-train-implications-1"),
    (JobName.train(0, 0, "self-qa", 0, trial=2), "0000-train-self-qa-0-d2"),
    (JobName.train(12, 1, "rewrite", 4, trial=1, seed=3), "0012-r1-train-rewrite-4-d1-s3"),
    (JobName.train(0, 0, "implications", 0, seed=1), "0000-train-implications-0-s1"),
    (JobName.evaluate(1, 0), "0001-evaluate"),
    (JobName.retention(1, 10), "0001-r10-retention"),
    (JobName.heldout(4, "passage", "edit"), "0004-heldout-passage-edit"),
    (JobName.heldout(4, policy_condition(2), "control"), "0004-heldout-p2-control"),
    (JobName.heldout(4, teacher_condition("gpt-4o"), "train"), "0004-heldout-teacher-gpt-4o-train"),
    (JobName.policy(0), "policy-r1"),
    (JobName.policy(11), "policy-r12"),
    (JobName.baseline(12345), "12345-baseline"),
]


@pytest.mark.parametrize(("job", "name"), STORED, ids=[name for _, name in STORED])
def test_a_job_name_is_written_as_before_and_reads_back_as_its_job(job, name):
    assert str(job) == name
    assert JobName.parse(name) == job


def test_the_label_is_the_name_within_its_passage():
    assert JobName.train(7, 1, "implications", 0, trial=1).label == "r1-train-implications-0-d1"
    assert JobName.heldout(7, "p0", "evaluate").label == "heldout-p0-evaluate"
    assert JobName.policy(0).label == str(JobName.policy(0)) == "policy-r1"


@pytest.mark.parametrize(
    "name",
    [
        "baseline",
        "0000-r1-baseline",  # the baseline belongs to no round
        "0000-r0-evaluate",  # round 0 has no stage
        "0000-train-implications-x",
        "0000-train-implications-0-d0",
        "0000-heldout-p1-score",
        "0000-generate-",
        "policy-r0",
        "000-baseline",
        "0000-somethingelse",
    ],
)
def test_a_name_this_version_never_writes_is_refused(name):
    with pytest.raises(ValueError, match="not a job name"):
        JobName.parse(name)
