"""`seal-lab run --dataset FILE` (and `--heldout-dataset`) read stock SQuAD files through `seal_lab.formats.passages` and
send SEAL-format records; a bad file is refused before any request, naming its line. The coordinator is an
httpx mock transport (no server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.coordinator.cli import api_client
from services.coordinator.cli import main as cli
from tests.unit.test_stock_datasets import CONTEXT_A, CONTEXT_B, rows_text, squad_row, squad_v1


@pytest.fixture
def bodies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The JSON body of every run the CLI creates."""
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(202, json={"id": "run-1", "status": "queued", "passages": 2, "jobs_total": 8})

    real_client = httpx.Client
    monkeypatch.setattr(
        api_client.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(answer), **kw)
    )
    return seen


def test_run_sends_a_squad_v1_file_and_squad_rows_as_seal_records(bodies, tmp_path: Path):
    v1 = tmp_path / "squad.json"
    v1.write_text(json.dumps(squad_v1()))
    rows = tmp_path / "heldout.jsonl"
    rows.write_bytes(
        rows_text([squad_row("Who built Foo?", "Bar"), squad_row("When was Foo built?", "1901")])
    )
    result = CliRunner().invoke(
        cli.app, ["run", "--dataset", str(v1), "--heldout-dataset", str(rows), "--no-follow"]
    )
    assert result.exit_code == 0, result.output
    [body] = bodies
    assert [(p["title"], p["context"]) for p in body["passages"]] == [("Foo", CONTEXT_A), ("Baz", CONTEXT_B)]
    assert body["passages"][0]["questions"][1] == {"question": "Who built Foo?", "answer": "Bar"}
    [held] = body["heldout_passages"]
    assert held["context"] == CONTEXT_A and len(held["questions"]) == 2


def test_run_refuses_a_bad_json_lines_file_naming_the_line(bodies, tmp_path: Path):
    rows = tmp_path / "train.jsonl"
    rows.write_bytes(rows_text([squad_row("Who built Foo?", "Bar"), {"title": "Foo", "question": "Q?"}]))
    result = CliRunner().invoke(cli.app, ["run", "--dataset", str(rows)])
    assert result.exit_code == 2
    assert f"{rows}: line 2: 'context' is missing" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not bodies
