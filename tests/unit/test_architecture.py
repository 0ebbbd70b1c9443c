"""The layering the folder tree promises, read from the import statements (no module is imported).

Services talk to each other over gRPC and the object store only, never through Python imports; the shared
library (`src/seal_lab`) serves every service and imports none; its own modules import each other without
loops. The library and the coordinator are each built in wings, each answering one question, that import
each other only along the arrows of `LIBRARY_MAY_IMPORT` and `MAY_IMPORT` (src/seal_lab/README.md and
services/coordinator/README.md draw them). Imports inside functions count too:
a loop deferred to call time is still a loop. A module is as long as its one job needs: no line count here.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Callable, Iterator
from pathlib import Path

from seal_lab.runtime import MODEL_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "src" / "seal_lab"
SERVICES = ROOT / "services"
COORDINATOR = SERVICES / "coordinator"


def _module_name(path: Path) -> str:
    base = ROOT / "src" if path.is_relative_to(ROOT / "src") else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _statements(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every import statement of a file as (module, names taken from it), relative imports resolved to
    absolute names; `import a.b` is ("a.b", [])."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]


def _imports(path: Path) -> Iterator[str]:
    """Every module a file imports, relative imports resolved to absolute names."""
    for base, names in _statements(path):
        yield base
        # `from package import module` imports the module.
        yield from (f"{base}.{name}" for name in names)


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


def _importers(folder: Path, forbidden: tuple[str, ...], where: Callable[[str], bool] = bool) -> list[str]:
    """Every import of a module of `folder` (those `where` picks) of a module in `forbidden` or below it."""
    return sorted(
        f"{module} imports {target}"
        for module, targets in _graph(folder).items()
        if where(module)
        for target in targets
        if any(target == package or target.startswith(f"{package}.") for package in forbidden)
    )


def test_the_shared_library_imports_no_service():
    assert _importers(LIBRARY, ("services",)) == []


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    # A module's own packages are imported before it (`from . import sibling` names one): not a loop.
    edges = {
        module: {t for t in targets if t in graph and t != module and not module.startswith(f"{t}.")}
        for module, targets in graph.items()
    }
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
    return loops


def test_the_shared_library_and_the_coordinator_have_no_import_loops():
    for folder in (LIBRARY, COORDINATOR):
        loops = _loops(_graph(folder))
        assert loops == [], "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)


def _crossings(
    folder: Path,
    wing_of: Callable[[str], str | None],
    may_import: dict[str, set[str]],
    also: dict[str, set[str]] | None = None,
) -> list[str]:
    """Every import of `folder` from one wing into another that its wing's arrows (or the module's own
    exception in `also`) do not allow."""
    return sorted(
        f"{module} imports {target}"
        for module, targets in _graph(folder).items()
        if (wing := wing_of(module)) is not None
        for target in targets
        if (other := wing_of(target)) in may_import
        and other != wing
        and other not in may_import[wing] | (also or {}).get(module, set())
    )


def _assert_wings_without_loops(
    folder: Path, wing_of: Callable[[str], str | None], may_import: dict[str, set[str]]
) -> None:
    wings: dict[str, set[str]] = {}
    for module, targets in _graph(folder).items():
        if (wing := wing_of(module)) is not None:
            wings.setdefault(wing, set()).update(
                w for t in targets if (w := wing_of(t)) in may_import and w != wing
            )
    for graph in (wings, may_import):  # neither the imports nor the rules make a loop
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as loop:
            raise AssertionError(f"wings importing in a loop: {' -> '.join(loop.args[1])}") from None
    assert set(wings) == set(may_import)


def test_the_grpc_client_does_not_load_the_server_bootstrap():
    assert "seal_lab.serve.server" not in set(_imports(LIBRARY / "rpc" / "client.py"))


# The library's wings. Each module at its top (`settings`, `errors`, `logging`, `security`, `runtime`,
# `openai_client`) counts as a wing of its own; `seal_lab` itself only holds the version.
#: wing -> the wings it may import (src/seal_lab/README.md draws these arrows).
LIBRARY_MAY_IMPORT: dict[str, set[str]] = {
    "settings": set(),
    "errors": set(),
    "logging": set(),
    "runtime": set(),
    "security": {"settings"},
    "openai_client": {"errors"},
    "scoring": set(),  # answer metrics and statistics: pure
    "store": {"errors", "settings"},  # where the bytes live
    "formats": {"errors", "settings", "store"},  # what crosses a service boundary
    "rpc": {"logging", "security"},  # what both ends of a gRPC call agree on, and the calling end
    "model": {"errors", "settings", "store", "formats"},  # the torch half
    "serve": {"errors", "logging", "runtime", "security", "settings", "rpc", "model"},  # a model service
}
#: The torch half: only `model/` imports these, and nothing in the library imports a model package at
#: module level outside it, so the light half (the coordinator, the CLI, the probes) runs without the extra.
TORCH_HALF = ("torch", "transformers", "peft")
#: What a format never imports: the transports, and the store's backends (a format reads and writes through
#: the interface, `seal_lab.store`, whichever backend the process opened).
TRANSPORTS_AND_BACKENDS = (
    "grpc",
    "httpx",
    "requests",
    "urllib3",
    "minio",
    "boto3",
    "seal_lab.rpc",
    "seal_lab.serve",
    "seal_lab.store.local",
    "seal_lab.store.s3",
    "seal_lab.store.open",
    "seal_lab.store.outage",
)


def _library_wing(module: str) -> str | None:
    """The library's wing a module belongs to (None: outside the library, or the package itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "seal_lab" and len(parts) > 1 else None


