"""One small HTTP server for what a supervisor asks a process: its figures and its health.

- ``GET /metrics``  Prometheus text from the owner's ``render()``;
- ``GET /healthz``  200 while the process serves at all (liveness);
- ``GET /readyz``   200 when the owner's ``readiness()`` says ready, else 503, with the
  checks as JSON (``{"ready": false, "checks": {"gallery": false, ...}}``).

The device and the relay each start one, on loopback unless configured otherwise.
Nothing here knows what a device or a relay is: the owner passes in the two callables.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lookout.log import get_logger

log = get_logger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4"

# (ready, {check name: passed}); a check's value may also be a short string saying why not.
Readiness = Callable[[], tuple[bool, dict[str, object]]]


def always_ready() -> tuple[bool, dict[str, object]]:
    """The readiness of an owner with nothing to wait for."""
    return True, {}


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: any free port) in a daemon thread."""

    def __init__(
        self,
        render: Callable[[], str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        readiness: Readiness = always_ready,
        name: str = "metrics",
    ) -> None:
        self._render = render
        self._readiness = readiness
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self.host = str(self._server.server_address[0])
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = server.respond(self.path.split("?")[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body) for a GET of ``path``."""
        if path in ("/metrics", "/"):
            return 200, PROMETHEUS_TEXT, self._render().encode()
        if path == "/healthz":
            return 200, "application/json", b'{"alive": true}\n'
        if path == "/readyz":
            ready, checks = self._readiness()
            body = json.dumps({"ready": ready, "checks": checks}, default=str).encode() + b"\n"
            return (200 if ready else 503), "application/json", body
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics.serving", url=f"{self.url}/metrics", health=f"{self.url}/healthz", ready=f"{self.url}/readyz")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
