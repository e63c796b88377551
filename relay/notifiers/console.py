"""Console or file notifier, for the demo and tests: prints the text, or appends JSON lines."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from lookout.relay.message import Outgoing
from lookout.relay.notifiers.base import DeliveryError


class ConsoleNotifier:
    def __init__(self, name: str, path: Path | None = None, stream: TextIO | None = None) -> None:
        self.name = name
        self.path = path
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, message: Outgoing) -> str:
        provider_id = f"console-{message.delivery_id}"
        if self.path is None:
            out = self.stream or sys.stdout
            with self._lock:
                out.write(f"--- to {message.recipient} {message.address}\n{message.text}\n")
                out.flush()
            return provider_id
        line = json.dumps(
            {
                "at": time.time(),
                "recipient": message.recipient,
                "address": message.address,
                "delivery_id": message.delivery_id,
                "text": message.text,
                "alert": message.document,
            },
            default=str,
        )
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as err:
            raise DeliveryError(self.name, f"cannot write {self.path}: {err.strerror or err}", retryable=True) from None
        return provider_id

    def close(self) -> None:
        pass