def _module_level_imports(path: Path) -> Iterator[str]:
    """The modules a file imports when it is imported: not inside a function, not under `if TYPE_CHECKING`."""
    pending: list[ast.AST] = list(ast.parse(path.read_text(), str(path)).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module or ""
        pending.extend(ast.iter_child_nodes(node))


def test_every_library_module_is_in_a_wing():
    strays = sorted(
        m for m in _graph(LIBRARY) if m != "seal_lab" and _library_wing(m) not in LIBRARY_MAY_IMPORT
    )
    assert strays == [], f"{strays}: put each in a wing (or add a wing to LIBRARY_MAY_IMPORT and the README)"


def test_the_library_wings_import_only_along_their_arrows():
    assert _crossings(LIBRARY, _library_wing, LIBRARY_MAY_IMPORT) == []


def test_the_library_wings_import_each_other_without_loops():
    _assert_wings_without_loops(LIBRARY, _library_wing, LIBRARY_MAY_IMPORT)


def test_the_light_half_never_imports_the_torch_half():
    # Of the library's wings only serve/ (a model service: the model behind a gRPC server) reaches model/.
    assert [wing for wing, arrows in LIBRARY_MAY_IMPORT.items() if "model" in arrows] == ["serve"]
    outside = [path for path in sorted(LIBRARY.rglob("*.py")) if _library_wing(_module_name(path)) != "model"]
    anywhere = sorted(
        f"{_module_name(path)} imports {target}"
        for path in outside
        for target in _imports(path)
        if _names(target, TORCH_HALF)
    )
    assert anywhere == [], "only model/ imports torch, transformers or peft"
    at_import = sorted(
        f"{_module_name(path)} imports {target} at module level"
        for path in outside
        for target in _module_level_imports(path)
        if _names(target, MODEL_PACKAGES)
    )
    assert at_import == [], "outside model/, the model extra's packages are imported only where they are used"


def test_the_formats_import_no_transport_and_no_store_backend():
    assert (
        _importers(LIBRARY, TRANSPORTS_AND_BACKENDS, lambda module: _library_wing(module) == "formats") == []
    )


def test_the_coordinator_calls_the_services_and_serves_none():
    assert _importers(COORDINATOR, ("seal_lab.serve",)) == []


def test_the_librarys_map_names_every_module():
    """src/seal_lab/README.md has one line per module: a new module goes on the map with its job."""
    readme = (LIBRARY / "README.md").read_text()
    missing = sorted(
        relative
        for path in LIBRARY.rglob("*.py")
        if (path.name != "__init__.py" or path.parent.name == "store")  # the store's interface is its package
        and f"`{(relative := path.relative_to(LIBRARY).as_posix())}`" not in readme
    )
    assert missing == []


# The coordinator's wings. `settings` (the settings every wing is configured by) and `__main__` (the server's
# entry point, which puts the app together) are the two modules at its top; each counts as a wing of its own.
PACKAGE = "services.coordinator"
#: wing -> the wings it may import (services/coordinator/README.md draws these arrows).
MAY_IMPORT: dict[str, set[str]] = {
    "run": set(),  # what a run is: the vocabulary every other wing speaks
    "settings": {"run"},
    "results": {"run"},  # what a run found
    "report": {"run", "results"},  # how the results look
    "engine": {"run", "results", "settings"},  # how a run executes
    "api": {"run", "results", "report", "engine", "settings"},  # how it is served
    "cli": {"run"},  # how it is driven: over HTTP
    "__main__": {"api", "settings"},
}
#: The one module beyond its wing's arrows: the local-stack launcher starts the coordinator as a process
#: and reads the default it will run with (passages in flight) to split the cores between the services.
ALSO_MAY_IMPORT = {f"{PACKAGE}.cli.launcher": {"settings"}}
#: The engine is driven by the API and by tests; it serves no HTTP and parses no command line.
SERVER_AND_COMMAND_LINE = ("fastapi", "starlette", "uvicorn", "typer", "click")
#: What a pure wing (run, results, report) never imports: the network, the store's backends, processes.
INPUT_OUTPUT = (
    "grpc",
    "seal.v1",
    "httpx",
    "httpx_sse",
    "requests",
    "urllib.request",
    "http.client",
    "boto3",
    "botocore",
    "minio",
    "fastapi",
    "starlette",
    "uvicorn",
    "typer",
    "socket",
    "subprocess",
    "seal_lab.rpc.client",
    "seal_lab.serve.server",
    "seal_lab.rpc.wire",
    "seal_lab.store.s3",
    "seal_lab.store.local",
    "seal_lab.store.open",
    "seal_lab.httpretry",
    "seal_lab.rpc.healthcheck",
    "seal_lab.serve.metrics_http",
)
PURE_WINGS = ("run", "results", "report")


def _wing(module: str) -> str | None:
    """The coordinator's wing a module belongs to (None: outside the coordinator, or its package itself)."""
    parts = module.split(".")
    return parts[2] if parts[:2] == PACKAGE.split(".") and len(parts) > 2 else None


def _names(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def _offenders(wings: tuple[str, ...], forbidden: tuple[str, ...], graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _wing(module) in wings
        for target in targets
        if _names(target, forbidden)
    )


def _engine_face() -> set[str]:
    """The names `services/coordinator/engine/__init__.py` lists in `__all__`."""
    tree = ast.parse((COORDINATOR / "engine" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("services/coordinator/engine/__init__.py has no __all__")


def test_the_import_parser_resolves_imports_from_a_parent_package():
    statements = list(_statements(COORDINATOR / "api" / "deps.py"))
    assert (f"{PACKAGE}.engine", ["RunManager", "RunState"]) in statements


def test_every_coordinator_module_is_in_a_wing():
    strays = sorted(m for m in _graph(COORDINATOR) if m != PACKAGE and _wing(m) not in MAY_IMPORT)
    assert strays == [], f"{strays}: put each in a wing (or add a wing to MAY_IMPORT and the README)"


def test_the_coordinator_wings_import_only_along_their_arrows():
    assert _crossings(COORDINATOR, _wing, MAY_IMPORT, ALSO_MAY_IMPORT) == []


def test_the_coordinator_wings_import_each_other_without_loops():
    _assert_wings_without_loops(COORDINATOR, _wing, MAY_IMPORT)


def test_the_engine_serves_no_http_and_parses_no_command_line():
    assert _offenders(("engine",), SERVER_AND_COMMAND_LINE, _graph(COORDINATOR)) == []


def test_the_api_reaches_the_engine_only_through_its_public_face():
    face = _engine_face()
    offenders = []
    for path in sorted(COORDINATOR.rglob("*.py")):
        module = _module_name(path)
        if _wing(module) == "engine":
            continue
        for base, names in _statements(path):
            if _wing(base) != "engine":
                continue
            if base != f"{PACKAGE}.engine":
                offenders.append(f"{module} imports {base}")
            offenders.extend(
                f"{module} imports {name}, not in engine.__all__" for name in names if name not in face
            )
    assert offenders == []


def test_the_cli_speaks_http_and_never_the_engine():
    graph = _graph(COORDINATOR)
    # Its wings: covered by MAY_IMPORT ("cli" -> run only; the launcher also reads the settings).
    assert MAY_IMPORT["cli"] == {"run"}
    assert _offenders(("cli",), ("fastapi", "starlette", "uvicorn"), graph) == []
    # It reaches the coordinator over HTTP; only the launcher touches gRPC, to wait for the services it starts.
    grpc = ("grpc", "seal.v1", "seal_lab.rpc.client", "seal_lab.serve.server")
    assert [
        o for o in _offenders(("cli",), grpc, graph) if not o.startswith(f"{PACKAGE}.cli.launcher ")
    ] == []
    assert any(_names(target, ("httpx",)) for target in graph[f"{PACKAGE}.cli.api_client"])


def test_run_results_and_report_are_pure():
    assert _offenders(PURE_WINGS, INPUT_OUTPUT, _graph(COORDINATOR)) == []


def test_the_coordinators_map_names_every_module():
    """services/coordinator/README.md has one line per module: a new module goes on the map with its job."""
    readme = (COORDINATOR / "README.md").read_text()
    missing = sorted(
        relative
        for path in COORDINATOR.rglob("*.py")
        if path.name != "__init__.py"
        and f"`{(relative := path.relative_to(COORDINATOR).as_posix())}`" not in readme
    )
    assert missing == []


#: The web UI (api/ui/) and MLflow tracking (api/tracking.py) read the coordinator only through its public HTTP
#: API, like any client: they import
#: no engine module, nor the API's modules that reach the engine (deps, errors, paging, routes); they may use the
#: vocabulary (run), the report's pure plots, and the session check it shares with the API (api/session.py).
UI = f"{PACKAGE}.api.ui"
UI_MAY_IMPORT = (UI, f"{PACKAGE}.run", f"{PACKAGE}.report", f"{PACKAGE}.api.session")


def test_the_ui_speaks_http_and_never_the_engine():
    graph = _graph(COORDINATOR)
    # MLflow tracking is a client of the API too.
    ui_modules = [m for m in graph if _names(m, (UI, f"{PACKAGE}.api.tracking"))]
    assert ui_modules, "services/coordinator/api/ui/ has no modules"
    offenders = sorted(
        f"{module} imports {target}"
        for module in ui_modules
        for target in graph[module]
        if _names(target, (PACKAGE,)) and target != PACKAGE and not _names(target, UI_MAY_IMPORT)
    )
    assert offenders == []
    # ...and it does speak HTTP: its client calls the API.
    assert any(_names(target, ("httpx",)) for target in graph[f"{UI}.client"])
    # The session check it shares with the API reaches nothing of the coordinator at all.
    assert not [t for t in graph[f"{PACKAGE}.api.session"] if _names(t, (PACKAGE,))]
