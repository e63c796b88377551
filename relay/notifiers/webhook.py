"""Generic HTTPS webhook: POSTs the alert as JSON, signed with HMAC-SHA256.

Headers sent:

- ``X-Lookout-Timestamp``: UNIX seconds when signed
- ``X-Lookout-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
- ``X-Lookout-Delivery``: the delivery id; the same on retries, so a receiver can drop repeats

A receiver checks the signature with :func:`verify` (and rejects old timestamps
against replay). Plain ``http://`` is accepted only for loopback addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from lookout.errors import ConfigError
from lookout.redact import redact_url
from lookout.relay.message import Outgoing
from lookout.relay.notifiers.base import DeliveryError, retryable_http

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SIGNATURE_HEADER = "X-Lookout-Signature"
TIMESTAMP_HEADER = "X-Lookout-Timestamp"
DELIVERY_HEADER = "X-Lookout-Delivery"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes, timestamp: str, signature: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True if ``signature`` is ours for ``body`` and ``timestamp`` is within ``tolerance_s`` of now."""
    try:
        age = abs((now or time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature or "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirected POST is an error, not a silent GET
        return None


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, notifier: str, shown: str | None = None
) -> tuple[int, bytes]:
    """POST and return (status, body); raise DeliveryError on network or HTTP errors. Errors name the URL as
    ``shown`` (default: redacted, path included: a webhook's path is often its credential)."""
    shown = shown if shown is not None else redact_url(url, secret_path=True)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(65536)
    except urllib.error.HTTPError as err:
        detail = err.read(300).decode("utf-8", "replace") if err.fp else ""
        raise DeliveryError(
            notifier, f"HTTP {err.code} from {shown}: {detail}".strip(), retryable=retryable_http(err.code)
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DeliveryError(notifier, f"cannot reach {shown}: {reason}", retryable=True) from None


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise ConfigError(f"{what}: {redact_url(url, secret_path=True)} must be https:// (plain http only for loopback)")


class WebhookNotifier:
    def __init__(
        self, name: str, url: str, secret_env: str | None, timeout_s: float = 5.0, include_crop: bool = False
    ) -> None:
        self.name = name
        self.include_crop = include_crop  # the dispatcher adds the crop to the document only if this is set
        self.url = check_url(url, f"notifiers.{name}.url")
        self.shown_url = redact_url(url, secret_path=True)  # what logs and errors say
        self.timeout_s = timeout_s
        self._secret: bytes | None = None
        if secret_env:
            value = os.environ.get(secret_env)
            if not value:
                raise ConfigError(f"notifiers.{name}.secret_env: environment variable {secret_env} is not set")
            self._secret = value.encode("utf-8")

    def send(self, message: Outgoing) -> str:
        body = json.dumps({**message.document, "recipient": message.recipient}, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "lookout-relay",
            DELIVERY_HEADER: str(message.delivery_id),
        }
        if self._secret is not None:
            stamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = sign(self._secret, stamp, body)
        status, _ = post(self.url, body, headers, self.timeout_s, self.name, self.shown_url)
        return f"http-{status}-{message.delivery_id}"

    def close(self) -> None:
        pass
