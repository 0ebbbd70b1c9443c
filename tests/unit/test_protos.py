"""The committed gRPC stubs match proto/ (regenerate with `make protos`)."""

from __future__ import annotations

from seal_lab import protogen


def test_generated_stubs_are_up_to_date():
    assert protogen.stale_files() == [], "stale gRPC stubs: run `make protos` and commit the result"


def test_proto_package_is_versioned():
    protos = sorted((protogen.PROTO_DIR / "seal" / "v1").glob("*.proto"))
    assert {p.name for p in protos} == {"common.proto", "generator.proto", "trainer.proto", "evaluator.proto"}
    for proto in protos:
        assert "package seal.v1;" in proto.read_text()
