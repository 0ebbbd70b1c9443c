"""A stand-in for an OpenAI-compatible judge on loopback: answers `/v1/chat/completions` with "yes" or "no"
by a rule, records every request, and can be told to fail first (a status, headers, a body)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def gold_in_answer(prompt: str) -> bool:
    """The default rule: yes when the prompt's gold answer occurs in its student answer (case-insensitive)."""
    fields = dict(line.split(": ", 1) for line in prompt.splitlines() if ": " in line)
    gold, answer = fields.get("Gold answer", ""), fields.get("Student answer", "")
    return bool(gold) and gold.lower() in answer.lower()


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": {"message": "failing on purpose"}}'


class JudgeStub:
    """`with JudgeStub() as stub:` serves on 127.0.0.1 on an ephemeral port; `stub.base_url` ends in /v1."""

    def __init__(self, rule: Callable[[str], bool] = gold_in_answer) -> None:
        self.rule = rule
        self.requests: list[dict[str, Any]] = []  # {"body", "authorization", "time"} per request
        self.failures: list[Failure] = []  # answered first, one per request, in order
        self.always: Failure | None = None  # answered to every request while set
        self.reply: str | None = None  # a fixed reply instead of the rule's "yes"/"no"
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "authorization": self.headers.get("authorization"),
                            "time": time.monotonic(),
                        }
                    )
                    failure = stub.failures.pop(0) if stub.failures else stub.always
                if self.path != "/v1/chat/completions":
                    failure = Failure(404, body='{"error": {"message": "no such route"}}')
                if failure is not None:
                    self._send(failure.status, failure.body, failure.headers)
                    return
                prompt = body["messages"][-1]["content"]
                text = stub.reply if stub.reply is not None else ("yes" if stub.rule(prompt) else "no")
                payload = {
                    "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
                }
                self._send(200, json.dumps(payload), {"content-type": "application/json"})

            def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def prompts(self) -> list[str]:
        return [r["body"]["messages"][-1]["content"] for r in self.requests]

    def __enter__(self) -> JudgeStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
