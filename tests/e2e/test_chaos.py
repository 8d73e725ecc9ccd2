"""Chaos on the real broker: 2,000+ events over 50 tenants on 3 partitions, workers in one
consumer group SIGKILLed and restarted, a third worker joining and leaving, while the
simulators inject 5xx, timeouts after the write was applied, and 429 bursts."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from producers.kafka import make_producer
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account, read_books
from sandbox.scenario import EventFactory, Week, field_service_week, publish
from schemas.codec import AvroCodec
from schemas.records import ChangeEvent, Customer
from schemas.status import SyncStatus
from service.bootstrap import build_services
from service.config import Settings, Topics
from state.crypto import generate_key
from state.models import IncomeAccountMapping

pytestmark = pytest.mark.e2e

PROVIDERS = ("quickbooks", "xero", "freshbooks")
FINAL = {SyncStatus.SYNCED, SyncStatus.SKIPPED, SyncStatus.FAILED, SyncStatus.DEAD_LETTERED}


def _tenant_week(account: str, rng: random.Random, currency: str) -> Week:
    week = field_service_week(account, rng, currency=currency, customers=8, items=4,
                              invoices=12, payments=8)
    factory = EventFactory(account)
    for customer in list(week.customers.values())[:4]:  # a few customer edits on top
        factory.event(customer)  # version 1 is already in the week
        edited = Customer(customer.id, customer.display_name, given_name=customer.given_name,
                          email=f"new.{customer.email}", phone="+64 9 555 0101",
                          currency=currency)
        week.events.append(factory.event(edited, version=2))
        week.customers[customer.id] = edited
    return week


def test_chaos_keeps_one_record_per_record_and_one_status_per_event(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path,
        fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    key = generate_key()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": fresh_postgres_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-chaos", "LOG_LEVEL": "warning",
           "HTTP_TIMEOUT_S": "1", "RETRY_BASE_DELAY_S": "0.2", "RETRY_MAX_DELAY_S": "5",
           "RETRY_MAX_ATTEMPTS": "12", "MAX_IN_FLIGHT": "16",
           "XERO_RATE_PER_MINUTE": "100000", "XERO_RATE_PER_DAY": "10000000",
           "XERO_CONCURRENT": "20", "FRESHBOOKS_RATE_PER_MINUTE": "100000"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = uuid.uuid4().hex[:5].upper()
    tenants: dict[str, tuple[str, str, Week]] = {}
    services = build_services(Settings.from_env(), run_migrations=False)
    try:
        for n in range(50):
            provider = PROVIDERS[n % 3]
            account, tenant = f"acct-{run}-{n:02d}", f"T{run}{n:02d}"
            connect_sandbox_account(fresh_postgres_url, key, sandbox_url, provider, account,
                                    tenant)
            week = _tenant_week(account, rng, "NZD" if provider == "xero" else "USD")
            info = services.connections.get(account)
            assert info is not None
            income = services.providers.adapter(info).list_income_accounts()[0]
            with services.db.transaction() as s:
                for item_id in week.items:
                    s.add(IncomeAccountMapping(account_id=account, item_id=item_id,
                                               provider_account_id=income.id))
            tenants[account] = (provider, tenant, week)
    finally:
        services.close()

    for provider, tenant, _ in tenants.values():
        httpx.put(f"{sandbox_url}/{provider}/_sandbox/faults/{tenant}",
                  json={"error_rate": 0.10, "timeout_rate": 0.05, "hang_s": 2.0},
                  timeout=10).raise_for_status()
    events: list[ChangeEvent] = [e for _, _, w in tenants.values() for e in w.events]
    assert len(events) >= 2000, len(events)
    distinct = {e.event_id for e in events}
    publish(make_producer(kafka_bootstrap), AvroCodec(), topics, events)

    reader = StatusReader(kafka_bootstrap, topics.status)

    def final_count(statuses: list) -> int:  # type: ignore[type-arg]
        return len({s.source_event_id for s in statuses if s.status in FINAL})

    stop_bursts = threading.Event()

    def throttle_bursts() -> None:
        while not stop_bursts.wait(1.5):
            provider, tenant, _ = tenants[rng.choice(sorted(tenants))]
            httpx.put(f"{sandbox_url}/{provider}/_sandbox/faults/{tenant}",
                      json={"error_rate": 0.10, "timeout_rate": 0.05, "hang_s": 2.0,
                            "throttle_burst": 3}, timeout=10)

    bursts = threading.Thread(target=throttle_bursts, daemon=True)
    bursts.start()
    log = tmp_path / "workers.log"
    workers = [WorkerProcess(env, log).start(), WorkerProcess(env, log).start()]
    kills = 0
    third_joined = third_left = False
    try:
        while kills < 5:
            reader.wait_for(lambda s, k=kills: final_count(s) >= (k + 1) * len(distinct) // 8,
                            timeout=90)
            time.sleep(rng.uniform(0.2, 2.0))
            victim = rng.randrange(2)
            workers[victim].kill()
            kills += 1
            if kills == 2:
                third = WorkerProcess(env, log).start()
                third_joined = True
            if kills == 4 and third_joined:
                assert third.terminate() == 0  # leaves cleanly: drains and commits
                third_left = True
            workers[victim] = WorkerProcess(env, log).start()
        finished = reader.wait_for(lambda s: final_count(s) >= len(distinct), timeout=300)
    finally:
        stop_bursts.set()
        for worker in workers:
            if worker.running:
                worker.terminate()
    reader.poll(3)
    reader.close()
    assert finished, f"{final_count(reader.statuses)} of {len(distinct)} events finished"
    assert kills >= 5 and third_joined and third_left

    finals: dict[str, list[SyncStatus]] = {}
    for s in reader.statuses:
        if s.status in FINAL:
            finals.setdefault(s.source_event_id, []).append(s.status)
    assert set(finals) == distinct
    doubled = {k: v for k, v in finals.items() if len(v) != 1}
    assert not doubled, f"events with more than one final status: {list(doubled.items())[:5]}"
    outcome = Counter(v[0].value for v in finals.values())
    retries = sum(1 for s in reader.statuses if s.status == SyncStatus.RETRYING)
    bad = [f"{s.provider} {s.entity_type} {s.entity_id}: {s.error_code} {s.message}"
           for s in reader.statuses if s.status in (SyncStatus.FAILED, SyncStatus.DEAD_LETTERED)]
    assert not bad, bad[:10]

    for provider in PROVIDERS:
        httpx.delete(f"{sandbox_url}/{provider}/_sandbox/faults", timeout=10)
    records = 0
    for account, (provider, tenant, week) in tenants.items():
        books = read_books(sandbox_url, provider, tenant)
        assert sorted(books.customers) == sorted(c.display_name for c in week.customers.values())
        assert set(books.invoices) == {i.number for i in week.invoices.values()}
        assert sorted(books.invoice_numbers) == sorted(i.number for i in week.invoices.values())
        assert len(books.items) == len(set(books.items)) == len(week.items), account
        for invoice in week.invoices.values():
            total, voided = books.invoices[invoice.number]
            assert voided == (invoice.status == "void"), (account, invoice.number)
            if not voided:
                assert total == invoice.total, (account, invoice.number)
        expected = Counter((week.invoices[p.invoice_id].number, p.amount)
                           for p in week.payments.values())
        assert Counter(books.payments) == expected, account
        records += len(books.customers) + len(books.invoices) + len(books.payments)
    print(f"\nchaos: {len(distinct)} events, 50 tenants, {kills} SIGKILLs, third worker joined "
          f"and left; final statuses {dict(outcome)}; retrying statuses {retries}; "
          f"{records} provider records checked, totals equal to the cent")
