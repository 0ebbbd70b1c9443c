"""`seal-coordinator`: the HTTP coordinator (uvicorn)."""

from __future__ import annotations

import uvicorn

from seal_lab.logging import configure_logging
from seal_lab.openstore import open_store
from seal_lab.settings import LoggingSettings, StoreSettings

from .app import create_app
from .settings import CoordinatorSettings


def main() -> None:
    logging_settings = LoggingSettings()
    configure_logging(logging_settings.level, logging_settings.json_format, service="coordinator")
    settings = CoordinatorSettings()
    app = create_app(settings, open_store(StoreSettings()))
    # uvicorn handles SIGTERM: stops accepting, then runs the lifespan shutdown (runs resume at next start).
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
