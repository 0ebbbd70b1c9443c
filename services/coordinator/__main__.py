"""`seal-coordinator`: the HTTP coordinator (uvicorn)."""

from __future__ import annotations

import ssl
from typing import Any

import uvicorn

from seal_lab.logging import configure_logging
from seal_lab.security import Security, refuse_unsafe_start, security_from_environment
from seal_lab.settings import LoggingSettings, StoreSettings
from seal_lab.store.open import open_store

from .api.app import create_app
from .settings import CoordinatorSettings, MlflowSettings


def uvicorn_options(settings: CoordinatorSettings, security: Security) -> dict[str, Any]:
    """How uvicorn serves the app: HTTPS with this process's certificate when TLS is configured (the same
    `SEAL_TLS_*` files it uses towards the services), requiring a client certificate under mutual TLS."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        # uvicorn handles SIGTERM: stops accepting, then runs the lifespan shutdown (runs resume at next start).
        "timeout_graceful_shutdown": 10,
    }
    tls = security.tls
    if tls is not None and tls.serves:
        options |= {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
        if tls.client_auth:
            options |= {"ssl_ca_certs": str(tls.ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def main() -> None:
    settings = CoordinatorSettings()
    security = security_from_environment("seal-coordinator")
    refuse_unsafe_start("seal-coordinator", settings.host, security)
    logging_settings = LoggingSettings()
    configure_logging(logging_settings.level, logging_settings.json_format, service="coordinator")
    app = create_app(settings, open_store(StoreSettings()), security, mlflow=MlflowSettings())
    uvicorn.run(app, **uvicorn_options(settings, security))


if __name__ == "__main__":
    main()
