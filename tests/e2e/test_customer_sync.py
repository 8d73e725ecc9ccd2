"""End to end on the real broker: customer events through a worker process into the books.

The replay test runs on QuickBooks; the kill -9 test on FreshBooks, which accepts
duplicate names and has no request id to dedupe by, so a create repeated after a crash
would show there as a second client."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from control.report import read_statuses, summarise
from producers.kafka import make_producer
from sandbox.books_check import LISTS, Expected, books_mismatches, read_links
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, publish
from schemas.codec import AvroCodec
from schemas.records import ChangeEvent, Customer
from schemas.status import FINAL_STATUSES, SyncStatus, SyncStatusEvent
from service.config import Topics
from state.crypto import generate_key

pytestmark = pytest.mark.e2e

CUSTOMERS_PER_TENANT = 30


def _story(account: str, rng: random.Random, total: int = 100
           ) -> tuple[list[ChangeEvent], dict[str, Customer]]:
    """`total` publications for one tenant: creates, updates (some newer versions published
    before older ones) and redeliveries of events already published. Returns publications
    in order and the newest snapshot per customer: what the books must end with."""
    factory = EventFactory(account)
    prefix = account.rsplit("-", 1)[-1]
    chains: dict[str, list[ChangeEvent]] = {}
    for i in range(CUSTOMERS_PER_TENANT):
        cid = f"{prefix}-c{i:03d}"
        chains[cid] = [factory.customer(cid, f"Customer {prefix} {i:03d} O'Neil",
                                        email=f"{cid}@example.com")]
    redeliveries = 12
    for n in range(total - CUSTOMERS_PER_TENANT - redeliveries):
        cid = rng.choice(sorted(chains))
        chains[cid].append(factory.customer(  # names change too
            cid, f"Customer {prefix} {cid[-3:]} O'Neil v{n}", email=f"{cid}.v{n}@example.com",
            phone=f"+1 555 {n:04d}"))
    latest = {cid: chain[-1].record for cid, chain in chains.items()}
    for chain in chains.values():
        if len(chain) >= 3 and rng.random() < 0.5:
            chain[-1], chain[-2] = chain[-2], chain[-1]  # the newest overtakes its parent
    published: list[ChangeEvent] = []
    remaining = {cid: list(chain) for cid, chain in chains.items()}
    while remaining:  # interleave customers, keeping each customer's own order
        cid = rng.choice(sorted(remaining))
        published.append(remaining[cid].pop(0))
        if not remaining[cid]:
            del remaining[cid]
    for _ in range(redeliveries):
        position = rng.randrange(1, len(published))
        published.insert(position, rng.choice(published[:position]))
    return published, latest  # type: ignore[return-value]


def _customers(sandbox_url: str, provider: str, tenant: str) -> list[dict[str, Any]]:
    list_name, id_field = LISTS[provider]["customer"]
    response = httpx.get(f"{sandbox_url}/{provider}/_sandbox/books/{tenant}", timeout=10)
    response.raise_for_status()
    return sorted(response.json().get(list_name, []), key=lambda c: str(c[id_field]))


def _assert_books_match(sandbox_url: str, provider: str, db_url: str, tenants: dict[str, str],
                        latest: dict[str, dict[str, Customer]]
                        ) -> dict[str, list[dict[str, Any]]]:
    """Every customer field by field as BlueClerk has it last; no duplicate, none lost."""
    books = {}
    for account, tenant in tenants.items():
        assert books_mismatches(sandbox_url, provider, tenant,
                                Expected(customers=latest[account]),
                                read_links(db_url, account)) == [], account
        books[tenant] = _customers(sandbox_url, provider, tenant)
    return books


def _final_by_event(statuses: list[SyncStatusEvent]) -> Counter[str]:
    return Counter(s.source_event_id for s in statuses if s.status in FINAL_STATUSES)


def _at_least(target: int, statuses: list[SyncStatusEvent]) -> bool:
    return len(_final_by_event(statuses)) >= target


def _no_failures(statuses: list[SyncStatusEvent]) -> list[str]:
    return [f"{s.entity_id}: {s.status} {s.error_code} {s.message}" for s in statuses
            if s.status in (SyncStatus.FAILED, SyncStatus.DEAD_LETTERED)]


def _group_caught_up(bootstrap: str, group: str, topics: list[str]) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]
        committed = consumer.committed(partitions, timeout=10)
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def _worker_env(kafka: str, db_url: str, key: str, sandbox: str, topics: Topics,
                group: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka, "DATABASE_URL": db_url,
            "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox, "TOPIC_PREFIX": topics.prefix,
            "CONSUMER_GROUP": group, "LOG_LEVEL": "warning", "RETRY_BASE_DELAY_S": "0.2"}


def _setup(tmp_path: Path, sandbox_url: str, tenants: int, events_per_tenant: int, seed: int,
           provider: str = "quickbooks"
           ) -> tuple[str, str, dict[str, str], list[ChangeEvent], dict[str, dict[str, Customer]]]:
    db_url = f"sqlite:///{tmp_path / 'worker.db'}"
    from state.db import migrate

    migrate(db_url)
    key = generate_key()
    rng = random.Random(seed)
    realms: dict[str, str] = {}
    published: list[ChangeEvent] = []
    latest: dict[str, dict[str, Customer]] = {}
    run = uuid.uuid4().hex[:6]
    for t in range(tenants):
        account = f"acct-{run}-t{t}"
        realms[account] = f"realm{run}{t}"
        connect_sandbox_account(db_url, key, sandbox_url, provider, account, realms[account])
        events, newest = _story(account, rng, events_per_tenant)
        published.extend(events)
        latest[account] = newest
    return db_url, key, realms, published, latest


def test_three_tenants_end_with_one_customer_each_and_replay_changes_nothing(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path) -> None:
    db_url, key, realms, published, latest = _setup(tmp_path, sandbox_url, 3, 100, seed=2)
    assert len(published) == 300
    distinct_events = {e.event_id for e in published}
    publish(make_producer(kafka_bootstrap), AvroCodec(), topics, published)

    reader = StatusReader(kafka_bootstrap, topics.status)
    env = _worker_env(kafka_bootstrap, db_url, key, sandbox_url, topics, "sync-e2e")
    with WorkerProcess(env, tmp_path / "worker1.log") as worker:
        done = reader.wait_for(
            lambda s: set(_final_by_event(s)) >= distinct_events, timeout=180)
        assert done, f"only {len(_final_by_event(reader.statuses))} of {len(distinct_events)}"
        assert worker.terminate() == 0
    reader.poll(2)
    terminal = _final_by_event(reader.statuses)
    assert set(terminal) == distinct_events
    assert all(n == 1 for n in terminal.values()), "an event ended with two statuses"
    assert _no_failures(reader.statuses) == []
    counts = Counter(s.status for s in reader.statuses if s.status in FINAL_STATUSES)
    assert counts[SyncStatus.SYNCED] >= 3 * CUSTOMERS_PER_TENANT
    assert counts[SyncStatus.SKIPPED] > 0  # the out-of-order versions
    books_before = _assert_books_match(sandbox_url, "quickbooks", db_url, realms, latest)
    report = summarise(read_statuses(kafka_bootstrap, topics.status))  # what analysts run
    assert report["events"] == len(distinct_events)
    assert sum(report["by_provider_entity_status"].values()) == len(distinct_events)
    assert report["by_provider_entity_status"]["quickbooks/customer/synced"] == \
        counts[SyncStatus.SYNCED]

    # A new consumer group re-reads every topic from the beginning: nothing may change.
    env = _worker_env(kafka_bootstrap, db_url, key, sandbox_url, topics, "sync-e2e-replay")
    seen_before = len(reader.statuses)
    with WorkerProcess(env, tmp_path / "worker2.log") as worker:
        deadline = time.monotonic() + 120
        while not _group_caught_up(kafka_bootstrap, "sync-e2e-replay", topics.changes):
            assert time.monotonic() < deadline, "replaying worker did not catch up"
            time.sleep(1)
        assert worker.terminate() == 0
    reader.poll(3)
    reader.close()
    assert len(reader.statuses) == seen_before, "a replay produced new statuses"
    assert _assert_books_match(sandbox_url, "quickbooks", db_url, realms, latest) == books_before


def test_sigkill_mid_stream_leaves_exactly_one_customer_per_record(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path) -> None:
    db_url, key, tenants, published, latest = _setup(tmp_path, sandbox_url, 2, 120, seed=5,
                                                     provider="freshbooks")
    for tenant in tenants.values():  # slow enough to be killed in the middle of things
        httpx.put(f"{sandbox_url}/freshbooks/_sandbox/faults/{tenant}",
                  json={"latency_s": 0.03}).raise_for_status()
    distinct_events = {e.event_id for e in published}
    publish(make_producer(kafka_bootstrap), AvroCodec(), topics, published)
    reader = StatusReader(kafka_bootstrap, topics.status)
    env = {**_worker_env(kafka_bootstrap, db_url, key, sandbox_url, topics, "sync-crash"),
           "FRESHBOOKS_RATE_PER_MINUTE": "100000"}
    for _ in range(2):
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        target = len(_final_by_event(reader.statuses)) + len(distinct_events) // 4
        reader.wait_for(partial(_at_least, target), timeout=120)
        worker.kill()
    # Killed while events were still unfinished, or the kills prove nothing.
    assert len(_final_by_event(reader.statuses)) < len(distinct_events)
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        done = reader.wait_for(
            lambda s: set(_final_by_event(s)) >= distinct_events, timeout=180)
        assert done
        assert worker.terminate() == 0
    reader.poll(2)
    reader.close()
    final = _final_by_event(reader.statuses)
    assert set(final) == distinct_events
    assert all(n == 1 for n in final.values()), "an event ended with two final statuses"
    assert _no_failures(reader.statuses) == []
    _assert_books_match(sandbox_url, "freshbooks", db_url, tenants, latest)
    for tenant in tenants.values():
        httpx.put(f"{sandbox_url}/freshbooks/_sandbox/faults/{tenant}",
                  json={}).raise_for_status()
