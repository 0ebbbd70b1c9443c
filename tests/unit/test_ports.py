"""Ports: the local stack's services get distinct ports, and a port already served is an error, not shared."""

from __future__ import annotations

import asyncio

import pytest

from seal_lab.serve.server import start_server
from services.coordinator.cli.launcher import free_ports


def test_free_ports_are_distinct():
    for _ in range(20):
        ports = free_ports(4)
        assert len(set(ports)) == 4 and all(port > 0 for port in ports)


def test_a_second_grpc_server_on_a_served_port_fails_instead_of_sharing_it():
    async def both() -> None:
        first = await start_server([], "127.0.0.1", 0)
        try:
            with pytest.raises((OSError, RuntimeError)):
                second = await start_server([], "127.0.0.1", first.port)
                await second.stop(0)
        finally:
            await first.stop(0)

    asyncio.run(both())
