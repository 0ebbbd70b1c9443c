"""The layering the folder tree promises, read from the import statements (no module is imported).

Services talk to each other over gRPC and the object store only, never through Python imports; the shared
library (`src/seal_lab`) serves every service and imports none; its own modules import each other without
loops. Imports inside functions count too: a loop deferred to call time is still a loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "src" / "seal_lab"
SERVICES = ROOT / "services"


def _module_name(path: Path) -> str:
    base = ROOT / "src" if path.is_relative_to(ROOT / "src") else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module a file imports, relative imports resolved to absolute names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from package import module` imports the module.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _graph(folder: Path) -> dict[str, set[str]]:
    return {_module_name(path): set(_imports(path)) for path in sorted(folder.rglob("*.py"))}


def _service(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else None


def test_the_import_parser_sees_relative_and_absolute_imports():
    imports = set(_imports(SERVICES / "trainer" / "server.py"))
    assert "services.trainer.settings" in imports and "seal_lab.store" in imports


def test_services_never_import_each_other():
    crossings = sorted(
        f"{module} imports {target}"
        for module, targets in _graph(SERVICES).items()
        for target in targets
        if _service(target) not in (None, _service(module))
    )
    assert crossings == []


def test_the_shared_library_imports_no_service():
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _graph(LIBRARY).items()
        for target in targets
        if target == "services" or target.startswith("services.")
    )
    assert offenders == []


def test_the_shared_library_has_no_import_loops():
    graph = _graph(LIBRARY)
    edges = {module: {t for t in targets if t in graph and t != module} for module, targets in graph.items()}
    loops: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            loops.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert loops == [], "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)


def test_the_grpc_client_does_not_load_the_server_bootstrap():
    assert "seal_lab.grpc_server" not in set(_imports(LIBRARY / "grpc_client.py"))


#: "Modules with one job each, under about 400 lines" (the style guide); the bound leaves that "about".
MAX_MODULE_LINES = 420


def test_no_module_of_the_services_or_the_library_is_over_about_400_lines():
    files = [*SERVICES.rglob("*.py"), *LIBRARY.rglob("*.py")]
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert len(files) > 40 and not too_long, too_long
