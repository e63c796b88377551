"""A throwaway mosquitto on loopback, for tests, benchmarks and the demo.

Generates a config (``listener PORT 127.0.0.1``, anonymous, persistence off unless
asked), starts the broker, waits until it accepts connections, and stops it. It can
be stopped and started again on the same port (outage tests), keeping its
persistence file when ``persistence=True``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lookout.errors import InputError
from lookout.log import get_logger

log = get_logger(__name__)

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary ($LOOKOUT_MOSQUITTO, PATH, usual sbin dirs), or None."""
    env = os.environ.get("LOOKOUT_MOSQUITTO")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, alive: Callable[[], bool] | None = None) -> bool:
    """True once ``host:port`` accepts TCP connections; False after ``timeout`` or once ``alive()`` is False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (alive is None or alive()):
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class LocalMosquitto:
    """One mosquitto process on 127.0.0.1; ``start``/``stop``/``restart`` keep the port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        persistence: bool = False,
        workdir: Path | None = None,
        binary: str | None = None,
        extra_config: str = "",
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise InputError("mosquitto", "binary not found (install the mosquitto package or set LOOKOUT_MOSQUITTO)")
        self.binary: str = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_config = extra_config
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lookout-mosquitto-"))
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # Queue limits for persistent sessions (the relay's): mosquitto's default of 1000 queued messages
            # dropped 3 of 4 events of a 20,000-event backlog while every device had its PUBACK. No count
            # limit, a byte cap instead (2 GiB: ~100,000 events with crops), sessions kept a week.
            "max_queued_messages 0",
            f"max_queued_bytes {2 * 1024**3}",
            "persistent_client_expiration 7d",
            # as root, mosquitto would drop to user 'mosquitto', who cannot read a private temp dir
            "user root" if hasattr(os, "geteuid") and os.geteuid() == 0 else "",
            self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> LocalMosquitto:
        if self.running:
            return self
        self._write_config()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not wait_for_port(self.host, self.port, timeout, alive=lambda: self.running):
            err = self._stop_proc()
            raise InputError(f"mosquitto on port {self.port}", f"did not start: {err}")
        log.debug("mosquitto.started", port=self.port, pid=self._proc.pid)
        return self

    def _stop_proc(self) -> str:
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        return stderr.strip() or self.log_tail()

    def stop(self) -> None:
        """Stop the broker (SIGTERM; persistence, if on, is written)."""
        self._stop_proc()

    def kill(self) -> None:
        """Stop the broker abruptly (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._stop_proc()

    def restart(self, timeout: float = 5.0) -> LocalMosquitto:
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
