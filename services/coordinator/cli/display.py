"""Terminal rendering of run results (rich), shared by the CLI and the demo, and the CLI's JSON output."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..run.records import DirectiveRecord, FailedRecord, PolicyRecord
from ..run.result_schemas import ContinualResults, Estimate, RunResults, SelfEditResult


def print_json(console: Console, data: Any) -> None:
    """`--json`: the data as JSON and nothing else (indented, colored on a terminal only)."""
    console.print_json(json.dumps(data))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def trained_directive(edit: SelfEditResult) -> str:
    """The directive a self-edit's own adapter trained with, shortened, and where it came from."""
    directive = edit.trials[0].directive if edit.trials else edit.directive
    if edit.trained_with == "default":
        return f"{directive_short(directive)}, trainer's default"
    return f"{directive_short(directive)}, {edit.directive_source}"


def directive_short(directive: DirectiveRecord) -> str:
    values = directive.values()
    return (
        f"ep={values.get('epochs')} lr={values.get('learning_rate', 0):.0e} "
        f"r={values.get('lora_rank')} a={values.get('lora_alpha')} bs={values.get('batch_size')}"
    )


def render_continual(console: Console, continual: ContinualResults) -> None:
    """A continual run: per stream the accuracy matrix (passage i after step j), the mean over seen passages,
    retention and the next unseen passage after each step, forgetting per passage; then the final figures."""
    metric = continual.metric
    for stream in continual.streams:
        steps = len(stream.order)
        table = Table(
            title=f"ordering {stream.ordering}: {metric} of passage (row) after step (column); "
            f"carry {continual.carry}, pick {continual.pick}"
        )
        table.add_column("passage", overflow="fold", max_width=28)
        table.add_column("base", justify="right")
        for j in range(steps):
            table.add_column(str(j + 1), justify="right")
        table.add_column("forgetting", justify="right")
        for i, title in enumerate(stream.titles):
            cells = ["" if j < i else _fmt(stream.matrix[i][j]) for j in range(steps)]
            table.add_row(escape(title), _fmt(stream.baseline[i]), *cells, _fmt(stream.forgetting[i]))
        by_step = {s.position: s for s in stream.steps}
        for label, field in (
            ("mean over seen", "mean_seen"),
            ("retention", "retention"),
            ("next passage", "next"),
        ):
            table.add_row(
                f"[bold]{label}[/bold]",
                "",
                *(_fmt(getattr(by_step[j], field) if j in by_step else None) for j in range(steps)),
                "",
            )
        console.print(table)
        if stream.stopped:
            console.print(f"[red]stopped:[/red] {escape(stream.stopped)}")
    summary = continual.summary
    console.print(
        f"{summary.streams_finished}/{summary.streams} streams finished | final mean over seen "
        f"{_fmt(summary.final_mean_seen)} | retention {_fmt(summary.final_retention)} (base model "
        f"{_fmt(summary.retention_base)}) | mean forgetting {_fmt(summary.mean_forgetting)}"
    )


def render_results(console: Console, results: RunResults) -> None:
    if results.continual:
        render_continual(console, results.continual)
        return
    summary = results.summary
    metric = summary.metric
    table = Table(title=f"SEAL inner loop: closed-book {metric} per passage (reward = adapted - baseline)")
    table.add_column("passage", overflow="fold", max_width=28)
    table.add_column("baseline", justify="right")
    table.add_column("self-edits: score (reward) [directive trained with, source]", overflow="fold")
    table.add_column("best", justify="right")
    for passage in results.passages:
        lines = []
        for edit in passage.self_edits:
            if edit.scores is None:
                outcome = f"failed: {edit.train_error or 'not evaluated'}"
            else:
                outcome = f"{edit.scores.value(metric):.2f} ({edit.reward:+.2f})"
                if edit.retention is not None:
                    outcome += f" retention {edit.retention:.2f}"
            # escape(): the directive text must not be read as rich markup.
            lines.append(escape(f"{edit.format}#{edit.sample_index}: {outcome} [{trained_directive(edit)}]"))
        best = passage.best
        table.add_row(
            passage.title or passage.passage_id,
            _fmt(passage.baseline.value(metric) if passage.baseline else None),
            "\n".join(lines) or "; ".join(passage.errors) or "-",
            "-"
            if best is None or best.scores is None
            else f"{best.scores.value(metric):.2f} ({best.reward:+.2f})",
        )
    console.print(table)
    console.print(
        f"mean baseline {_fmt(summary.mean_baseline)} | mean over all adapters {_fmt(summary.mean_adapted)} | "
        f"mean best self-edit {_fmt(summary.mean_best)} | best gain {_fmt(summary.mean_best_gain)} | "
        f"passages improved {summary.positive_best}/{summary.passages}"
    )
    if summary.mean_retention_base is not None:
        asked = f", {summary.retention_questions} questions" if summary.retention_questions else ""
        console.print(
            f"retention set ({metric}{asked}): base model {_fmt(summary.mean_retention_base)} | adapters "
            f"{_fmt(summary.mean_retention_adapted)} | mean forgetting {_fmt(summary.mean_forgetting)}"
        )
    console.print(f"reward by format: {summary.reward_by_format}")
    console.print(f"reward by directive source: {summary.reward_by_directive_source}")
    for name, by_value in summary.reward_by_directive.items():
        console.print(f"reward by {name}: {by_value}")
    console.print(f"seconds spent: {summary.seconds}")
    _render_example(console, results)
    _render_rounds(console, results)


