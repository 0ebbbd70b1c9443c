"""The coordinator as a browser meets it, for the UI's tests: the real app served by uvicorn on a loopback
port, in a thread of its own, over the real run manager and the fake services (tests/unit/fake_services.py)
and a local store. `hold_training()` / `release_training()` keep runs in flight while a test watches them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from seal_lab.security import Security
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app, track_runs
from services.coordinator.engine.manager import RunManager
from services.coordinator.settings import CoordinatorSettings, MlflowSettings
from tests.unit.fake_services import FakeClients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UiStack:
    def __init__(
        self, root: Path, token: str | None, mlflow: MlflowSettings | None = None, **settings: Any
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = CoordinatorSettings(
            trainer_addresses=["trainer-a:1"],
            initial_backoff_seconds=0.0,
            max_backoff_seconds=0.0,
            max_attempts=3,
            port=self.port,
            **settings,
        )
        self.store = LocalStore(root / "store")
        self.clients = FakeClients(self.settings.trainer_addresses)
        self.security = Security(SecretStr(token) if token else None)
        #: With a tracking URI, the runs are tracked in MLflow as the lifespan would (api/tracking.py).
        self.mlflow = mlflow
        self.tracker: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.manager: RunManager | None = None
        self._server: uvicorn.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def trainer(self) -> Any:
        return self.clients.trainer["trainer-a:1"]

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.manager = RunManager(self.store, self.clients, self.settings)
        await self.manager.start()
        app = create_app(self.settings, self.store, self.security)
        app.state.manager = self.manager  # what the lifespan would build, over the fakes
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self._server = uvicorn.Server(config)
        async with contextlib.AsyncExitStack() as stack:
            if self.mlflow is not None:
                self.tracker = await stack.enter_async_context(
                    track_runs(app, self.settings, self.security, self.mlflow)
                )
            serving = asyncio.create_task(self._server.serve())
            while not self._server.started:
                await asyncio.sleep(0.01)
            self._started.set()
            try:
                await serving
            finally:
                await self.manager.shutdown()

    def call(self, function: Any) -> Any:
        """Run `function()` on the server's loop (the fakes' events live there) and return its result."""
        assert self.loop is not None

        async def inner() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(inner(), self.loop).result(10)

    def hold_training(self) -> None:
        self.call(lambda: self.trainer.hold("Train"))

    def release_training(self) -> None:
        self.call(lambda: self.trainer.release("Train"))

    def start(self) -> UiStack:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the coordinator did not start in 30 s")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


@contextmanager
def ui_stack(
    root: Path, token: str | None = "ui-test-token", mlflow: MlflowSettings | None = None, **settings: Any
) -> Iterator[UiStack]:
    stack = UiStack(root, token, mlflow, **settings).start()
    try:
        yield stack
    finally:
        stack.stop()
