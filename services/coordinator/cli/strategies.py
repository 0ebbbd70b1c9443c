"""`seal-lab strategies`: the self-edit strategies that ship, one printed, a file checked (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import demo_passages
from seal_lab.formats.strategies import (
    builtin,
    builtin_names,
    builtin_texts,
    check_strategy,
    read_strategy_file,
)

from .api_client import console, out
from .display import print_json

app = typer.Typer(no_args_is_help=True, help="Self-edit strategies: list, show, check a file.")


@app.command("list")
def list_strategies(
    as_json: Annotated[bool, typer.Option("--json", help="print the machine-readable list")] = False,
) -> None:
    """The built-in strategies: name, stages, split rule, and where each comes from."""
    rows = []
    for name in builtin_names():
        strategy = builtin(name)
        rows.append(
            {
                "name": name,
                "stages": [stage.name for stage in strategy.stages],
                "split": strategy.split.kind,
                "source": strategy.source,
                "sha256": strategy.sha256,
            }
        )
    if as_json:
        print_json(out, rows)
        return
    for row in rows:
        stages = " -> ".join(row["stages"])
        out.print(
            f"{row['name']:<28} {stages:<34} split: {row['split']:<7} {row['source'][:70]}", soft_wrap=True
        )


@app.command()
def show(name: str) -> None:
    """Print a built-in strategy's file."""
    texts = builtin_texts()
    if name not in texts:
        console.print(f"unknown strategy {name!r}; built in: {', '.join(texts)}")
        raise typer.Exit(2)
    out.print(texts[name], end="", markup=False, highlight=False, soft_wrap=True)


@app.command()
def check(path: Path) -> None:
    """Validate a strategy file: YAML, schema, template syntax, variables, every stage rendered on a demo
    passage, and the split rule on its example_output (exit 2 with the file's line when something is wrong)."""
    sample = demo_passages()[0]
    try:
        strategy = check_strategy(read_strategy_file(path), str(path), sample.title, sample.context)
    except InvalidArgument as exc:
        console.print(exc.message, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    texts = strategy.training_texts(strategy.example_output)
    out.print(
        f"{path}: ok: strategy {strategy.name!r}, {len(strategy.stages)} stage(s) "
        f"({', '.join(s.name for s in strategy.stages)}), split {strategy.split.kind}: "
        f"{len(texts)} training text(s) in example_output; sha256 {strategy.sha256}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
