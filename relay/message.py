"""What an alert says: a short SMS text and the JSON document for webhooks.

An SMS says who, where (device name and location), when, the score, follow-up
sightings and a link to review. Person details are looked up at send time so they
are current; a person missing from the gallery metadata still gets an alert with
the id and "details unavailable".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lookout.events import format_utc
from lookout.gallery.jurisdiction import clean_text
from lookout.relay.directory import PersonDetails
from lookout.relay.records import Alert

SMS_MAX = 480  # three concatenated GSM-7 segments


@dataclass(frozen=True)
class Outgoing:
    """One message to one recipient: the text for SMS/console, the document for webhooks."""

    delivery_id: int
    recipient: str
    address: str
    text: str
    document: dict[str, Any]


def _clock(ts: float) -> str:
    return format_utc(ts)


def _who(person_id: str, details: PersonDetails | None) -> str:
    if details is None:
        return f"person {person_id} (details unavailable)"
    facts = [x for x in (details.attr("age"), details.attr("sex")) if x]
    who = f"{details.name} ({person_id}{', ' + ' '.join(facts) if facts else ''})"
    last = details.attr("date_last_seen")
    return who + (f", last seen {last}" if last else "")


PLACE_MAX_CHARS = 60


def _device_words(text: object) -> str:
    """Words a device sent, fit for one line of an SMS: control, invisible and bidi-override characters dropped,
    newlines folded, quoted and shortened, so a device cannot write lines (a forged "Review:" link) or reorder
    the text a duty officer reads (attack A27)."""
    words = clean_text(str(text))
    if len(words) > PLACE_MAX_CHARS:
        words = words[: PLACE_MAX_CHARS - 1] + "…"
    return f'"{words}"'


def _where(alert: Alert) -> str:
    event = alert.event_doc
    place = _device_words(event["device_name"]) if event.get("device_name") else event["device_id"]
    location = event.get("location") or {}
    if location.get("name"):
        place = f"{_device_words(location['name'])} ({place})"
    return place


def alert_link(console_url: str | None, template: str | None, alert_id: int) -> str | None:
    """The alert's page: ``<console_url>/alerts/<id>`` (the web console), else the legacy template."""
    if console_url:
        return f"{console_url.rstrip('/')}/alerts/{alert_id}"
    return template.format(alert_id=alert_id) if template else None


def alert_text(alert: Alert, details: PersonDetails | None, review_url: str | None) -> str:
    """The SMS body for ``alert``."""
    lines = [f"Lookout alert #{alert.id}: possible match {_who(alert.person_id, details)}."]
    lines.append(f"Seen {_clock(alert.first_seen_at)} at {_where(alert)}, score {alert.best_score:.2f}.")
    if alert.stale:
        lines.append("LATE: this sighting reached the relay after its expiry.")
    if alert.sightings > 1:
        others = ", ".join(alert.devices[:4])
        lines.append(f"{alert.sightings} sightings until {_clock(alert.last_seen_at)[11:]} ({others}).")
    case = details.attr("case_url") if details else None
    if case:
        lines.append(f"Case: {case}")
    if review_url:
        lines.append(f"Review: {review_url}")
    text = "\n".join(lines)
    return text if len(text) <= SMS_MAX else text[: SMS_MAX - 1] + "…"


def alert_document(
    alert: Alert, details: PersonDetails | None, text: str, url: str | None, crop_b64: str | None = None
) -> dict[str, Any]:
    """The webhook JSON: the alert, the first match event, the person details, the text, the link to the
    alert in the console, and (only where given: the device's policy allowed it and the webhook asks for
    it) the sighting crop as base64 JPEG."""
    doc: dict[str, Any] = {
        "type": "lookout.alert",
        "alert_id": alert.id,
        "gallery_id": alert.gallery_id,
        "person_id": alert.person_id,
        "person": None
        if details is None
        else {
            "name": details.name,
            "jurisdiction": details.jurisdiction,
            "department": details.department,
            "attributes": details.attributes,
        },
        "first_seen_at": _iso(alert.first_seen_at),
        "last_seen_at": _iso(alert.last_seen_at),
        "sightings": alert.sightings,
        "devices": alert.devices,
        "best_score": alert.best_score,
        "stale": alert.stale,
        "event": {k: v for k, v in alert.event_doc.items() if v is not None},
        "alert_url": url,
        "review_url": url,
        "text": text,
    }
    if crop_b64:
        doc["crop_jpeg_b64"] = crop_b64
    return doc


def summary_text(alerts: list[Alert], since: float) -> str:
    """One message for alerts held back by a rate limit."""
    people = sorted({a.person_id for a in alerts})
    shown = ", ".join(people[:6]) + (f" and {len(people) - 6} more" if len(people) > 6 else "")
    text = (
        f"Lookout: {len(alerts)} alert(s) held back by the rate limit since {_clock(since)}: "
        f"persons {shown}. Alerts #{alerts[0].id}-#{alerts[-1].id}; see lookout review list."
    )
    return text if len(text) <= SMS_MAX else text[: SMS_MAX - 1] + "…"


def _iso(ts: float) -> str:
    return format_utc(ts, None)
