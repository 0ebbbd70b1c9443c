"""Real gRPC servers of the services, in-process on ephemeral ports, each on its own event-loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from seal_lab.security import Security
from seal_lab.serve.server import GrpcService, RunningServer, start_server


@dataclass
class ServerThread:
    """A grpc.aio server (plus its servicer's `load`) on a background event loop."""

    service: GrpcService
    load: Callable[[], Any]
    #: The token it requires and its TLS; none: open and plaintext.
    security: Security | None = None
    loop: asyncio.AbstractEventLoop | None = None
    running: RunningServer | None = None

    def start(self, load: bool = True) -> ServerThread:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.running = self.call(start_server([self.service], "127.0.0.1", 0, self.security))
        if load:
            self.finish_loading()
        return self

    def finish_loading(self) -> None:
        self.call(self.load())
        self.call(self.running.set_serving(True))

    def call(self, coroutine: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def channel(self, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        """A blocking channel: plaintext, or TLS with `credentials` (a token goes in each call's metadata)."""
        if credentials is not None:
            return grpc.secure_channel(self.address, credentials)
        return grpc.insecure_channel(self.address)

    def stop(self) -> None:
        """Stop serving (idempotent); the event loop thread ends too."""
        if self.running is not None:
            self.call(self.running.stop(1.0))
            self.running = None
            self.loop.call_soon_threadsafe(self.loop.stop)


def serve(
    servicer: Any,
    service_name: str,
    add: Callable[[Any, Any], None],
    load: bool = True,
    security: Security | None = None,
) -> ServerThread:
    """Start `servicer` (anything with an async `load`) as a real gRPC server on an ephemeral port; with
    `security`, requiring its token and serving TLS."""
    return ServerThread(GrpcService(service_name, servicer, add), servicer.load, security).start(load=load)
