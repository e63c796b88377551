"""The relay service: subscribe to match events, accept them durably, deliver alerts.

Intake (paho's network thread): parse and validate → dead-letter if invalid →
idempotency, suppression and sighting dedup in one store transaction → acknowledge
the QoS 1 message only then (manual ack), so an event is either stored or
redelivered by the broker. Delivery (its own thread): see ``dispatch``.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import paho.mqtt.client as paho

from lookout.errors import ConfigError, InputError
from lookout.events import MAX_PAYLOAD_BYTES, MatchEvent, parse_match_event, read_json_object
from lookout.log import get_logger
from lookout.metrics_server import MetricsServer
from lookout.mqtt import connect, make_client
from lookout.relay.config import Limit, RelayConfig
from lookout.relay.directory import Directories, DirectoryUnavailable, PersonDirectory
from lookout.relay.dispatch import CLAIM_BATCH, Dispatcher, DispatchSettings
from lookout.relay.gate import Gate, Verdict
from lookout.relay.message import Outgoing, alert_link
from lookout.relay.metrics import Counters
from lookout.relay.notifiers import Notifier, build_all
from lookout.relay.ratelimit import Limits, Window
from lookout.relay.records import AlertPlan, Ingested, Intake, Outcome
from lookout.relay.store import RelayStore, StoreUnavailable, open_store
from lookout.topics import Topics, is_reserved, shared

log = get_logger(__name__)

DEADLETTER_PAYLOAD_MAX = 64 * 1024
DEADLETTER_OPAQUE_MAX = 2048  # a payload that is not a JSON object: enough to debug, too little for a face
POISON = "internal error: "  # dead-letter reasons of messages that broke the relay's code, not its rules
REFUSED = "refused by the relay's check: "  # events the gate refused (policy, membership, withdrawal)
PURGE_EVERY_S = 3600.0
INTAKE_BATCH = 256
# Group commit: wait this long for more messages before committing a batch, so a steady
# stream shares fsyncs instead of paying one per event (at 1,000 events/s with
# synchronous=full, one fsync an event queued up to seconds of latency on this disk).
INTAKE_LINGER_S = 0.005


def without_images(payload: bytes) -> bytes:
    """A payload fit for the dead-letter topic, which never carries a face (attack A51): a JSON object without its
    base64 fields (``crop_jpeg_b64`` and any other ``*_b64``); anything else cut to its first 2 KB."""
    try:
        doc = read_json_object(payload[:MAX_PAYLOAD_BYTES], "dead letter")
    except InputError:
        return payload[:DEADLETTER_OPAQUE_MAX]
    if not any(k.endswith("_b64") for k in doc):
        return payload  # as received, byte for byte
    return json.dumps({k: v for k, v in doc.items() if not k.endswith("_b64")}).encode()


def deadletter_message(topic: str, payload: bytes, reason: str, received_at: float) -> bytes:
    """The JSON put on the dead-letter topic: why, where from, and the payload without images (base64, capped)."""
    size = len(payload)
    payload = without_images(payload)
    doc = {
        "reason": reason,
        "topic": topic,
        "payload_b64": base64.b64encode(payload[:DEADLETTER_PAYLOAD_MAX]).decode("ascii"),
        "payload_bytes": size,
        "truncated": len(payload) > DEADLETTER_PAYLOAD_MAX,
        "received_at": datetime.fromtimestamp(received_at, timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(doc).encode()


STORE_RETRY_MAX_S = 5.0


def _window(limit: Limit | None) -> Window | None:
    return Window(limit.count, limit.per_s) if limit is not None else None


def owner_id(config: RelayConfig) -> str:
    """Who holds this relay's delivery claims: its MQTT client id (stable across restarts), else host:pid."""
    return config.mqtt.client_id or f"{socket.gethostname()}:{os.getpid()}"


def claim_lease_s(config: RelayConfig) -> float:
    """A SQLite claim must outlast sending its whole batch, even if every send times out."""
    timeouts = [getattr(n, "timeout_s", 0.0) for n in config.notifiers.values()]
    return max(config.store.claim_lease_s, CLAIM_BATCH * max(timeouts, default=0.0) + 30.0)


