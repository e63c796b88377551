"""Notifiers: SNS SMS, Twilio SMS, signed webhook, console/file. Built from config by :func:`build`."""

from __future__ import annotations

import os

from lookout.relay import config as cfg
from lookout.relay.notifiers.base import DeliveryError, Notifier
from lookout.relay.notifiers.console import ConsoleNotifier
from lookout.relay.notifiers.sns import SnsNotifier
from lookout.relay.notifiers.twilio import TwilioNotifier
from lookout.relay.notifiers.webhook import WebhookNotifier

__all__ = ["DeliveryError", "Notifier", "build", "build_all"]


def build(name: str, settings: cfg.NotifierSettings) -> Notifier:
    if isinstance(settings, cfg.ConsoleNotifier):
        return ConsoleNotifier(name, settings.path)
    if isinstance(settings, cfg.WebhookNotifier):
        url = settings.resolved_url(name, os.environ)
        return WebhookNotifier(name, url, settings.secret_env, settings.timeout_s, settings.include_crop)
    if isinstance(settings, cfg.TwilioNotifier):
        return TwilioNotifier(
            name,
            settings.account_sid,
            settings.auth_token_env,
            settings.from_number,
            settings.messaging_service_sid,
            settings.base_url,
            settings.timeout_s,
        )
    return SnsNotifier(
        name,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        sender_id=settings.sender_id,
        origination_number=settings.origination_number,
        sms_type=settings.sms_type,
        max_price_usd=settings.max_price_usd,
        timeout_s=settings.timeout_s,
    )


def build_all(config: cfg.RelayConfig) -> dict[str, Notifier]:
    """One notifier per configured entry (only those some recipient uses)."""
    used = {r.notifier for r in config.recipients}
    return {name: build(name, s) for name, s in config.notifiers.items() if name in used}
