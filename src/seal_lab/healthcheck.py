"""`python -m seal_lab.healthcheck HOST:PORT`: exit 0 when the gRPC service reports SERVING (container probes)."""

from __future__ import annotations

import asyncio
import sys

from seal_lab.grpc_client import is_serving, open_channel


async def _check(address: str) -> bool:
    async with open_channel(address) as channel:
        return await is_serving(channel, timeout=3.0)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m seal_lab.healthcheck HOST:PORT")
    sys.exit(0 if asyncio.run(_check(sys.argv[1])) else 1)


if __name__ == "__main__":
    main()
