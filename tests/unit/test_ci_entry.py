"""CI takes the README's path: `.ci/run` calls make targets and installs nothing of its own, and the make
targets install (or name) the programs outside pip that their tests need, before anything else runs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

from seal_lab.runtime import MODEL_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / ".ci" / "run"
MAKEFILE = ROOT / "Makefile"
SCRIPT = ROOT / "deploy" / "system-packages.sh"
BASH = shutil.which("bash") or "/bin/bash"


def _ci_commands() -> list[str]:
    lines = [line.strip() for line in CI.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#") and not line.startswith("#!")]


def _make_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines)."""
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        match = re.match(r"^([A-Za-z0-9_.$()/-]+):(?!=)\s*(.*)$", line)
        if match:
            current = []
            rules[match.group(1)] = (match.group(2).split(), current)
        elif line and not line.startswith("#"):
            current = None
    return rules


def test_ci_runs_make_targets_and_installs_nothing_itself():
    commands = _ci_commands()
    installs = [c for c in commands if re.search(r"apt-get|apt |pip |curl |wget |dpkg ", c)]
    assert not installs, f".ci/run installs outside the make targets: {installs}"
    others = [c for c in commands if not re.fullmatch(r"make [a-z0-9-]+|set -[a-z]+( [a-z]+)*|cd .*", c)]
    assert not others, f".ci/run does more than call make targets: {others}"
    rules = _make_rules()
    targets = [c.split()[1] for c in commands if c.startswith("make ")]
    assert "test" in targets, ".ci/run must run the README's test command"
    assert "docs" in targets, ".ci/run must build the docs site (warnings as errors)"
    assert all(t in rules for t in targets), f"unknown make targets in .ci/run: {targets}"


def test_make_test_checks_its_system_packages_before_installing_or_testing():
    rules = _make_rules()
    prerequisites, _ = rules["test"]
    assert prerequisites[:2] == ["system-packages-test", "install"], prerequisites
    _, recipe = rules["system-packages-test"]
    assert any("deploy/system-packages.sh" in line and "chromium" in line for line in recipe), recipe
    assert any("chromedriver" in line for line in recipe), recipe  # the UI's browser tests drive Chromium
    _, k8s = rules["k8s-validate"]
    assert "kubectl" in k8s[0], "k8s-validate must get kubectl before it renders anything"


def _fake_path(tmp_path: Path, present: list[str]) -> str:
    """A PATH with only `id` and `date` (what the script uses) and fake `present` programs: no apt-get."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("id", "date"):
        (folder / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    for name in present:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


def _script(path: str, *programs: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, str(SCRIPT), *programs],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_present_programs_pass_silently(tmp_path):
    done = _script(_fake_path(tmp_path, ["chromium", "kubectl"]), "chromium", "kubectl")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_missing_program_without_apt_is_named_in_one_line_with_its_package(tmp_path):
    done = _script(_fake_path(tmp_path, ["chromium"]), "chromium", "kubectl", "dockerd")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "missing: kubernetes-client docker.io" in lines[0]
    assert "apt-get install -y kubernetes-client docker.io" in lines[0]


def test_skipping_the_browser_tests_drops_chromium(tmp_path):
    path = _fake_path(tmp_path, [])
    assert _script(path, "chromium", "chromedriver", SEAL_SKIP_BROWSER_TESTS="1").returncode == 0
    assert _script(path, "chromium").returncode == 2
    missing = _script(path, "chromedriver")
    assert missing.returncode == 2 and "chromium-driver" in missing.stderr


def test_an_unknown_program_is_refused(tmp_path):
    done = _script(_fake_path(tmp_path, []), "nonesuch")
    assert done.returncode == 64
    assert "no Debian package known for 'nonesuch'" in done.stderr


def test_the_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)


def _needs_the_model_extra(node: ast.AST, helpers: set[str]) -> bool:
    """Whether `node` calls pytest.importorskip on a model package, or a helper of its module that does."""
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if name == "importorskip" and call.args and isinstance(call.args[0], ast.Constant):
            if call.args[0].value in MODEL_PACKAGES:
                return True
        elif name in helpers:
            return True
    return False


def _marked_model(decorators: list[ast.expr]) -> bool:
    return any(ast.unparse(d) == "pytest.mark.model" for d in decorators)


def test_tests_unit_runs_once_and_its_model_tests_in_make_test():
    """`make test` runs test-light (tests/unit on the base package) and, on the full environment, only the
    unit tests marked `model`: so each unit test that needs the model extra (and so is skipped by test-light)
    must carry that mark, or it would run nowhere."""
    rules = _make_rules()
    prerequisites, recipe = rules["test"]
    assert "test-light" in prerequisites, prerequisites
    assert any(line.endswith("pytest -q -p no:cacheprovider tests/unit") for line in rules["test-light"][1])
    runs = [line for line in recipe if "pytest" in line]
    assert any(line.endswith("-m model tests/unit") for line in runs), runs
    assert any("--ignore=tests/unit" in line for line in runs), runs
    unmarked = []
    for path in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        module = ast.parse(path.read_text())
        top = [n for n in module.body if not isinstance(n, ast.FunctionDef)]
        marked_module = any(
            isinstance(n, ast.Assign)
            and ast.unparse(n.targets[0]) == "pytestmark"
            and "mark.model" in ast.unparse(n)
            for n in top
        )
        if marked_module:
            continue
        functions = [n for n in module.body if isinstance(n, ast.FunctionDef)]
        helpers = {
            f.name for f in functions if not f.name.startswith("test_") and _needs_the_model_extra(f, set())
        }
        if any(_needs_the_model_extra(n, set()) for n in top):
            unmarked.append(f"{path.name} (module-level)")
        for function in functions:
            needs = function.name.startswith("test_") and _needs_the_model_extra(function, helpers)
            if needs and not _marked_model(function.decorator_list):
                unmarked.append(f"{path.name}::{function.name}")
    assert not unmarked, f"unit tests that need the model extra without @pytest.mark.model: {unmarked}"
