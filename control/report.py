"""`blueclerk-sync report`: what analysts ask of the sync-status topic, from the command line.

Reads the topic from the beginning (or the last N minutes), keeps the latest status per
source event (statuses are at-least-once; `status_id` dedupes), and prints counts by
provider, entity type and status, the error codes with their advice, and durations.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import uuid
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from schemas.codec import AvroCodec
from schemas.error_codes import ADVICE, ErrorCode
from schemas.status import SyncStatusEvent

__all__ = ["read_statuses", "register", "summarise"]


def read_statuses(bootstrap: str, topic: str, since: dt.datetime | None = None,
                  idle_s: float = 3.0) -> list[SyncStatusEvent]:
    """Every status on the topic (from `since`), read until the end of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"report-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        if since is not None:
            stamp = int(since.timestamp() * 1000)
            partitions = consumer.offsets_for_times(
                [TopicPartition(topic, p.partition, stamp) for p in partitions], timeout=10)
        consumer.assign(partitions)
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1]
                for p in partitions}
        codec, seen, out = AvroCodec(), set(), []
        last_message = time.monotonic()
        while time.monotonic() - last_message < idle_s:
            message = consumer.poll(0.2)
            if message is None or message.error():
                positions = consumer.position(partitions)
                if all(p.offset >= ends[p.partition] for p in positions):
                    break
                continue
            last_message = time.monotonic()
            value = message.value()
            if not isinstance(value, bytes):
                continue
            status = SyncStatusEvent.from_avro(codec.decode(value).value)
            if status.status_id not in seen:
                seen.add(status.status_id)
                out.append(status)
        return out
    finally:
        consumer.close()


def summarise(statuses: list[SyncStatusEvent], account: str | None = None) -> dict[str, Any]:
    chosen = [s for s in statuses if account is None or s.account_id == account]
    latest: dict[str, SyncStatusEvent] = {}
    for s in chosen:
        latest[s.source_event_id] = s  # topic order per key; the last word per event
    outcome = Counter(f"{s.provider or '-'}/{s.entity_type}/{s.status.value}"
                      for s in latest.values())
    errors = Counter(s.error_code for s in latest.values() if s.error_code)
    durations = sorted(s.duration_ms for s in latest.values() if s.duration_ms is not None)

    def pct(q: float) -> int | None:
        return durations[min(len(durations) - 1, int(q * len(durations)))] if durations else None

    return {
        "events": len(latest),
        "statuses_read": len(chosen),
        "by_provider_entity_status": dict(sorted(outcome.items())),
        "errors": {code.value: {"count": n, "what_to_do": ADVICE[ErrorCode(code)]}
                   for code, n in errors.most_common()},
        "duration_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": durations[-1]
                        if durations else None},
    }


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="summarise the sync-status topic for analysts")
    p.add_argument("--account", help="only this BlueClerk account")
    p.add_argument("--since-minutes", type=float, help="only statuses from the last N minutes")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from service.config import Settings

    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS is not set")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=args.since_minutes)
             if args.since_minutes else None)
    statuses = read_statuses(settings.kafka_bootstrap, settings.topics.status, since)
    print(json.dumps(summarise(statuses, args.account), indent=2))
    return 0
