"""`blueclerk-sync poll-changes`: bring changes made in the accounting systems back as events.

Runs the `InboundPoller` once, or every `--loop SECONDS` (default `POLL_INBOUND_S`; 0 means
once) until SIGTERM/SIGINT. It is its own process (its own deployment), not part of the
worker: provider polling has its own cadence and spends each connection's rate budget,
and a slow or throttled provider must not stall the consumer loop. Events are committed
to the outbox with the cursor; with KAFKA_BOOTSTRAP_SERVERS set this command also
publishes them, otherwise the worker's outbox publisher does.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

__all__ = ["cmd_poll_changes", "register"]


def register(sub: Any) -> None:
    """Add `poll-changes` to the `blueclerk-sync` parser."""
    p = sub.add_parser("poll-changes", help="fetch changes made in the accounting systems and "
                       "publish them as AccountingChangeEvents")
    p.add_argument("--account", help="poll this BlueClerk account only (default: every "
                   "active connection)")
    p.add_argument("--loop", type=float, metavar="SECONDS", default=None,
                   help="poll again every SECONDS until stopped (default: POLL_INBOUND_S; "
                   "0 polls once)")
    p.set_defaults(func=cmd_poll_changes)


def cmd_poll_changes(args: argparse.Namespace) -> int:
    from consumers.inbound import InboundPoller
    from providers.errors import ProviderError
    from service.bootstrap import build_services, settings_from_env

    settings = settings_from_env()
    services = build_services(settings)
    poller = InboundPoller.from_services(services)
    interval = args.loop if args.loop is not None else settings.poll_inbound_s
    producer: Any = None
    publisher: Any = None
    if settings.kafka_bootstrap:
        from producers.kafka import make_producer
        from producers.outbox import OutboxPublisher

        producer = make_producer(settings.kafka_bootstrap)
        publisher = OutboxPublisher(services.db, producer, settings.topics)

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    status = 0
    try:
        while True:
            try:
                events = (poller.poll_account(args.account) if args.account
                          else poller.poll_all())
            except ProviderError as exc:
                print(f"error: {exc.code.value}: {exc}", file=sys.stderr)
                status = 2
                events = 0
            published: int | None = None
            if publisher is not None:
                try:
                    published = publisher.publish_all()
                except Exception as exc:  # committed rows wait for the next publish
                    print(f"warning: outbox publish deferred: {exc}", file=sys.stderr)
            print(json.dumps({"account": args.account or "all", "events": events,
                              "published": published}), flush=True)
            if interval <= 0 or stop.wait(interval):
                break
            status = 0
    finally:
        if producer is not None:
            producer.flush(10)
        services.close()
    return status
