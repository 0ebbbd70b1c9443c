"""The docs' generated pages: the HTTP API reference from the coordinator's OpenAPI document, and the settings
reference from the pydantic-settings classes. A MkDocs hook (mkdocs.yml `hooks:`) and a script:

    python docs/hooks/reference.py          # rewrite docs/configuration/settings.md from the settings classes
    python docs/hooks/reference.py --check  # exit 1 if the committed page differs (tests/unit/test_docs.py too)

At build time the API page is rendered from `create_app(...).openapi()` (never committed, so it cannot go
stale) and `openapi.json` is saved beside it; a settings page that differs from the code is a warning, which
`mkdocs build --strict` (`make docs`) turns into a failure. MkDocs and essentials-openapi are imported only
by the hook's events: the generators need the base package alone (the light test environment has no MkDocs).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_PAGE = ROOT / "docs" / "configuration" / "settings.md"
#: The page that holds the generated API reference, and the line in it that the rendering replaces.
API_PAGE = "api/reference.md"
API_MARKER = "<!-- openapi: generated at build time, replaced by docs/hooks/reference.py -->"
REGENERATE = "python docs/hooks/reference.py"

log = logging.getLogger("mkdocs.hooks.reference")

#: Every settings class a process reads, in the order of the page: (import path, class name).
SETTINGS_CLASSES = [
    ("seal_lab.settings", "ModelSettings"),
    ("seal_lab.settings", "StoreSettings"),
    ("seal_lab.settings", "LoggingSettings"),
    ("seal_lab.security", "AuthSettings"),
    ("seal_lab.security", "TlsSettings"),
    ("services.generator.settings", "GeneratorSettings"),
    ("services.trainer.settings", "TrainerSettings"),
    ("services.evaluator.settings", "EvaluatorSettings"),
    ("services.coordinator.settings", "CoordinatorSettings"),
    ("services.coordinator.settings", "MlflowSettings"),
]
#: Base classes that no process reads on their own (their fields appear under each subclass).
ABSTRACT_SETTINGS = {"GrpcServiceSettings"}


def _importable() -> None:
    for path in (ROOT / "src", ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def settings_classes() -> list[type]:
    _importable()
    import importlib

    return [getattr(importlib.import_module(module), name) for module, name in SETTINGS_CLASSES]


def declared_settings_classes() -> set[str]:
    """Names of the classes under src/ and services/ that derive from a `...Settings` class (read with ast,
    so a settings module nobody imports yet is found too)."""
    found = set()
    for folder in (ROOT / "src", ROOT / "services"):
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                    (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")).endswith(
                        "Settings"
                    )
                    for base in node.bases
                ):
                    found.add(node.name)
    return found - ABSTRACT_SETTINGS


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value!r}`" for value in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "none"
    return {"SecretStr": "secret", "Path": "path"}.get(annotation.__name__, annotation.__name__)


def _bounds(field: Any) -> str:
    signs = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    parts = []
    for item in field.metadata:
        for name, sign in signs.items():
            value = getattr(item, name, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return "computed at start-up"
    value = field.default
    if value is None:
        return "none"
    if isinstance(value, Path):  # a home folder differs per machine: written as `~`
        home = str(Path.home())
        text = str(value)
        return f"`{'~' + text[len(home) :] if text.startswith(home) else text}`"
    if isinstance(value, list):
        return f"`{','.join(str(v) for v in value)}`"
    return f"`{value}`"


def _env_names(settings_class: type, name: str, field: Any) -> list[str]:
    alias = field.validation_alias
    if alias is not None:
        choices = getattr(alias, "choices", [alias])
        return [str(choice) for choice in choices]
    prefix = settings_class.model_config.get("env_prefix", "")
    return [f"{prefix}{name}".upper()]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_markdown() -> str:
    """docs/configuration/settings.md: one table per settings class, from the classes themselves."""
    lines = [
        "# Every setting",
        "",
        "<!-- Generated from the settings classes by `python docs/hooks/reference.py`; do not edit by hand.",
        "     tests/unit/test_docs.py and `make docs` fail when this page differs from the code. -->",
        "",
        "Every process reads its settings from `SEAL_*` environment variables (pydantic-settings, case-insensitive);",
        "the shared ones (model, store, logging, token, TLS) are read by every service, the coordinator and the CLI.",
        "A list is a comma-separated value. The settings by topic, with what to set when:",
        "[Configuration](index.md).",
        "",
    ]
    for settings_class in settings_classes():
        prefix = settings_class.model_config.get("env_prefix", "")
        doc = (settings_class.__doc__ or "").strip().split("\n\n")[0]
        lines += [f"## `{prefix}*`: {settings_class.__name__}", ""]
        if doc and not doc.startswith(("Fields every", "Usage docs")):
            lines += [_cell(doc), ""]
        lines += ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
        for name, field in settings_class.model_fields.items():
            names = ", ".join(f"`{env}`" for env in _env_names(settings_class, name, field))
            kind = _type_name(field.annotation) + _bounds(field)
            lines.append(f"| {names} | {kind} | {_default(field)} | {_cell(field.description or '')} |")
        lines.append("")
    return "\n".join(lines)


def undescribed() -> list[str]:
    """`Class.field` of every setting without a description (the page would show an empty cell)."""
    return [
        f"{settings_class.__name__}.{name}"
        for settings_class in settings_classes()
        for name, field in settings_class.model_fields.items()
        if not field.description
    ]


def openapi_schema() -> dict[str, Any]:
    """The coordinator's OpenAPI document, as `/openapi.json` serves it (nothing started, no store written)."""
    _importable()
    from seal_lab.store.local import LocalStore
    from services.coordinator.api.app import create_app
    from services.coordinator.settings import CoordinatorSettings

    with tempfile.TemporaryDirectory() as folder:
        return create_app(CoordinatorSettings(), LocalStore(Path(folder))).openapi()


# The MkDocs events ---------------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    schema = json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n"
    files.append(File.generated(config, "api/openapi.json", content=schema))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    source = page.file.src_uri
    if source == API_PAGE:
        from openapidocs.mk.v3 import OpenAPIV3DocumentationHandler

        document = json.loads(files.get_file_from_path("api/openapi.json").content_string)
        rendered = OpenAPIV3DocumentationHandler(document, style="MKDOCS").write()
        # The rendering starts with a comment and the API's title as a first-level heading; the page has its own.
        rendered = rendered.split("-->", 1)[-1].replace("\n# ", "\n## ", 1)
        if API_MARKER not in markdown:
            log.warning(
                "%s lost its marker line %r: the API reference was not rendered", API_PAGE, API_MARKER
            )
        return markdown.replace(API_MARKER, rendered)
    if source == "configuration/settings.md" and markdown != settings_markdown():
        log.warning("docs/configuration/settings.md differs from the settings classes: run `%s`", REGENERATE)
    return markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed page is stale")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    page = settings_markdown()
    if args.check:
        stale = SETTINGS_PAGE.read_text(encoding="utf-8") != page
        if stale:
            print(f"{SETTINGS_PAGE.relative_to(ROOT)} is stale: run `{REGENERATE}`", file=sys.stderr)
        return int(stale)
    SETTINGS_PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {SETTINGS_PAGE.relative_to(ROOT)}")
    for name in undescribed():
        print(f"no description: {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
