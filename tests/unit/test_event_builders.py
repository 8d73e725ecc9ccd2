"""The project's own event helpers (sandbox/scenario.py, schemas/events.py): money at the
contract's scale or a refusal naming the field, and record_created_at stamped per record."""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from sandbox.scenario import EventFactory, _edit_customers, build_invoice, field_service_week
from schemas.codec import AvroCodec
from schemas.events import (
    DECIMAL_POLICY,
    SCHEMA_BY_ENTITY,
    DecimalFieldError,
    decimal_fields,
    event_to_avro,
)
from schemas.records import ChangeEvent, Customer, EntityType, Invoice, Item, Payment, Record

CODEC = AvroCodec()
LINES = [("i-1", "1", "10", "0", "0"), ("i-2", "2", "5", "0", "8.25"),
         ("i-3", "3", "4.5", "10", "10")]


def _invoice_record() -> Invoice:
    return build_invoice("inv-1", "c-1", "1001", "USD", "exclusive", LINES)


def _item(price: str) -> Item:
    return Item("item-1", "Valve kit", unit_price=Decimal(price))


def _payment(amount: str) -> Payment:
    return Payment("p-1", "inv-1", "c-1", Decimal(amount), "USD", dt.date(2026, 11, 6))


def _with(path: str, value: Decimal) -> Record:
    """A valid record of the path's entity with the field at ``path`` set to ``value``."""
    entity, _, rest = path.partition(".")
    change: dict[str, Any] = {rest.removeprefix("lines[]."): value}
    if entity == "item":
        return replace(_item("10"), **change)
    if entity == "payment":
        return replace(_payment("10"), **change)
    invoice = _invoice_record()
    if rest.startswith("lines[]."):
        lines = list(invoice.lines)
        lines[2] = replace(lines[2], **change)
        return replace(invoice, lines=tuple(lines))
    return replace(invoice, **change)


def _at(value: Any, path: str) -> Any:
    """The value at ``invoice.lines[2].amount`` in an Avro dict."""
    for part in path.split("."):
        name, _, index = part.partition("[")
        value = value[name]
        if index:
            value = value[int(index.rstrip("]"))]
    return value


def _encode(event: ChangeEvent) -> bytes:
    return CODEC.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))


# ---------------------------------------------------------------- money at the schema's scale


def test_the_example_from_the_issue_names_the_line_and_field() -> None:
    lines = [*LINES[:2], ("i-3", "1", "1.23456", "0", "0")]
    invoice = build_invoice("inv-1", "c-1", "1001", "USD", "none", lines)
    with pytest.raises(DecimalFieldError) as refused:
        EventFactory("acct-1").event(invoice)
    assert str(refused.value) == ("invoice.lines[2].unit_price 1.23456 has more than 4 "
                                  "decimal places")
    assert isinstance(refused.value, ValueError)
    assert refused.value.path == "invoice.lines[2].unit_price"


ALL_DECIMALS = sorted({path for entity in (EntityType.ITEM, EntityType.INVOICE,
                                           EntityType.PAYMENT, EntityType.CUSTOMER)
                       for path in decimal_fields(SCHEMA_BY_ENTITY[entity])})


def test_every_decimal_in_the_contracts_has_a_stated_policy() -> None:
    """A decimal field added to an .avsc must come with a decision here (round or refuse)."""
    assert sorted(DECIMAL_POLICY) == ALL_DECIMALS
    assert all(reason.startswith("refuse: ") for reason in DECIMAL_POLICY.values())


@pytest.mark.parametrize("path", ALL_DECIMALS)
def test_every_money_field_with_five_places_is_refused_by_name(path: str) -> None:
    record = _with(path, Decimal("12.34567"))
    shown = path.replace("[]", "[2]")
    with pytest.raises(DecimalFieldError, match=rf"^{re.escape(shown)} 12.34567 "
                       r"has more than 4 decimal places$"):
        EventFactory("acct-1").event(record)
    # The same field at four places is carried exactly (no rounding anywhere).
    ok = EventFactory("acct-1").event(_with(path, Decimal("12.3456")))
    assert _at(CODEC.decode(_encode(ok)).value, shown) == Decimal("12.3456")


def test_a_directly_built_event_is_checked_when_converted_too() -> None:
    """Events made without the factory (tests build them by hand) meet the same check in
    event_to_avro, which publish() uses, instead of fastavro's anonymous ValueError."""
    good = EventFactory("acct-1").event(_payment("10"))
    bad = replace(good, record=_payment("10.00001"))
    with pytest.raises(DecimalFieldError, match=r"^payment.amount 10.00001 has more than 4"):
        event_to_avro(bad)


