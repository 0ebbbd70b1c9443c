"""Which default directive? Train adapters on the demo set under several directives and score them.

For each demo passage the local model writes 2 `implications` self-edits (seed 0); every directive below is
then trained on (a) the passage alone and (b) passage + each self-edit, and evaluated closed-book:
    .venv/bin/python benchmarks/directive_sweep.py          # about 15 minutes on two cores
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.formats.passages import demo_passages
from seal_lab.formats.strategies import builtin
from seal_lab.logging import configure_logging
from seal_lab.model.base import load_model
from seal_lab.model.lora import train_adapter
from seal_lab.scoring.textmetrics import Scores
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.answering import QuestionItem, answer_questions
from services.generator.backends import LocalBackend, Sampling

DIRECTIVES = {
    "lr 1e-3, 5 epochs": Directive(epochs=5, learning_rate=1e-3, batch_size=1),
    "lr 3e-3, 5 epochs": Directive(epochs=5, learning_rate=3e-3, batch_size=1),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    configure_logging("WARNING")
    from peft import PeftModel

    loaded = load_model(ModelSettings())
    passages = demo_passages()
    implications = builtin("implications")
    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(loaded, LocalStore(Path(tmp)))
        texts = {
            p.passage_id: [
                implications.training_texts(raw.text)
                for raw in backend.write(
                    implications.render(0, p.title, p.context, {}),
                    args.samples,
                    Sampling(0.7, 0.95, 192, 0),
                    "",
                    DirectiveLimits(),
                )
            ]
            for p in passages
        }
        table = Table(title="closed-book scores on the demo set (mean over adapters)")
        for column in ("training data", "directive", "F1", "contains", "EM", "seconds"):
            table.add_column(column)
        for label, directive in DIRECTIVES.items():
            for data in ("passage", "passage + implications"):
                started = time.perf_counter()
                scores = []
                for passage in passages:
                    passage_example = TrainingExample("", f"{passage.title}\n{passage.context}")
                    datasets = (
                        [[passage_example]]
                        if data == "passage"
                        else [
                            [passage_example] + [TrainingExample("", t) for t in sample]
                            for sample in texts[passage.passage_id]
                        ]
                    )
                    for examples in datasets:
                        folder = Path(tempfile.mkdtemp(dir=tmp))
                        train_adapter(loaded, examples, directive, 0, folder)
                        adapted = PeftModel.from_pretrained(loaded.model, str(folder))
                        questions = [
                            QuestionItem(q.question_id, q.question, q.answers) for q in passage.questions
                        ]
                        record = answer_questions(
                            dataclasses.replace(loaded, model=adapted), questions, 32, 16
                        )
                        adapted.unload()
                        scores.append(Scores(**record["mean"]))
                mean = Scores.mean(scores)
                table.add_row(
                    data,
                    label,
                    f"{mean.f1:.3f}",
                    f"{mean.contains:.2f}",
                    f"{mean.exact_match:.2f}",
                    f"{time.perf_counter() - started:.0f}",
                )
                Console(stderr=True).print(f"done: {data}, {label}")
    Console().print(table)


if __name__ == "__main__":
    main()
