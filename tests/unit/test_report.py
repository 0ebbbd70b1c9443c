"""The HTML report: charts, SEAL's conditions table, examples, reproducibility, escaping (pure)."""

from __future__ import annotations

import copy
import csv
import fnmatch
import io
import json
import re
import tomllib
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from services.coordinator.report.render import ReportRun, render_report
from services.coordinator.results.build import build_results
from tests.unit import rounds_fixtures as fx

SVG_NAMESPACE = 'xmlns="http://www.w3.org/2000/svg"'
MALICIOUS = "<script>alert('x')</script>"


def _example(reward: float, raw_output: str = "Alpha implies the first letter.") -> dict[str, Any]:
    return {
        "round": 1,
        "passage_id": "p-a",
        "title": "Alpha",
        "format": "implications",
        "sample_index": 0,
        "reward": reward,
        "scores": fx.scores(0.7),
        "retention": 0.6,
        "directive": {"epochs": 4, "learning_rate": 0.002},
        "directive_source": "parsed",
        "raw_output": raw_output,
        "directive_text": "Training: epochs=4",
        "texts": ["Alpha implies the first letter."],
    }


@pytest.fixture(scope="module")
def finished_results() -> dict[str, Any]:
    results = fx.build_run_results()
    results["examples"] = {"best": [_example(0.5)], "worst": [_example(-0.05, raw_output=MALICIOUS)]}
    results["reproducibility"] = {
        "seed": 0,
        "split": {"train": ["p-a", "p-b"], "heldout": ["p-h1", "p-h2"]},
        "policy_adapters": [{"round": 0, "adapter_key": ""}, {"round": 1, "adapter_key": "adapters/policy1"}],
    }
    return results


def _run(results: dict[str, Any] | None, name: str = "two rounds") -> dict[str, Any]:
    return {
        "id": "run-123",
        "name": name,
        "status": "succeeded" if results else "running",
        "config": fx.config().model_dump(),
        "services": {"evaluator": {"model_name": "tiny-model"}},
        "results": results,
    }


@pytest.fixture(scope="module")
def html(finished_results) -> str:
    return render_report(ReportRun.model_validate(_run(finished_results)))


def test_a_self_contained_page(html):
    assert html.startswith("<!doctype html>") and html.endswith("</body></html>")
    assert "<script" not in html and "src=" not in html
    assert "http" not in html.replace(SVG_NAMESPACE, "")
    assert "seal-lab run run-123" in html and "tiny-model" in html and "succeeded" in html


def test_charts(html):
    # Held-out line and bar charts, reward per format, three directive buckets, gain vs retention.
    assert html.count("<svg") >= 4
    assert html.count("<svg") == 7


def test_the_conditions_table(html):
    for label in (
        "no adapter",
        "passage only",
        "passage + self-edits (round-0 generator)",
        "passage + self-edits (policy after round 1)",
        "passage + self-edits (policy after round 2)",
        "passage + gpt self-edits",
    ):
        assert f"<td>{label}</td>" in html, label
    # passage + self-edits after round 2: mean 0.65 ± 0.15 over two passages.
    assert "<td>2</td><td>0.650 ± 0.150" in html
    # The teacher row has one passage and no error bar.
    assert "<td>passage + gpt self-edits</td><td>1</td><td>0.600</td>" in html
    assert "2 passages never used to train the policy" in html


def test_the_planned_comparisons_and_every_metric(html):
    assert "Planned comparisons (paired by passage, Holm-corrected; primary metric f1)" in html
    # p2 vs p0 on the two held-out passages: F1 differences 0.3 and 0.5, mean +0.4.
    assert (
        "No detectable difference between passage + self-edits (policy after round 2) and passage + "
        "self-edits (round-0 generator) at N=2: +0.400" in html
    )
    assert "Too few paired passages to compare passage + gpt self-edits and passage only (N=1)" in html
    assert "Minimum detectable effect at N=2" in html
    assert "<th>gold_logprob</th>" in html and "<th>token_recall</th>" in html


def test_rounds_what_worked_and_examples(html):
    assert "2 training passages, 2 held-out, 2 ReST-EM rounds, metric f1" in html
    assert "<code>base model</code>" in html and "<code>adapters/policy1</code>" in html
    assert "Directive search" in html and "epochs=1" in html
    assert "Best rewarded" in html and "Worst rewarded" in html
    assert "Alpha implies the first letter." in html
    assert "directive (parsed): epochs=4, learning_rate=0.002" in html
    assert "adapters/policy1" in html and "Reproducibility" in html and "p-h2" in html


def test_untrusted_text_is_escaped(finished_results):
    results = copy.deepcopy(finished_results)
    results["rounds"][0]["policy_adapter_key"] = MALICIOUS
    html = render_report(ReportRun.model_validate(_run(results, name=MALICIOUS)))
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    # The title (name), the example's raw output and the policy key are each escaped.
    assert html.count("&lt;script&gt;") >= 3


