"""A scripted week of a small field-service business, for three tenants, one per provider,
on the real broker: the books must match BlueClerk record for record and cent for cent.

Midweek BlueClerk edits customers (names, e-mails, addresses; some twice) and item prices.
Each customer and item in the books is compared field by field with the latest snapshot
BlueClerk published, read from the simulators' own dumps (`/_sandbox/books/...`) through
the links the service recorded; the field names below are the providers' (QuickBooks
Customer/Item, Xero Contacts/Items, FreshBooks clients/items), not the adapters' code.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.kafka import make_producer
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account, read_books
from sandbox.scenario import Week, field_service_week, publish
from schemas.codec import AvroCodec
from schemas.records import Customer, EntityType, Item
from schemas.status import TERMINAL_STATUSES, SyncStatus
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


Json = dict[str, Any]


def _get(record: Json, *path: str) -> str:
    """A text field of a books record; absent or null reads as "" (a cleared field)."""
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _xero_address(contact: Json) -> Json:
    return next((a for a in contact.get("Addresses") or []
                 if a.get("AddressType") == "POBOX"), {})


# BlueClerk field -> where each provider's books hold it.
CUSTOMER_FIELDS: dict[str, dict[str, Callable[[Json], str]]] = {
    "quickbooks": {
        "display_name": lambda c: _get(c, "DisplayName"),
        "given_name": lambda c: _get(c, "GivenName"),
        "family_name": lambda c: _get(c, "FamilyName"),
        "email": lambda c: _get(c, "PrimaryEmailAddr", "Address"),
        "line1": lambda c: _get(c, "BillAddr", "Line1"),
        "line2": lambda c: _get(c, "BillAddr", "Line2"),
        "city": lambda c: _get(c, "BillAddr", "City"),
        "region": lambda c: _get(c, "BillAddr", "CountrySubDivisionCode"),
        "postal_code": lambda c: _get(c, "BillAddr", "PostalCode"),
        "country": lambda c: _get(c, "BillAddr", "Country"),
    },
    "xero": {
        "display_name": lambda c: _get(c, "Name"),
        "given_name": lambda c: _get(c, "FirstName"),
        "family_name": lambda c: _get(c, "LastName"),
        "email": lambda c: _get(c, "EmailAddress"),
        "line1": lambda c: _get(_xero_address(c), "AddressLine1"),
        "line2": lambda c: _get(_xero_address(c), "AddressLine2"),
        "city": lambda c: _get(_xero_address(c), "City"),
        "region": lambda c: _get(_xero_address(c), "Region"),
        "postal_code": lambda c: _get(_xero_address(c), "PostalCode"),
        "country": lambda c: _get(_xero_address(c), "Country"),
    },
    "freshbooks": {  # the week's customers have no company name: the name is the client's
        "display_name": lambda c: _get(c, "organization"),
        "given_name": lambda c: _get(c, "fname"),
        "family_name": lambda c: _get(c, "lname"),
        "email": lambda c: _get(c, "email"),
        "line1": lambda c: _get(c, "p_street"),
        "line2": lambda c: _get(c, "p_street2"),
        "city": lambda c: _get(c, "p_city"),
        "region": lambda c: _get(c, "p_province"),
        "postal_code": lambda c: _get(c, "p_code"),
        "country": lambda c: _get(c, "p_country"),
    },
}
ITEM_FIELDS: dict[str, dict[str, Callable[[Json], str]]] = {
    "quickbooks": {"name": lambda i: _get(i, "Name"), "unit_price": lambda i: _get(i, "UnitPrice")},
    "xero": {"name": lambda i: _get(i, "Name"),
             "unit_price": lambda i: _get(i, "SalesDetails", "UnitPrice")},
    "freshbooks": {"name": lambda i: _get(i, "name"),
                   "unit_price": lambda i: _get(i, "unit_cost", "amount")},
}
# Where the books list customers and items, and the id the service's links point at.
LISTS = {"quickbooks": (("Customer", "Id"), ("Item", "Id")),
         "xero": (("Contacts", "ContactID"), ("Items", "ItemID")),
         "freshbooks": (("clients", "id"), ("items", "id"))}
# Places of a catalogue price the books keep: FreshBooks stores item unit_cost in cents
# (sandbox/freshbooks/books.py), Xero UnitPrice at the organisation's 4 unit decimals;
# QuickBooks keeps what it is sent.
PRICE_PLACES = {"quickbooks": None, "xero": 4, "freshbooks": 2}


def _expected_customer(c: Customer) -> dict[str, str]:
    a = c.billing_address
    return {"display_name": c.display_name, "given_name": c.given_name or "",
            "family_name": c.family_name or "", "email": c.email or "",
            "line1": (a and a.line1) or "", "line2": (a and a.line2) or "",
            "city": (a and a.city) or "", "region": (a and a.region) or "",
            "postal_code": (a and a.postal_code) or "", "country": (a and a.country) or ""}


def _expected_item(item: Item, provider: str) -> dict[str, str]:
    places = PRICE_PLACES[provider]
    price = item.unit_price if places is None else item.unit_price.quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return {"name": item.name, "unit_price": str(price)}


def _same(field: str, expected: str, held: str) -> bool:
    if field == "unit_price":
        return Decimal(expected) == Decimal(held or "NaN")
    return expected == held


def _links(db_path: Path, account: str, entity_type: str) -> dict[str, str]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT entity_id, provider_id FROM entity_links "
                            "WHERE account_id = ? AND entity_type = ?", (account, entity_type))
        return {entity_id: str(provider_id) for entity_id, provider_id in rows}


def _field_mismatches(provider: str, raw: Json, links: dict[str, dict[str, str]],
                      week: Week) -> list[str]:
    """Every customer and item field whose books value is not BlueClerk's latest snapshot."""
    problems: list[str] = []
    checks: list[tuple[str, dict[str, Any], dict[str, Callable[[Json], str]], tuple[str, str],
                       Callable[[Any], dict[str, str]]]] = [
        ("customer", week.customers, CUSTOMER_FIELDS[provider], LISTS[provider][0],
         _expected_customer),
        ("item", week.items, ITEM_FIELDS[provider], LISTS[provider][1],
         lambda i: _expected_item(i, provider)),
    ]
    for entity, latest, fields, (list_name, id_field), expect in checks:
        held = {str(r[id_field]): r for r in raw.get(list_name, [])}
        for record_id, record in sorted(latest.items()):
            provider_id = links[entity].get(record_id)
            if provider_id is None or provider_id not in held:
                problems.append(f"{provider} {entity} {record_id}: not in the books")
                continue
            for name, value in expect(record).items():
                got = fields[name](held[provider_id])
                if not _same(name, value, got):
                    problems.append(f"{provider} {entity} {record_id}.{name}: BlueClerk "
                                    f"{value!r}, books {got!r}")
    return problems


