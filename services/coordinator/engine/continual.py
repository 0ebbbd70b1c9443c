"""A continual run: the passages as streams (run/continual.py), each step trained on the model the stream
has so far, and what that model knows measured after every step.

A step of stream o at position j, passage p: the generator writes self-edits for p under the current model
(its adapter as the generator's policy adapter; the base model at step 0); the first self-edit, or each of
the k when the pick is `best`, is trained starting from the current model (carried on as one adapter, or
merged under a fresh one: `continual_carry`); `best` scores the candidates on p's questions (and on the
retention sample when `retention_lambda` weighs forgetting) and keeps the highest reward
(results/continual.py `step_choice`, the same rule the results read back). The kept adapter is the current
model of step j + 1. Then it is scored on every passage seen so far (the accuracy matrix's column j), on the
retention set and on the next unseen passage (the specificity control).

Every job is write-once (experiment.Experiment._job) and every adapter content-addressed, so a stream resumed
after a crash goes on from its last finished step and trains nothing twice; the same streams and seed give the
same models. A stream whose step fails stops there (each later step needs it); the other streams go on. A run
cancelled mid-step ("cancelling") finishes the steps in flight first (their records are kept), starts no other,
then stops (the manager then calls it "cancelled").
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from seal_lab.formats.datasets import ReplayMeta, TrainingExample, read_dataset, write_dataset
from seal_lab.formats.directive import Directive
from seal_lab.formats.passages import retention_questions
from seal_lab.store.outage import call_async

from ..results.continual import step_candidates, step_choice
from ..run.continual import stream_orders
from ..run.jobs import JobName
from ..run.records import SelfEdit, TrainRecord
from ..run.result_schemas import StepChoice
from .experiment import Experiment, _all_or_none, _sampling_seed, directive_trials

#: Seeds of a step's replay sample: config.seed times this, plus the ordering's and the step's.
REPLAY_SEED_STRIDE = 7919


class ContinualExperiment(Experiment):
    """A continual run's streams, concurrently (each one step after the other), under the passage gate."""

    #: Each stream's passages, by ordering (set when the run starts).
    orders: list[list[int]]

    async def run_all(self) -> None:
        run = self.run
        orders = self.orders = stream_orders(run.config, run.passages)
        seen = sorted({i for order in orders for i in order})
        async with self._phase("baselines"):
            await _all_or_none(self._baseline(i) for i in seen)
        async with self._phase("streams"):
            await _all_or_none(self._stream(o, order) for o, order in enumerate(orders))

    def stage(self, job: JobName) -> str:
        """A continual run has no rounds: a job is in a stream's step (`ordering 2, step 5/8`), or before."""
        if job.stream is None:
            return "before the streams"
        ordering, position = job.stream
        return f"ordering {ordering}, step {position + 1}/{len(self.orders[ordering])}"

    async def _baseline(self, index: int) -> None:
        async with self.gate:
            await self._job(
                JobName.baseline(index), lambda: self.calls.evaluate(self.run, self.run.passages[index], [""])
            )

    async def _stream(self, ordering: int, order: list[int]) -> None:
        run = self.run
        current = ""  # the base model
        replay: list[str] = []  # the kept self-edits' datasets of the steps so far
        for position in range(len(order)):
            step = asyncio.ensure_future(self._step(ordering, order, position, current, replay))
            try:
                kept = await asyncio.shield(step)
            except asyncio.CancelledError:
                if run.status == "cancelling" and not step.done():  # finish the step in flight, keep it
                    self.events.emit(
                        run,
                        "status",
                        f"ordering {ordering}: finishing step {position + 1}/{len(order)} before stopping",
                        data={"ordering": ordering, "position": position},
                    )
                    try:
                        await asyncio.shield(step)
                    except asyncio.CancelledError:  # cancelled again (the coordinator stops): the step too
                        step.cancel()
                        raise
                    except Exception:  # told by its own events; the stream stops either way
                        pass
                else:
                    step.cancel()
                raise
            if kept is None:
                self.events.emit(
                    run,
                    "error",
                    f"stream {ordering} stopped at step {position}: a job of the step failed (see the events)",
                    data={"ordering": ordering, "position": position},
                    persist=True,
                )
                return
            current = kept.adapter_key
            replay.append(kept.dataset_key)

    async def _step(
        self, ordering: int, order: list[int], position: int, current: str, replay: list[str]
    ) -> StepChoice | None:
        """One step; what it kept (results/continual.py `step_choice`), or None when a job of it failed."""
        run, calls, config = self.run, self.calls, self.run.config
        index = order[position]
        passage = run.passages[index]

        def job(step: str, about: int = index, sample: int = 0) -> JobName:
            return JobName.continual(ordering, position, step, about, sample)

        async with self.gate:
            if run.status == "cancelling":  # cancelled while it waited for its turn: it never started
                return None
            run.current = f"{self.stage(job('generate'))}: {passage.title}"
            samples = 1 if config.continual_pick == "first" else config.k
            generated = await self._job(
                job("generate"),
                lambda: calls.generate(
                    run,
                    passage,
                    config.formats[0],
                    _sampling_seed(config, index, 0),
                    self.limits,
                    current,
                    samples,
                ),
            )
            if generated is None:
                return None
            edits = step_candidates(run.jobs, ordering, position, index, config)
            names = [(job("train", sample=edit.sample_index), edit) for edit in edits]
            trained = await _all_or_none(
                self._job(name, lambda n=name, e=edit: self._train(n, e, current, replay, ordering, position))
                for name, edit in names
            )
            keys = list(dict.fromkeys(t.adapter_key for t in trained if t is not None and t.adapter_key))
            if not keys:
                return None
            if config.continual_pick == "best":
                candidates = await self._job(
                    job("candidates"), lambda: calls.evaluate(run, passage, [current, *keys])
                )
                if candidates is None:
                    return None
                if config.retention_lambda:
                    questions = retention_questions(config.retention_questions)
                    kept_check = await self._job(
                        job("candret"), lambda: calls.evaluate(run, passage, [current, *keys], questions)
                    )
                    if kept_check is None:
                        return None
            kept = step_choice(run.jobs, ordering, position, index, current, config)
            if kept is None:
                return None
            model = kept.adapter_key
            measures = [
                self._job(
                    job("accuracy", about=seen),
                    lambda s=seen: calls.evaluate(run, run.passages[s], [model]),
                )
                for seen in order[: position + 1]
            ]
            if config.retention:
                questions = retention_questions(config.retention_questions)
                measures.append(
                    self._job(job("retention"), lambda: calls.evaluate(run, passage, ["", model], questions))
                )
            if config.specificity_control and position + 1 < len(order):
                unseen = order[position + 1]
                measures.append(
                    self._job(
                        job("next", about=unseen), lambda: calls.evaluate(run, run.passages[unseen], [model])
                    )
                )
            await _all_or_none(measures)
            return kept

    async def _train(
        self, job: JobName, edit: SelfEdit, current: str, replay: list[str], ordering: int, position: int
    ) -> TrainRecord:
        run, config = self.run, self.run.config
        passage = run.passages[job.index or 0]
        dataset_key = edit.dataset_key
        if config.continual_replay and replay:
            seed = config.seed * REPLAY_SEED_STRIDE + ordering * 1_000 + position
            dataset_key = await call_async(
                lambda: replay_dataset(self.store, edit.dataset_key, replay, config.continual_replay, seed),
                self.outage,
                "writing a replay dataset",
                self.events.store_retry(run, "writing a replay dataset"),
            )
        record = await self.calls.train(
            run,
            passage,
            dataset_key,
            self.step_directive(edit),
            job.label,
            init_adapter_key=current,
            merge_init=bool(current) and config.continual_carry == "merge",
            stage=self.stage(job),
        )
        if dataset_key != edit.dataset_key:  # the replay set it trained on, kept with its record
            record = TrainRecord.model_validate({**record.model_dump(), "dataset_key": dataset_key})
        return record

    def step_directive(self, edit: SelfEdit) -> Directive:
        """The step's directive (the trainer's default or the self-edit's own, `self_edit_directive`), with
        `continual_update`'s fields over it (a smaller update)."""
        own = directive_trials(edit, self.run.config, self.limits)[0]
        update = self.run.config.continual_update
        if update is None:
            return own
        return self.limits.overridden(own, update.fields_set())


def replay_dataset(store: Any, own_key: str, earlier: list[str], count: int, seed: int) -> str:
    """The step's own dataset with `count` examples drawn (seeded) from the earlier steps' kept datasets mixed
    in, written under its content key (the same draw writes the same key)."""
    own = read_dataset(store, own_key)
    pool: list[TrainingExample] = []
    for key in earlier:
        pool += read_dataset(store, key).examples
    drawn = random.Random(seed).sample(pool, min(count, len(pool)))
    meta = ReplayMeta(own_key, tuple(earlier), len(drawn), seed)
    return write_dataset(store, meta, [*own.examples, *drawn])
