"""What `seal-lab` prints: `--json` puts JSON and nothing else on stdout for every command that reads a run;
shell completion scripts; and progress as plain lines when the output is not a terminal (CliRunner's is
not), so a log or CI shows every finished job instead of a bar that redraws in silence."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from services.coordinator.cli import main as cli
from services.coordinator.cli.progress import BarView, LineView, QuietView, progress_view

from . import cli_coordinator
from .cli_coordinator import RESULTS, event, finished_run, run_summary

coordinator = cli_coordinator.coordinator  # the fixture, for this module

STAMP = r"\d\d:\d\d:\d\d"


@pytest.mark.parametrize(
    ("command", "expect"),
    [
        (["status", "run-done"], lambda data: data["id"] == "run-done" and data["results"] == RESULTS),
        (["follow", "run-done"], lambda data: data["status"] == "succeeded"),
        (["resume", "run-done"], lambda data: data["jobs_done"] == 2),
        (["cancel", "run-done"], lambda data: data["jobs_total"] > 0 and "results" not in data),
        (["list"], lambda data: [r["id"] for r in data] == ["run-done"]),
        (["report", "run-done"], lambda data: data == RESULTS),
        (["run"], lambda data: data["id"] == "run-done" and data["results"] == RESULTS),
        (["run", "--no-follow"], lambda data: data == {"id": "run-done", "status": "succeeded", "passages": 1,
                                                       "jobs_total": data["jobs_total"]}),
    ],
)  # fmt: skip
def test_json_prints_only_json_on_stdout(coordinator, tmp_path, monkeypatch, command, expect):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # `report` writes no HTML with --json: nothing lands here
    result = CliRunner().invoke(cli.app, [*command, "--json"])
    assert result.exit_code == 0, result.output
    assert expect(json.loads(result.stdout))
    assert list((tmp_path / "cwd").iterdir()) == []


def test_report_saves_the_results_file_it_was_asked_for(coordinator, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "save_report", lambda client, run_id, path: path.write_text("<html>"))
    result = CliRunner().invoke(
        cli.app, ["report", "run-done", "-o", str(tmp_path / "r.html"), "--results", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text()) == RESULTS and result.stdout == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_shells_script(monkeypatch, shell):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # the shell is the argument
    result = CliRunner().invoke(cli.app, ["--show-completion", shell], prog_name="seal-lab")
    assert result.exit_code == 0, result.output
    assert "_SEAL_LAB_COMPLETE" in result.stdout and "seal-lab" in result.stdout


def test_follow_without_a_terminal_prints_a_line_per_finished_job_and_status(coordinator):
    coordinator.manager.runs["run-done"].results = None  # only the progress lines, no table after them
    result = CliRunner().invoke(cli.app, ["follow", "run-done"])
    assert result.exit_code == 0, result.output
    # stdout is not a terminal here: the lines go there, as into `| tee log`
    lines = result.stdout.splitlines()
    expected = [
        rf"{STAMP} \[status\] running",
        rf"{STAMP} 1/\? round 0, passage 1/1: baseline done",
        rf"{STAMP} \[retry\] generator unavailable \[UNAVAILABLE\]; retry 1 in 2s",
        rf"{STAMP} 2/\? \[error\] job 0000-generate-implications failed: boom",
        rf"{STAMP} 2/{finished_run().jobs_total} jobs, status succeeded",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_the_bar_is_for_terminals_and_json_is_quiet():
    assert isinstance(progress_view(Console(file=io.StringIO(), force_terminal=True)), BarView)
    assert isinstance(progress_view(Console(file=io.StringIO())), LineView)
    assert isinstance(progress_view(Console(file=io.StringIO(), force_terminal=True), quiet=True), QuietView)


def test_a_piped_stdout_gets_the_plain_lines_even_when_stderr_is_a_terminal():
    """`make demo | tee log`: stderr is the terminal, stdout the pipe; the log must get a line per job."""
    stderr = Console(file=io.StringIO(), force_terminal=True)
    piped = Console(file=io.StringIO())
    view = progress_view(stderr, stdout=piped)
    assert isinstance(view, LineView) and view.console is piped
    assert isinstance(progress_view(stderr, stdout=Console(file=io.StringIO(), force_terminal=True)), BarView)
    assert isinstance(progress_view(stderr, quiet=True, stdout=piped), QuietView)


def test_a_plain_line_is_never_wrapped_nor_read_as_markup():
    buffer = io.StringIO()
    with LineView(Console(file=buffer, width=40)) as view:
        view.event(event(0, "error", "[bold]not markup[/bold] " + "x" * 100))
        view.summary(run_summary("failed", 1, total=9, error="trainer [gone]"))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("[error] [bold]not markup[/bold] " + "x" * 100)
    assert lines[1].endswith("1/9 jobs, status failed: trainer [gone]")


def test_the_bar_prints_notable_events_with_their_brackets():
    buffer = io.StringIO()
    with BarView(Console(file=buffer, force_terminal=True, width=200)) as view:
        view.event(event(0, "retry", "store [S3] away"))
        view.event(event(1, "progress", "round 0, passage 1/1: baseline", job="j"))
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buffer.getvalue())  # without the terminal's escapes
    assert "[retry] store [S3] away" in text and "baseline" not in text
