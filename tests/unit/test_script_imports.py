"""The Python that shell scripts run inline (`python -c '...'` in deploy/) imports names that exist.

Those snippets run only inside containers in CI's compose test, long after the unit tests; a moved name would
fail there first.
"""

from __future__ import annotations

import ast
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


def _module_file(module: str) -> Path | None:
    for base in (ROOT / "src", ROOT):
        path = base.joinpath(*module.split("."))
        if path.with_suffix(".py").is_file():
            return path.with_suffix(".py")
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
    return None


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_project_import_in_the_benchmarks_resolves():
    """Benchmarks import inside functions (torch only when run), so a moved module fails only when someone runs
    one; read them statically: every `from seal_lab... / services... import NAME` names a module that exists
    and a name it defines (or a submodule)."""
    missing, seen = [], 0
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and not node.level):
                continue
            if node.module.split(".")[0] not in ("seal_lab", "services"):
                continue
            seen += 1
            target = _module_file(node.module)
            if target is None:
                missing.append(f"{path.name}:{node.lineno}: no module {node.module}")
                continue
            defined = _top_level_names(target)
            for alias in node.names:
                if alias.name not in defined and _module_file(f"{node.module}.{alias.name}") is None:
                    missing.append(f"{path.name}:{node.lineno}: {node.module} has no {alias.name}")
    assert seen >= 20
    assert not missing, missing
