"""MQTT topic layout, following AWS IoT Core's topic design guidance.

Telemetry-style data goes under ``dt/<application>/<thing>/<kind>``:

- ``dt/lookout/<device_id>/match``      a match event (QoS 1), see ``lookout.events``
- ``dt/lookout/<device_id>/status``     retained ``online``/``offline`` status
- ``dt/lookout/<device_id>/heartbeat``  periodic device health
- ``dt/lookout/relay/deadletter``       payloads the relay could not accept, with the reason

The ``dt/lookout`` prefix is configurable (e.g. a tenant or site in front). Nothing
here holds state: build a :class:`Topics` from the configured prefix and ask it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from lookout.errors import InputError

DEFAULT_PREFIX = "dt/lookout"
RELAY_SEGMENT = "relay"  # the relay's own topics (dead letters) live under this level
# Topic levels no device may use (compared case-insensitively): one list for the device, the relay and tools.
RESERVED_DEVICE_IDS = frozenset({RELAY_SEGMENT})


def is_reserved(device_id: str) -> bool:
    """True if ``device_id`` is a name the system keeps for itself (e.g. ``relay``)."""
    return device_id.casefold() in RESERVED_DEVICE_IDS


_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is usable as one topic level, else raise InputError."""
    if not _DEVICE_ID.match(device_id or ""):
        raise InputError(
            f"device id {device_id!r}",
            "must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    if is_reserved(device_id):
        raise InputError(f"device id {device_id!r}", "is reserved (names kept for the system's own topics)")
    return device_id


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid topic prefix, else raise InputError."""
    reason = None
    if not prefix:
        reason = "is empty"
    elif prefix.startswith("$"):
        reason = "starts with '$', which brokers reserve for system topics"
    elif prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        reason = "has an empty level (leading, trailing or double '/')"
    elif any(c in prefix for c in "+#\x00"):
        reason = "contains a wildcard ('+', '#') or NUL"
    if reason:
        raise InputError(f"topic prefix {prefix!r}", reason)
    return prefix


def _as_field_check(check: Callable[[str], str]) -> Callable[[str], str]:
    """``check`` (raising InputError) as a pydantic field check (raising ValueError with the same words)."""

    def field_check(value: str) -> str:
        try:
            return check(value)
        except InputError as err:
            raise ValueError(str(err)) from None

    return field_check


#: a topic prefix in a config model: checked at load (``check_prefix``)
TopicPrefix = Annotated[str, AfterValidator(_as_field_check(check_prefix))]
#: a device id in a config model: checked at load (``check_device_id``)
DeviceId = Annotated[str, AfterValidator(_as_field_check(check_device_id))]


@dataclass(frozen=True)
class Topics:
    """Topic names and filters under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def match(self, device_id: str) -> str:
        return f"{self.prefix}/{check_device_id(device_id)}/match"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/{check_device_id(device_id)}/status"

    def heartbeat(self, device_id: str) -> str:
        return f"{self.prefix}/{check_device_id(device_id)}/heartbeat"

    def homeassistant_event(self, device_id: str) -> str:
        """Home Assistant's view of a match (ids and score, no image), when discovery is on."""
        return f"{self.prefix}/{check_device_id(device_id)}/homeassistant/match"

    def deadletter(self) -> str:
        return f"{self.prefix}/{RELAY_SEGMENT}/deadletter"

    def _filter(self, kind: str, device_id: str) -> str:
        device = device_id if device_id == "+" else check_device_id(device_id)
        return f"{self.prefix}/{device}/{kind}"

    def match_filter(self, device_id: str = "+") -> str:
        """Subscription filter for match events: every device's (``+``) or one device's."""
        return self._filter("match", device_id)

    def status_filter(self, device_id: str = "+") -> str:
        return self._filter("status", device_id)

    def heartbeat_filter(self, device_id: str = "+") -> str:
        return self._filter("heartbeat", device_id)

    def device_of(self, topic: str) -> str | None:
        """The device id in a device topic under this prefix, or None if it is not one."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :].split("/")
        if len(rest) != 2 or is_reserved(rest[0]) or not _DEVICE_ID.match(rest[0]):
            return None
        return rest[0]


def shared(topic_filter: str, group: str) -> str:
    """The MQTT v5 shared-subscription form ``$share/<group>/<filter>``.

    Subscribers in one group split the messages between them (each message goes to one).
    """
    if not _GROUP.match(group or ""):
        raise InputError(f"share group {group!r}", "must be 1-64 letters, digits, '.', '_' or '-'")
    return f"$share/{group}/{topic_filter}"
