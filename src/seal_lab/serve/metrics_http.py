"""A gRPC service's metrics over HTTP: `GET /metrics` in Prometheus' text format, on its own port.

prometheus_client's WSGI app, served from a thread (scrapes never wait on the event loop, which may be busy
between model steps), behind the service's own rules: the bearer token when it has one (prometheus_client's
`start_http_server` cannot check one, hence this wrapper), and its TLS certificate when it serves TLS. It
binds the service's host, so `refuse_unsafe_start` covers it too: no token, loopback only.
"""

from __future__ import annotations

import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from seal_lab.security import Security

PATH = "/metrics"
MISSING_TOKEN = b"this endpoint needs the shared token: send 'Authorization: Bearer <SEAL_AUTH_TOKEN>'\n"


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # seconds a connection may stay silent: a client that sends nothing holds a thread no longer

    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


def _text(
    start_response: Callable, status: str, body: bytes, headers: Iterable[tuple[str, str]] = ()
) -> list:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers])
    return [body]


def metrics_app(registry: CollectorRegistry, token: str | None) -> Callable:
    """The WSGI app: `/metrics` only; 401 without the token when there is one."""
    exposition = make_wsgi_app(registry)
    expected = token.encode() if token is not None else None

    def app(environ: dict[str, Any], start_response: Callable) -> Any:
        if environ.get("PATH_INFO") != PATH:
            return _text(start_response, "404 Not Found", b"not found: metrics are at /metrics\n")
        if expected is not None:
            scheme, _, presented = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
                return _text(
                    start_response, "401 Unauthorized", MISSING_TOKEN, [("WWW-Authenticate", "Bearer")]
                )
        return exposition(environ, start_response)

    return app


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int, security: Security | None = None
) -> MetricsServer:
    """Serve `registry` on `host:port` (0: a free port) from a daemon thread."""
    security = security or Security()

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, metrics_app(registry, security.token_value), Server, _QuietHandler)
    tls = security.tls
    if tls is not None and tls.serves:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_auth:
            context.load_verify_locations(cafile=tls.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        # The handshake on each connection's own thread, at its first read: not in accept(), where a client
        # that never completes one would hold up every other scrape.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
