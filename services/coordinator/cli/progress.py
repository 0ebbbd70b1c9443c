"""How `seal-lab` shows a run it follows: a live bar on a terminal, one plain line per finished job and per
status change otherwise (a log file, CI, `| tee`), where a bar that redraws in place prints nothing for minutes.

`follow_run` feeds a view the stream's two kinds of data: `summary` (the run's counters, after every change)
and `event` (one of the run's events: `progress` when a job starts, `job` when it is done, `retry`, `error`,
`status`)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..run.schemas import RunEvent, RunSummary

#: Events worth a line of their own in either view (jobs starting and finishing are the bar's, or the plain
#: view's per-job lines).
NOTABLE_KINDS = ("retry", "error", "status")


class ProgressView(Protocol):
    def __enter__(self) -> ProgressView: ...

    def __exit__(self, *exc: object) -> None: ...

    def summary(self, data: RunSummary) -> None:
        """The run's summary after a change."""

    def event(self, data: RunEvent) -> None:
        """One of the run's events."""

    def notice(self, message: str) -> None:
        """A line of the client's own, e.g. that it lost the coordinator and reconnects."""


def progress_view(console: Console, quiet: bool = False, stdout: Console | None = None) -> ProgressView:
    """Nothing at all when `quiet` (`--json`: stdout is for the JSON). Plain lines on `stdout` when it is
    not a terminal (`make demo | tee log`: the log gets a line per job, not a bar drawn on the terminal), or on
    `console` (stderr) when that is not one (`2> log`); the bar otherwise."""
    if quiet:
        return QuietView()
    if stdout is not None and not stdout.is_terminal:
        return LineView(stdout)
    return BarView(console) if console.is_terminal else LineView(console)


class QuietView:
    def __enter__(self) -> QuietView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def summary(self, data: RunSummary) -> None:
        pass

    def event(self, data: RunEvent) -> None:
        pass

    def notice(self, message: str) -> None:
        pass


class BarView:
    """rich's live progress bar: status, jobs done of total, elapsed time and the job running now."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[status]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("starting", total=None, status="queued")

    def __enter__(self) -> BarView:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.stop()

    def summary(self, data: RunSummary) -> None:
        self.progress.update(
            self.task,
            total=data.jobs_total,
            completed=data.jobs_done,
            status=data.status,
            description=escape(data.current[:90]),
        )

    def event(self, data: RunEvent) -> None:
        if data.kind in NOTABLE_KINDS:
            self.notice(f"[{data.kind}] {data.message}")

    def notice(self, message: str) -> None:
        self.progress.console.print(escape(message), highlight=False)


class LineView:
    """A timestamped line per finished job (`12:03:04 5/40 round 0, passage 3/8: train-implications-1 done`),
    per status change and per retry or error; nothing redrawn, so a log shows the run as it goes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = ""
        self.done = 0
        self.total: int | None = None
        #: What each started job is doing, from its `progress` event, for its line when it is done.
        self.started: dict[str, str] = {}

    def __enter__(self) -> LineView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def summary(self, data: RunSummary) -> None:
        # The summary counts every job with a record; the job lines count on from it until the next one.
        self.done, self.total = data.jobs_done, data.jobs_total
        if data.status != self.status:
            self.status = data.status
            error = f": {data.error}" if data.error else ""
            self._line(time.time(), f"{self._count()} jobs, status {self.status}{error}")

    def event(self, data: RunEvent) -> None:
        kind, job = data.kind, data.job
        if kind == "progress" and job:
            self.started[job] = data.message
            return
        if kind == "job" or (kind == "error" and job):  # a failed job is finished too (it has a record)
            self.done += 1
            what = self.started.pop(job, job)
            text = f"{what} done" if kind == "job" else f"[error] {data.message}"
            self._line(data.ts, f"{self._count()} {text}")
        elif kind in NOTABLE_KINDS:
            self._line(data.ts, f"[{kind}] {data.message}")

    def notice(self, message: str) -> None:
        self._line(time.time(), message)

    def _count(self) -> str:
        return f"{self.done}/{'?' if self.total is None else self.total}"

    def _line(self, ts: float, text: str) -> None:
        # No markup, no highlighting, no wrapping: one line of plain text per call, whatever the width.
        self.console.print(
            f"{time.strftime('%H:%M:%S', time.localtime(ts))} {text}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
