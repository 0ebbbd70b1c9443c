"""A continual run's results from its job records: per stream the accuracy matrix (passage i after step j),
the mean over the passages seen after each step, forgetting per passage (right after its step minus at the
end), retention and the next unseen passage after each step; across streams the same by position (SEAL's
continual figure: the passage learned i-th, after j steps, averaged over orderings).

Also the one rule of which candidate a step keeps (`choose`): the engine follows it while the stream runs,
and the results read it back from the same records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from seal_lab.formats.passages import Passage

from ..run.continual import stream_orders
from ..run.jobs import JobName
from ..run.records import JobRecord, SelfEdit, job_records
from ..run.result_schemas import (
    ContinualByPosition,
    ContinualResults,
    ContinualStep,
    ContinualStream,
    ContinualSummary,
    ResultsSummary,
    RunResults,
    StepChoice,
    StreamFinal,
)
from ..run.schemas import RunConfig
from .readout import Jobs, errors_of, evaluations_of, mean, metric_of, self_edits_of, trained_of


def candidate_rewards(
    candidates: Sequence[str],
    current: str,
    on_passage: Mapping[str, Any],
    on_retention: Mapping[str, Any] | None,
    metric: str,
    retention_lambda: float,
) -> list[float | None]:
    """Each candidate adapter's reward: its gain on the step's passage over the current model, minus
    `retention_lambda` times what it lost on the retention sample against the current model (floored at 0)."""
    before = metric_of(on_passage, current, metric)
    kept_before = metric_of(on_retention, current, metric) if on_retention is not None else None
    rewards: list[float | None] = []
    for key in candidates:
        score = metric_of(on_passage, key, metric)
        if score is None or before is None:
            rewards.append(None)
            continue
        reward = score - before
        if retention_lambda and on_retention is not None:
            kept = metric_of(on_retention, key, metric)
            if kept is not None and kept_before is not None:
                reward -= retention_lambda * max(0.0, kept_before - kept)
        rewards.append(round(reward, 6))
    return rewards


def choose(candidates: Sequence[str], rewards: Sequence[float | None] | None) -> int | None:
    """The candidate a step keeps: the first (`rewards` None: pick `first`), else the highest reward, the
    earliest of equal ones; None when there is none to keep."""
    if not candidates:
        return None
    if rewards is None:
        return 0
    scored = [(r, -i) for i, r in enumerate(rewards) if r is not None]
    return -max(scored)[1] if scored else None


def step_candidates(
    jobs: Jobs, ordering: int, position: int, index: int, config: RunConfig
) -> list[SelfEdit]:
    """The self-edits a step trains: the first of its generation (pick `first`), else all of them."""
    generated = self_edits_of(jobs, JobName.continual(ordering, position, "generate", index))
    if generated is None:
        return []
    edits = list(generated.self_edits)
    return edits[:1] if config.continual_pick == "first" else edits


def step_choice(
    jobs: Jobs, ordering: int, position: int, index: int, current: str, config: RunConfig
) -> StepChoice | None:
    """What a finished step kept, read from its records: the adapter, the self-edit and the rewards; None
    while the step is not done (or failed)."""
    edits = step_candidates(jobs, ordering, position, index, config)
    trained = [
        trained_of(jobs, JobName.continual(ordering, position, "train", index, edit.sample_index))
        for edit in edits
    ]
    keyed = [(edit, t.adapter_key) for edit, t in zip(edits, trained, strict=True) if t and t.adapter_key]
    if not keyed:
        return None
    keys = [key for _, key in keyed]
    rewards = None
    if config.continual_pick == "best":
        on_passage = evaluations_of(jobs, JobName.continual(ordering, position, "candidates", index))
        if not on_passage:
            return None
        on_retention = None
        if config.retention_lambda:
            on_retention = evaluations_of(jobs, JobName.continual(ordering, position, "candret", index))
            if not on_retention:
                return None
        rewards = candidate_rewards(
            keys, current, on_passage, on_retention, config.reward_metric, config.retention_lambda
        )
    chosen = choose(keys, rewards)
    if chosen is None:
        return None
    edit, key = keyed[chosen]
    return StepChoice(
        adapter_key=key, dataset_key=edit.dataset_key, sample_index=edit.sample_index, rewards=rewards
    )


def _score(jobs: Jobs, job: JobName, key: str, metric: str) -> float | None:
    return metric_of(evaluations_of(jobs, job), key, metric)


def stream_results(
    jobs: Jobs, passages: Sequence[Passage], order: Sequence[int], ordering: int, config: RunConfig
) -> ContinualStream:
    """One stream: its steps as far as they went, the matrix (rows: its passages in order; columns: steps;
    null above the diagonal and for steps not done), means, forgetting, retention and the specificity control."""
    metric = config.reward_metric
    baseline = [_score(jobs, JobName.baseline(i), "", metric) for i in order]
    matrix: list[list[float | None]] = [[None] * len(order) for _ in order]
    steps: list[ContinualStep] = []
    current = ""
    stopped = ""
    for position, index in enumerate(order):
        choice = step_choice(jobs, ordering, position, index, current, config)
        if choice is None:
            failed = errors_of(jobs, lambda job, at=(ordering, position): job.stream == at)
            stopped = f"step {position} ({passages[index].title}) " + (
                f"failed: {failed[0]}" if failed else "did not finish"
            )
            break
        current = choice.adapter_key
        for row, seen in enumerate(order[: position + 1]):
            matrix[row][position] = _score(
                jobs, JobName.continual(ordering, position, "accuracy", seen), current, metric
            )
        retention = evaluations_of(jobs, JobName.continual(ordering, position, "retention", index))
        nxt = order[position + 1] if position + 1 < len(order) else None
        steps.append(
            ContinualStep(
                position=position,
                passage_id=passages[index].passage_id,
                title=passages[index].title,
                **choice.model_dump(),
                mean_seen=mean(
                    [v for v in (matrix[r][position] for r in range(position + 1)) if v is not None]
                ),
                retention=metric_of(retention, current, metric) if retention else None,
                retention_base=metric_of(retention, "", metric) if retention else None,
                next=None
                if nxt is None
                else _score(jobs, JobName.continual(ordering, position, "next", nxt), current, metric),
                next_base=None if nxt is None else baseline[position + 1],
            )
        )
    done = len(steps)
    last = done - 1
    forgetting = [
        None
        if row > last or matrix[row][row] is None or matrix[row][last] is None
        else round(matrix[row][row] - matrix[row][last], 4)
        for row in range(len(order))
    ]
    return ContinualStream(
        ordering=ordering,
        order=[passages[i].passage_id for i in order],
        titles=[passages[i].title for i in order],
        steps_done=done,
        stopped=stopped,
        baseline=baseline,
        matrix=matrix,
        mean_seen=[s.mean_seen for s in steps],
        forgetting=forgetting,
        final_model=current,
        steps=steps,
    )


def _mean_by_position(streams: list[ContinualStream], size: int) -> list[list[float | None]]:
    """SEAL's figure: cell (i, j) is the mean over streams of the passage learned i-th, after step j."""
    return [
        [
            mean([s.matrix[i][j] for s in streams if j < len(s.matrix) and s.matrix[i][j] is not None])
            for j in range(size)
        ]
        for i in range(size)
    ]


