"""Opening the store the settings name: the one place that knows every backend.

Apart from `seal_lab.store` (the interface every backend implements), so that the backends import the
interface and only this module imports the backends: no import loop.
"""

from __future__ import annotations

from collections.abc import Callable

from seal_lab.settings import StoreSettings
from seal_lab.store import ObjectStore

StoreFactory = Callable[[StoreSettings], ObjectStore]


def _local_factory(settings: StoreSettings) -> ObjectStore:
    from seal_lab.store.local import LocalStore

    return LocalStore.from_settings(settings)


def _s3_factory(settings: StoreSettings) -> ObjectStore:
    from seal_lab.store.s3 import S3Store  # minio is imported only when S3 is used

    return S3Store.from_settings(settings)


STORE_FACTORIES: dict[str, StoreFactory] = {"local": _local_factory, "s3": _s3_factory}


def open_store(settings: StoreSettings) -> ObjectStore:
    """The store the settings name. No network I/O: call `check()` to know whether it can serve."""
    return STORE_FACTORIES[settings.kind](settings)
