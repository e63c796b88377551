"""Attacks A27 and A51: an event's ``device_name`` and ``location.name`` went into the SMS as sent, so a device (or anyone
allowed to publish a match) could add lines (a forged "Review:" link) or reorder the text with bidi overrides.
Words from a device are now one quoted, cleaned, bounded phrase."""

from __future__ import annotations

import base64
import json
import time

import pytest

from lookout.relay.message import PLACE_MAX_CHARS, alert_text
from lookout.relay.records import AlertPlan, Intake
from lookout.relay.service import DEADLETTER_OPAQUE_MAX, deadletter_message
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


def test_dead_letters_never_carry_a_face() -> None:
    """Attack A51: an event refused as invalid was dead-lettered with its crop, to whoever subscribes there."""
    event = make_event(person_id="penny", crop_jpeg=b"\xff\xd8\xff\xe0" + b"FACE" * 500).model_dump(mode="json")
    event["score"] = 1.0000001  # invalid: the gate never ran on it
    letter = json.loads(deadletter_message("dt/lookout/cam-1/match", json.dumps(event).encode(), "score", 0.0))
    kept = json.loads(base64.b64decode(letter["payload_b64"]))
    assert "crop_jpeg_b64" not in kept and kept["person_id"] == "penny" and letter["payload_bytes"] > 2000
    opaque = json.loads(deadletter_message("t", b"not json " + b"FACE" * 10_000, "not JSON", 0.0))
    assert len(base64.b64decode(opaque["payload_b64"])) == DEADLETTER_OPAQUE_MAX
