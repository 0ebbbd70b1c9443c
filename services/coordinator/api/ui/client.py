"""The UI's way to the coordinator: its public HTTP API, called in process (httpx over ASGI), with the token.

Every page reads what any HTTP client would read; a refusal comes back as `ApiRefused` carrying the API's
own error message, which the page shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Request
from starlette.types import ASGIApp


class ApiRefused(Exception):
    """The API answered 4xx/5xx: its status and the message of its error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Api:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiRefused(response.status_code, _message(response))
        return response

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return (await self.call("GET", path, params=clean)).json()

    async def text(self, path: str) -> str:
        return (await self.call("GET", path)).text

    async def post(self, path: str, body: Any = None) -> Any:
        response = await self.call("POST", path, json=body)
        return response.json() if response.content else None

    async def delete(self, path: str) -> None:
        await self.call("DELETE", path)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(body)[:300]


@asynccontextmanager
async def api_for(app: ASGIApp, token: str | None, host: str) -> AsyncIterator[Api]:
    """A client of `app`'s API in process: `token` (if any) in the bearer header, `host` as the Host (a name
    the app's host check allows)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["Host"] = host
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://coordinator", headers=headers, timeout=30.0
    ) as http:
        yield Api(http)


@asynccontextmanager
async def api(request: Request) -> AsyncIterator[Api]:
    """A client of this app's API, as the signed-in user: the app's token, the request's own Host (which
    the host check has already let in)."""
    async with api_for(
        request.app, request.app.state.token, request.headers.get("host", "localhost")
    ) as client:
        yield client