@pytest.mark.parametrize("price", ["12", "1.10000", "1.2E+1", "0.6550", "99999999999999.9999"])
def test_values_that_fit_exactly_are_rescaled_not_refused(price: str) -> None:
    event = EventFactory("acct-1").event(_item(price))
    value = event_to_avro(event)["item"]["unit_price"]
    assert value == Decimal(price) and value.as_tuple().exponent == -4
    decoded = CODEC.decode(_encode(event)).value["item"]["unit_price"]
    assert decoded == Decimal(price)


def test_too_many_integer_digits_is_refused_not_silently_rounded() -> None:
    with pytest.raises(DecimalFieldError, match=r"^item.unit_price 123456789012345 has more "
                       r"than 14 digits before the decimal point"):
        EventFactory("acct-1").event(_item("123456789012345"))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_money_is_refused(value: str) -> None:
    with pytest.raises(DecimalFieldError, match="is not a finite number"):
        EventFactory("acct-1").event(_item(value))


def test_a_refused_event_does_not_use_up_a_version() -> None:
    factory = EventFactory("acct-1")
    with pytest.raises(DecimalFieldError):
        factory.event(_item("1.00001"))
    assert factory.version_of(EntityType.ITEM, "item-1") == 0
    assert factory.event(_item("1.0001")).entity_version == 1


def test_semantically_wrong_values_still_build_for_poison_tests() -> None:
    """The builder checks only what the contract cannot carry; the consumer's validation
    refuses negative or absurd amounts (tests/e2e/test_poison_records.py needs them)."""
    assert EventFactory("acct-1").event(_item("-5")).record == _item("-5")
    EventFactory("acct-1").event(_item("99999999999999"))


# ---------------------------------------------------------------- record_created_at


def test_a_factory_made_before_connecting_stamps_records_after_it() -> None:
    factory = EventFactory("acct-1")  # built first (e.g. a fixture), then the account connects
    time.sleep(0.002)
    connected_at = dt.datetime.now(dt.UTC)
    time.sleep(0.002)
    event = factory.customer("c-1", "Avery Quinn")
    assert event.record_created_at > connected_at  # not pre_connection


def test_a_record_keeps_its_creation_stamp_on_later_versions() -> None:
    factory = EventFactory("acct-1")
    first = factory.customer("c-1", "Avery Quinn")
    time.sleep(0.002)
    second = factory.customer("c-1", "Avery Quinn-Ross")
    other = factory.customer("c-2", "Blake Ross")
    assert second.entity_version == 2
    assert second.record_created_at == first.record_created_at
    assert other.record_created_at > first.record_created_at
    assert second.occurred_at > first.occurred_at


def test_an_explicit_creation_time_is_used_as_given() -> None:
    past = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
    assert EventFactory("acct-1", past).customer("c-1", "A").record_created_at == past
    other = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert EventFactory("acct-1").event(Customer("c-1", "A"),
                                        created_at=other).record_created_at == other


# ---------------------------------------------------------------- the week's edits


def test_the_weeks_edits_never_reuse_a_customer_name() -> None:
    """QuickBooks refuses a DisplayName another customer holds (6240), compared trimmed and
    case-insensitively; every name any version uses belongs to one customer only."""
    week = field_service_week("acct-ABC-quickbooks", random.Random(0), customer_edits=12,
                              price_edits=5)
    owners: dict[str, set[str]] = {}
    for e in week.events:
        if isinstance(e.record, Customer):
            owners.setdefault(" ".join(e.record.display_name.split()).casefold(),
                              set()).add(e.entity_id)
    assert all(len(ids) == 1 for ids in owners.values())
    renamed = {e.entity_id for e in week.edits if "name" in e.fields}
    assert len(renamed) >= 3 and {"cust-000", "cust-001"} <= renamed


def test_a_rename_onto_a_name_in_use_is_refused_by_the_builder() -> None:
    people = {"cust-000": Customer("cust-000", "O'Brien & Sons Plumbing"),
              "cust-005": Customer("cust-005", "o'brien & daughters  \"best\" plumbing")}
    with pytest.raises(ValueError, match="6240"):
        _edit_customers(EventFactory("acct-1"), people, random.Random(0), 1)


def test_the_week_holds_the_latest_snapshot_of_every_edited_record() -> None:
    week = field_service_week("acct-ABC-xero", random.Random(3), currency="NZD",
                              customer_edits=12, price_edits=5)
    latest: dict[str, ChangeEvent] = {}
    for e in week.events:
        if e.entity_type in (EntityType.CUSTOMER, EntityType.ITEM):
            latest[e.entity_id] = e
    assert {k: v.record for k, v in latest.items()} == {**week.customers, **week.items}
    twice = [e for e in week.edits if e.version == 3]
    assert {e.entity_type for e in twice} == {EntityType.CUSTOMER, EntityType.ITEM}
    moved = [week.customers[e.entity_id] for e in twice if e.entity_type == EntityType.CUSTOMER]
    assert moved and all(c.billing_address and c.billing_address.line2 is None for c in moved)
