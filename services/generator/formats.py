"""Self-edit formats: SEAL's prompts, and how each turns model output into training texts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from seal_lab.errors import InvalidArgument
from seal_lab.formats.directive import strip_directive

# A model's framing rather than content: "Here are the implications:", "Sure! ...", "Rewrite 2:".
_PREAMBLE = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|ok)\b[\s,!.]|here (?:are|is)\b|below (?:are|is)\b)|:$", re.I
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.):]|implication\s*\d*\s*[:.)-]|rewrite\s*\d*\s*[:.)-])\s*", re.I)


@dataclass(frozen=True)
class SelfEditFormat:
    name: str
    instruction: str  # SEAL's wording; {title} and {context} are filled in
    split_on_blank_lines: bool = False  # Q/A pairs span two lines and stay together

    def prompt(self, title: str, context: str) -> str:
        return self.instruction.format(title=title, context=context)

    def training_texts(self, output: str) -> list[str]:
        """Training texts in the output: one per item, numbering and bullets removed, directive dropped."""
        text = strip_directive(output).strip()
        if self.split_on_blank_lines:
            chunks = re.split(r"\n\s*\n|\n(?=\s*(?:Q(?:uestion)?\s*\d*\s*[:.]))", text)
        else:
            chunks = text.splitlines()
        items = [_BULLET.sub("", chunk).strip() for chunk in chunks]
        return [item for item in items if len(item.split()) >= 3 and not _PREAMBLE.search(item)]


FORMATS: dict[str, SelfEditFormat] = {
    f.name: f
    for f in (
        SelfEditFormat(
            "implications",
            "Let's read the following passage and produce a list of implications derived directly or "
            "indirectly from the content.\n\nPassage:\n{title}\n{context}\n\nWrite the implications one per line.",
        ),
        SelfEditFormat(
            "rewrite",
            "Let's read the following passage and rewrite it in a few different ways, each one separated by "
            "a newline.\n\nPassage:\n{title}\n{context}",
        ),
        SelfEditFormat(
            "self-qa",
            "Let's read the following passage and rewrite it in a question-answer format: a list of questions "
            "about its facts, each followed by its answer on the next line.\n\nPassage:\n{title}\n{context}",
            split_on_blank_lines=True,
        ),
    )
}


def get_format(name: str) -> SelfEditFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise InvalidArgument(f"unknown self-edit format {name!r}; known: {', '.join(FORMATS)}") from None
