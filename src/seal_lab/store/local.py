"""The local-directory object store (the embedded default): a folder several processes on one machine share.

Writes are durable and atomic. The bytes go to a temporary file in the destination folder, which is flushed
and fsynced; `os.link` then publishes it under the key only if the key is still free (the kernel decides, so
two writers cannot both win), and the folder, plus any folder the write created, is fsynced so the new name
survives a power cut. `overwrite=True` publishes with `os.replace` instead. A failed write leaves nothing
under the key, and temporaries (dot-files) are never listed.

Filesystem errors become domain errors here, once: no space or quota is StoreFull (with the bytes needed
and free), a name too long for the filesystem is InvalidArgument, anything else StoreUnavailable. Messages
name the key and "the local store", never an absolute path.
"""

from __future__ import annotations

import bisect
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from seal_lab.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    StoreFull,
    StoreUnavailable,
)
from seal_lab.settings import StoreSettings
from seal_lab.store import ObjectStore, validate_key

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_COPY_CHUNK = 1024 * 1024
_SETTLED_NS = 1_000_000_000


class LocalStore(ObjectStore):
    """A directory on disk; several processes on one machine may share it."""

    label = "the local store"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = f"file://{self.root}"
        self._folders: dict[Path, tuple[int, list[str]]] = {}  # list_folders: folder -> (mtime, names)

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> LocalStore:
        return cls(settings.local_root)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    @contextmanager
    def _translate(self, action: str, key: str, needed: int | None = None) -> Iterator[None]:
        """Map OSError to domain errors; the message carries the key, never the filesystem path."""
        try:
            yield
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StoreFull(self._full_message(key, needed)) from exc
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidArgument(f"key {key!r} is too long for the local store's filesystem") from exc
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            raise StoreUnavailable(f"cannot {action} {key!r} in {self.label}: {reason}") from exc

    def _full_message(self, key: str, needed: int | None) -> str:
        free = self._free_bytes()
        need = f"{needed} bytes" if needed is not None else "space"
        have = f"{free} bytes free" if free is not None else "free space unknown"
        return f"{self.label} is full: writing {key!r} needs {need}, {have}"

    def _free_bytes(self) -> int | None:
        try:
            stats = os.statvfs(self.root)
        except OSError:
            return None
        return stats.f_bavail * stats.f_frsize

    # Writes.
    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        *,
        overwrite: bool = False,
    ) -> None:
        def same(existing: Path) -> bool:
            return existing.stat().st_size == len(data) and existing.read_bytes() == data

        self._write(key, len(data), lambda handle: handle.write(data), same, overwrite)

    def put_file(self, key: str, path: Path, *, overwrite: bool = False) -> None:
        source = Path(path)
        size = source.stat().st_size  # the caller's file: its errors are not the store's

        def copy(handle: BinaryIO) -> None:
            with source.open("rb") as src:
                shutil.copyfileobj(src, handle, _COPY_CHUNK)

        self._write(key, size, copy, lambda existing: _same_file(existing, source), overwrite)

    def _write(
        self,
        key: str,
        size: int,
        fill: Callable[[BinaryIO], object],
        same: Callable[[Path], bool],
        overwrite: bool,
    ) -> None:
        path = self._path(key)
        with self._translate("write", key, needed=size):
            folders = self._make_folders(key, path.parent)
            if self._publish(key, path, fill, same, overwrite):
                # The new name, and the name of each folder that was missing, are entries in their parent.
                # A failed write leaves at most empty folders behind: they are not objects, and removing them
                # could pull a folder from under a concurrent writer.
                _fsync_dirs([path.parent, *(folder.parent for folder in folders)])

    def _publish(
        self,
        key: str,
        path: Path,
        fill: Callable[[BinaryIO], object],
        same: Callable[[Path], bool],
        overwrite: bool,
    ) -> bool:
        """Write a synced temporary beside `path` and give it the key's name; False if the key already held
        these bytes (nothing new to sync)."""
        # A short fixed name, so a key whose last part is near the filesystem's name limit still fits.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                _refuse_folder(key, path)
                os.replace(tmp_name, path)
                return True
            try:
                os.link(tmp_name, path)  # atomic create-if-absent
            except FileExistsError:
                _refuse_folder(key, path)
                if not same(path):
                    raise AlreadyExists(
                        f"key {key!r} in {self.label} already holds different bytes; keys are write-once",
                        key=key,
                    ) from None
                return False  # an identical rewrite: a retry of a write that landed
            return True
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def _make_folders(self, key: str, folder: Path) -> list[Path]:
        """Create the missing folders above the key, top first; return them (now all present)."""
        missing: list[Path] = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for each in reversed(missing):
            try:
                each.mkdir()
            except FileExistsError:
                if not each.is_dir():  # an object holds the name this key needs as a folder
                    raise _key_conflict(key) from None
                # else another writer made it first
            except NotADirectoryError:
                raise _key_conflict(key) from None
        return missing

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._translate("delete", key):
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return  # no object under this key (a folder of other keys is not one)
            _fsync_dirs([path.parent])

    # Reads.
    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._translate("read", key):
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFound(f"no object at key {key!r} in {self.label}") from None

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._translate("check", key):
            return path.is_file()

    def list_keys(self, prefix: str) -> list[str]:
        # Walk only the folder the prefix names, not the whole store.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder else self.root
        with self._translate("list keys under", prefix):
            if not start.is_dir():
                return []
            keys = (
                p.relative_to(self.root).as_posix()
                for p in start.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )
            return sorted(k for k in keys if k.startswith(prefix))

    def list_folders(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        # One directory scan of the folder the prefix names (its entries' names only, nothing below them),
        # kept while the folder's mtime stands (it changes when an entry is added or removed): a page of a
        # folder of 10,000 adapters is then a bisection. A folder changed in the last second is scanned
        # every time (a filesystem's clock may not tell two changes within one tick apart).
        if prefix and not prefix.endswith("/"):
            raise InvalidArgument(f"list_folders needs a folder prefix ending with '/', not {prefix!r}")
        folder = self.root / validate_key(prefix.rstrip("/")) if prefix else self.root
        with self._translate("list folders under", prefix):
            try:
                mtime = folder.stat().st_mtime_ns
                cached = self._folders.get(folder)
                if cached is not None and cached[0] == mtime:
                    names = cached[1]
                else:
                    with os.scandir(folder) as entries:
                        names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
                    if time.time_ns() - mtime > _SETTLED_NS:
                        self._folders[folder] = (mtime, names)
            except (FileNotFoundError, NotADirectoryError):
                return []
        start = bisect.bisect_right(names, start_after) if start_after else 0
        return names[start : None if limit is None else start + limit]

    def check(self) -> None:
        if not self.root.is_dir():
            raise StoreUnavailable(f"{self.label}'s folder is missing")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"{self.label}'s folder is not writable by this process")
        if self._free_bytes() == 0:
            raise StoreFull(f"{self.label} is full: 0 bytes free")


def _fsync_dirs(folders: list[Path]) -> None:
    """fsync each folder once, so the names created in it are on disk (a file's fsync does not cover them)."""
    for folder in dict.fromkeys(folders):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_file(a: Path, b: Path) -> bool:
    """Byte for byte, in chunks (filecmp caches by mtime and size, which a quick rewrite can fool)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(_COPY_CHUNK)
            if chunk != fb.read(_COPY_CHUNK):
                return False
            if not chunk:
                return True


def _refuse_folder(key: str, path: Path) -> None:
    if path.is_dir():
        raise _key_conflict(key)


def _key_conflict(key: str) -> InvalidArgument:
    return InvalidArgument(
        f"key {key!r} clashes with another key in the local store: one key cannot be both an object and a "
        "folder of other keys (a/b and a/b/c); S3 allows it, a directory does not"
    )
