"""Twilio SMS over its REST API (HTTPS, form-encoded, basic auth); no SDK.

``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with ``To``,
``Body`` and ``From`` or ``MessagingServiceSid``. The auth token comes from the
environment variable named in the config.
"""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlencode

from lookout.errors import ConfigError
from lookout.redact import redact_url
from lookout.relay.message import Outgoing
from lookout.relay.notifiers.base import DeliveryError
from lookout.relay.notifiers.webhook import check_url, post


class TwilioNotifier:
    def __init__(
        self,
        name: str,
        account_sid: str,
        auth_token_env: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        token = os.environ.get(auth_token_env)
        if not token:
            raise ConfigError(f"notifiers.{name}.auth_token_env: environment variable {auth_token_env} is not set")
        base = check_url(base_url.rstrip("/"), f"notifiers.{name}.base_url")
        self.url = f"{base}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = "Basic " + base64.b64encode(f"{account_sid}:{token}".encode()).decode("ascii")
        self.sender = {"From": from_number} if from_number else {"MessagingServiceSid": messaging_service_sid}
        self.timeout_s = timeout_s

    def send(self, message: Outgoing) -> str:
        form = urlencode({"To": message.address, "Body": message.text, **self.sender}).encode()
        headers = {
            "Authorization": self._auth,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        _, body = post(self.url, form, headers, self.timeout_s, self.name, redact_url(self.url))
        try:
            return str(json.loads(body)["sid"])
        except (ValueError, KeyError, TypeError, RecursionError):
            raise DeliveryError(self.name, "accepted, but the response had no message sid", retryable=False) from None

    def close(self) -> None:
        pass
