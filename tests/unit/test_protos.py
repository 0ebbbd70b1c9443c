"""The committed gRPC stubs match proto/ (regenerate with `make protos`)."""

from __future__ import annotations

from seal.v1 import evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.rpc import protogen


def test_generated_stubs_are_up_to_date():
    assert protogen.stale_files() == [], "stale gRPC stubs: run `make protos` and commit the result"


def test_proto_package_is_versioned():
    protos = sorted((protogen.PROTO_DIR / "seal" / "v1").glob("*.proto"))
    assert {p.name for p in protos} == {"common.proto", "generator.proto", "trainer.proto", "evaluator.proto"}
    for proto in protos:
        assert "package seal.v1;" in proto.read_text()


def test_every_rpc_of_a_service_has_its_own_response():
    for module in (generator_pb2, trainer_pb2, evaluator_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            outputs = [method.output_type.full_name for method in service.methods]
            assert len(outputs) == len(set(outputs)), f"{service.name} reuses a response: {outputs}"
    import_rpc = generator_pb2.DESCRIPTOR.services_by_name["Generator"].methods_by_name["Import"]
    assert import_rpc.output_type.full_name == "seal.v1.ImportResponse"


def test_import_response_reads_what_an_older_generator_sent():
    # Import returned GenerateResponse before: the field numbers it shares make old and new peers agree.
    older = generator_pb2.GenerateResponse(self_edits=[generator_pb2.SelfEdit(dataset_key="d")], seconds=1.5)
    response = generator_pb2.ImportResponse.FromString(older.SerializeToString())
    assert [e.dataset_key for e in response.self_edits] == ["d"] and response.seconds == 1.5
