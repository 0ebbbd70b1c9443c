"""The Python that shell scripts run inline (`python -c '...'` in deploy/) imports names that exist.

Those snippets run only inside containers in CI's compose test, long after the unit tests; a moved name would
fail there first.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"^from (seal_lab(?:\.\w+)*) import ([\w, ]+)$", re.MULTILINE)


def test_every_seal_lab_import_in_the_deploy_scripts_resolves():
    found = [
        (path.relative_to(ROOT), module, name.strip())
        for path in sorted((ROOT / "deploy").rglob("*.sh"))
        for module, names in IMPORT.findall(path.read_text())
        for name in names.split(",")
    ]
    assert len(found) >= 3
    missing = [f"{path}: {module}.{name}" for path, module, name in found
               if not hasattr(importlib.import_module(module), name)]  # fmt: skip
    assert not missing, missing
