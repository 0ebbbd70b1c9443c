"""Structured logging: one line per event, the run/job id on every line, optional JSON.

Entry points call `configure_logging` before heavy imports; code binds ids with `bind_context`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("seal_log_context", default={})  # noqa: B039


@contextlib.contextmanager
def bind_context(**fields: str) -> Iterator[None]:
    """Attach fields (run_id, job_id, ...) to every log line emitted inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The fields bound here (`bind_context`): what this task's log lines carry, and what its gRPC calls
    send on (`seal_lab.rpc.callids`)."""
    return dict(_context.get())


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.seal_context = _context.get()
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "seal_context", {}),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "seal_context", {})
        suffix = "".join(f" {k}={v}" for k, v in context.items())
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<5} {record.name}: {record.getMessage()}{suffix}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", json_format: bool = False, service: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_format else _TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that are chatty at INFO.
    for noisy in ("httpx", "urllib3", "transformers", "peft", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if service:
        _context.set({"service": service})
