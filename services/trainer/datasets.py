"""Reading self-edit datasets (JSONL) from the store into training examples."""

from __future__ import annotations

import json

from seal_lab.errors import InvalidArgument
from seal_lab.lora import TrainingExample


def parse_dataset(data: bytes, key: str, max_examples: int) -> list[TrainingExample]:
    """Examples are `{"prompt", "completion"}` or `{"text"}` records; `type: meta` records are skipped."""
    examples = []
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InvalidArgument(f"dataset {key!r} is not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"dataset {key!r} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InvalidArgument(f"dataset {key!r} line {number}: expected an object")
        if record.get("type") == "meta":
            continue
        if "text" in record:
            prompt, completion = "", record["text"]
        else:
            prompt, completion = record.get("prompt", ""), record.get("completion")
        if not isinstance(completion, str) or not isinstance(prompt, str):
            raise InvalidArgument(f"dataset {key!r} line {number}: needs a string 'text' or 'completion'")
        if completion.strip():
            examples.append(TrainingExample(prompt, completion))
    if not examples:
        raise InvalidArgument(f"dataset {key!r} has no training examples")
    if len(examples) > max_examples:
        raise InvalidArgument(f"dataset {key!r} has {len(examples)} examples; the limit is {max_examples}")
    return examples
