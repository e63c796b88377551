"""The delivery loop: claimed deliveries from the durable outbox → rate limits → notifier, with retries.

Runs in one thread with its own store connection. Deliveries are claimed in small batches
(:meth:`RelayStore.claim_due`), so several relays share one outbox without sending a delivery
twice. A delivery is marked sent only after the notifier accepted it, and each send is written the
moment it is accepted (PostgreSQL: a mark committed outside the claim's transaction), so a crash at
worst repeats the send in hand (the webhook carries a stable delivery id for receivers to drop
repeats); it never loses one. Other results (retries, failures, holds) are written per batch. Rate limits are counted in the store's ledger, shared by every relay;
what they hold is summarised to the recipient ``summary_after_s`` after the first hold.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lookout.log import get_logger
from lookout.relay.config import Recipient, RetrySettings
from lookout.relay.directory import DirectoryUnavailable, PersonDetails
from lookout.relay.gate import Gate
from lookout.relay.message import Outgoing, alert_document, alert_text, summary_text
from lookout.relay.metrics import Counters
from lookout.relay.notifiers.base import DeliveryError, Notifier
from lookout.relay.ratelimit import Limits
from lookout.relay.records import Alert, Delivery, DeliveryResult
from lookout.relay.store import RelayStore

log = get_logger(__name__)

CLAIM_BATCH = 32  # deliveries claimed together; their sends are written one by one as they are accepted
MAX_ROUNDS = 8  # claim batches per pass before housekeeping gets a turn


def backoff_s(attempts: int, retry: RetrySettings, jitter: float = 0.2) -> float:
    """Exponential backoff after ``attempts`` failed tries, capped, with +-``jitter`` spread."""
    base = min(retry.max_s, retry.initial_s * (2 ** max(attempts, 0)))
    return base * random.uniform(1 - jitter, 1 + jitter)


@dataclass(frozen=True)
class DispatchSettings:
    retry: RetrySettings
    limits: Limits
    summary_after_s: float = 60.0
    owner: str = "relay"  # who holds a claim (SQLite leases)
    lease_s: float = 120.0
    link: Callable[[int], str | None] = lambda alert_id: None  # the alert's page in the console


class Dispatcher:
    def __init__(
        self,
        store: RelayStore,
        notifiers: dict[str, Notifier],
        recipients: list[Recipient],
        gate: Gate,
        settings: DispatchSettings,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        on_sent: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.recipients = {r.name: r for r in recipients}
        self.gate = gate
        self.settings = settings
        self.counters = counters
        self.clock = clock
        self.on_sent = on_sent
        self._wake = threading.Event()
        self._summary_not_before: dict[str, float] = {}

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event, poll_s: float = 1.0, tick: Callable[[float], None] | None = None) -> None:
        """Deliver until ``stop`` is set; ``tick`` runs housekeeping between passes."""
        while not stop.is_set():
            try:
                wait = self.step()
                if tick is not None:
                    tick(self.clock())
            except Exception as err:  # keep delivering whatever one pass hit (the store being down included)
                log.error("dispatch.error", error=f"{type(err).__name__}: {err}")
                wait = poll_s
            self._wake.wait(max(0.0, min(wait, poll_s)))
            self._wake.clear()

    def step(self) -> float:
        """One pass over due work; returns seconds until something is due next."""
        self._summarise_held(self.clock())
        for _ in range(MAX_ROUNDS):
            claimed = self._deliver_batch()
            if claimed < CLAIM_BATCH:
                break
        else:
            return 0.0
        nxt = self.store.next_due_at()
        return float("inf") if nxt is None else max(0.0, nxt - self.clock())

    def _deliver_batch(self) -> int:
        """Claim a batch, send it, and write its results in one statement per kind of result."""
        s = self.settings
        with self.store.claim_due(self.clock(), CLAIM_BATCH, s.owner, s.lease_s) as due:
            alerts = self.store.alerts_by_id(sorted({d.alert_id for d in due})) if due else {}
            later = []
            for delivery in due:
                try:
                    result = self._deliver(delivery, alerts.get(delivery.alert_id), self.clock())
                except Exception as err:  # this delivery's own fault (a message that cannot be built): it alone stops
                    result = self._failed(delivery, f"cannot deliver: {type(err).__name__}: {err}", False, self.clock())
                if result.kind == "sent":
                    self.store.record([result])  # now: a crash after this send must not repeat it
                else:
                    later.append(result)
            if later:
                self.store.record(later)
        return len(due)

    def _target(self, delivery: Delivery) -> tuple[Recipient, Notifier] | DeliveryResult:
        recipient = self.recipients.get(delivery.recipient)
        notifier = self.notifiers.get(recipient.notifier) if recipient else None
        if recipient is None or notifier is None:
            self.counters.inc("gave_up")
            log.error(
                "delivery.unroutable", delivery_id=delivery.id, alert_id=delivery.alert_id, recipient=delivery.recipient
            )
            return DeliveryResult(
                "failed", delivery.id, error=f"recipient {delivery.recipient!r} is no longer configured"
            )
        return recipient, notifier

    def _deliver(self, delivery: Delivery, alert: Alert | None, now: float) -> DeliveryResult:
        """Try one delivery; returns what to record."""
        target = self._target(delivery)
        if isinstance(target, DeliveryResult):
            return target
        if alert is None:
            return DeliveryResult("failed", delivery.id, error=f"alert {delivery.alert_id} is missing")
        recipient, notifier = target
        checked = self._check(delivery, alert, now)
        if isinstance(checked, DeliveryResult):
            return checked
        ledger = None
        if self.settings.limits.active:
            ledger = self.store.rate_take(recipient.name, now, self.settings.limits)
            if ledger is None:
                self.counters.inc("held_back")
                log.warning(
                    "delivery.held",
                    delivery_id=delivery.id,
                    alert_id=delivery.alert_id,
                    recipient=recipient.name,
                    reason="rate limit; will be summarised",
                    summary_in_s=self.settings.summary_after_s,
                )
                return DeliveryResult("held", delivery.id, at=now)
        message = self._message(delivery, alert, recipient, notifier, checked)
        try:
            provider_id = notifier.send(message)
        except Exception as err:  # a notifier bug must not lose the alert either: retry
            if ledger is not None:
                self.store.rate_release(ledger)
            if isinstance(err, DeliveryError):
                return self._failed(delivery, str(err), err.retryable, now)
            return self._failed(delivery, f"{type(err).__name__}: {err}", True, now)
        sent_at = self.clock()
        self.counters.inc("sent")
        log.info(
            "alert.sent",
            alert_id=delivery.alert_id,
            delivery_id=delivery.id,
            recipient=recipient.name,
            notifier=notifier.name,
            attempts=delivery.attempts + 1,
        )
        if self.on_sent is not None:
            self.on_sent(message)
        return DeliveryResult("sent", delivery.id, at=sent_at, provider_id=provider_id)

    def _check(self, delivery: Delivery, alert: Alert, now: float) -> PersonDetails | DeliveryResult | None:
        """Ask the gate again just before sending: a newer bundle may have withdrawn the person since intake.
        The person's details for the message, or the result to record instead of sending."""
        try:
            verdict = self.gate.check(alert.gallery_id, alert.person_id)
        except DirectoryUnavailable as err:
            self.counters.inc("directory_errors")
            return self._failed(delivery, str(err), True, now)
        if verdict.allowed:
            return verdict.details
        self.counters.inc("refused")
        log.warning(
            "delivery.refused",
            delivery_id=delivery.id,
            alert_id=delivery.alert_id,
            recipient=delivery.recipient,
            reason=verdict.reason,
            crop_deleted=self.store.drop_crop(alert.id),  # the face of someone the relay may not alert about
            hint="not sent: the relay's check refuses this person now",
        )
        return DeliveryResult("failed", delivery.id, error=f"refused by the relay's check: {verdict.reason}")

    def _message(
        self, delivery: Delivery, alert: Alert, recipient: Recipient, notifier: Notifier, details: PersonDetails | None
    ) -> Outgoing:
        url = self.settings.link(alert.id)
        text = alert_text(alert, details, url)
        crop = None
        if getattr(notifier, "include_crop", False) and alert.has_crop:
            jpeg = self.store.crop(alert.id)  # present only where the device's policy allowed crops
            crop = base64.b64encode(jpeg).decode("ascii") if jpeg else None
        document = alert_document(alert, details, text, url, crop)
        return Outgoing(delivery.id, recipient.name, recipient.address, text, document)

    def _failed(self, delivery: Delivery, error: str, retryable: bool, now: float) -> DeliveryResult:
        self.counters.inc("failures")
        too_old = now - delivery.created_at >= self.settings.retry.give_up_after_s
        if not retryable or too_old:
            self.counters.inc("gave_up")
            log.error(
                "delivery.failed",
                delivery_id=delivery.id,
                alert_id=delivery.alert_id,
                recipient=delivery.recipient,
                error=error,
                permanent=not retryable,
            )
            return DeliveryResult("failed", delivery.id, error=error)
        delay = backoff_s(delivery.attempts, self.settings.retry)
        log.warning(
            "delivery.retry",
            delivery_id=delivery.id,
            alert_id=delivery.alert_id,
            recipient=delivery.recipient,
            attempt=delivery.attempts + 1,
            retry_in_s=round(delay, 2),
            error=error,
        )
        return DeliveryResult("retry", delivery.id, at=now + delay, error=error)

    def _refuses(self, alert: Alert) -> bool:
        """True when the gate refuses the alert's person now. Raises DirectoryUnavailable."""
        return not self.gate.check(alert.gallery_id, alert.person_id).allowed

    def _summarise_held(self, now: float) -> None:
        s = self.settings
        with self.store.claim_held(now, s.summary_after_s, s.owner, s.lease_s) as held:
            for name, deliveries in held.items():
                if now >= self._summary_not_before.get(name, 0.0):
                    self._send_summary(name, deliveries, now)

    def _send_summary(self, name: str, held: list[Delivery], now: float) -> None:
        target = self._target(held[0])
        if isinstance(target, DeliveryResult):
            self.store.record([DeliveryResult("failed", d.id, error=target.error) for d in held])
            return
        recipient, notifier = target
        by_id = self.store.alerts_by_id(sorted({d.alert_id for d in held}))
        try:
            refused = [d for d in held if d.alert_id in by_id and self._refuses(by_id[d.alert_id])]
        except DirectoryUnavailable as err:  # a summary names people: wait until the gate can answer
            self.counters.inc("directory_errors")
            self._summary_not_before[name] = now + backoff_s(1, self.settings.retry)
            log.warning("summary.retry", recipient=name, held=len(held), error=str(err))
            return
        if refused:
            reason = "refused by the relay's check (policy, gallery membership or withdrawal)"
            self.store.record([DeliveryResult("failed", d.id, error=reason) for d in refused])
            held = [d for d in held if d not in refused]
            if not held:
                return
        alerts = [by_id[d.alert_id] for d in held if d.alert_id in by_id]
        text = summary_text(alerts, min(d.created_at for d in held))
        doc = {"type": "lookout.summary", "alert_ids": [a.id for a in alerts], "text": text}
        try:
            provider_id = notifier.send(Outgoing(held[0].id, name, recipient.address, text, doc))
        except Exception as err:
            self.counters.inc("failures")
            self._summary_not_before[name] = now + backoff_s(1, self.settings.retry)
            log.warning("summary.retry", recipient=name, held=len(held), error=str(err))
            return
        self.store.rate_record(name, now)
        self.store.mark_summarised([d.id for d in held], now, provider_id)
        self.counters.inc("summaries")
        log.info("summary.sent", recipient=name, held=len(held), alerts=[a.id for a in alerts][:20])
