"""The coordinator and the `seal-lab` CLI run on the base package: importing them touches none of the `model`
extra's packages, and the commands that do need it say so (`make test-light` runs tests/unit without them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from seal_lab.runtime import MODEL_PACKAGES

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter, so that nothing another test imported counts: it records every attempt to import a
# model package (also one a `try: import torch` would swallow), imports each module of the coordinator and
# prints what it recorded plus what ended up in sys.modules.
IMPORT_EVERY_COORDINATOR_MODULE = """
import importlib, json, pkgutil, sys

MODEL_PACKAGES = set(json.loads(sys.argv[1]))
attempted = set()


class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in MODEL_PACKAGES:
            attempted.add(name)
        return None


sys.meta_path.insert(0, Recorder())
import services.coordinator

modules = [m.name for m in pkgutil.walk_packages(services.coordinator.__path__, "services.coordinator.")]
for module in modules:
    importlib.import_module(module)
loaded = {m for m in sys.modules if m.partition(".")[0] in MODEL_PACKAGES}
print(json.dumps({"modules": modules, "model_imports": sorted(attempted | loaded)}))
"""


# Without the model extra, as a fresh interpreter sees it: None in sys.modules makes a package neither
# importable nor found (not done in this process, whose model services may import torch lazily meanwhile).
RUN_THE_MODEL_COMMANDS_WITHOUT_THE_EXTRA = """
import json, sys

for package in json.loads(sys.argv[1]):
    sys.modules[package] = None

from typer.testing import CliRunner

from services.coordinator.cli.main import app

results = {command: CliRunner().invoke(app, [command]) for command in ("demo", "prepare-model")}
print(json.dumps({command: [r.exit_code, " ".join(r.output.split())] for command, r in results.items()}))
"""


def run_python(script: str) -> dict:
    child = subprocess.run(
        [sys.executable, "-c", script, json.dumps(MODEL_PACKAGES)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def test_no_coordinator_module_imports_a_model_package():
    found = run_python(IMPORT_EVERY_COORDINATOR_MODULE)
    assert {
        "services.coordinator.api.app",
        "services.coordinator.cli.main",
        "services.coordinator.__main__",
    } <= set(found["modules"])
    assert found["model_imports"] == []


def test_the_model_commands_without_the_model_extra_name_it():
    for command, (exit_code, output) in run_python(RUN_THE_MODEL_COMMANDS_WITHOUT_THE_EXTRA).items():
        assert exit_code == 2, output
        assert f"`seal-lab {command}` runs models on this machine and needs torch" in output
        assert "pip install 'seal-lab[model]'" in output


def test_the_model_extra_is_what_the_commands_check():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(requirement.partition("==")[0] for requirement in extras["model"]) == sorted(MODEL_PACKAGES)
