"""Semantic checks on decoded events: what Avro's types cannot express."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from sandbox.scenario import build_invoice
from schemas.error_codes import ErrorCode
from schemas.events import InvalidEvent, event_from_avro, event_to_avro, validate_event
from schemas.records import (
    ChangeEvent,
    Customer,
    EntityType,
    EventType,
    Invoice,
    InvoiceLine,
    Item,
    Payment,
    Record,
)

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def event(record: Record, version: int = 1, **kw: Any) -> ChangeEvent:
    entity = {Customer: EntityType.CUSTOMER, Item: EntityType.ITEM,
              Invoice: EntityType.INVOICE, Payment: EntityType.PAYMENT}[type(record)]
    fields: dict[str, Any] = {
        "event_id": "e-1", "event_type": EventType.CREATED, "occurred_at": T0,
        "account_id": "a-1", "entity_type": entity, "entity_id": record.id,
        "entity_version": version, "record_created_at": T0, "record": record}
    fields.update(kw)
    return ChangeEvent(**fields)


def invoice(currency: str = "USD", mode: str = "exclusive") -> Invoice:
    return build_invoice("inv-1", "c-1", "1001", currency, mode,  # type: ignore[arg-type]
                         [("i-1", "2", "10.005", "10", "8.25"), ("i-2", "1", "3", "0", "0")])


def code_of(ev: ChangeEvent) -> ErrorCode:
    with pytest.raises(InvalidEvent) as info:
        validate_event(ev)
    return info.value.code


@pytest.mark.parametrize("record", [
    Customer("c-1", "Ada"), Item("i-1", "Widget", unit_price=Decimal("9.99")),
    invoice(), invoice("JPY", "inclusive"), invoice("KWD", "none"),
    Payment("p-1", "inv-1", "c-1", Decimal("12.50"), "USD", dt.date(2026, 1, 5)),
])
def test_valid_events_pass_and_round_trip(record: Record) -> None:
    ev = event(record)
    validate_event(ev)
    from schemas.events import SCHEMA_BY_ENTITY

    assert event_from_avro(SCHEMA_BY_ENTITY[ev.entity_type], event_to_avro(ev)) == ev


def test_empty_ids_and_versions() -> None:
    assert code_of(event(Customer("c-1", "A"), account_id="")) is ErrorCode.SCHEMA_INVALID
    assert code_of(event(Customer("c-1", "A"), event_id="")) is ErrorCode.SCHEMA_INVALID
    assert code_of(event(Customer("c-1", "A"), version=0)) is ErrorCode.SCHEMA_INVALID
    assert code_of(event(Customer("c-1", "A"), version=-3)) is ErrorCode.SCHEMA_INVALID
    assert code_of(event(Customer("c-1", "A"), entity_id="c-2")) is ErrorCode.SCHEMA_INVALID


@pytest.mark.parametrize("record", [
    Customer("c-1", "A", currency="XXX"), Item("i-1", "W", currency="usd"),
    replace(invoice(), currency="BTC"),
    Payment("p-1", "inv-1", "c-1", Decimal("1"), "ABC", dt.date(2026, 1, 5)),
])
def test_unknown_currency(record: Record) -> None:
    assert code_of(event(record)) is ErrorCode.UNKNOWN_CURRENCY


def test_huge_text() -> None:
    assert code_of(event(Customer("c-1", "x" * 4001))) is ErrorCode.SCHEMA_INVALID
    validate_event(event(Customer("c-1", "x" * 4000)))


@pytest.mark.parametrize("price", ["-0.01", "1e12", "1e15", "NaN", "Infinity"])
def test_item_price_out_of_range(price: str) -> None:
    assert code_of(event(Item("i-1", "W", unit_price=Decimal(price)))) is ErrorCode.SCHEMA_INVALID


@pytest.mark.parametrize(("amount", "currency"), [
    ("0", "USD"), ("-5", "USD"), ("1.5", "JPY"), ("1.0001", "KWD"), ("10.001", "USD"),
    ("1e13", "USD"),
])
def test_payment_amounts(amount: str, currency: str) -> None:
    p = Payment("p-1", "inv-1", "c-1", Decimal(amount), currency, dt.date(2026, 1, 5))
    assert code_of(event(p)) is ErrorCode.SCHEMA_INVALID


def test_payment_amount_at_the_minor_unit_is_fine() -> None:
    for amount, currency in (("1500", "JPY"), ("1.005", "KWD"), ("0.01", "USD")):
        validate_event(event(Payment("p", "i", "c", Decimal(amount), currency,
                                     dt.date(2026, 1, 5))))


def _line(**kw: Any) -> InvoiceLine:
    base = InvoiceLine("i-1", None, Decimal("1"), Decimal("10"), Decimal("0"), Decimal("0"),
                       Decimal("10.00"))
    return replace(base, **kw)


@pytest.mark.parametrize("line", [
    _line(quantity=Decimal("-1")), _line(unit_price=Decimal("-10")),
    _line(discount_percent=Decimal("100.01")), _line(discount_percent=Decimal("-1")),
    _line(tax_rate_percent=Decimal("101")), _line(amount=Decimal("10.005")),
    _line(quantity=Decimal("1e12")),
])
def test_invoice_line_rules(line: InvoiceLine) -> None:
    inv = replace(invoice(), lines=(line,))
    assert code_of(event(inv)) is ErrorCode.SCHEMA_INVALID


def test_invoice_totals_in_minor_units() -> None:
    assert code_of(event(replace(invoice(), total=Decimal("10.001")))) is ErrorCode.SCHEMA_INVALID
    jpy = invoice("JPY")
    assert code_of(event(replace(jpy, tax_total=Decimal("0.5")))) is ErrorCode.SCHEMA_INVALID
    assert code_of(event(replace(invoice(), subtotal=Decimal("-1")))) is ErrorCode.SCHEMA_INVALID


def test_invoice_needs_lines_unless_void() -> None:
    empty = replace(invoice(), lines=())
    assert code_of(event(empty)) is ErrorCode.SCHEMA_INVALID
    validate_event(event(replace(empty, status="void"), event_type=EventType.VOIDED))


def test_event_from_avro_rejects_non_change_schemas() -> None:
    with pytest.raises(InvalidEvent) as info:
        event_from_avro("SyncStatusEvent", {})
    assert info.value.code is ErrorCode.SCHEMA_INVALID


def test_naive_timestamps_become_utc() -> None:
    ev = event(Customer("c-1", "A"))
    value = event_to_avro(ev)
    value["occurred_at"] = dt.datetime(2026, 1, 5, 12, 0)
    assert event_from_avro("CustomerChangeEvent", value).occurred_at == T0
