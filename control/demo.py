"""`make demo`: Kafka, the simulators and the worker, end to end, on local defaults.

Starts a real Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the provider
sandbox and a worker process; connects a sample account to the QuickBooks simulator;
publishes customer events (creates, updates, a duplicate delivery, a malformed record);
prints each sync status as it arrives; then shuts everything down and exits 0 when every
event ended with the status it should.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from confluent_kafka import Consumer

from control.report import read_statuses, summarise
from producers.kafka import ensure_topics, make_producer
from providers.oauth import TokenSet
from sandbox.app import create_sandbox
from sandbox.kafka_broker import KafkaBroker
from sandbox.scenario import EventFactory, publish
from sandbox.serve import serve_in_thread
from schemas.codec import AvroCodec
from schemas.records import Address
from schemas.status import SyncStatusEvent
from service.config import Topics
from state.connections import ConnectionStore
from state.crypto import TokenCipher, generate_key
from state.db import Database, migrate

__all__ = ["run_demo"]

ACCOUNT = "acct-demo-plumbing"
REALM = "9130357766201234"


def _print(line: str) -> None:
    print(line, flush=True)


def run_demo(events: int = 24) -> int:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bc-demo-") as tmp:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            _print("starting Apache Kafka (KRaft, loopback)…")
            bootstrap = stack.enter_context(KafkaBroker()).bootstrap_servers
        _print(f"kafka: {bootstrap}")
        sandbox = stack.enter_context(serve_in_thread(create_sandbox()))
        _print(f"provider sandbox: {sandbox}")
        db_url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        key = generate_key()
        migrate(db_url)
        db = Database(db_url)
        topics = Topics(f"demo{int(time.time())}.")
        ensure_topics(bootstrap, [*topics.changes, topics.dead_letter, topics.inbound])
        ensure_topics(bootstrap, [topics.status], compacted=(topics.status,))

        grant = httpx.post(f"{sandbox}/quickbooks/_sandbox/grants", json={"tenant": REALM})
        grant.raise_for_status()
        ConnectionStore(db, TokenCipher(key)).connect(
            ACCOUNT, "quickbooks", REALM, TokenSet.from_response(grant.json()),
            connected_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        _print(f"connected {ACCOUNT} to QuickBooks realm {REALM}")

        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": db_url,
               "SANDBOX_URL": sandbox, "TOKEN_ENCRYPTION_KEY": key,
               "TOPIC_PREFIX": topics.prefix, "LOG_LEVEL": "warning",
               "CONSUMER_GROUP": "demo-sync"}
        worker = subprocess.Popen([sys.executable, "-m", "control.cli", "worker"], env=env)
        try:
            expected = _publish(bootstrap, topics, events)
            ok = _watch(bootstrap, topics, expected)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
        report = summarise(read_statuses(bootstrap, topics.status))
        _print("analyst report (blueclerk-sync report): "
               f"{json.dumps(report['by_provider_entity_status'])}")
        books = httpx.get(f"{sandbox}/quickbooks/_sandbox/books/{REALM}").json()
        customers = books.get("Customer", [])
        _print(f"worker exited with {code}; QuickBooks now holds {len(customers)} customers")
        db.dispose()
        return 0 if ok and code == 0 and len(customers) == events else 1


def _publish(bootstrap: str, topics: Topics, count: int) -> dict[str, str]:
    """Publish the story; return the expected final status per source event."""
    factory = EventFactory(ACCOUNT)
    codec = AvroCodec()
    producer = make_producer(bootstrap)
    names = ["Rivera Family", "O'Brien & Sons \"Best\" Plumbing", "山田 太郎", "Ng Dental LLC",
             "Hillside Builders", "Kowalski Residence"]
    expected: dict[str, str] = {}
    creates = []
    for i in range(count):
        name = f"{names[i % len(names)]} #{i + 1}"
        event = factory.customer(f"cust-{i + 1}", name, email=f"c{i + 1}@example.com",
                                 billing_address=Address("12 Elm St", city="Springfield"))
        creates.append(event)
        expected[event.event_id] = "synced"
    updates = []
    for event in creates[: count // 3]:
        update = factory.customer(event.entity_id, event.record.display_name,  # type: ignore[union-attr]
                                  email=f"billing+{event.entity_id}@example.com",
                                  phone="+1 555 0100")
        updates.append(update)
        expected[update.event_id] = "synced"
    publish(producer, codec, topics, creates + updates)
    publish(producer, codec, topics, [creates[0]])  # the same event delivered twice
    producer.produce(topics.entity("customer"), key=ACCOUNT.encode(), value=b"not avro at all")
    producer.flush(10)
    expected["malformed"] = "dead_lettered"
    _print(f"published {len(creates)} creates, {len(updates)} updates, 1 duplicate delivery, "
           "1 malformed record")
    return expected


def _watch(bootstrap: str, topics: Topics, expected: dict[str, str],
           timeout: float = 120.0) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-reader-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topics.status])
    codec = AvroCodec()
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(seen) < len(expected):
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = message.value()
            assert isinstance(value, bytes)
            status = SyncStatusEvent.from_avro(codec.decode(value).value)
            if status.status.value == "retrying":
                continue
            source = status.source_event_id if status.source_event_id in expected else "malformed"
            seen[source] = status.status.value
            detail = f" ({status.error_code.value})" if status.error_code else ""
            _print(f"  {status.status.value:<14} {status.entity_type:<9} {status.entity_id:<10} "
                   f"-> {status.provider_record_id or '-':<5}{detail}")
    finally:
        consumer.close()
    wrong = {k: (v, seen.get(k)) for k, v in expected.items() if seen.get(k) != v}
    _print(f"{len(seen)}/{len(expected)} events ended with the expected status"
           + (f"; unexpected: {wrong}" if wrong else ""))
    return not wrong
