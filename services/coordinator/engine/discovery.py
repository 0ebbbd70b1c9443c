"""Trainer discovery by DNS: a `dns:///name:port` entry of SEAL_COORDINATOR_TRAINER_ADDRESSES names every
address the name resolves to (a Kubernetes headless Service lists one per ready pod).

The pool (clients.py) resolves each name at every run's start and every `discovery_interval_seconds` while
the coordinator runs; the resolver is a function, so tests serve names of their own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

#: `resolver(host, port)` -> the addresses (`ip:port`, `[ipv6]:port`) the name has now; raises on failure.
Resolver = Callable[[str, int], Awaitable[list[str]]]


def address_of(ip: str, port: int) -> str:
    """`ip:port` as gRPC takes it (an IPv6 address in brackets)."""
    return f"[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"{ip}:{port}"


#: getaddrinfo's "the name has no address": NXDOMAIN, or NODATA where the platform tells them apart.
_NO_ADDRESS = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


async def system_resolver(host: str, port: int) -> list[str]:
    """Every A and AAAA record of `host` (the system resolver, off the event loop), sorted, without repeats.

    A name that does not exist answers no address: Kubernetes DNS answers NXDOMAIN for a headless Service
    with no ready pod (scaled to zero). A lookup that failed (EAI_AGAIN: no DNS server answered) raises.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_ADDRESS:
            return []
        raise
    return sorted({address_of(str(sockaddr[0]).split("%")[0], port) for *_, sockaddr in infos})
