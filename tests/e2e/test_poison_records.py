"""Fuzzed records on the real broker: each ends as a clear status or a dead letter, the
worker never crashes, and valid events behind them in the same partition still sync."""

from __future__ import annotations

import dataclasses
import random
import struct
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.kafka import make_producer
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, build_invoice
from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent, Item, Payment
from schemas.status import SyncStatus
from service.config import Topics
from state.crypto import generate_key
from state.db import migrate

pytestmark = pytest.mark.e2e

CODEC = AvroCodec()


def _valid_bytes(event: ChangeEvent) -> bytes:
    return CODEC.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))


def _poison_corpus(account: str, rng: random.Random) -> list[tuple[str, bytes]]:
    """(topic entity, value) pairs that must each be rejected with a status."""
    factory = EventFactory(account)
    good_customer = factory.customer("c-poison", "Poison Test")
    corpus: list[tuple[str, bytes]] = []

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(min_size=0, max_size=300))
    def random_bytes(data: bytes) -> None:
        if data[:2] != b"\xc3\x01":
            corpus.append(("customer", data))

    random_bytes()
    valid = _valid_bytes(good_customer)
    for cut in (1, 5, 9, 12, len(valid) - 3):
        corpus.append(("customer", valid[:cut]))
    flipped = bytearray(valid)
    flipped[3] ^= 0xFF  # the fingerprint no longer matches any known schema
    corpus.append(("customer", bytes(flipped)))
    corpus.append(("customer", b"\x00" + struct.pack(">I", 99999) + valid[10:]))  # Confluent id
    corpus.append(("customer", valid + b"trailing"))
    huge = dataclasses.replace(good_customer.record, display_name="x" * 50_000)
    corpus.append(("customer", _valid_bytes(factory.event(huge))))
    corpus.append(("customer", _valid_bytes(factory.event(
        dataclasses.replace(good_customer.record, currency="XYZ")))))
    corpus.append(("item", _valid_bytes(factory.event(
        Item("i-neg", "Negative", unit_price=Decimal("-5"))))))
    corpus.append(("item", _valid_bytes(factory.event(
        Item("i-absurd", "Absurd", unit_price=Decimal("99999999999999"))))))
    corpus.append(("payment", _valid_bytes(factory.event(Payment(
        "p-zero", "inv-x", "c-x", Decimal("0"), "USD", good_customer.occurred_at.date())))))
    bad_invoice = build_invoice("inv-bad", "c-x", "B-1", "USD", "exclusive",
                                [("i-1", "1", "10", "150", "0")])  # 150% discount
    corpus.append(("invoice", _valid_bytes(factory.event(bad_invoice))))
    version_zero = dataclasses.replace(factory.event(good_customer.record), entity_version=0)
    corpus.append(("customer", _valid_bytes(version_zero)))
    rng.shuffle(corpus)
    return corpus


def test_poison_records_end_with_a_status_and_never_stall_the_partition(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'poison.db'}"
    migrate(db_url)
    key = generate_key()
    account = f"acct-{uuid.uuid4().hex[:6]}"
    connect_sandbox_account(db_url, key, sandbox_url, "quickbooks", account, f"r-{account}")
    rng = random.Random(3)
    corpus = _poison_corpus(account, rng)
    factory = EventFactory(account)
    good = [factory.customer(f"c-good-{i}", f"Good Customer {i}") for i in range(10)]

    producer = make_producer(kafka_bootstrap)
    # Poison first, valid events after it on the same key (same partition).
    for entity, value in corpus:
        producer.produce(topics.entity(entity), key=account.encode(), value=value)
    producer.produce(topics.entity("customer"), key=account.encode(), value=None)  # tombstone
    # Valid bytes under the wrong key: another tenant's event keyed to this account, and
    # this account's event keyed to another tenant (partition and order decided by a
    # tenant the event does not belong to). Both are refused, never applied for either.
    stranger = EventFactory("acct-stranger").customer("c-stranger", "Not Yours")
    producer.produce(topics.entity("customer"), key=account.encode(),
                     value=_valid_bytes(stranger))
    mine = factory.customer("c-misrouted", "Misrouted")
    producer.produce(topics.entity("customer"), key=b"acct-stranger", value=_valid_bytes(mine))
    # An id longer than the state tables hold is refused before it reaches the database.
    long_id = factory.customer("c" * 129, "Long Id")
    producer.produce(topics.entity("customer"), key=account.encode(),
                     value=_valid_bytes(long_id))
    for event in good:
        producer.produce(topics.entity("customer"), key=account.encode(),
                         value=_valid_bytes(event))
    producer.flush(30)
    expected_rejections = len(corpus) + 4

    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-poison",
           "LOG_LEVEL": "warning"}
    reader = StatusReader(kafka_bootstrap, topics.status)
    good_ids = {e.event_id for e in good}

    def done(statuses: list) -> bool:  # type: ignore[type-arg]
        synced = {s.source_event_id for s in statuses if s.status == SyncStatus.SYNCED}
        rejected = [s for s in statuses if s.status == SyncStatus.DEAD_LETTERED]
        return synced >= good_ids and len(rejected) >= expected_rejections

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        assert reader.wait_for(done, timeout=120), "poison stalled the partition"
        assert worker.running, "the worker crashed"
        assert worker.terminate() == 0
    reader.close()
    rejected = [s for s in reader.statuses if s.status == SyncStatus.DEAD_LETTERED]
    assert len(rejected) == expected_rejections
    assert all(s.error_code is not None and s.message for s in rejected)
    codes = {s.error_code.value for s in rejected if s.error_code}
    assert {"undecodable", "schema_invalid", "unknown_currency", "key_mismatch"} <= codes, codes
    mismatched = [s for s in rejected if s.error_code and s.error_code.value == "key_mismatch"]
    assert len(mismatched) == 2
    assert any("c" * 129 in (s.message or "") or "entity_id is 129" in (s.message or "")
               for s in rejected)
    assert not any(s.status == SyncStatus.SYNCED and s.entity_id in ("c-stranger",
                                                                     "c-misrouted")
                   for s in reader.statuses)

    dlq = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dlq-{uuid.uuid4()}",
                    "auto.offset.reset": "earliest"})
    dlq.subscribe([topics.dead_letter])
    letters = []
    for _ in range(100):
        message = dlq.poll(0.5)
        if message is not None and not message.error():
            letters.append(dict(message.headers() or []))
        if len(letters) >= expected_rejections:
            break
    dlq.close()
    assert len(letters) == expected_rejections
    for headers in letters:
        assert headers["__connect.errors.topic"].decode().startswith(topics.prefix)
        assert int(headers["__connect.errors.offset"]) >= 0
        assert headers["__connect.errors.exception.class.name"]
        assert headers["__connect.errors.exception.message"]
