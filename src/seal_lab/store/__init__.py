"""Object store: one small interface, a local directory (embedded default) and S3 (MinIO, SeaweedFS, AWS).

Keys are write-once, and the store enforces it: `put_*` refuses to replace an object with different bytes
(AlreadyExists) unless told `overwrite=True`; writing the same bytes again is a no-op, so a retried write is
safe. Content-addressed objects (`content_key`) can be read back verified (`get_verified`); an object found
corrupt is moved aside under `quarantine/` so the next reader sees it missing and a writer can restore it.
Downloads go to a temporary file that is renamed into place, so a reader never sees half a file.

The interface and what every backend shares live here; `seal_lab.store.local` and `seal_lab.store.s3` hold the
backends, and `seal_lab.store.open.open_store` picks one from the settings (the backends import this module,
never the other way round).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from seal_lab.errors import AlreadyExists, CorruptObject, InvalidArgument, NotFound

T = TypeVar("T")
R = TypeVar("R")

#: One part of a key between slashes: letters, digits and `._=-` (portable across S3 servers and filesystems).
KEY_SEGMENT_PATTERN = re.compile(r"^[A-Za-z0-9_.=-]+$")
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
#: The longest key, and the longest part of one: a filesystem refuses names over 255 bytes (ENAMETOOLONG), so
#: every store refuses a part over 200 (room for the local store's and quarantine's suffixes), and says so
#: itself instead of letting a filesystem error through.
MAX_KEY_CHARS = 512
MAX_KEY_SEGMENT_CHARS = 200
#: `<prefix>/<sha256 hex><suffix>`, the shape `content_key` builds; the suffix does not continue the hex.
_CONTENT_KEY_PATTERN = re.compile(r"^.+/(?P<digest>[0-9a-f]{64})(?![0-9a-f])[^/]*$")
#: Bad objects are moved under this prefix, beside the data, never inside `runs/`, `datasets/`...
QUARANTINE_PREFIX = "quarantine"


def validate_key(key: str) -> str:
    """Refuse keys that could escape the store, are not portable across S3 implementations, or are too long
    for a filesystem. The message quotes at most the key's start (a key can be any size a caller sends)."""
    if len(key) > MAX_KEY_CHARS:
        raise InvalidArgument(
            f"object key {_shown(key)} is too long: {len(key)} characters; the limit is {MAX_KEY_CHARS}"
        )
    if not key or not _KEY_PATTERN.match(key) or any(p in (".", "..") for p in key.split("/")):
        raise InvalidArgument(
            f"invalid object key {_shown(key)}: use letters, digits, '._=-' and '/' separators"
        )
    longest = max(key.split("/"), key=len)
    if len(longest) > MAX_KEY_SEGMENT_CHARS:
        raise InvalidArgument(
            f"object key {_shown(key)} is too long: a part of {len(longest)} characters between slashes; "
            f"the limit is {MAX_KEY_SEGMENT_CHARS}"
        )
    return key


def is_key_segment(text: str) -> bool:
    """Whether `text` can be one part of a key (a name that ends up inside keys, e.g. an id)."""
    return (
        len(text) <= MAX_KEY_SEGMENT_CHARS
        and text not in (".", "..")
        and KEY_SEGMENT_PATTERN.match(text) is not None
    )


def _shown(key: str, limit: int = 80) -> str:
    return repr(key) if len(key) <= limit else repr(key[:limit]) + "..."


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(prefix: str, data: bytes, suffix: str = "") -> str:
    """`prefix/<sha256>suffix`: the same bytes always get the same key."""
    return validate_key(f"{prefix}/{sha256_hex(data)}{suffix}")


def content_digest(key: str) -> str | None:
    """The sha256 a content key promises (`content_key`'s shape), or None for any other key."""
    match = _CONTENT_KEY_PATTERN.match(key)
    return match["digest"] if match else None


