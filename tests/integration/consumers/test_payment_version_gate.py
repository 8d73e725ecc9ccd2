"""A payment names the invoice version it was taken against (`invoice_version`): it waits
until that version of the invoice is in the books, then is applied against it, instead of
being recorded against a stale invoice. The real engine, the QuickBooks simulator, SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from bench.chaos import map_items
from consumers.engine import EngineResult, SyncEngine
from sandbox.books_check import Expected, books_mismatches, read_links
from sandbox.harness import connect_sandbox_account
from sandbox.scenario import EventFactory, Week, build_invoice
from schemas.codec import AvroCodec
from schemas.error_codes import ErrorCode
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent, Customer, EntityType, Item, Payment
from schemas.status import SyncStatus
from service.bootstrap import Services, build_engine, build_services
from service.config import Settings
from state.crypto import generate_key

CODEC = AvroCodec()


class NoDeadLetters:
    def dead_letter(self, *args: Any) -> None:
        raise AssertionError(f"unexpected dead letter {args}")


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str,
             sqlite_url: str) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": sqlite_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    built = build_services(Settings.from_env())
    yield built
    built.close()


def _run(engine: SyncEngine, event: ChangeEvent, redrive: bool = False) -> EngineResult:
    payload = CODEC.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))
    return engine.process(event, payload, redrive=redrive)


def _only(result: EngineResult) -> tuple[SyncStatus, ErrorCode | None]:
    [status] = result.statuses
    return status.status, status.error_code


def test_a_payment_waits_for_the_invoice_version_it_was_taken_against(
        services: Services, sandbox_url: str) -> None:
    settings = services.settings
    account, realm = f"acct-{uuid.uuid4().hex[:6]}", f"gate{uuid.uuid4().hex[:8]}"
    connect_sandbox_account(settings.database_url, settings.token_key, sandbox_url,
                            "quickbooks", account, realm)
    factory = EventFactory(account)
    customer = Customer("cust-1", f"Gate Customer {account}", email="gate@example.com")
    item = Item("item-1", "Service call", unit_price=Decimal("100.00"), currency="USD")
    # Version 2 drops a line: 150 becomes 100, and the customer paid the 100 it owes. The
    # payment fits under the stale total too, so only the version tells it must wait.
    v1 = build_invoice("inv-1", customer.id, f"G-{account[-4:]}", "USD", "none",
                       [(item.id, "1", "100.00", "0", "0"), (item.id, "1", "50.00", "0", "0")])
    v2 = build_invoice("inv-1", customer.id, v1.number, "USD", "none",
                       [(item.id, "1", "100.00", "0", "0")])
    payment = Payment("pay-1", v1.id, customer.id, v2.total, "USD", v1.issue_date, "card",
                      invoice_version=2)
    week = Week([], {customer.id: customer}, {item.id: item}, {v1.id: v2},
                {payment.id: payment}, [])
    map_items(settings.database_url, settings.token_key, sandbox_url, account, week)
    engine = build_engine(services, NoDeadLetters())  # type: ignore[arg-type]

    for record in (customer, item, v1):
        assert _only(_run(engine, factory.event(record))) == (SyncStatus.SYNCED, None)
    assert factory.version_of(EntityType.INVOICE, v1.id) == 1
    paid = factory.event(payment)
    # Taken against version 2, which the books do not have yet: the payment waits rather
    # than being applied to the stale invoice.
    assert _only(_run(engine, paid)) == (SyncStatus.WAITING_DEPENDENCY,
                                         ErrorCode.MISSING_DEPENDENCY)
    updated = _run(engine, factory.event(v2))
    assert _only(updated) == (SyncStatus.SYNCED, None)
    assert paid.event_id in updated.redrive  # version 2 arrived: the payment may go
    assert _only(_run(engine, paid, redrive=True)) == (SyncStatus.SYNCED, None)
    assert books_mismatches(sandbox_url, "quickbooks", realm,
                            Expected(week.customers, week.items, week.invoices, week.payments),
                            read_links(settings.database_url, account)) == []