# (message, event or None, dead-letter reason or None)
Parsed = tuple[paho.MQTTMessage, MatchEvent | None, str | None]
# an accepted event and what the store made of it
Accepted = tuple[MatchEvent, Ingested]
# (message, accepted or None, dead-letter reason or None, the payload to dead-letter if not the message's own)
Decided = tuple[paho.MQTTMessage, Accepted | None, str | None, bytes | None]


class RelayService:
    def __init__(
        self,
        config: RelayConfig,
        *,
        notifiers: dict[str, Notifier] | None = None,
        directory: PersonDirectory | None = None,
        clock: Callable[[], float] = time.time,
        on_sent: Callable[[Outgoing], None] | None = None,
        store: RelayStore | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.topics.prefix)
        self.counters = Counters()
        self.clock = clock
        self.owner = owner_id(config)
        problems = config.problems() if directory is None else []
        if problems:
            raise ConfigError("relay config: " + "; ".join(problems))
        self.gate = Gate.from_config(config, None if directory is None else Directories.single(directory))
        self.directories = self.gate.directories
        self.notifiers = notifiers if notifiers is not None else build_all(config)
        self.intake_store = store or open_store(config.store)
        # Delivery bookkeeping need not wait for the disk: a mark lost in a power cut repeats a send; the
        # alerts and their deliveries are written durably by intake before the broker is acknowledged.
        self.delivery_store = self.intake_store.sibling(durable=False)
        self._health_store = self.intake_store.sibling()  # readiness checks come from the HTTP thread
        limits = config.rate_limits
        settings = DispatchSettings(
            retry=config.retry,
            limits=Limits(_window(limits.per_recipient), _window(limits.overall)),
            summary_after_s=limits.summary_after_s,
            owner=self.owner,
            lease_s=claim_lease_s(config),
            link=lambda alert_id: alert_link(config.console_url, config.review.url_template, alert_id),
        )
        self.dispatcher = Dispatcher(
            self.delivery_store,
            self.notifiers,
            config.recipients,
            self.gate,
            settings,
            self.counters,
            clock,
            on_sent,
        )
        self.client = make_client(config.mqtt, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._inbox: queue.Queue[paho.MQTTMessage | None] = queue.Queue()
        self._intake = threading.Thread(target=self._intake_loop, name="relay-intake", daemon=True)
        self._thread: threading.Thread | None = None
        self._metrics: MetricsServer | None = None
        self._next_purge = 0.0
        self._next_log = clock() + config.metrics.log_every_s
        self._next_gap_scan = clock() + config.gaps.scan_every_s
        self._last_gap_scan = clock() - 600.0

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> RelayService:
        if self.config.metrics.port is not None:
            self._metrics = MetricsServer(
                self.counters.prometheus,
                self.config.metrics.host,
                self.config.metrics.port,
                readiness=self.readiness,
                name="relay-metrics",
            ).start()
        released = self.delivery_store.release_claims(self.owner)
        if released:
            log.info("delivery.claims_released", owner=self.owner, deliveries=released)
        self._thread = threading.Thread(target=self._deliver_loop, name="relay-dispatch", daemon=True)
        self._thread.start()
        self._intake.start()
        connect(self.client, self.config.mqtt)
        self.client.loop_start()
        log.info(
            "relay.started",
            subscription=self._subscription(),
            store=self.intake_store.kind,
            owner=self.owner,
            recipients=len(self.config.recipients),
            notifiers=",".join(sorted(self.notifiers)),
        )
        return self

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready to take events (``/readyz``): subscribed at the broker, the store answering, and the intake and
        delivery threads running."""
        checks: dict[str, object] = {
            "broker_subscribed": self.connected.is_set(),
            "store": self._health_store.ping(),
            "intake_running": self._intake.is_alive(),
            "delivery_running": self._thread is not None and self._thread.is_alive(),
        }
        return all(bool(v) for v in checks.values()), checks

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._inbox.put(None)
        if self._intake.is_alive():
            self._intake.join(timeout=10)
        self.dispatcher.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._metrics is not None:
            self._metrics.stop()
        for notifier in self.notifiers.values():
            notifier.close()
        self.delivery_store.close()
        self._health_store.close()
        self.intake_store.close()
        self.directories.close()
        log.info("relay.stopped", **self.counters.snapshot())

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        done = threading.Event()
        previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)}
        self.start()
        try:
            if not self.connected.wait(self.config.mqtt.connect_timeout):
                log.warning(
                    "relay.not_connected",
                    host=self.config.mqtt.host,
                    port=self.config.mqtt.port,
                    hint="still retrying; alerts already stored are being delivered",
                )
            done.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def _deliver_loop(self) -> None:
        self.dispatcher.run(self._stop, tick=self._housekeeping)

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_purge:
            store = self.config.store
            removed = self.delivery_store.purge(now, store.retention_days * 86400, store.seen_ids_days * 86400)
            self._next_purge = now + PURGE_EVERY_S
            if any(removed.values()):
                log.info("store.purged", **removed)
        if now >= self._next_gap_scan:
            self.scan_gaps(now)
        if now >= self._next_log:
            self._next_log = now + self.config.metrics.log_every_s
            log.info("relay.counters", **self.counters.snapshot())

    def scan_gaps(self, now: float) -> int:
        """Report sequence gaps that have settled: a metric and one log line per gap."""
        every = self.config.gaps.scan_every_s
        gaps = self.delivery_store.find_gaps(now, self.config.gaps.grace_s, since=self._last_gap_scan - 2 * every)
        self._last_gap_scan, self._next_gap_scan = now, now + every
        for gap in gaps:
            self.counters.inc("seq_gaps")
            self.counters.inc("seq_missing", gap.missing)
            log.warning(
                "events.missing",
                device_id=gap.device_id,
                stream=gap.stream,
                first=gap.first,
                last=gap.last,
                missing=gap.missing,
                hint="the device sent these sequence numbers but they never reached the relay",
            )
        return len(gaps)

    # --- MQTT -------------------------------------------------------------------------------

    def _subscription(self) -> str:
        group = self.config.topics.share_group
        filt = self.topics.match_filter()
        return shared(filt, group) if group else filt

    def _on_connect(self, client: paho.Client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt.refused", reason=str(reason_code))
            return
        client.subscribe(self._subscription(), qos=1)
        log.info("mqtt.connected", session_present=bool(getattr(flags, "session_present", False)))

    def _on_subscribe(self, client: paho.Client, userdata, mid, reason_codes, properties) -> None:
        """``connected`` means subscribed: set on SUBACK, so nothing published after it is missed."""
        if any(code.is_failure for code in reason_codes):
            log.error("mqtt.subscribe_refused", reasons=",".join(str(c) for c in reason_codes))
            return
        self.connected.set()
        log.info("mqtt.subscribed", topic=self._subscription())

    def _on_disconnect(self, client: paho.Client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("mqtt.disconnected", reason=str(reason_code), hint="reconnecting")

    def _on_message(self, client: paho.Client, userdata, message: paho.MQTTMessage) -> None:
        self._inbox.put(message)  # the network thread only queues; acks follow the store commit

    # --- intake -----------------------------------------------------------------------------

    def _intake_loop(self) -> None:
        """Accept queued messages in batches: one transaction (one fsync) per batch, then ack each.

        Nothing one message holds may end this thread (a poison pill would stop every alert, and the broker
        would hand it to the next relay after a restart): :meth:`_accept` sets aside what it cannot take."""
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            linger_until = time.monotonic() + INTAKE_LINGER_S
            while len(batch) < INTAKE_BATCH:
                try:
                    nxt = self._inbox.get(timeout=max(0.0, linger_until - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._inbox.put(None)
                    break
                batch.append(nxt)
            self._accept(batch)

    def _accept(self, batch: list[paho.MQTTMessage]) -> list[Decided]:
        """Decide and store ``batch``, then dead-letter or count each message and acknowledge it. A bug that
        breaks the batch is narrowed down one message at a time; the message at fault is poison."""
        now = self.clock()
        try:
            decided = self._decide(batch, now)
        except Exception as err:
            if len(batch) > 1:
                return [d for message in batch for d in self._accept([message])]
            decided = [(batch[0], None, self._poison_reason(err), None)]
        if decided is None:
            return []  # stopping while the store or directory is down: unacknowledged, the broker redelivers
        for message, accepted, reason, payload in decided:
            self._finish(message, accepted, reason, payload, now)
        if any(a is not None and a[1].outcome is Outcome.NEW_ALERT and not a[1].review for _, a, _, _ in decided):
            self.dispatcher.wake()
        return decided

    def _decide(self, batch: list[paho.MQTTMessage], now: float) -> list[Decided] | None:
        """Each message with its stored outcome, or with the reason it is dead-lettered; None if stopping."""
        parsed = [self._parse_message(m) for m in batch]
        verdicts = self._verdicts([e for _, e, _ in parsed if e is not None])
        if verdicts is None:
            return None
        valid = [(m, e, verdicts[id(e)]) for m, e, _ in parsed if e is not None and verdicts[id(e)].allowed]
        results = self._store([Intake(e, self._plan(e, v), bytes(m.payload)) for m, e, v in valid], now)
        if results is None:
            return None
        outcome: dict[int, Ingested | str] = {id(m): r for (m, _, _), r in zip(valid, results)}
        decided: list[Decided] = []
        for message, event, reason in parsed:
            result = outcome.get(id(message))
            if event is not None and not verdicts[id(event)].allowed:
                decided.append((message, None, REFUSED + verdicts[id(event)].reason, _without_crop(event)))
            elif event is None or result is None or isinstance(result, str):
                decided.append((message, None, reason or str(result), None))
            else:
                decided.append((message, (event, result), None, None))
        return decided

    def _verdicts(self, events: list[MatchEvent]) -> dict[int, Verdict] | None:
        """The gate's verdict on each event (by ``id(event)``), waiting while a directory cannot be read
        (fail closed: an event is never let through on a guess); None if stopping meanwhile."""
        delay = 0.1
        while True:
            try:
                return {id(e): self.gate.check(e.gallery_id, e.person_id) for e in events}
            except DirectoryUnavailable as err:
                self.counters.inc("directory_errors")
                log.error(
                    "directory.unavailable",
                    error=str(err),
                    events=len(events),
                    retry_in_s=round(delay, 2),
                    hint="events stay unacknowledged until the gallery directory can be read",
                )
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, STORE_RETRY_MAX_S)

    def _finish(
        self,
        message: paho.MQTTMessage,
        accepted: Accepted | None,
        reason: str | None,
        payload: bytes | None,
        now: float,
    ) -> None:
        """Count or dead-letter one decided message, then acknowledge it (always: it is stored or set aside)."""
        try:
            if accepted is None:
                body = bytes(message.payload) if payload is None else payload
                self._dead_letter(message.topic, body, reason or "refused", now)
            else:
                self.counters.inc("received")
                self._count(*accepted)
        except Exception as err:  # logging or publishing the dead letter failed: the message is decided anyway
            log.error("intake.finish_failed", topic=message.topic, error=self._poison_reason(err))
        finally:
            self.client.ack(message.mid, message.qos)

    def _parse_message(self, message: paho.MQTTMessage) -> Parsed:
        try:
            return message, self._parse(message.topic, bytes(message.payload)), None
        except InputError as err:
            return message, None, err.reason
        except Exception as err:  # a parser bug must not become a poison pill: this message is set aside
            return message, None, self._poison_reason(err)

    def _poison_reason(self, err: BaseException) -> str:
        """The dead-letter reason of a message that broke the relay's own code (not a validation refusal)."""
        self.counters.inc("poison")
        text = str(err)
        return f"{POISON}{type(err).__name__}: {text[:200]}{'…' if len(text) > 200 else ''}"

    def _store(self, items: list[Intake], now: float) -> list[Ingested | str] | None:
        """Ingest the batch, retrying while the store is unavailable; a message that breaks the store's
        code (not the store) is isolated and returned as its dead-letter reason. None if stopping."""
        delay = 0.1
        while True:
            try:
                try:
                    return list(self.intake_store.ingest(items, now, self.config.dedup.window_s))
                except StoreUnavailable:
                    raise
                except Exception:  # find the message at fault: one at a time
                    return [self._ingest_alone(item, now) for item in items]
            except StoreUnavailable as err:
                self.counters.inc("store_errors")
                log.error(
                    "store.unavailable",
                    error=str(err),
                    events=len(items),
                    retry_in_s=round(delay, 2),
                    hint="events stay unacknowledged until the store accepts them",
                )
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, STORE_RETRY_MAX_S)

    def _ingest_alone(self, item: Intake, now: float) -> Ingested | str:
        try:
            return self.intake_store.ingest([item], now, self.config.dedup.window_s)[0]
        except StoreUnavailable:
            raise
        except Exception as err:  # this message breaks the relay: poison, set it aside
            return self._poison_reason(err)

    def handle(self, topic: str, payload: bytes) -> Outcome | None:
        """Accept one message now, as intake does (tests, benchmarks); the outcome, or None if dead-lettered."""
        message = paho.MQTTMessage(topic=topic.encode())  # QoS 0: nothing to acknowledge
        message.payload = payload
        decided = self._accept([message])
        accepted = decided[0][1] if decided else None
        return accepted[1].outcome if accepted is not None else None

    def _parse(self, topic: str, payload: bytes) -> MatchEvent:
        source = f"message on {topic}"
        level = topic[len(self.topics.prefix) + 1 :].split("/")[0] if topic.startswith(self.topics.prefix + "/") else ""
        if level and is_reserved(level):
            raise InputError(source, f"topic level {level!r} is reserved, not a device")
        event = parse_match_event(payload, source=source)
        if is_reserved(event.device_id):
            raise InputError(source, f"device_id {event.device_id!r} is reserved, not a device")
        device = self.topics.device_of(topic)
        if device is not None and device != event.device_id:
            raise InputError(source, f"device_id {event.device_id!r} does not match the topic's device {device!r}")
        return event

    def _dead_letter(self, topic: str, payload: bytes, reason: str, now: float) -> None:
        """One line naming the topic, the device and the reason; the payload to the dead-letter topic."""
        self.counters.inc("received")
        self.counters.inc("refused" if reason.startswith(REFUSED) else "invalid")
        fields = dict(topic=topic, device_id=self.topics.device_of(topic), bytes=len(payload), reason=reason)
        if reason.startswith(POISON):
            log.error("event.poison", hint="the relay's own code failed on this message; set aside", **fields)
        elif reason.startswith(REFUSED):
            log.warning("event.refused", hint="not stored, not sent; dead-lettered without its crop", **fields)
        else:
            log.warning("event.invalid", **fields)
        self.client.publish(self.topics.deadletter(), deadletter_message(topic, payload, reason, now), qos=1)

    def _plan(self, event: MatchEvent, verdict: Verdict) -> AlertPlan:
        gallery = event.gallery_id or "default"
        details = verdict.details
        jurisdiction = details.jurisdiction if details else None
        names = [r.name for r in self.config.recipients if r.wants(gallery, jurisdiction)]
        if not names:
            self.counters.inc("no_recipients")
            log.warning("alert.no_recipients", person_id=event.person_id, gallery_id=gallery, jurisdiction=jurisdiction)
        return AlertPlan(review=self.config.gallery(event.gallery_id).needs_review, recipients=names)

    def _count(self, event: MatchEvent, result: Ingested) -> None:
        name = {
            Outcome.DUPLICATE: "duplicates",
            Outcome.SUPPRESSED: "suppressed",
            Outcome.FOLLOW_UP: "followups",
            Outcome.NEW_ALERT: "alerts",
        }[result.outcome]
        self.counters.inc(name)
        fields = dict(
            event_id=str(event.event_id), device_id=event.device_id, person_id=event.person_id, alert_id=result.alert_id
        )
        if result.outcome is Outcome.NEW_ALERT:
            log.info("alert.created", review=result.review, score=round(event.score, 3), **fields)
        elif result.outcome is Outcome.SUPPRESSED:
            log.info("event.suppressed", **fields)
        else:
            log.debug(f"event.{result.outcome.value}", **fields)


def _without_crop(event: MatchEvent) -> bytes:
    """A refused event as it is dead-lettered: the face crop of someone the relay may not alert about is dropped."""
    return event.model_copy(update={"crop_jpeg_b64": None}).to_json()
