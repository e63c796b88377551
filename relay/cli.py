"""``lookout relay``, ``lookout review`` and ``lookout bench relay``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from lookout.errors import InputError
from lookout.relay.bench import EXTRA_STORES, STORES, print_figures, run_bench
from lookout.relay.config import RelayConfig, load_config
from lookout.relay.example import EXAMPLE_CONFIG
from lookout.relay.review import ReviewQueue, format_alert, format_audit, format_detail
from lookout.relay.service import RelayService
from lookout.relay.store import open_store

CONFIG_ENV = "LOOKOUT_RELAY_CONFIG"


def _config(args: argparse.Namespace) -> RelayConfig:
    path = args.config or os.environ.get(CONFIG_ENV)
    return load_config(Path(path) if path else None)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help=f"relay YAML config (default: ${CONFIG_ENV}, else built-in defaults)"
    )


def register(commands: argparse._SubParsersAction) -> None:
    relay = commands.add_parser("relay", help="run the relay: match events to SMS/webhook alerts")
    _add_config(relay)
    relay.add_argument(
        "--check-config", action="store_true", help="validate the config, print it (no secrets) and exit"
    )
    relay.add_argument(
        "--example-config", action="store_true", help="print a commented example config (every key) and exit"
    )
    relay.set_defaults(func=cmd_relay)

    review = commands.add_parser("review", help="list, confirm or reject alerts waiting for human review")
    _add_config(review)
    review.add_argument("--db", metavar="FILE", help="SQLite relay store (default: the store in the config)")
    actions = review.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="alerts waiting for review (or --all recent alerts)")
    listing.add_argument("--all", action="store_true", help="recent alerts in any state")
    listing.add_argument("--json", action="store_true", help="JSON lines")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_review_list)
    show = actions.add_parser("show", help="one alert with its deliveries")
    show.add_argument("alert_id", type=int, metavar="ID")
    show.add_argument("--crop", metavar="FILE", type=Path, help="save the face crop (JPEG) here")
    show.set_defaults(func=cmd_review_show)
    confirm = actions.add_parser("confirm", help="confirm the match: the alert is sent")
    confirm.add_argument("alert_id", type=int, metavar="ID")
    confirm.add_argument("--by", help="reviewer name (default: your user name)")
    confirm.add_argument("--reason", help="why (kept in the audit log)")
    confirm.set_defaults(func=cmd_review_confirm)
    reject = actions.add_parser("reject", help="not this person: nothing is sent; reason recorded")
    reject.add_argument("alert_id", type=int, metavar="ID")
    reject.add_argument("--reason", required=True, help="why, e.g. 'not this person: look-alike staff member'")
    reject.add_argument("--by", help="reviewer name (default: your user name)")
    reject.add_argument("--no-suppress", action="store_true", help="do not suppress this person at this device")
    reject.set_defaults(func=cmd_review_reject)
    audit = actions.add_parser("audit", help="the append-only audit log: who decided what, when and why")
    audit.add_argument("--actor", help="only this person")
    audit.add_argument("--action", help="only actions starting with this, e.g. review.")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="JSON lines")
    audit.set_defaults(func=cmd_review_audit)


def register_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser(
        "relay", help="events/s and latency for each store and number of relays, beside the disk's commit rate"
    )
    bench.add_argument("--events", type=int, default=5000, help="events in the flood run")
    bench.add_argument("--rate", type=float, default=1000.0, help="events/s in the latency runs")
    bench.add_argument("--seconds", type=float, default=5.0, help="length of each latency run")
    bench.add_argument("--runs", type=int, default=3, help="latency runs per setup")
    bench.add_argument(
        "--store",
        choices=STORES + EXTRA_STORES,
        action="append",
        help="store(s) to run (repeatable; default: sqlite and postgresql side by side; sqlite-normal is SQLite"
        " with synchronous=normal, to show what fsync costs)",
    )
    bench.add_argument(
        "--relays", type=int, action="append", help="relay processes (repeatable; default: 1 and 2, side by side)"
    )
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_bench)


def cmd_relay(args: argparse.Namespace) -> int:
    if args.example_config:
        print(EXAMPLE_CONFIG, end="")
        return 0
    config = _config(args)
    if args.check_config:
        print(json.dumps(config.shown(), indent=2))
        problems = config.problems()
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        return 2 if problems else 0

    RelayService(config).run_forever()
    return 0


def _queue(args: argparse.Namespace):

    config = _config(args)
    settings = config.store
    if args.db:
        settings = settings.model_copy(update={"type": "sqlite", "path": Path(args.db)})
    if settings.type == "sqlite" and not settings.path.exists():
        raise InputError(f"relay store {settings.path}", "does not exist (has the relay run with this config?)")
    return ReviewQueue(open_store(settings), config.review.suppress_for_s)


def cmd_review_list(args: argparse.Namespace) -> int:

    with _queue(args) as queue:
        alerts = queue.recent(args.limit) if args.all else queue.pending(args.limit)
    for alert in alerts:
        if args.json:
            print(
                json.dumps(
                    {
                        "alert_id": alert.id,
                        "status": alert.status,
                        "person_id": alert.person_id,
                        "first_seen_at": alert.first_seen_at,
                        "sightings": alert.sightings,
                        "devices": alert.devices,
                        "best_score": alert.best_score,
                        "stale": alert.stale,
                    }
                )
            )
        else:
            print(format_alert(alert))
    if not alerts and not args.json:
        print("no alerts waiting for review" if not args.all else "no alerts")
    return 0


def cmd_review_show(args: argparse.Namespace) -> int:

    with _queue(args) as queue:
        alert = queue.show(args.alert_id)
        print(format_detail(alert, queue.deliveries(alert.id)))
        if args.crop:
            saved = queue.save_crop(alert.id, args.crop)
            print(f"crop saved to {args.crop}" if saved else "this alert has no crop")
    return 0


def cmd_review_confirm(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        released = queue.confirm(args.alert_id, args.by, args.reason)
    print(f"alert {args.alert_id} confirmed; {released} deliver{'y' if released == 1 else 'ies'} released")
    return 0


def cmd_review_reject(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        queue.reject(args.alert_id, args.reason, args.by, suppress=not args.no_suppress)
    print(f"alert {args.alert_id} rejected; nothing will be sent")
    return 0


def cmd_review_audit(args: argparse.Namespace) -> int:

    with _queue(args) as queue:
        entries = queue.store.audit_log(actor=args.actor, action=args.action, limit=args.limit)
    for entry in entries:
        if args.json:
            print(json.dumps(dataclasses.asdict(entry)))
        else:
            print(format_audit(entry))
    if not entries and not args.json:
        print("no audit entries")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:

    figures = run_bench(
        events=args.events,
        rate=args.rate,
        seconds=args.seconds,
        runs=args.runs,
        stores=tuple(args.store or STORES),
        relay_counts=tuple(args.relays or (1, 2)),
    )
    print_figures(figures, as_json=args.json)
    return 0
