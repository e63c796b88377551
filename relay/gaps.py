"""Gaps in devices' sequence numbers: events a device sent that never reached the relay.

Each device's outbox numbers its events durably (event field ``seq``: a ``stream`` id that lives as
long as the outbox file, and ``n`` counting up from 1), so a restart continues the count and is not
a gap; a new outbox is a new stream. The store keeps the numbers it received (``device_seq``) and,
per stream, how far it has checked (``seq_scan.checked_n``). A hole between two received numbers
is a gap once the number after it arrived ``grace_s`` ago: until then it may still be filled by
an out-of-order or redelivered event. Duplicates never count. Each gap is reported once, by one
relay, and recorded in ``seq_gaps``.
"""

from __future__ import annotations

from lookout.relay.records import Gap

# Streams seen since the last scan start being checked at the lowest number received.
NEW_STREAMS = (
    "INSERT INTO seq_scan(device_id, stream, checked_n) SELECT device_id, stream, min(n) FROM device_seq"
    " WHERE received_at >= {p} GROUP BY device_id, stream ON CONFLICT DO NOTHING"
)
# Every received number from each stream's checked point on, in order.
TAIL = (
    "SELECT d.device_id, d.stream, d.n, d.received_at FROM device_seq d JOIN seq_scan s"
    " ON s.device_id = d.device_id AND s.stream = d.stream WHERE d.n >= s.checked_n"
    " ORDER BY d.device_id, d.stream, d.n"
)


def walk(rows: list[tuple], settled_before: float) -> tuple[list[Gap], dict[tuple[str, str], int]]:
    """From TAIL rows: the gaps now settled, and each stream's new checked point."""
    gaps: list[Gap] = []
    checked: dict[tuple[str, str], int] = {}
    previous: tuple | None = None
    stuck: set[tuple[str, str]] = set()
    for device, stream, n, received_at in rows:
        key = (device, stream)
        if previous is None or (previous[0], previous[1]) != key:
            previous = (device, stream, n)
            continue
        if key not in stuck and received_at <= settled_before:
            if n > previous[2] + 1:
                gaps.append(Gap(device, stream, previous[2] + 1, n - 1))
            checked[key] = n
        else:
            stuck.add(key)  # the rest of this stream is too recent to judge
        previous = (device, stream, n)
    return gaps, checked
