"""Object store: one small interface, a local directory (embedded default) and S3 (MinIO, SeaweedFS, AWS).

Keys are immutable: content-addressed objects (`content_key`) or write-once records. Downloads go to a
temporary file that is renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seal_lab.errors import InvalidArgument, NotFound
from seal_lab.settings import StoreSettings

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")


def validate_key(key: str) -> str:
    """Refuse keys that could escape the store or are not portable across S3 implementations."""
    if (
        not key
        or len(key) > 512
        or not _KEY_PATTERN.match(key)
        or any(p in (".", "..") for p in key.split("/"))
    ):
        raise InvalidArgument(f"invalid object key {key!r}: use letters, digits, '._=-' and '/' separators")
    return key


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(prefix: str, data: bytes, suffix: str = "") -> str:
    """`prefix/<sha256>suffix`: the same bytes always get the same key."""
    return validate_key(f"{prefix}/{sha256_hex(data)}{suffix}")


class ObjectStore(ABC):
    """What the services need from a bucket; nothing more."""

    #: Human-readable location, for logs and the run record.
    location: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Raise NotFound when the key does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """All keys that start with `prefix`, sorted."""

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    def get_file(self, key: str, destination: Path) -> Path:
        destination = Path(destination)
        data = self.get_bytes(key)
        _atomic_write(destination, data)
        return destination

    # Conveniences shared by every implementation.
    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json_bytes(value), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_content(self, prefix: str, data: bytes, suffix: str = "", content_type: str = "") -> str:
        """Store bytes under their content key (idempotent) and return the key."""
        key = content_key(prefix, data, suffix)
        if not self.exists(key):
            self.put_bytes(key, data, content_type or "application/octet-stream")
        return key


def json_bytes(value: Any) -> bytes:
    """Canonical JSON, so equal records hash equally."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode()


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    """Canonical JSON lines (datasets), so equal records hash equally."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()


def _atomic_write(destination: Path, data: bytes) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class LocalStore(ObjectStore):
    """A directory on disk; several processes on one machine may share it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = f"file://{self.root}"

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> LocalStore:
        return cls(settings.local_root)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        _atomic_write(self._path(key), data)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no object at key {key!r} in {self.location}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        # Walk only the folder the prefix names, not the whole store.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in start.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        return sorted(k for k in keys if k.startswith(prefix))


StoreFactory = Callable[[StoreSettings], ObjectStore]


def _s3_factory(settings: StoreSettings) -> ObjectStore:
    from seal_lab.s3store import S3Store  # minio is imported only when S3 is used

    return S3Store.from_settings(settings)


STORE_FACTORIES: dict[str, StoreFactory] = {"local": LocalStore.from_settings, "s3": _s3_factory}


def open_store(settings: StoreSettings) -> ObjectStore:
    return STORE_FACTORIES[settings.kind](settings)