def test_a_run_without_results_has_not_finished():
    html = render_report(ReportRun.model_validate(_run(None)))
    assert "has not finished" in html and "<svg" not in html
    assert "has not finished" in render_report(ReportRun.model_validate({**_run(None), "results": {}}))


def test_a_run_without_heldout_passages_has_no_conditions_section():
    results = build_results(fx.TRAIN_PASSAGES, fx.build_jobs(heldout=False), fx.config(rounds=0)).model_dump()
    html = render_report(ReportRun.model_validate(_run(results)))
    assert "Held-out passages" not in html and "<td>no adapter</td>" not in html
    assert "Training rounds" in html and "none scored" in html
    assert html.count("<svg") == 5


# --- the Jinja2 template against the old string-built page, CSV links, packaging ----------------------

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
CSV_LINK = re.compile(r'<a href="data:text/csv;charset=utf-8,([^"]*)" download="([^"]*)">')


class _Words(HTMLParser):
    """The words a reader sees (text and SVG text, not the style sheet), in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._in_style = self._in_style or tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = self._in_style and tag != "style"

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.words += data.split()


def _words(page: str) -> list[str]:
    parser = _Words()
    parser.feed(page)
    return parser.words


def _wide_run() -> dict[str, Any]:
    """The run that tests/fixtures/report_before_jinja.html was rendered from (by the string-built report)."""
    return {
        "id": "run-20261129-050733-9c83ff",
        "name": "conditions on SQuAD, two teachers",
        "status": "succeeded",
        "services": {"evaluator": {"model_name": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
        "results": json.loads((FIXTURES / "report_results.json").read_text()),
    }


def test_every_number_and_label_of_the_old_report_is_still_there_in_the_same_order():
    # Up to the reproducibility record: it shows the record's JSON, and the fixture's policy adapters were
    # bare keys there (a shape no coordinator wrote), now {round, adapter_key} as the record has them.
    old_page = (FIXTURES / "report_before_jinja.html").read_text()
    page = render_report(ReportRun.model_validate(_wide_run()))
    old, new = _words(old_page.split("<details>")[0]), _words(page.split("<details>")[0])
    assert len(old) > 1000
    rest = iter(new)  # `word in rest` consumes it: old must be a subsequence of new
    missing = [word for word in old if word not in rest]
    assert missing == []
    # What was added: one "data (CSV)" link per chart.
    assert len(new) - len(old) == 2 * page.count("<svg")
    adapters = _wide_run()["results"]["reproducibility"]["policy_adapters"]
    record = unescape(page.split("<details>")[1])
    assert all(f'"adapter_key": "{a["adapter_key"]}"' in record for a in adapters)


def _csv_links(page: str) -> dict[str, list[list[str]]]:
    """File name -> the rows of its CSV, in page order."""
    return {name: list(csv.reader(io.StringIO(unquote(data)))) for data, name in CSV_LINK.findall(page)}


def test_each_chart_offers_its_data_as_a_csv_download(html):
    links = _csv_links(html)
    assert len(links) == html.count("<svg") == 7
    names = list(links)
    assert names[:2] == ["held-out-f1-per-round.csv", "seal-s-conditions-on-the-held-out-passages-f1.csv"]
    conditions = links["seal-s-conditions-on-the-held-out-passages-f1.csv"]
    assert conditions[0] == ["label", "mean f1", "error (s.e.)", "n"]
    # passage + self-edits after round 2: mean 0.65 ± 0.15 over two passages; the teacher has no error bar.
    assert ["passage + round 2", "0.65", "0.15", "2"] in conditions
    assert ["passage + gpt", "0.6", "", "1"] in conditions
    per_round = links["held-out-f1-per-round.csv"]
    assert per_round[0] == ["series", "round (policy updates)", "mean f1", "error (s.e.)"]
    assert ["self-edits of the round's policy", "2", "0.65", "0.15"] in per_round
    scatter = links["gain-vs-retention-one-dot-per-adapter.csv"]
    assert scatter[0] == ["group", "gain on the passage's questions", "retention-set score"]
    assert len(scatter) - 1 == len(fx.build_run_results()["gain_vs_retention"])


def test_csv_values_are_quoted_and_the_link_stays_one_attribute(finished_results):
    results = copy.deepcopy(finished_results)
    evil = 'fmt, "quoted"\nnext line <b>&'
    results["what_worked"]["reward_by_format"] = {evil: {"mean": 0.5, "stderr": None, "n": 3}}
    page = render_report(ReportRun.model_validate(_run(results)))
    rows = _csv_links(page)["reward-per-self-edit-format.csv"]
    assert rows[1] == [evil, "0.5", "", "3"]  # the comma, quotes and newline survive a CSV reader
    href = next(m for m in CSV_LINK.finditer(page) if m.group(2) == "reward-per-self-edit-format.csv")
    assert not set(href.group(1)) & set("\"<>&' \n")


def test_the_template_ships_as_package_data():
    template = ROOT / "services" / "coordinator" / "report" / "templates" / "report.html.j2"
    assert template.is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("services.coordinator.report", [])
    assert any(fnmatch.fnmatch("templates/report.html.j2", p) for p in patterns), package_data
