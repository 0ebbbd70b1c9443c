"""Published adapters, read-only: list them, show one (its config and `seal_adapter.json`), download one of
its files by name. The store layout is `seal_lab.formats.adapters`'; these routes only read it. Store reads block, so
the routes are plain functions (FastAPI runs them in its thread pool)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from seal_lab.errors import CorruptObject, FailedPrecondition, NotFound
from seal_lab.formats.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_META,
    adapter_file_key,
    adapter_key,
    list_adapter_keys,
)
from seal_lab.store import ObjectStore, read_many

from ..deps import Manager

router = APIRouter(prefix="/v1/adapters", tags=["adapters"])

_MEDIA_TYPES = {".json": "application/json", ".md": "text/markdown; charset=utf-8"}


def get_store(manager: Manager) -> ObjectStore:
    return manager.store


Store = Annotated[ObjectStore, Depends(get_store)]


class AdapterSummary(BaseModel):
    """One adapter: its key and, from its `seal_adapter.json`, what it was trained on."""

    key: str
    base_model: str | None = Field(None, description="the base model's loadable id")
    base_model_fingerprint: str | None = None
    dataset_key: str | None = None
    seed: int | None = None


class AdapterList(BaseModel):
    adapters: list[AdapterSummary]
    next_after: str | None = Field(
        None, description="pass as `after` for the next page; null on the last page"
    )


class AdapterDetail(BaseModel):
    key: str
    files: list[str] = Field(description="the adapter's files in the store, by name")
    config: dict[str, Any] = Field(description="adapter_config.json (peft)")
    meta: dict[str, Any] | None = Field(description="seal_adapter.json; null if it has none")


def _meta(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        meta = store.get_json(f"{key}/{ADAPTER_META}")
    except (NotFound, CorruptObject, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _summary(store: ObjectStore, key: str) -> AdapterSummary:
    meta = _meta(store, key) or {}
    base = meta.get("base_model")
    seed = meta.get("seed")
    return AdapterSummary(
        key=key,
        base_model=base.get("id") if isinstance(base, dict) else meta.get("base_model_name"),
        base_model_fingerprint=meta.get("base_model_fingerprint"),
        dataset_key=meta.get("dataset_key"),
        seed=seed if isinstance(seed, int) else None,
    )


@router.get("", response_model=AdapterList)
def list_adapters(
    store: Store,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str, Query(max_length=300, description="the last key of the previous page")] = "",
) -> AdapterList:
    """Published adapters, sorted by key, `limit` at a time."""
    keys = list_adapter_keys(store, limit + 1, after)
    page = read_many(store, lambda key: _summary(store, key), keys[:limit])
    return AdapterList(adapters=page, next_after=keys[limit - 1] if len(keys) > limit else None)


@router.get("/{adapter}", response_model=AdapterDetail)
def show_adapter(adapter: str, store: Store) -> AdapterDetail:
    """An adapter's peft config, its `seal_adapter.json` and which of its files are stored
    (`adapter` : its sha256, or its key)."""
    key = adapter_key(adapter)
    try:
        config = store.get_json(f"{key}/{ADAPTER_CONFIG}")
    except NotFound:
        raise NotFound(f"no adapter {key!r} in the store") from None
    except (CorruptObject, json.JSONDecodeError):
        raise FailedPrecondition(f"adapter {key!r} has an unreadable {ADAPTER_CONFIG}") from None
    names = {stored.rsplit("/", 1)[-1] for stored in store.list_keys(f"{key}/")}
    return AdapterDetail(
        key=key,
        files=[name for name in ADAPTER_FILES if name in names],
        config=config,
        meta=_meta(store, key),
    )


@router.get("/{adapter}/files/{name}", response_class=FileResponse)
def download_adapter_file(adapter: str, name: str, store: Store) -> FileResponse:
    """One file of an adapter: adapter_model.safetensors, adapter_config.json, README.md or
    seal_adapter.json (404 for any other name)."""
    stored = adapter_file_key(store, adapter_key(adapter), name)
    folder = Path(tempfile.mkdtemp(prefix="seal-download-"))
    try:
        path = store.get_file(stored, folder / name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        filename=name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