def _error_bar(row: Estimate | None) -> str:
    if row is None or row.mean is None:
        return "-"
    return f"{row.mean:.3f}" + ("" if row.stderr is None else f" ± {row.stderr:.3f}")


def _winners(update: PolicyRecord | FailedRecord | None) -> int:
    """The winning self-edits a policy update trained on (none when it failed)."""
    return len(update.winners) if isinstance(update, PolicyRecord) else 0


def _render_rounds(console: Console, results: RunResults) -> None:
    """ReST-EM rounds and SEAL's conditions table on the held-out passages, when the run has them."""
    rounds = results.rounds
    if len(rounds) > 1 or any(r.policy_update for r in rounds):
        table = Table(title="ReST-EM rounds on the training passages")
        for column in ("round", "policy", "mean reward", "winners", "seconds (generate/train/evaluate)"):
            table.add_column(column, justify="right" if column != "policy" else "left")
        for r in rounds:
            s = r.summary
            sec = s.seconds
            table.add_row(
                str(r.round),
                (r.policy_adapter_key or "base")[:24],  # type: ignore[index]
                _fmt(s.mean_reward),
                f"{_winners(r.policy_update)}/{s.passages}",
                f"{sec['generate']:.0f}/{sec['train']:.0f}/{sec['evaluate']:.0f}",
            )
        console.print(table)
    heldout = results.heldout
    if heldout:
        table = Table(title=f"Held-out passages: SEAL's conditions ({heldout.metric}, mean ± s.e.)")
        for column in ("condition", "n", "score", "gain over no adapter", "retention"):
            table.add_column(column, justify="left" if column == "condition" else "right")
        for c in heldout.conditions:
            gain = "" if c.condition == "base" else _error_bar(c.gain)
            table.add_row(escape(c.label), str(c.n), _error_bar(c), gain, _fmt(c.retention))
        console.print(table)


def _render_example(console: Console, results: RunResults) -> None:
    """One passage's best self-edit and its answers next to the baseline's: the loop in a person's terms."""
    candidates = [(p, p.best) for p in results.passages if p.best]
    if not candidates:
        return
    passage, chosen = max(candidates, key=lambda pair: pair[1].reward)
    best = next(
        e for e in passage.self_edits if e.format == chosen.format and e.sample_index == chosen.sample_index
    )
    console.rule(f"example: {passage.title} (best self-edit, reward {best.reward:+.2f})")
    console.print(f"[bold]self-edit ({best.format}), first characters:[/bold]\n{escape(best.preview)}")
    if best.trained_with == "default":
        console.print(
            f"[bold]directive:[/bold] {escape(trained_directive(best))} "
            f"(the model wrote {escape(directive_short(best.directive))}, {best.directive_source})"
        )
    else:
        console.print(
            f"[bold]directive:[/bold] {escape(str(best.directive.values()))} ({best.directive_source})"
        )
    answers = {a.question_id: a.answer for a in best.answers}
    baseline = {a.question_id: a.answer for a in passage.baseline_answers}
    table = Table(show_lines=False)
    table.add_column("question", overflow="fold", max_width=40)
    table.add_column("gold", overflow="fold", max_width=16)
    table.add_column("no adapter", overflow="fold", max_width=30)
    table.add_column("with adapter", overflow="fold", max_width=30)
    for question in passage.questions:
        qid = question.question_id
        table.add_row(
            question.question, " / ".join(question.answers), baseline.get(qid, ""), answers.get(qid, "")
        )
    console.print(table)
