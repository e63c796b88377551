"""Issue 12 item 10, device side: the outbox numbers events durably (``seq``), across restarts, when they are
first handed to the broker (``Outbox.number``, called by the sender): rows dropped on the device before that
(outbox full, withdrawn) leave no gap for the relay to report as lost (attack finding A38)."""

from __future__ import annotations

from lookout.device.outbox import Outbox
from lookout.events import parse_match_event
from tests.relay_helpers import make_event


def _add(outbox: Outbox, event) -> int:
    return outbox.add(str(event.event_id), "dt/lookout/cam-1/match", event.to_json(), event.expires_at.timestamp())


def _sent(outbox: Outbox) -> list:
    """The pending events as the sender hands them over (numbered)."""
    numbered = [outbox.number(row) for row in outbox.pending(100)]
    return [parse_match_event(row.payload) for row in numbered if row is not None]


def test_sequence_numbers_survive_a_restart_and_are_never_reused(tmp_path):
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    first = [make_event(person_id=f"p{i}") for i in range(3)]
    assert [_add(outbox, e) for e in first] == [1, 2, 3]
    assert _add(outbox, first[0]) == 1  # a repeated event id gets no new number
    stream = outbox.stream
    for row in outbox.pending(2):
        assert outbox.number(row) is not None  # sent ...
        outbox.remove(row.seq)  # ... acknowledged and deleted: their numbers stay used
    outbox.close()

    outbox = Outbox(path)  # the device restarts
    try:
        assert outbox.stream == stream
        assert _add(outbox, make_event(person_id="p3")) == 4
        events = _sent(outbox)
        assert [(e.seq.stream, e.seq.n) for e in events] == [(stream, 3), (stream, 4)]
        assert events[0].person_id == "p2"  # the payload is the event, with its number added
    finally:
        outbox.close()


def test_a_new_outbox_is_a_new_stream(tmp_path):
    a, b = Outbox(tmp_path / "a.sqlite"), Outbox(tmp_path / "b.sqlite")
    try:
        assert a.stream != b.stream and len(a.stream) == 16
        _add(b, make_event())
        assert _sent(b)[0].seq.n == 1
    finally:
        a.close()
        b.close()


def test_a_full_outbox_drops_the_oldest_unsent_and_leaves_no_gap(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite", max_events=2)
    try:
        for i in range(4):
            _add(outbox, make_event(person_id=f"p{i}"))
        assert [e.seq.n for e in _sent(outbox)] == [1, 2] and outbox.dropped == 2  # counted on the device
        assert [e.seq.n for e in _sent(outbox)] == [1, 2], "a resend carries the same numbers"
    finally:
        outbox.close()
