"""Container probes: exit 0 when the service is up.

  python -m seal_lab.rpc.healthcheck HOST:PORT     a gRPC service reports SERVING (standard health service)
  python -m seal_lab.rpc.healthcheck URL           an HTTP(S) URL answers 2xx (the coordinator's /healthz)

The probe connects as the container's own services do: TLS and the token from `SEAL_TLS_*` and
`SEAL_AUTH_TOKEN` (health itself needs no token, but under mutual TLS it needs the client certificate).
"""

from __future__ import annotations

import asyncio
import sys

import httpx

from seal_lab.rpc.client import is_serving, open_channel
from seal_lab.security import Security, security_from_environment

TIMEOUT_SECONDS = 3.0


async def _check(address: str, security: Security) -> bool:
    async with open_channel(address, security) as channel:
        return await is_serving(channel, timeout=TIMEOUT_SECONDS)


def _check_http(url: str, security: Security) -> bool:
    verify = security.tls.client_context() if security.tls is not None else True
    try:
        return httpx.get(url, timeout=TIMEOUT_SECONDS, verify=verify).is_success
    except httpx.HTTPError:
        return False


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m seal_lab.rpc.healthcheck HOST:PORT | URL")
    target = sys.argv[1]
    security = security_from_environment("healthcheck")
    if target.startswith(("http://", "https://")):
        healthy = _check_http(target, security)
    else:
        healthy = asyncio.run(_check(target, security))
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
