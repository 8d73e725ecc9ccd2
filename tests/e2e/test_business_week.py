"""A scripted week of a small field-service business, for three tenants, one per provider,
on the real broker: the books must match BlueClerk record for record and cent for cent.

Midweek BlueClerk edits customers (names, e-mails, addresses; some twice) and item prices.
Every record in the books is compared field by field with the latest snapshot BlueClerk
published (sandbox/books_check.py: the simulators' own dumps, read through the links the
service recorded).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from producers.kafka import make_producer
from sandbox.books_check import books_mismatches, read_links
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import Week, field_service_week, publish
from schemas.codec import AvroCodec
from schemas.records import EntityType
from schemas.status import FINAL_STATUSES, WAITING_STATUSES, SyncStatus
from service.bootstrap import build_services
from service.config import Settings, Topics
from state.crypto import generate_key
from state.db import migrate
from state.models import IncomeAccountMapping

pytestmark = pytest.mark.e2e

TENANTS = {"quickbooks": ("USD", "realm"), "xero": ("NZD", "tenant"),
           "freshbooks": ("USD", "ACCT")}
FAST_LIMITS = {"XERO_RATE_PER_MINUTE": "100000", "XERO_RATE_PER_DAY": "10000000",
               "XERO_CONCURRENT": "20", "FRESHBOOKS_RATE_PER_MINUTE": "100000"}


def _map_items(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], account: str,
               week: Week) -> None:
    """Step 3 of the wizard, done directly: every item to the first income account."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    services = build_services(Settings.from_env(), run_migrations=False)
    try:
        info = services.connections.get(account)
        assert info is not None
        income = services.providers.adapter(info).list_income_accounts()[0]
        with services.db.transaction() as s:
            for item_id in week.items:
                s.add(IncomeAccountMapping(account_id=account, item_id=item_id,
                                           provider_account_id=income.id,
                                           provider_account_name=income.name))
    finally:
        services.close()


def test_a_week_of_business_matches_the_books_for_every_provider(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db_url = f"sqlite:///{tmp_path / 'week.db'}"
    migrate(db_url)
    key = generate_key()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-week", "LOG_LEVEL": "warning",
           **FAST_LIMITS}
    run = uuid.uuid4().hex[:6].upper()
    weeks: dict[str, tuple[str, Week]] = {}
    for n, (provider, (currency, prefix)) in enumerate(TENANTS.items()):
        account, tenant = f"acct-{run}-{provider}", f"{prefix}{run}{n}"
        connect_sandbox_account(db_url, key, sandbox_url, provider, account, tenant)
        week = field_service_week(account, random.Random(n), currency=currency,
                                  customer_edits=12, price_edits=5)
        edited = Counter(f for e in week.edits for f in e.fields)
        assert min(edited[f] for f in ("name", "email", "address", "unit_price")) >= 3, edited
        _map_items(monkeypatch, env, account, week)
        weeks[provider] = (tenant, week)

    # Each entity type goes to its own topic, so the worker sees invoices and payments
    # before the customers and items they need: dependencies must park and re-drive.
    events = [e for _, w in weeks.values() for e in w.events]
    order = {EntityType.PAYMENT: 0, EntityType.INVOICE: 1, EntityType.ITEM: 2,
             EntityType.CUSTOMER: 3}
    events.sort(key=lambda e: order[e.entity_type])
    publish(make_producer(kafka_bootstrap), AvroCodec(), topics, events)
    distinct = {e.event_id for e in events}

    reader = StatusReader(kafka_bootstrap, topics.status)

    def settled(statuses: list) -> bool:  # type: ignore[type-arg]
        last: dict[str, SyncStatus] = {}
        for s in statuses:
            last[s.source_event_id] = s.status
        return set(last) >= distinct and all(last[e] in FINAL_STATUSES for e in distinct)

    started = time.monotonic()
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        assert reader.wait_for(settled, timeout=300), "not every event reached a final status"
        assert worker.terminate() == 0
    reader.poll(2)
    reader.close()

    by_event: dict[str, list[tuple[SyncStatus, str | None, str]]] = {}
    for s in reader.statuses:
        if s.status in FINAL_STATUSES | WAITING_STATUSES:
            code = s.error_code.value if s.error_code else None
            by_event.setdefault(s.source_event_id, []).append(
                (s.status, code, f"{s.provider} {s.entity_type} {s.entity_id}: {s.message}"))
    # Exactly one final outcome per event; a parked event has one waiting status before it.
    # `skipped` is right for an event whose record was already created from its snapshot
    # as another record's dependency (stale_version) or is unchanged.
    for event_id in distinct:
        outcomes = [s for s in by_event[event_id] if s[0] in FINAL_STATUSES]
        assert len(outcomes) == 1, (event_id, by_event[event_id])
        assert outcomes[0][0] == SyncStatus.SYNCED or outcomes[0][1] in (
            "stale_version", "unchanged"), (event_id, by_event[event_id])
    waited = sum(any(s[0] == SyncStatus.WAITING_DEPENDENCY for s in v)
                 for v in by_event.values())
    print(f"events {len(distinct)} ({sum(len(w.edits) for _, w in weeks.values())} edits), "
          f"parked then re-driven {waited}, settled in {time.monotonic() - started:.1f} s, "
          f"statuses {Counter(s.status.value for s in reader.statuses)}")
    assert waited > 0, "cross-topic order should have parked some events"

    for provider, (tenant, week) in weeks.items():
        account = f"acct-{run}-{provider}"
        # Every edit arrived: every record, field by field, as BlueClerk has it now.
        assert books_mismatches(sandbox_url, provider, tenant, week,
                                read_links(db_url, account)) == [], provider
