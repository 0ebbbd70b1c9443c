"""Errors reach callers without paths, traces or host details (issue 12, item 5): what a service answers for
an unexpected exception, for a key too long, and what GetInfo says about the machine."""

from __future__ import annotations

import errno
import platform
import socket

import grpc
import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.runtime import runtime_versions
from seal_lab.serve.server import _abort_code
from seal_lab.store import MAX_KEY_SEGMENT_CHARS, validate_key
from seal_lab.store.local import LocalStore

SECRET_PATH = "/srv/seal/private/store/adapters/x"


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda's (matched by name: the library does not import torch)."""


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (MemoryError(), grpc.StatusCode.UNAVAILABLE, "out of memory"),
        (
            OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2 GiB ({SECRET_PATH})"),
            grpc.StatusCode.UNAVAILABLE,
            "out of memory",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", SECRET_PATH),
            grpc.StatusCode.UNAVAILABLE,
            "disk is full",
        ),
        (
            OSError(errno.EDQUOT, "Disk quota exceeded", SECRET_PATH),
            grpc.StatusCode.UNAVAILABLE,
            "disk is full",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", SECRET_PATH),
            grpc.StatusCode.INTERNAL,
            "PermissionError",
        ),
        (ValueError(f"bad thing at {SECRET_PATH}"), grpc.StatusCode.INTERNAL, "internal error: ValueError"),
    ],
)
def test_unexpected_errors_give_a_status_and_no_details(exc, code, says):
    got, message = _abort_code(exc)
    assert got == code and says in message
    assert "/srv" not in message and "Traceback" not in message


def test_a_disk_full_raised_from_another_error_is_still_transient():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", SECRET_PATH)
        except OSError as disk:
            raise RuntimeError("saving the adapter failed") from disk
    except RuntimeError as wrapped:
        assert _abort_code(wrapped)[0] == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("key", ["a" * 300, "adapters/" + "b" * 300, "x/" * 300 + "y"])
def test_a_key_too_long_is_refused_by_its_rule_before_any_filesystem(tmp_path, key):
    with pytest.raises(InvalidArgument) as refused:
        validate_key(key)
    message = refused.value.message
    assert "too long" in message and len(message) < 300  # the key is quoted, not all of it
    store = LocalStore(tmp_path / "store")
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key), lambda: store.exists(key)):
        with pytest.raises(InvalidArgument) as refused:
            call()
        assert "too long" in refused.value.message and str(tmp_path) not in refused.value.message


def test_key_parts_stay_under_every_filesystems_name_limit():
    assert validate_key("a" * MAX_KEY_SEGMENT_CHARS) and MAX_KEY_SEGMENT_CHARS + 50 < 255


def test_runtime_versions_name_versions_not_the_host():
    versions = runtime_versions()
    assert "platform" not in versions
    sent = " ".join(versions.values())
    assert platform.release() not in sent and socket.gethostname() not in sent
    assert versions["machine"] == platform.machine() and versions["python"] == platform.python_version()
