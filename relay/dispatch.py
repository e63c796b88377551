"""The delivery loop: due deliveries from the durable outbox → rate limits → notifier, with retries.

Runs in one thread with its own store connection. A delivery is marked sent only
after the notifier accepted it, so a crash at worst repeats a send (the webhook
carries a stable delivery id for receivers to drop repeats); it never loses one.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from lookout.log import get_logger
from lookout.relay.config import Recipient, RetrySettings
from lookout.relay.directory import PersonDirectory
from lookout.relay.message import Outgoing, alert_document, alert_text, review_link, summary_text
from lookout.relay.metrics import Counters
from lookout.relay.notifiers.base import DeliveryError, Notifier
from lookout.relay.ratelimit import RateLimiter
from lookout.relay.store import Delivery, RelayStore

log = get_logger(__name__)

BATCH = 200
MARK_BATCH = 32  # results written per transaction; a crash can repeat at most this many sends
MARK_DELAY_S = 0.02


def backoff_s(attempts: int, retry: RetrySettings, jitter: float = 0.2) -> float:
    """Exponential backoff after ``attempts`` failed tries, capped, with +-``jitter`` spread."""
    base = min(retry.max_s, retry.initial_s * (2 ** max(attempts, 0)))
    return base * random.uniform(1 - jitter, 1 + jitter)


class Dispatcher:
    def __init__(
        self,
        store: RelayStore,
        notifiers: dict[str, Notifier],
        recipients: list[Recipient],
        directory: PersonDirectory,
        limiter: RateLimiter,
        retry: RetrySettings,
        counters: Counters,
        review_url: str | None = None,
        clock: Callable[[], float] = time.time,
        on_sent: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.recipients = {r.name: r for r in recipients}
        self.directory = directory
        self.limiter = limiter
        self.retry = retry
        self.counters = counters
        self.review_url = review_url
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
            except Exception as err:  # keep delivering whatever one pass hit
                log.error("dispatch.error", error=f"{type(err).__name__}: {err}")
                wait = poll_s
            self._wake.wait(max(0.0, min(wait, poll_s)))
            self._wake.clear()

    def step(self) -> float:
        """One pass over due work; returns seconds until something is due next."""
        now = self.clock()
        self._summarise_held(now)
        due = self.store.due_deliveries(now, BATCH)
        marks: list[Callable[[], None]] = []
        oldest = 0.0
        for delivery in due:
            if not marks:
                oldest = time.monotonic()
            marks.append(self._deliver(delivery, self.clock()))
            if len(marks) >= MARK_BATCH or time.monotonic() - oldest > MARK_DELAY_S:
                self._apply(marks)
        self._apply(marks)
        if len(due) == BATCH:
            return 0.0
        nxt = self.store.next_due_at()
        return float("inf") if nxt is None else max(0.0, nxt - self.clock())

    def _apply(self, marks: list[Callable[[], None]]) -> None:
        """Write delivery results in one transaction."""
        if marks:
            with self.store.transaction():
                for mark in marks:
                    mark()
            marks.clear()

    def _target(self, delivery: Delivery) -> tuple[Recipient, Notifier] | None:
        recipient = self.recipients.get(delivery.recipient)
        notifier = self.notifiers.get(recipient.notifier) if recipient else None
        if recipient is None or notifier is None:
            self.store.mark_failed(delivery.id, f"recipient {delivery.recipient!r} is no longer configured")
            self.counters.inc("gave_up")
            log.error(
                "delivery.unroutable", delivery_id=delivery.id, alert_id=delivery.alert_id, recipient=delivery.recipient
            )
            return None
        return recipient, notifier

    def _deliver(self, delivery: Delivery, now: float) -> Callable[[], None]:
        """Try one delivery; returns the store update to apply."""
        target = self._target(delivery)
        if target is None:
            return lambda: None
        recipient, notifier = target
        if not self.limiter.allows(recipient.name, now):
            self.counters.inc("held_back")
            log.warning(
                "delivery.held",
                delivery_id=delivery.id,
                alert_id=delivery.alert_id,
                recipient=recipient.name,
                reason="rate limit; will be summarised",
            )
            return lambda: self.store.hold(delivery.id)
        message = self._message(delivery, recipient)
        try:
            provider_id = notifier.send(message)
        except DeliveryError as err:
            return self._failed(delivery, str(err), err.retryable, now)
        except Exception as err:  # a notifier bug must not lose the alert: retry
            return self._failed(delivery, f"{type(err).__name__}: {err}", True, now)
        sent_at = self.clock()
        self.limiter.record(recipient.name, now)
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
        return lambda: self.store.mark_sent(delivery.id, sent_at, provider_id)

    def _message(self, delivery: Delivery, recipient: Recipient) -> Outgoing:
        alert = self.store.get_alert(delivery.alert_id)
        details = self.directory.lookup(alert.person_id)
        url = review_link(self.review_url, alert.id)
        text = alert_text(alert, details, url)
        return Outgoing(delivery.id, recipient.name, recipient.address, text, alert_document(alert, details, text, url))

    def _failed(self, delivery: Delivery, error: str, retryable: bool, now: float) -> Callable[[], None]:
        self.counters.inc("failures")
        too_old = now - delivery.created_at >= self.retry.give_up_after_s
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
            return lambda: self.store.mark_failed(delivery.id, error)
        delay = backoff_s(delivery.attempts, self.retry)
        log.warning(
            "delivery.retry",
            delivery_id=delivery.id,
            alert_id=delivery.alert_id,
            recipient=delivery.recipient,
            attempt=delivery.attempts + 1,
            retry_in_s=round(delay, 2),
            error=error,
        )
        return lambda: self.store.mark_retry(delivery.id, now + delay, error)

    def _summarise_held(self, now: float) -> None:
        for name in self.store.held_recipients():
            if now < self._summary_not_before.get(name, 0.0) or not self.limiter.allows(name, now):
                continue
            self._send_summary(name, now)

    def _send_summary(self, name: str, now: float) -> None:
        held = self.store.held_for(name)
        target = self._target(held[0])
        if target is None:
            for d in held[1:]:
                self.store.mark_failed(d.id, f"recipient {name!r} is no longer configured")
            return
        recipient, notifier = target
        alerts = [self.store.get_alert(d.alert_id) for d in held]
        text = summary_text(alerts, min(d.created_at for d in held))
        doc = {"type": "lookout.summary", "alert_ids": [a.id for a in alerts], "text": text}
        try:
            provider_id = notifier.send(Outgoing(held[0].id, name, recipient.address, text, doc))
        except Exception as err:
            self.counters.inc("failures")
            self._summary_not_before[name] = now + backoff_s(1, self.retry)
            log.warning("summary.retry", recipient=name, held=len(held), error=str(err))
            return
        self.limiter.record(name, now)
        self.store.mark_summarised([d.id for d in held], now, provider_id)
        self.counters.inc("summaries")
        log.info("summary.sent", recipient=name, held=len(held), alerts=[a.id for a in alerts][:20])
