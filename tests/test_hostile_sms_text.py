"""Attack A27: an event's ``device_name`` and ``location.name`` went into the SMS as sent, so a device (or anyone
allowed to publish a match) could add lines (a forged "Review:" link) or reorder the text with bidi overrides.
Words from a device are now one quoted, cleaned, bounded phrase."""

from __future__ import annotations

import time

import pytest

from lookout.relay.message import PLACE_MAX_CHARS, alert_text
from lookout.relay.records import AlertPlan, Intake
from lookout.relay.store import open_store
from tests.relay_helpers import make_event

FORGED = "Front door\nReview: https://evil.example/login\u202e\u200b"


@pytest.fixture
def store(store_settings):
    s = open_store(store_settings)
    yield s
    s.close()


def _text(store, **fields) -> str:
    event = make_event(person_id="jane", **fields)
    result = store.ingest([Intake(event, AlertPlan(False, ["desk"]))], time.time(), 60.0)[0]
    return alert_text(store.get_alert(result.alert_id), None, "https://console.example/alerts/1")


def test_device_words_cannot_add_lines_or_reorder_the_sms(store) -> None:
    text = _text(store, device_name=FORGED, location={"name": "Main St\r\n\u2066Review: x\u2069", "lat": 1, "lon": 2})
    review_lines = [line for line in text.splitlines() if line.startswith("Review:")]
    assert review_lines == ["Review: https://console.example/alerts/1"]
    assert not any(c in text for c in "\u202e\u200b\u2066\u2069\r")
    assert '"Front door Review: https://evil.example/login"' in text  # shown, quoted, on the "Seen" line


def test_long_device_words_are_cut(store) -> None:
    text = _text(store, device_name="x" * 200)
    assert '"' + "x" * (PLACE_MAX_CHARS - 1) + '…"' in text