class ObjectStore(ABC):
    """What the services need from a bucket; nothing more."""

    #: Human-readable location, for logs and the run record.
    location: str
    #: How error messages name this store (S3: the location; local: no filesystem path).
    label: str
    #: How many small reads are worth making at once (`read_many`): a round trip each on S3, a file locally.
    read_concurrency: int = 1

    @abstractmethod
    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        *,
        overwrite: bool = False,
    ) -> None:
        """Write once: AlreadyExists if `key` holds different bytes, nothing if it holds these. `overwrite=True`
        replaces whatever is there."""

    @abstractmethod
    def put_file(self, key: str, path: Path, *, overwrite: bool = False) -> None:
        """`put_bytes` for a file on disk, without loading large files into memory where the backend can."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Raise NotFound when the key does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """All keys that start with `prefix`, sorted."""

    def list_folders(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        """The names one level below the folder `prefix` (ends with '/') that hold keys, sorted, only those
        after the name `start_after`, at most `limit`: a page of a large folder
        without listing what is inside it. This default lists every key below; the backends do better (a
        sorted directory scan, S3's delimiter and StartAfter)."""
        names = sorted(
            {
                key[len(prefix) :].split("/", 1)[0]
                for key in self.list_keys(prefix)
                if "/" in key[len(prefix) :]
            }
        )
        return folder_page(names, start_after, limit)

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing one is fine."""

    @abstractmethod
    def check(self) -> None:
        """A cheap probe: raise StoreUnavailable (StoreFull when out of space) if the store cannot serve.
        Constructing a store does no network I/O; services call this until it passes."""

    def get_file(self, key: str, destination: Path) -> Path:
        destination = Path(destination)
        data = self.get_bytes(key)
        _atomic_write(destination, data)
        return destination

    # Conveniences shared by every implementation.
    def put_json(self, key: str, value: Any, *, overwrite: bool = False) -> None:
        self.put_bytes(key, json_bytes(value), "application/json", overwrite=overwrite)

    def get_json(self, key: str) -> Any:
        """The parsed object; CorruptObject when the bytes are not JSON (an empty object included)."""
        data = self.get_bytes(key)
        if not data:
            raise CorruptObject(f"object {key!r} in {self.label} is empty, not JSON", key=key)
        try:
            return json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise CorruptObject(
                f"object {key!r} in {self.label} is not valid JSON ({len(data)} bytes): {exc}", key=key
            ) from None

    def put_content(self, prefix: str, data: bytes, suffix: str = "", content_type: str = "") -> str:
        """Store bytes under their content key (idempotent) and return the key.

        Different bytes under a content key can only be corruption: they are quarantined and replaced."""
        key = content_key(prefix, data, suffix)
        if self.exists(key):  # a HEAD instead of uploading bytes the store already holds
            return key
        content_type = content_type or "application/octet-stream"
        try:
            self.put_bytes(key, data, content_type)
        except AlreadyExists:
            self._quarantine_if(key, "its bytes do not match the sha256 in its key", _digest_differs(key))
            self.put_bytes(key, data, content_type)
        return key

    def get_verified(self, key: str) -> bytes:
        """The bytes of a content key, checked against the sha256 in the key. A mismatch quarantines the object
        and raises CorruptObject; the next read sees it missing."""
        expected = content_digest(key)
        if expected is None:
            raise InvalidArgument(
                f"key {key!r} has no sha256 to verify against (expected prefix/<sha256>suffix)"
            )
        data = self.get_bytes(key)
        actual = sha256_hex(data)
        if actual != expected:
            reason = f"sha256 {actual} does not match its key"
            moved = self._quarantine_if(key, reason, _digest_differs(key))
            where = f"; moved to {moved!r}" if moved else ""
            raise CorruptObject(f"object {key!r} in {self.label}: {reason}{where}", key=key)
        return data

    def quarantine(self, key: str, reason: str) -> str:
        """Move a bad object aside: its bytes to `quarantine/<key>.<UTC time>`, `reason` in a `.reason.json`
        beside them, then delete it. Return the quarantine key, or "" when the object was already gone."""
        return self._quarantine_if(key, reason, lambda _data: True)

    def _quarantine_if(self, key: str, reason: str, still_bad: Callable[[bytes], bool]) -> str:
        # Re-read and re-judge the bytes being moved: another process may have quarantined the bad object and
        # written the good one since the caller looked. Between this read and the delete a window remains (S3
        # has no portable conditional delete); it is as short as one copy.
        try:
            data = self.get_bytes(key)
        except NotFound:
            return ""
        if not still_bad(data):
            return ""
        now = datetime.now(UTC)
        target = validate_key(f"{QUARANTINE_PREFIX}/{key}.{now.strftime('%Y%m%dT%H%M%S.%fZ')}")
        self.put_bytes(target, data)
        self.put_json(f"{target}.reason.json", {"key": key, "reason": reason, "at": now.isoformat()})
        self.delete(key)
        return target


def read_many(store: ObjectStore, read: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`read(item)` for each item, in order, up to the store's `read_concurrency` at once (a page of adapters
    on S3 is 100 round trips: at once they take the time of a few)."""
    workers = min(store.read_concurrency, len(items))
    if workers <= 1:
        return [read(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read, items))


@dataclass(frozen=True)
class RecordRead:
    """What `read_record` found: the record, or why it was unusable and where it was moved."""

    record: Any = None
    problem: str = ""
    moved_to: str = ""


def read_record(store: ObjectStore, key: str, problem: Callable[[Any], str | None]) -> RecordRead:
    """A JSON record that must be whole to be used: missing -> empty RecordRead; unparsable, or one that
    `problem(record)` objects to -> moved to quarantine, with the reason; else the record. The caller then
    redoes what the record stood for."""
    try:
        record = store.get_json(key)
        why = problem(record)
    except NotFound:
        return RecordRead()
    except CorruptObject as exc:
        why = exc.message
    if why is None:
        return RecordRead(record)
    return RecordRead(problem=why, moved_to=store.quarantine(key, why))


def folder_page(names: list[str], start_after: str, limit: int | None) -> list[str]:
    """`names` sorted, those after `start_after` only, at most `limit`."""
    chosen = sorted(n for n in names if n > start_after)
    return chosen if limit is None else chosen[:limit]


def _digest_differs(key: str) -> Callable[[bytes], bool]:
    expected = content_digest(key)
    return lambda data: sha256_hex(data) != expected


def json_bytes(value: Any) -> bytes:
    """Canonical JSON, so equal records hash equally."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode()


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    """Canonical JSON lines (datasets), so equal records hash equally."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()


def _atomic_write(destination: Path, data: bytes) -> None:
    """A download: complete in a sibling temporary file, then one rename (the caller's disk, not the store)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
