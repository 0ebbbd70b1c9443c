"""A call's end as a flag the model thread can read.

A handler awaits its model work on the worker thread; when the call ends first (the caller cancelled, its
deadline passed, the connection dropped) the handler is cancelled, but the thread is not: without a flag it
would generate to the end for nobody, and every later call would wait behind it. The flag is set when the
call is done and whenever the handler leaves its body; the work checks it between batches and at every
decoding step and raises `CallCancelled`, which frees the worker and publishes nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import grpc

from seal_lab.errors import CallCancelled

#: Asked on the worker thread: True once nobody waits for the work any more (cheap: an Event's is_set).
IsCancelled = Callable[[], bool]


@contextlib.contextmanager
def call_end(context: grpc.aio.ServicerContext) -> Iterator[threading.Event]:
    """An event set when the call is done, or when the body leaves (returned, raised or was cancelled)."""
    ended = threading.Event()
    # The handler may be cancelled at any await; the call's end is the sure signal (a deadline, a vanished
    # peer). Both paths only set the flag, so either may come first.
    context.add_done_callback(lambda _call: ended.set())
    try:
        yield ended
    finally:
        ended.set()  # whatever ends the body, its work has nobody left to go to


def check_cancelled(cancelled: IsCancelled | None, where: str) -> None:
    """Raise `CallCancelled` if the call has ended; `where` says what was about to run."""
    if cancelled is not None and cancelled():
        raise CallCancelled(f"stopped {where}: the call has ended")
