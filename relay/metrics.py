"""Relay counters, exported as Prometheus text (``lookout.metrics_server``, optional loopback port) and logged."""

from __future__ import annotations

import threading

from lookout.log import get_logger

log = get_logger(__name__)

COUNTERS = {
    "received": "match events received from the broker",
    "invalid": "payloads rejected and sent to the dead-letter topic",
    "refused": "events the relay's own check refused (policy, person not in the gallery, withdrawn): not sent",
    "directory_errors": "times a gallery directory could not be read (intake waited, delivery retried)",
    "poison": "messages the relay's own code failed on (set aside to the dead-letter topic, intake goes on)",
    "duplicates": "events whose id was already seen (redeliveries)",
    "alerts": "new alerts created (one per person per dedup window)",
    "no_recipients": "alerts no recipient's galleries and jurisdictions cover: nobody is told (check recipients)",
    "followups": "sightings folded into an existing alert",
    "suppressed": "events suppressed by an earlier review rejection",
    "sent": "messages delivered to a notifier",
    "failures": "send attempts that failed (retried or not)",
    "gave_up": "deliveries marked failed after the retry limit or a permanent error",
    "held_back": "deliveries held back by a rate limit (summarised later)",
    "summaries": "summary messages sent for held-back deliveries",
    "seq_gaps": "gaps in devices' sequence numbers (events sent but never received), reported once each",
    "seq_missing": "events missing in those gaps",
    "store_errors": "times the store was unavailable to intake (the batch was retried)",
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
