"""Job records as typed models (run/records.py): records written by earlier coordinators load through the
store read and dump back to the same JSON, results are built from them, and a record that is not its job's
kind is moved aside. The proto conversion of the coordinator sits in engine/convert.py alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from seal_lab.formats.passages import Passage, Question
from seal_lab.store import json_bytes
from seal_lab.store.local import LocalStore
from services.coordinator.engine.records import job_key, read_run
from services.coordinator.results.build import build_results
from services.coordinator.run.records import (
    FailedRecord,
    SelfEditsRecord,
    TrainRecord,
    UnknownRecord,
    parse_job_record,
    record_type,
)
from services.coordinator.run.schemas import RunConfig

ROOT = Path(__file__).parents[2]
#: Records as the coordinators of these commits wrote them (tests/fixtures/records/README.md).
OLD_RECORDS = ROOT / "tests" / "fixtures" / "records"
VERSIONS = sorted(p.name for p in OLD_RECORDS.iterdir() if p.is_dir())


def _store_with(tmp_path: Path, version: str, run_id: str = "run-old") -> tuple[LocalStore, dict[str, dict]]:
    store = LocalStore(tmp_path / "store")
    written = {}
    for path in sorted((OLD_RECORDS / version).glob("*.json")):
        name = path.stem
        written[name] = json.loads(path.read_text())
        store.put_bytes(job_key(run_id, name), path.read_bytes())
    return store, written


def test_there_are_records_of_three_earlier_versions():
    assert VERSIONS == ["0d082a0", "78eaaa7", "d970ee5"]


@pytest.mark.parametrize("version", VERSIONS)
def test_old_records_load_through_the_store_read_and_dump_back_unchanged(tmp_path, version):
    store, written = _store_with(tmp_path, version)
    stored = read_run(store, "run-old")
    assert stored.problems == [] and sorted(stored.jobs) == sorted(written)
    for name, record in stored.jobs.items():
        if "error" in written[name]:
            assert isinstance(record, FailedRecord)
        else:
            assert type(record) is record_type(name), name
        # Absent stays absent, unknown keys stay, numbers keep their type: written again, the same bytes.
        assert record.model_dump() == written[name]
        assert json_bytes(record.model_dump()) == (OLD_RECORDS / version / f"{name}.json").read_bytes()


def test_each_job_reads_as_its_kind_of_record(tmp_path):
    store, _ = _store_with(tmp_path, "78eaaa7")
    kinds = {name: type(record).__name__ for name, record in read_run(store, "run-old").jobs.items()}
    assert kinds == {
        "0000-baseline": "EvaluationRecord",
        "0000-evaluate": "EvaluationRecord",
        "0000-retention": "EvaluationRecord",
        "0000-generate-implications": "SelfEditsRecord",
        "0001-heldout-passage-edit": "SelfEditsRecord",
        "0000-train-implications-0": "TrainRecord",
        "0000-train-implications-0-d1": "TrainRecord",
        "policy-r1": "PolicyRecord",
        "policy-r2": "PolicyRecord",
    }


def test_fields_an_old_record_lacks_read_as_their_defaults_and_stay_out_of_the_dump(tmp_path):
    store, _ = _store_with(tmp_path, "0d082a0")
    jobs = read_run(store, "run-old").jobs
    generated = jobs["0000-generate-implications"]
    assert isinstance(generated, SelfEditsRecord) and generated.policy_adapter_key is None
    # The first coordinator kept only the directive fields a self-edit set (ListFields): no steps, no zeros.
    assert generated.self_edits[0].directive.values() == {
        "epochs": 3,
        "learning_rate": 0.001,
        "lora_rank": 8,
        "lora_alpha": 16,
        "batch_size": 1,
    }
    trained = jobs["0000-train-implications-0"]
    assert isinstance(trained, TrainRecord) and trained.directive is None and trained.metrics is not None
    assert trained.metrics.group_size is None and "group_size" not in trained.model_dump()["metrics"]
    assert jobs["0000-evaluate"].evaluations["adapters/a1"].mean.value("token_recall") is None


def test_results_are_built_from_the_first_coordinators_records(tmp_path):
    store, _ = _store_with(tmp_path, "0d082a0")
    jobs = read_run(store, "run-old").jobs
    passage = Passage("p-1", "Amazon", "The Amazon ...", (Question("q0", "Where?", ("the Amazon",)),))
    results = build_results([passage], jobs, RunConfig(k=2)).model_dump()
    edits = results["passages"][0]["self_edits"]
    # f1 1.0 after training against the baseline's 0.25; the second self-edit's training was refused.
    assert edits[0]["reward"] == 0.75 and edits[0]["directive"]["epochs"] == 3
    assert edits[1]["reward"] is None and edits[1]["train_error"].endswith("no texts")
    assert results["passages"][0]["errors"] == [
        "train-implications-1: trainer refused training datasets/9ab2.jsonl: INVALID_ARGUMENT: no texts"
    ]


def test_results_are_built_from_the_rounds_records_with_their_policy_updates(tmp_path):
    store, written = _store_with(tmp_path, "78eaaa7")
    jobs = read_run(store, "run-old").jobs
    passage = Passage("p-1", "Amazon", "The Amazon ...", (Question("q0", "Where?", ("the Amazon",)),))
    config = RunConfig(k=2, rounds=2, directive_search=[{"epochs": 1}])
    results = build_results([passage], jobs, config).model_dump()
    assert results["rounds"][0]["policy_update"] == written["policy-r1"]
    assert results["rounds"][1]["policy_update"]["skipped"] == "no self-edit beat min_reward"
    trials = results["passages"][0]["self_edits"][0]["trials"]
    assert [t["directive"]["epochs"] for t in trials] == [3, 1] and trials[1]["train_reused"] is True


def test_a_record_that_is_not_its_jobs_kind_is_moved_aside_and_its_job_redone(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_json(job_key("run-bad", "0000-evaluate"), {"seconds": 1.0, "evaluations": ["adapters/a1"]})
    store.put_json(job_key("run-bad", "0000-baseline"), {"seconds": 1.0, "evaluations": {}})
    stored = read_run(store, "run-bad")
    assert list(stored.jobs) == ["0000-baseline"]
    (problem,) = stored.problems
    assert (
        "not the record of job 0000-evaluate: evaluations" in problem and "its job will be redone" in problem
    )
    assert store.list_keys("quarantine/")


def test_a_job_this_version_never_names_is_kept_as_it_is():
    record = parse_job_record("0000-distill-implications", {"seconds": 1.0, "new": [1]})
    assert isinstance(record, UnknownRecord) and record.model_dump() == {"seconds": 1.0, "new": [1]}
    with pytest.raises(ValueError, match="JSON object"):
        parse_job_record("0000-baseline", ["not", "a", "record"])


def test_the_coordinator_converts_protobuf_in_convert_py_only():
    coordinator = ROOT / "services" / "coordinator"
    offenders = sorted(
        path.relative_to(coordinator).as_posix()
        for path in coordinator.rglob("*.py")
        if path.name != "convert.py" and re.search(r"\.(to_proto|from_proto)\(", path.read_text())
    )
    assert offenders == []


def test_records_of_this_version_read_back_as_they_were_made(tmp_path):
    from seal.v1 import evaluator_pb2, generator_pb2, trainer_pb2
    from seal_lab.formats.directive import DEFAULT_DIRECTIVE
    from services.coordinator.engine import convert

    made = {
        "0000-generate-implications": convert.self_edits_record(
            generator_pb2.GenerateResponse(
                seconds=2.5,
                self_edits=[
                    generator_pb2.SelfEdit(
                        dataset_key="datasets/x.jsonl",
                        format="implications",
                        directive=DEFAULT_DIRECTIVE.to_proto(),
                        directive_source=generator_pb2.DIRECTIVE_SOURCE_PARSED,
                        num_texts=3,
                    )
                ],
            ),
            policy_adapter_key="",
        ),
        "0000-train-implications-0": convert.train_record(
            trainer_pb2.TrainResult(
                adapter_key="adapters/x", metrics=trainer_pb2.TrainMetrics(steps=24, step_loss=[2.0, 1.0])
            ),
            DEFAULT_DIRECTIVE,
            "127.0.0.1:1",
        ),
        "0000-evaluate": convert.evaluation_record(
            evaluator_pb2.EvaluateResponse(
                seconds=1.0,
                evaluations=[
                    evaluator_pb2.AdapterEvaluation(
                        adapter_key="adapters/x", mean=evaluator_pb2.Scores(f1=0.5, judge=1.0)
                    )
                ],
            )
        ),
    }
    store = LocalStore(tmp_path / "store")
    for name, record in made.items():
        store.put_json(job_key("run-now", name), record.model_dump())
    jobs = read_run(store, "run-now").jobs
    assert {name: r.model_dump() for name, r in jobs.items()} == {n: r.model_dump() for n, r in made.items()}
    assert jobs["0000-train-implications-0"].directive.values() == DEFAULT_DIRECTIVE.as_dict()
    assert jobs["0000-evaluate"].evaluations["adapters/x"].mean.value("judge") == 1.0


def test_a_finished_runs_results_load_typed_and_unreadable_ones_are_told_not_served(tmp_path):
    from services.coordinator.engine.records import MANIFEST, run_key, write_spec
    from services.coordinator.engine.state import RunState, load_run, manifest, run_spec
    from services.coordinator.run.result_schemas import RunResults
    from tests.unit.test_routes import RESULTS

    passage = Passage("p-1", "Amazon", "The Amazon ...", (Question("q0", "Where?", ("the Amazon",)),))
    store = LocalStore(tmp_path / "store")
    for run_id, results in (("run-good", RESULTS), ("run-bad", {**RESULTS, "rounds": "not a list"})):
        run = RunState(run_id, "a name", RunConfig(k=1), [passage], created_at=1.0, status="succeeded")
        write_spec(store, run_id, run_spec(run))
        store.put_json(run_key(run_id, MANIFEST), {**manifest(run).model_dump(), "results": results})
    good = load_run(store, "run-good")
    assert isinstance(good.results, RunResults) and good.results.model_dump() == RESULTS
    bad = load_run(store, "run-bad")
    assert bad.status == "succeeded" and bad.results is None
    assert bad.load_problems == [
        "the results in the run's manifest cannot be read (rounds: Input should be a valid list)"
    ]


# ---- the run's spec and manifest (run/records.py RunSpec, Manifest) ----------------------------------------

#: spec.json as the first coordinator (0d082a0) wrote it: no split, no teachers.
FIRST_SPEC = {
    "id": "run-first",
    "name": "first",
    "created_at": 1764200000.25,
    "config": {"k": 1},
    "passages": [
        {
            "title": "Amazon",
            "context": "The Amazon ...",
            "questions": [{"question": "Where?", "answer": "the Amazon"}],
        }
    ],
}
#: manifest.json as the first coordinator wrote it (services as GetInfo dicts, results as then).
FIRST_MANIFEST = {
    "id": "run-first",
    "status": "succeeded",
    "error": "",
    "finished_at": 1764200100,
    "services": {},
    "job_keys": ["0000-baseline"],
    "results": None,
}


def test_a_first_coordinators_spec_and_manifest_load_typed_and_dump_back_to_the_same_bytes(tmp_path):
    from services.coordinator.engine.records import MANIFEST, SPEC, run_key
    from services.coordinator.engine.state import load_run
    from services.coordinator.run.records import Manifest, RunSpec

    store = LocalStore(tmp_path / "store")
    store.put_json(run_key("run-first", SPEC), FIRST_SPEC)
    store.put_json(run_key("run-first", MANIFEST), FIRST_MANIFEST)
    stored = read_run(store, "run-first")
    assert isinstance(stored.spec, RunSpec) and stored.spec.split is None and stored.spec.teachers == []
    assert isinstance(stored.manifest, Manifest) and stored.manifest.status == "succeeded"
    for name, record in ((SPEC, stored.spec), (MANIFEST, stored.manifest)):
        assert json_bytes(record.model_dump()) == store.get_bytes(run_key("run-first", name)), name
    run = load_run(store, "run-first")
    assert (run.name, run.status, run.updated_at, run.heldout_ids) == (
        "first",
        "succeeded",
        1764200100,
        frozenset(),
    )
    assert run.config.k == 1 and run.passages[0].title == "Amazon"
    # Written before the model's own directives and SEAL's Topic line became settings: it ran with both.
    assert run.config.self_edit_directive == "generated" and run.config.question_topic is True


def test_a_spec_keeps_the_settings_it_was_written_with(tmp_path):
    from services.coordinator.engine.records import SPEC, run_key
    from services.coordinator.engine.state import load_run
    from services.coordinator.run.schemas import RunConfig

    store = LocalStore(tmp_path / "store")
    config = RunConfig(k=1).model_dump()  # what a coordinator of today writes: every field, new defaults
    store.put_json(run_key("run-new", SPEC), {**FIRST_SPEC, "config": config})
    run = load_run(store, "run-new")
    assert run.config.self_edit_directive == "default" and run.config.question_topic is False


def test_a_spec_or_manifest_that_is_not_one_is_moved_aside_as_before(tmp_path):
    from services.coordinator.engine.records import MANIFEST, SPEC, SPEC_COPY, run_key

    store = LocalStore(tmp_path / "store")
    store.put_json(run_key("run-x", SPEC), {k: v for k, v in FIRST_SPEC.items() if k != "passages"})
    store.put_json(run_key("run-x", SPEC_COPY), FIRST_SPEC)
    store.put_json(run_key("run-x", MANIFEST), {"status": 3, "results": None})
    stored = read_run(store, "run-x")
    # spec.json lacks its passages: moved aside and restored from its copy, byte for byte.
    assert stored.spec is not None and stored.spec.name == "first" and stored.manifest is None
    assert store.get_bytes(run_key("run-x", SPEC)) == store.get_bytes(run_key("run-x", SPEC_COPY))
    assert any("(not a run spec)" in p for p in stored.problems)
    assert any(
        "manifest.json (not the record expected there)" in p and "the run will finish again" in p
        for p in stored.problems
    )


def test_a_passages_questions_carry_its_topic_unless_the_run_asks_them_without_it():
    from services.coordinator.engine.convert import evaluate_request

    passage = Passage("p-1", "Amazon", "The Amazon ...", (Question("q0", "Where?", ("the Amazon",)),))
    general = [Question("r0", "What is 2 + 2?", ("4",))]

    def topics(config: RunConfig, questions: list[Question] | None = None) -> list[str]:
        return [q.topic for q in evaluate_request("r", config, passage, [""], questions).questions]

    assert topics(RunConfig(question_topic=True)) == ["Amazon"]  # SEAL's "Topic: {title}" line
    assert topics(RunConfig()) == [""]  # the question alone, by default
    assert topics(RunConfig(), general) == [""]  # general (retention) questions never have one
