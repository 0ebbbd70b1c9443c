"""Continual runs over fake services (no model): each step trains on the last step's model, the accuracy
matrix is what the evaluator said, a crash resumes from the last finished step, a cancel finishes the step in
flight ("cancelling" until it is recorded, then "cancelled" with every finished step kept), progress lines name the
ordering and step, the same stream and seed give the same models, and bad requests are refused with a clear
message."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc
import pytest
from pydantic import ValidationError

from seal.v1 import evaluator_pb2, trainer_pb2
from seal_lab.errors import InvalidArgument
from seal_lab.formats.datasets import TrainingExample, read_dataset, write_dataset
from seal_lab.formats.passages import demo_passages
from seal_lab.store.local import LocalStore
from services.coordinator.engine import manager as manager_module
from services.coordinator.engine.clients import TrainerEndpoint, TrainerPool
from services.coordinator.engine.continual import replay_dataset
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.records import job_key
from services.coordinator.engine.state import load_run
from services.coordinator.results.continual import candidate_rewards, choose
from services.coordinator.run.continual import continual_jobs_total, resolve_order, stream_orders
from services.coordinator.run.jobs import JobName
from services.coordinator.run.schemas import RunConfig, RunCreate
from tests.unit.fake_services import FakeClients, FakeEvaluator, FakeTrainer
from tests.unit.test_orchestrator import REQUEST, run_to_end, scenario, settings, until
from tests.unit.test_run_cancel import with_api

PASSAGES = demo_passages()[:3]
BASE, RETENTION_BASE = 0.1, 0.8


class StreamTrainer(FakeTrainer):
    """A trainer whose adapters remember what they learned: the passages of their init, then their own."""

    def __init__(self, learned: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.learned = learned

    async def Train(self, request: trainer_pb2.TrainRequest, timeout: float) -> Any:
        await self._enter("Train", request)
        job = trainer_pb2.TrainRequest()
        job.CopyFrom(request)
        job.job_id = ""  # as the trainer: the job's key is what decides its weights, not the caller's id
        digest = hashlib.sha256(job.SerializeToString(deterministic=True)).hexdigest()[:16]
        key = f"adapters/{digest}"
        passage_id = request.dataset_key.removeprefix("datasets/").rsplit("-", 2)[0]
        self.learned[key] = (*self.learned.get(request.init_adapter_key, ()), passage_id)
        yield trainer_pb2.TrainEvent(
            result=trainer_pb2.TrainResult(
                adapter_key=key,
                metrics=trainer_pb2.TrainMetrics(step_loss=[1.0], tokens=10, seconds=1, steps=1),
            )
        )


def knows(learned: tuple[str, ...], passage_id: str) -> float:
    """What the fake evaluator scores: 1 / (1 + steps since the passage was learned); BASE if never."""
    if passage_id not in learned:
        return BASE
    return round(1 / (1 + len(learned) - 1 - learned.index(passage_id)), 6)


def retained(learned: tuple[str, ...]) -> float:
    return round(RETENTION_BASE - 0.1 * len(learned), 6)


class StreamEvaluator(FakeEvaluator):
    def __init__(self, learned: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.learned = learned
        self.by_question = {q.question_id: p.passage_id for p in PASSAGES for q in p.questions}

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, timeout: float) -> Any:
        await self._enter("Evaluate", request)
        passage_id = self.by_question.get(request.questions[0].question_id)  # none: the retention set

        def score(key: str) -> float:
            learned = self.learned.get(key, ())
            return knows(learned, passage_id) if passage_id else retained(learned)

        return evaluator_pb2.EvaluateResponse(
            evaluations=[
                evaluator_pb2.AdapterEvaluation(adapter_key=key, mean=evaluator_pb2.Scores(f1=score(key)))
                for key in request.adapter_keys
            ]
        )


def stream_clients() -> tuple[FakeClients, dict[str, tuple[str, ...]]]:
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    learned: dict[str, tuple[str, ...]] = {}
    clients.trainer["trainer-a:1"] = StreamTrainer(learned)
    clients.trainers = TrainerPool(
        config.trainer_addresses,
        connect=lambda address: TrainerEndpoint(address, None, clients.trainer[address]),
    )
    clients.evaluator = StreamEvaluator(learned)
    return clients, learned


def request(**config: Any) -> RunCreate:
    values = {"mode": "continual", "k": 2, "retention_questions": 4, **config}
    return RunCreate(dataset="demo", limit=3, config=RunConfig(**values))


def trains(clients: FakeClients) -> list[trainer_pb2.TrainRequest]:
    return [r for r in clients.trainer["trainer-a:1"].requests if isinstance(r, trainer_pb2.TrainRequest)]


def test_each_step_trains_on_the_last_and_the_matrix_is_what_was_measured(tmp_path):
    clients, learned = stream_clients()

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(request(order=[PASSAGES[2].title, 0, "1"])))
        assert run.status == "succeeded", run.error
        assert len(run.jobs) == run.jobs_total
        requests = trains(clients)
        assert [r.init_adapter_key == "" for r in requests] == [True, False, False]
        assert not any(r.merge_init for r in requests)  # carry "adapter": one adapter trained on
        chain = [""] + [learned_key(learned, PASSAGES, order) for order in ([2], [2, 0])]
        assert [r.init_adapter_key for r in requests] == chain
        generated = [
            r.policy_adapter_key for r in clients.generator.requests if hasattr(r, "policy_adapter_key")
        ]
        assert generated == chain  # self-edits written by the current model
        results = run.results.continual
        stream = results.streams[0]
        order_ids = [PASSAGES[i].passage_id for i in (2, 0, 1)]
        assert stream.order == order_ids and stream.steps_done == 3
        # by hand: after step j the model learned order[:j+1]; passage i scores 1 / (1 + j - i)
        expected = [[(1 / (1 + j - i) if i <= j else None) for j in range(3)] for i in range(3)]
        assert stream.matrix == [[None if v is None else round(v, 6) for v in row] for row in expected]
        assert stream.mean_seen == [1.0, 0.75, round((1 / 3 + 1 / 2 + 1) / 3, 4)]
        assert stream.forgetting == [round(1 - 1 / 3, 4), 0.5, 0.0]
        assert [s.retention for s in stream.steps] == [0.7, 0.6, 0.5]
        assert [s.retention_base for s in stream.steps] == [RETENTION_BASE] * 3
        assert [s.next for s in stream.steps] == [BASE, BASE, None]  # the unseen passage: not learned
        assert stream.baseline == [BASE] * 3
        assert results.summary.final_retention == 0.5

    scenario(tmp_path, clients, settings(), body)


def learned_key(learned: dict[str, tuple[str, ...]], passages: list, order: list[int]) -> str:
    wanted = tuple(passages[i].passage_id for i in order)
    (key,) = [k for k, v in learned.items() if v == wanted]
    return key


def test_merge_carry_merges_every_step_after_the_first_and_best_picks_by_reward(tmp_path):
    clients, _ = stream_clients()

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        config = {"continual_carry": "merge", "continual_pick": "best", "retention_lambda": 0.5}
        run = await run_to_end(manager, await manager.create(request(**config)))
        assert run.status == "succeeded", run.error
        requests = trains(clients)
        assert len(requests) == 3 * 2  # k candidates per step
        assert [r.merge_init for r in requests] == [False, False, True, True, True, True]
        step = run.results.continual.streams[0].steps[0]
        # both candidates learn the passage (1.0 - 0.1) and lose 0.1 of retention (lambda 0.5)
        assert step.rewards == [0.85, 0.85] and step.sample_index == 0
        assert any(name.endswith("-c0s1-candret") for name in run.jobs)

    scenario(tmp_path, clients, settings(), body)


def test_a_crashed_stream_resumes_from_its_last_finished_step_and_trains_nothing_twice(tmp_path):
    clients, _ = stream_clients()
    trainer = clients.trainer["trainer-a:1"]

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await manager.create(request())
        await until(lambda: trainer.calls["Train"] >= 1)
        await until(lambda: any(n.endswith("c0s0-accuracy") for n in run.jobs))
        trainer.fail("Train", grpc.StatusCode.UNAVAILABLE, times=100, details="connection refused")
        run = await run_to_end(manager, run)
        assert run.status == "failed"
        finished = {n: r for n, r in run.jobs.items() if "-c0s0-" in n}
        assert finished and not any("-c0s1-train" in n for n in run.jobs)
        trainer.recover()
        trained_before = len([r for r in trains(clients) if r.dataset_key])
        run = await run_to_end(manager, await manager.resume(run.id))
        assert run.status == "succeeded", run.error
        assert all(run.jobs[n] == r for n, r in finished.items())  # step 0 kept as it was
        inits = [r.init_adapter_key for r in trains(clients)[trained_before:]]
        assert len(inits) == 2 and "" not in inits  # steps 1 and 2 only, each from the model before it

    scenario(tmp_path, clients, settings(max_attempts=2), body)


def test_a_cancel_finishes_the_step_in_flight_and_keeps_it(tmp_path):
    clients, _ = stream_clients()
    trainer = clients.trainer["trainer-a:1"]

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await manager.create(request())
        await until(lambda: any(n.endswith("c0s0-accuracy") for n in run.jobs))
        trainer.hold("Train")
        await until(trainer.holding.is_set)  # step 1 is training
        cancel = asyncio.ensure_future(manager.cancel(run.id))
        await asyncio.sleep(0.05)
        trainer.release("Train")
        await cancel
        await until(lambda: any(n.endswith("c0s1-accuracy") for n in run.jobs))
        await asyncio.sleep(0.05)
        assert run.status == "cancelled"
        assert any(n.endswith("c0s1-train-0") for n in run.jobs)  # the step in flight finished
        assert not any("-c0s2-" in n for n in run.jobs)  # and the stream stopped there
        assert trainer.calls["Train"] == 2

    scenario(tmp_path, clients, settings(), body)


def test_the_same_stream_and_seed_give_the_same_models(tmp_path):
    finals = []
    for attempt in range(2):
        clients, _ = stream_clients()

        async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
            run = await run_to_end(manager, await manager.create(request(orderings=2, seed=5)))
            assert run.status == "succeeded", run.error
            finals.append([s.final_model for s in run.results.continual.streams])

        scenario(tmp_path / str(attempt), clients, settings(), body)
    assert finals[0] == finals[1] and len(set(finals[0])) == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rounds": 1}, "rounds cannot be set with mode 'continual'"),
        ({"order": []}, "order is empty"),
        ({"order": [0], "orderings": 2}, "either order or orderings"),
        ({"continual_pick": "first", "retention_lambda": 1.0}, "needs continual_pick 'best'"),
        ({"heldout": 1}, "heldout"),
    ],
)
def test_conflicting_continual_settings_are_refused_by_name(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunConfig(mode="continual", **config)


def test_continual_settings_on_a_standard_run_are_refused() -> None:
    with pytest.raises(ValidationError, match="continual_carry only apply to mode 'continual'"):
        RunConfig(continual_carry="merge")


def test_an_order_naming_unknown_passages_is_refused_at_creation(tmp_path):
    clients, _ = stream_clients()

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        with pytest.raises(InvalidArgument, match="not have: 7, 'No such title'"):
            await manager.create(request(order=[0, 7, "No such title"]))
        assert not manager.runs

    scenario(tmp_path, clients, settings(), body)


def test_orders_resolve_titles_and_indexes_and_shuffles_are_seeded() -> None:
    assert resolve_order([PASSAGES[1].title, "2", 0], PASSAGES) == [1, 2, 0]
    with pytest.raises(InvalidArgument, match="more than once"):
        resolve_order([0, PASSAGES[0].title], PASSAGES)
    config = RunConfig(mode="continual", orderings=3, seed=1)
    orders = stream_orders(config, PASSAGES)
    assert orders == stream_orders(config, PASSAGES) and len(orders) == 3
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert orders != stream_orders(RunConfig(mode="continual", orderings=3, seed=2), PASSAGES)
    # per stream: 3 x (generate, train, retention) + 6 accuracies + 2 next; the 3 baselines once
    assert continual_jobs_total(RunConfig(mode="continual", retention_questions=4), PASSAGES) == 3 + 9 + 6 + 2


def test_continual_job_names_read_back() -> None:
    for job in (JobName.continual(0, 3, "train", 5, 2), JobName.continual(12, 0, "accuracy", 1)):
        assert JobName.parse(str(job)) == job
    assert str(JobName.continual(1, 2, "next", 4)) == "0004-c1s2-next"
    with pytest.raises(ValueError):
        JobName.parse("0001-c0s1-accuracy-3")  # only a training job carries a sample


def test_the_pick_keeps_the_highest_reward_and_the_earliest_of_equals() -> None:
    on_passage = {"": _scores(0.1), "a": _scores(0.5), "b": _scores(0.6)}
    on_retention = {"": _scores(0.8), "a": _scores(0.8), "b": _scores(0.4)}
    gains = candidate_rewards(["a", "b"], "", on_passage, None, "f1", 0.0)
    assert gains == [0.4, 0.5] and choose(["a", "b"], gains) == 1
    weighed = candidate_rewards(["a", "b"], "", on_passage, on_retention, "f1", 0.5)
    assert weighed == [0.4, 0.3] and choose(["a", "b"], weighed) == 0  # b forgot 0.4: 0.5 - 0.2
    assert choose(["a", "b"], [0.2, 0.2]) == 0 and choose(["a"], None) == 0 and choose([], None) is None


def _scores(f1: float) -> Any:
    from services.coordinator.run.records import Evaluation

    return Evaluation.model_validate({"mean": {"f1": f1}})


def test_replay_mixes_a_seeded_sample_of_earlier_examples_into_the_step(tmp_path) -> None:
    from seal_lab.formats.datasets import PolicyMeta

    store = LocalStore(tmp_path / "store")

    def dataset(texts: list[str]) -> str:
        return write_dataset(store, PolicyMeta(()), [TrainingExample("", t) for t in texts])

    own, earlier = dataset(["own"]), [dataset(["a1", "a2"]), dataset(["b1", "b2", "b3"])]
    key = replay_dataset(store, own, earlier, 3, seed=4)
    mixed = read_dataset(store, key)
    texts = [e.completion for e in mixed.examples]
    assert texts[0] == "own" and len(texts) == 4 and set(texts[1:]) <= {"a1", "a2", "b1", "b2", "b3"}
    assert mixed.meta["replayed_from"] == earlier and mixed.meta["purpose"] == "continual replay"
    assert replay_dataset(store, own, earlier, 3, seed=4) == key  # the same draw, the same dataset


def finished_run(tmp_path, **config: Any) -> dict[str, Any]:
    clients, _ = stream_clients()
    out: dict[str, Any] = {}

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(request(**config)))
        assert run.status == "succeeded", run.error
        out["run"] = {
            "id": run.id,
            "status": run.status,
            "results": run.results.model_dump(mode="json"),
        }

    scenario(tmp_path, clients, settings(), body)
    return out["run"]


def test_the_cli_prints_the_matrix_and_the_report_draws_it(tmp_path) -> None:
    from rich.console import Console

    from services.coordinator.cli.display import render_results
    from services.coordinator.report.render import ReportRun, render_report
    from services.coordinator.run.result_schemas import RunResults

    run = finished_run(tmp_path)
    console = Console(record=True, width=200)
    render_results(console, RunResults.model_validate(run["results"]))
    text = console.export_text()
    first = PASSAGES[0].title[:20]
    row = next(line for line in text.splitlines() if first in line)
    assert "1.00" in row and "0.50" in row and "0.33" in row and "0.67" in row  # its row, its forgetting
    assert "final mean over seen 0.61" in text and "retention 0.50" in text
    page = render_report(ReportRun.model_validate(run))
    assert page.count('class="cell"') == 6  # the lower triangle of a 3-step stream
    assert "Accuracy matrix" in page and "Mean over seen passages and retention" in page
    several = render_report(ReportRun.model_validate(finished_run(tmp_path / "o", orderings=2)))
    assert "mean of 2 orderings" in several


def test_continual_results_are_typed_and_read_back_to_the_same_bytes(tmp_path) -> None:
    from seal_lab.store import json_bytes
    from services.coordinator.run import result_schemas as rs

    stored = json_bytes(finished_run(tmp_path, orderings=2, continual_pick="best")["results"])
    results = rs.RunResults.model_validate_json(stored)
    continual = results.continual
    assert isinstance(continual, rs.ContinualResults) and isinstance(continual.streams[1], rs.ContinualStream)
    assert (
        isinstance(continual.streams[1].steps[2], rs.ContinualStep) and continual.streams[1].steps[2].rewards
    )
    assert isinstance(continual.by_position, rs.ContinualByPosition) and continual.by_position.streams == 2
    assert isinstance(continual.per_stream[0], rs.StreamFinal) and continual.summary.streams_finished == 2
    assert (
        results.summary.mode == "continual"
        and results.summary.mean_forgetting == continual.summary.mean_forgetting
    )
    assert json_bytes(results.model_dump(mode="json")) == stored


def test_bad_continual_requests_get_a_4xx_with_a_message(tmp_path) -> None:
    clients, _ = stream_clients()

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: Any) -> None:
        cases = [
            ({"mode": "continual", "rounds": 2}, 422, "rounds cannot be set with mode 'continual'"),
            ({"mode": "continual", "order": []}, 422, "order is empty"),
            (
                {"mode": "continual", "order": ["Atlantis", 9]},
                422,
                "order names passages the run does not have",
            ),
        ]
        for config, status, message in cases:
            response = await http.post("/v1/runs", json={"dataset": "demo", "limit": 3, "config": config})
            assert response.status_code == status, response.text
            assert message in response.text
        assert not manager.runs

    with_api(tmp_path, clients, settings(), body)


def test_a_cancelled_stream_is_cancelling_until_its_step_in_flight_is_recorded_and_keeps_every_step(
    tmp_path, monkeypatch
):
    # POST .../cancel answers before the step in flight ends (it is held)
    monkeypatch.setattr(manager_module, "CANCEL_ANSWER_SECONDS", 0.05)
    clients, _ = stream_clients()
    trainer = clients.trainer["trainer-a:1"]

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: Any) -> None:
        run = await manager.create(request())
        await until(lambda: any(n.endswith("c0s0-accuracy") for n in run.jobs))
        trainer.hold("Train")
        await until(trainer.holding.is_set)  # step 2 of 3 is training
        answer = await http.post(f"/v1/runs/{run.id}/cancel")
        assert answer.status_code == 200 and answer.json()["status"] == "cancelling"
        # While the step in flight trains: cancelling everywhere, still executing here, nothing final yet.
        shown = (await http.get(f"/v1/runs/{run.id}")).json()
        assert shown["status"] == "cancelling" and "finishes its step in flight" in shown["current"]
        listed = (await http.get("/v1/runs", params={"status": "cancelling"})).json()["runs"]
        assert [r["id"] for r in listed] == [run.id]
        assert (await http.post(f"/v1/runs/{run.id}/cancel")).json()["status"] == "cancelling"  # idempotent
        refused = await http.post(f"/v1/runs/{run.id}/resume")
        assert refused.status_code == 409 and refused.json()["code"] == "run_cancelled"
        assert (await http.delete(f"/v1/runs/{run.id}")).status_code == 409
        assert run.id in manager._tasks and run.lease is not None and run.results is None
        assert not any(e.data.get("cancelled") for e in run.events)
        assert trainer.cancelled["Train"] == 0  # the training in flight goes on

        trainer.release("Train")
        await until(lambda: run.status == "cancelled")
        # Cancelled only once the step in flight was recorded: all its jobs, none of the next step's.
        step = sorted(n.split("-", 1)[1] for n in run.jobs if "-c0s1-" in n)
        assert step == [
            "c0s1-accuracy",
            "c0s1-accuracy",
            "c0s1-generate",
            "c0s1-next",
            "c0s1-retention",
            "c0s1-train-0",
        ]
        assert not any("-c0s2-" in n for n in run.jobs) and trainer.calls["Train"] == 2
        seqs = [e.seq for e in run.events]
        asked = [e.seq for e in run.events if e.data.get("cancelling")]
        ended = [e.seq for e in run.events if e.data.get("cancelled")]
        recorded = [e.seq for e in run.events if e.kind == "job" and "-c0s1-" in e.job]
        assert len(asked) == 1 and len(ended) == 1 and len(recorded) == len(step)
        assert (
            asked[0] < recorded[-1] < ended[0] == seqs[-1]
        )  # the step ended after the cancel, before "cancelled"
        assert run.id not in manager._tasks and run.lease is None
        # Every finished step is kept: in the store, and in the results (each stream as far as it got).
        assert all(store.exists(job_key(run.id, n)) for n in run.jobs)
        stream = run.results.continual.streams[0]
        assert stream.steps_done == 2 and len(stream.steps) == 2
        answer = await http.get(f"/v1/runs/{run.id}/results")
        assert answer.status_code == 200 and answer.json()["continual"]["streams"][0]["steps_done"] == 2
        reloaded = await asyncio.to_thread(load_run, store, run.id)  # a restarted coordinator's view
        assert reloaded.status == "cancelled" and reloaded.results.continual.streams[0].steps_done == 2

    with_api(tmp_path, clients, settings(), body)


def test_a_step_still_waiting_for_its_turn_when_the_run_is_cancelled_never_starts(tmp_path):
    clients, _ = stream_clients()
    trainer = clients.trainer["trainer-a:1"]
    trainer.hold("Train")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await manager.create(request(orderings=2))  # one stream's step at a time (the passage gate)
        await until(trainer.holding.is_set)
        cancel = asyncio.ensure_future(manager.cancel(run.id))
        await until(lambda: run.status == "cancelling")
        trainer.release("Train")
        await cancel
        await until(lambda: run.status == "cancelled")
        started = {n.split("-")[1][:4] for n in run.jobs if "-c" in n}
        assert len(started) == 1 and started <= {"c0s0", "c1s0"}  # the other stream's step never began
        assert trainer.calls["Train"] == 1 and clients.generator.calls["Generate"] == 1

    scenario(tmp_path, clients, settings(max_concurrent_passages=1), body)


def test_the_progress_lines_of_a_continual_step_name_its_ordering_and_step_not_a_round(tmp_path):
    """FakeTrainer reports a training step (1/2, loss 1.5) before its result; a standard run's line is as it was."""
    lines: dict[str, list[str]] = {}

    for mode, body_request in (("continual", request()), ("standard", None)):
        clients = FakeClients(settings().trainer_addresses)

        async def body(
            manager: RunManager, clients: FakeClients, store: LocalStore, mode=mode, made=body_request
        ):
            shown = lines.setdefault(mode, [])
            log_progress = manager.events.train_progress

            def seen(run: Any, *args: Any) -> None:
                log_progress(run, *args)
                shown.append(run.current)

            manager.events.train_progress = seen  # type: ignore[method-assign]
            run = await run_to_end(manager, await manager.create(made or REQUEST))
            assert run.status == "succeeded", run.error
            shown.extend(e.message for e in run.events if e.kind == "progress")

        scenario(tmp_path / mode, clients, settings(), body)

    training = [line for line in lines["continual"] if line.startswith("training")]
    assert len(training) == 3 and all("round" not in line for line in lines["continual"])
    assert [line.rsplit("(", 1)[1] for line in training] == [f"ordering 0, step {j}/3)" for j in (1, 2, 3)]
    assert "loss 1.500 (ordering 0, step 2/3)" in training[1] and "c0s1-train-0" in training[1]
    jobs = [line for line in lines["continual"] if not line.startswith("training")]
    assert any(line.startswith("ordering 0, step 3/3, passage ") for line in jobs)
    assert any(line.startswith("before the streams, passage 1/3: baseline") for line in jobs)
    standard = [line for line in lines["standard"] if line.startswith("training")]
    assert standard and all(line.endswith("loss 1.500 (round 0)") for line in standard)


def test_a_paused_run_keeps_its_pauses_reason_while_a_training_reports_progress(tmp_path):
    """A store outage pauses the run; a training still in flight must not replace the line that says why."""
    clients = FakeClients(settings().trainer_addresses)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore):
        run = await manager.create(REQUEST)
        step = trainer_pb2.TrainProgress(step=1, total_steps=24, loss=2.0)
        run.pause("paused: the store is full")
        manager.events.train_progress(run, "p-1 train-0", "trainer-a:1", step, 0)
        assert (run.status, run.current) == ("paused", "paused: the store is full")
        run.unpause()
        manager.events.train_progress(run, "p-1 train-0", "trainer-a:1", step, 0)
        assert run.current.startswith("training p-1 train-0 on trainer-a:1: step 1/24")
        await run_to_end(manager, run)

    scenario(tmp_path, clients, settings(), body)
