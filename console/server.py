"""Serving the console with uvicorn: loopback by default, TLS when the config gives a certificate and key.

``ConsoleServer`` binds its own socket first (port 0 asks the OS for a free one), so a caller knows the address
before the server runs: tests and ``./run console`` start it in a thread and stop it cleanly.
"""

from __future__ import annotations

import socket
import threading

import uvicorn

from lookout.console.app import Services, create_app
from lookout.console.config import LOOPBACK, ConsoleConfig
from lookout.log import get_logger

log = get_logger(__name__)


class ConsoleServer:
    def __init__(self, config: ConsoleConfig, services: Services | None = None) -> None:
        self.config = config
        self.services = services or Services.open(config)
        self.app = create_app(self.services)
        family = socket.AF_INET6 if ":" in config.listen.host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((config.listen.host, config.listen.port))
        self.port = self.socket.getsockname()[1]
        tls = config.tls
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                ssl_certfile=str(tls.cert_file) if tls else None,
                ssl_keyfile=str(tls.key_file) if tls else None,
                server_header=False,
                date_header=False,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self.config.listen.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"

    def _announce(self) -> None:
        if self.config.tls is None and self.config.listen.host not in LOOPBACK:
            log.warning("console.plaintext", host=self.config.listen.host, hint="configure tls (cert_file, key_file)")
        log.info("console.serving", url=self.url)

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn handles the signals), then close everything."""
        self._announce()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.services.close()

    def start(self) -> ConsoleServer:
        """Serve in a background thread (tests, the demo); ``stop()`` ends it."""
        self._announce()
        self.server.config.install_signal_handlers = False  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self._thread.start()
        return self

    def wait_started(self, timeout: float = 20.0) -> bool:
        deadline = threading.Event()
        for _ in range(int(timeout * 20)):
            if self.server.started:
                return True
            deadline.wait(0.05)
        return self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()
        self.services.close()