def _expected_payments(week: Week) -> Counter[tuple[str, Decimal]]:
    return Counter((week.invoices[p.invoice_id].number, p.amount)
                   for p in week.payments.values())


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
    final = {SyncStatus.SYNCED, SyncStatus.SKIPPED, SyncStatus.FAILED, SyncStatus.DEAD_LETTERED}

    def settled(statuses: list) -> bool:  # type: ignore[type-arg]
        last: dict[str, SyncStatus] = {}
        for s in statuses:
            last[s.source_event_id] = s.status
        return set(last) >= distinct and all(last[e] in final for e in distinct)

    started = time.monotonic()
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        assert reader.wait_for(settled, timeout=300), "not every event reached a final status"
        assert worker.terminate() == 0
    reader.poll(2)
    reader.close()

    by_event: dict[str, list[tuple[SyncStatus, str | None, str]]] = {}
    for s in reader.statuses:
        if s.status in TERMINAL_STATUSES:
            code = s.error_code.value if s.error_code else None
            by_event.setdefault(s.source_event_id, []).append(
                (s.status, code, f"{s.provider} {s.entity_type} {s.entity_id}: {s.message}"))
    # Exactly one final outcome per event; a parked event has one waiting status before it.
    # `skipped` is right for an event whose record was already created from its snapshot
    # as another record's dependency (stale_version) or is unchanged.
    for event_id in distinct:
        outcomes = [s for s in by_event[event_id] if s[0] in final]
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
        books = read_books(sandbox_url, provider, tenant)
        assert sorted(books.customers) == sorted(c.display_name for c in week.customers.values())
        assert set(books.invoices) == {i.number for i in week.invoices.values()}
        assert sorted(books.invoice_numbers) == sorted(i.number for i in week.invoices.values())
        assert len(books.items) == len(set(books.items)) == len(week.items)
        for invoice in week.invoices.values():
            total, voided = books.invoices[invoice.number]
            assert voided == (invoice.status == "void"), (provider, invoice.number)
            if not voided:
                assert total == invoice.total, (provider, invoice.number, total, invoice.total)
        assert Counter(books.payments) == _expected_payments(week), provider
        # Every edit arrived: customers and items, field by field, as BlueClerk has them now.
        raw = httpx.get(f"{sandbox_url}/{provider}/_sandbox/books/{tenant}", timeout=30).json()
        account = f"acct-{run}-{provider}"
        links = {e: _links(tmp_path / "week.db", account, e) for e in ("customer", "item")}
        assert _field_mismatches(provider, raw, links, week) == [], provider
