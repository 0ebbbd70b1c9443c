"""Shared fixtures. Each group sits in its own delimited block; add new groups as new blocks. The model
services' fixtures are in tests/service/conftest.py: nothing here may import a model service or torch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_lab.store import ObjectStore
from seal_lab.store.local import LocalStore
from seal_lab.store.s3 import S3Store
from tests.s3_server import S3ServerInfo, running_s3_server, unique_bucket

# ---------------------------------------------------------------------------------------------------------
# Object stores (seal_lab.store, seal_lab.store.s3): a real SeaweedFS S3 server, started once per session.
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3ServerInfo]:
    """One SeaweedFS S3 server for the whole session (start-up takes a few seconds)."""
    with running_s3_server() as info:
        yield info


@pytest.fixture
def s3_store(s3_server: S3ServerInfo) -> Iterator[S3Store]:
    """An S3Store on a fresh bucket, deleted afterwards so a long session does not pile up volumes."""
    store = S3Store.from_settings(s3_server.store_settings(unique_bucket()))
    store.check()  # creates the bucket (building a store does no network I/O)
    yield store
    for obj in store.client.list_objects(store.bucket, recursive=True):
        store.client.remove_object(store.bucket, obj.object_name)
    store.client.remove_bucket(store.bucket)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each backend in turn: the ObjectStore contract is the same for both."""
    return request.getfixturevalue(f"{request.param}_store")


# ---------------------------------------------------------------------------------------------------------
# End of object stores.
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# The coordinator's Host check (SEAL_COORDINATOR_ALLOWED_HOSTS): FastAPI's TestClient sends `Host: testserver`,
# so every CoordinatorSettings a test builds from the environment accepts that name too. Its default stays
# the loopback names (tests/unit/test_security_http.py checks it, and a foreign Host's 400).
# ---------------------------------------------------------------------------------------------------------

TEST_CLIENT_HOSTS = "localhost,127.0.0.1,[::1],testserver"


@pytest.fixture(autouse=True, scope="session")
def coordinator_answers_the_test_client() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEAL_COORDINATOR_ALLOWED_HOSTS", TEST_CLIENT_HOSTS)
        yield


# ---------------------------------------------------------------------------------------------------------
# End of the coordinator's Host check.
# ---------------------------------------------------------------------------------------------------------
