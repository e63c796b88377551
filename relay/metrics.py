"""Relay counters, exported as Prometheus text on an optional loopback port and logged."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lookout.log import get_logger

log = get_logger(__name__)

COUNTERS = {
    "received": "match events received from the broker",
    "invalid": "payloads rejected and sent to the dead-letter topic",
    "duplicates": "events whose id was already seen (redeliveries)",
    "alerts": "new alerts created (one per person per dedup window)",
    "followups": "sightings folded into an existing alert",
    "suppressed": "events suppressed by an earlier review rejection",
    "sent": "messages delivered to a notifier",
    "failures": "send attempts that failed (retried or not)",
    "gave_up": "deliveries marked failed after the retry limit or a permanent error",
    "held_back": "deliveries held back by a rate limit (summarised later)",
    "summaries": "summary messages sent for held-back deliveries",
}


class Counters:
    """Thread-safe monotonic counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._values[name] += by

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def prometheus(self) -> str:
        lines = []
        for name, value in self.snapshot().items():
            metric = f"lookout_relay_{name}_total"
            lines += [f"# HELP {metric} {COUNTERS[name]}", f"# TYPE {metric} counter", f"{metric} {value}"]
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (loopback by default) in a daemon thread."""

    def __init__(self, counters: Counters, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = counters.prometheus().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics.listening", url=f"http://{self._server.server_address[0]}:{self.port}/metrics")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
