"""LocalStore durability and error reporting: what reaches the disk, and what a failure says (pure, fast)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from seal_lab.errors import InvalidArgument, NotFound, StoreFull, StoreUnavailable
from seal_lab.store.local import LocalStore


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every fsync and link, in order: ("file" | "dir", inode) and ("link", 0)."""
    events: list[tuple[str, int]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        events.append(("dir" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    def link(src: str, dst: str) -> None:
        events.append(("link", 0))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    return events


def test_a_write_fsyncs_the_file_before_publishing_it_and_every_new_folder_after(
    tmp_path: Path, fsyncs: list[tuple[str, int]]
) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("a/b/c.bin", b"data")

    inode = os.stat(store.root / "a/b/c.bin").st_ino  # the temporary was linked: same inode
    assert fsyncs[:2] == [("file", inode), ("link", 0)]
    dirs = {ino for kind, ino in fsyncs[2:] if kind == "dir"}
    # c.bin is an entry of a/b, b of a, a of the root.
    assert dirs == {os.stat(store.root / p).st_ino for p in ("a/b", "a", ".")}

    fsyncs.clear()
    store.put_bytes("a/b/d.bin", b"more")  # the folders exist now: only the one that got a new name
    assert [kind for kind, _ in fsyncs] == ["file", "link", "dir"]
    assert fsyncs[2][1] == os.stat(store.root / "a/b").st_ino


def test_an_identical_rewrite_publishes_nothing(tmp_path: Path, fsyncs: list[tuple[str, int]]) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("k", b"v")
    fsyncs.clear()
    store.put_bytes("k", b"v")
    assert [kind for kind, _ in fsyncs] == ["file", "link"]  # the link fails: the key is taken
    assert sorted(os.listdir(store.root)) == ["k"]  # and the temporary is gone


def test_overwrite_renames_over_the_old_file_and_fsyncs_the_folder(
    tmp_path: Path, fsyncs: list[tuple[str, int]]
) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("k", b"v1")
    fsyncs.clear()
    store.put_bytes("k", b"v2", overwrite=True)
    assert [kind for kind, _ in fsyncs] == ["file", "dir"]
    assert store.get_bytes("k") == b"v2"


def test_a_failed_write_leaves_no_object_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(store.root / "x"))

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StoreUnavailable) as caught:
        store.put_bytes("runs/r/x.json", b"{}")
    message = caught.value.message
    assert "runs/r/x.json" in message and "Input/output error" in message
    assert str(tmp_path) not in message
    monkeypatch.undo()
    assert store.list_keys("") == []
    assert list((store.root / "runs/r").iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_no_space_or_quota_is_store_full_with_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store = LocalStore(tmp_path / "store")

    def full_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full_fsync)
    with pytest.raises(StoreFull, match=r"'k' needs 5 bytes, \d+ bytes free") as caught:
        store.put_bytes("k", b"12345")
    assert str(tmp_path) not in caught.value.message


def test_a_key_too_long_for_the_filesystem_is_an_invalid_argument(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    key = "runs/" + "x" * 300  # a valid key (<= 512) whose last part exceeds NAME_MAX (255)
    with pytest.raises(InvalidArgument, match="too long") as caught:
        store.put_bytes(key, b"v")
    assert str(tmp_path) not in caught.value.message
    assert store.list_keys("") == []


def test_an_object_and_a_folder_of_keys_cannot_share_a_name(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("a/b", b"object")
    with pytest.raises(InvalidArgument, match="clashes"):
        store.put_bytes("a/b/c", b"below an object")
    store.put_bytes("x/y/z", b"deep")
    with pytest.raises(InvalidArgument, match="clashes"):
        store.put_bytes("x/y", b"over a folder")
    with pytest.raises(InvalidArgument, match="clashes"):
        store.put_bytes("x/y", b"over a folder", overwrite=True)
    with pytest.raises(NotFound):
        store.get_bytes("a/b/c")
    store.delete("x/y")  # a folder is not an object: nothing to delete
    assert store.list_keys("") == ["a/b", "x/y/z"]


def test_check_reports_a_missing_or_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "store")
    store.check()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(StoreUnavailable, match="not writable"):
        store.check()
    monkeypatch.undo()
    store.root.rmdir()
    with pytest.raises(StoreUnavailable, match="missing") as caught:
        store.check()
    assert str(tmp_path) not in caught.value.message


def test_check_reports_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "store")
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=0, f_frsize=4096))
    with pytest.raises(StoreFull, match="0 bytes free"):
        store.check()


def test_list_folders_keeps_a_settled_folder_and_sees_every_change(tmp_path):
    """A folder's names are kept while its mtime stands: a new or deleted entry shows at once."""
    store = LocalStore(tmp_path)
    for name in ("b", "a", "c"):
        store.put_bytes(f"adapters/{name}/x.json", b"1")
    folder = tmp_path / "adapters"
    os.utime(folder, ns=(0, 1_000_000_000))  # settled long ago: its listing is kept
    assert store.list_folders("adapters/") == ["a", "b", "c"]
    assert store.list_folders("adapters/", start_after="a", limit=1) == ["b"]
    store.put_bytes("adapters/ab/x.json", b"1")  # a new entry moves the folder's mtime
    assert store.list_folders("adapters/", start_after="a") == ["ab", "b", "c"]
    os.utime(folder, ns=(0, 2_000_000_000))
    assert store.list_folders("adapters/") == ["a", "ab", "b", "c"]
    (folder / "ab" / "x.json").unlink()
    (folder / "ab").rmdir()
    assert store.list_folders("adapters/") == ["a", "b", "c"]