def _stream_final(stream: ContinualStream) -> StreamFinal:
    """A stream's figures after its last step done (none before its first)."""
    last = stream.steps[-1] if stream.steps else None
    return StreamFinal(
        ordering=stream.ordering,
        final_mean_seen=stream.mean_seen[-1] if stream.mean_seen else None,
        final_retention=last.retention if last else None,
        retention_base=last.retention_base if last else None,
        mean_forgetting=mean([f for f in stream.forgetting if f is not None]),
    )


def continual_results(
    jobs: Jobs, passages: Sequence[Passage], orders: Sequence[Sequence[int]], config: RunConfig
) -> ContinualResults:
    """Every stream, and across them: the matrix by position, the mean over seen passages after each step,
    forgetting by position, and the final figures the benchmark compares (mean over seen, retention)."""
    streams = [stream_results(jobs, passages, order, o, config) for o, order in enumerate(orders)]
    size = max((len(order) for order in orders), default=0)
    finished = [s for s in streams if s.steps_done == len(s.order)]

    per_stream = [_stream_final(s) for s in streams]

    def over_streams(field: str) -> float | None:
        return mean([v for p in per_stream if (v := getattr(p, field)) is not None])

    return ContinualResults(
        metric=config.reward_metric,
        pick=config.continual_pick,
        carry=config.continual_carry,
        streams=streams,
        by_position=ContinualByPosition(
            matrix=_mean_by_position(finished, size),
            mean_seen=[mean([v for s in finished if (v := s.mean_seen[j]) is not None]) for j in range(size)],
            forgetting=[
                mean([v for s in finished if (v := s.forgetting[i]) is not None]) for i in range(size)
            ],
            streams=len(finished),
        ),
        per_stream=per_stream,
        summary=ContinualSummary(
            streams=len(streams),
            streams_finished=len(finished),
            final_mean_seen=over_streams("final_mean_seen"),
            final_retention=over_streams("final_retention"),
            retention_base=over_streams("retention_base"),
            mean_forgetting=over_streams("mean_forgetting"),
        ),
    )


def build_continual_results(
    passages: Sequence[Passage], jobs: Mapping[str, JobRecord | dict[str, Any]], config: RunConfig
) -> RunResults:
    """A continual run's results: its streams in `continual`, their summary as the run's; the parts of a
    standard run (rounds, held-out conditions) are empty."""
    records = job_records(jobs)
    continual = continual_results(records, passages, stream_orders(config, passages), config)
    # The run's summary: the streams' after mode and passages (mean_forgetting, a field of a round's summary
    # too, dumps in that field's place, as it always has).
    summary = ResultsSummary.model_validate(
        {"mode": "continual", "passages": len(passages), **continual.summary.model_dump()}
    )
    return RunResults(
        summary=summary,
        passages=[],
        rounds=[],
        heldout=None,
        what_worked={},
        gain_vs_retention=[],
        continual=continual,
    )
