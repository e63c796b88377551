"""Webhook and Twilio notifiers against a loopback HTTP server: retries after a 500, HMAC signatures."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import pytest

from lookout.errors import ConfigError
from lookout.relay.config import load_config
from lookout.relay.message import Outgoing
from lookout.relay.notifiers.base import DeliveryError
from lookout.relay.notifiers.twilio import TwilioNotifier
from lookout.relay.notifiers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    sign,
    verify,
)
from lookout.relay.service import RelayService
from tests.helpers import wait_for
from tests.relay_helpers import make_event, publish_event, write_config

SECRET = "s3cret-for-tests"


def test_relay_retries_a_500_then_delivers_a_signed_alert(tmp_path, mosquitto, webhook, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    webhook.answer(500, 200)
    path = write_config(
        tmp_path / "relay.yaml",
        mosquitto.port,
        notifiers={"hook": {"type": "webhook", "url": webhook.url, "secret_env": "HOOK_SECRET"}},
        recipients=[{"name": "ops", "notifier": "hook"}],
    )
    service = RelayService(load_config(path)).start()
    try:
        assert service.connected.wait(5)
        event = make_event(person_id="p-7")
        publish_event(mosquitto.port, event)
        wait_for(webhook.ok, timeout=15)  # a retry after backoff; generous for a loaded 2-core CI
        counts = service.counters.snapshot()
        deliveries = service.delivery_store.deliveries_of(1)
    finally:
        service.stop()
    assert [r["status"] for r in webhook.requests] == [500, 200]
    first, second = webhook.requests
    assert first["headers"][DELIVERY_HEADER] == second["headers"][DELIVERY_HEADER]
    for request in webhook.requests:
        headers = request["headers"]
        assert headers["Content-Type"] == "application/json"
        assert verify(SECRET.encode(), headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], request["body"])
        assert not verify(b"wrong secret", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], request["body"])
        assert not verify(SECRET.encode(), headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], request["body"] + b" ")
    doc = json.loads(second["body"])
    assert doc["type"] == "lookout.alert" and doc["person_id"] == "p-7" and doc["recipient"] == "ops"
    assert doc["event"]["event_id"] == str(event.event_id)
    assert "person p-7 (details unavailable)" in doc["text"]
    assert counts["failures"] == 1 and counts["sent"] == 1
    assert [(d.status, d.attempts) for d in deliveries] == [("sent", 2)]
    assert "HTTP 500" in deliveries[0].last_error


def test_signature_rejects_replayed_timestamps():
    body = b'{"a":1}'
    stamp = "1700000000"
    sig = sign(b"k", stamp, body)
    assert verify(b"k", stamp, sig, body, now=1700000100)
    assert not verify(b"k", stamp, sig, body, now=1700000000 + 301)
    assert not verify(b"k", "not-a-number", sig, body)


def test_permanent_http_error_is_not_retried(webhook):
    webhook.answer(400)
    notifier = WebhookNotifier("hook", webhook.url, None)
    with pytest.raises(DeliveryError) as err:
        notifier.send(Outgoing(1, "ops", "", "text", {"type": "lookout.alert"}))
    assert not err.value.retryable and "HTTP 400" in str(err.value)
    webhook.answer(503)
    with pytest.raises(DeliveryError) as err:
        notifier.send(Outgoing(1, "ops", "", "text", {}))
    assert err.value.retryable


def test_unreachable_webhook_is_retryable():
    notifier = WebhookNotifier("hook", "http://127.0.0.1:9/hook", None, timeout_s=1)
    with pytest.raises(DeliveryError) as err:
        notifier.send(Outgoing(1, "ops", "", "text", {}))
    assert err.value.retryable and "cannot reach" in str(err.value)


def test_plain_http_only_on_loopback(monkeypatch):
    with pytest.raises(ConfigError, match="must be https://"):
        WebhookNotifier("hook", "http://hooks.example.com/x", None)
    with pytest.raises(ConfigError, match="HOOK_SECRET_UNSET is not set"):
        WebhookNotifier("hook", "https://hooks.example.com/x", "HOOK_SECRET_UNSET")


def test_twilio_posts_the_sms_form_with_basic_auth(webhook, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok")
    sid = "AC" + "0" * 32
    base = webhook.url.rsplit("/", 1)[0]
    notifier = TwilioNotifier("twilio", sid, "TWILIO_AUTH_TOKEN", from_number="+15555550100", base_url=base)
    message_sid = notifier.send(Outgoing(3, "duty", "+15555550123", "Lookout alert #3", {}))
    request = webhook.requests[0]
    assert request["path"] == f"/2010-04-01/Accounts/{sid}/Messages.json"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(f"{sid}:tok".encode()).decode()
    form = parse_qs(request["body"].decode())
    assert form == {"To": ["+15555550123"], "From": ["+15555550100"], "Body": ["Lookout alert #3"]}
    assert message_sid.startswith("SM")
