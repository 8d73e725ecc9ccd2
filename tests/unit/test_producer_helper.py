"""producers/upstream.py: events from plain values, refused with the field named when the
contract cannot carry them, encoded with the account as the key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from producers.upstream import ChangeEventBuilder, Line, encode_event, topic_for
from schemas.codec import AvroCodec
from schemas.events import DecimalFieldError, InvalidEvent, event_from_avro
from schemas.records import EventType, Invoice, Payment


def test_invoice_totals_versions_and_payment_version() -> None:
    events = ChangeEventBuilder("acct-7")
    lines = [Line("item-1", "2", "95.00", tax_rate_percent="8.25", tax_rate_id="tx-state",
                  tax_rate_name="State sales tax"),
             Line("item-2", "0.3333", "120.00", discount_percent="10")]
    first = events.invoice("inv-1", customer_id="c-1", number="1001", currency="USD",
                           lines=lines)
    invoice = first.record
    assert isinstance(invoice, Invoice)
    assert [line.amount for line in invoice.lines] == [Decimal("190.00"), Decimal("36.00")]
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == \
        (Decimal("226.00"), Decimal("15.68"), Decimal("241.68"))
    assert invoice.lines[0].tax_key == "tx-state" and invoice.lines[1].tax_key == "none"
    second = events.invoice("inv-1", customer_id="c-1", number="1001", currency="USD",
                            lines=lines[:1])
    assert (first.entity_version, second.entity_version) == (1, 2)
    assert second.event_type is EventType.UPDATED
    assert second.record_created_at == first.record_created_at  # created once
    payment = events.payment("p-1", invoice=second, amount="205.68")
    assert isinstance(payment.record, Payment) and payment.record.invoice_version == 2
    void = events.void(second)
    assert void.event_type is EventType.VOIDED and void.entity_version == 3


def test_refusals_name_the_field() -> None:
    events = ChangeEventBuilder("acct-7")
    with pytest.raises(DecimalFieldError, match=r"invoice\.lines\[0\]\.unit_price 1\.23456 "
                       "has more than 4 decimal places"):
        events.invoice("inv-2", customer_id="c-1", number="2", currency="USD",
                       lines=[Line("item-1", "1", "1.23456")])
    with pytest.raises(DecimalFieldError, match=r"item\.unit_price"):
        events.item("item-9", "Valve", unit_price="0.00001")
    with pytest.raises(TypeError, match="not a float"):
        events.item("item-9", "Valve", unit_price=9.99)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="unknown currency 'XYZ'"):
        events.customer("c-2", "Nobody", currency="XYZ")
    with pytest.raises(InvalidEvent, match="more decimals than JPY allows"):
        events.payment("p-2", invoice=events.invoice(
            "inv-3", customer_id="c-1", number="3", currency="JPY",
            lines=[Line("item-1", "1", "1000")]), amount="10.5")


def test_encoded_with_the_account_as_key_and_decodable() -> None:
    event = ChangeEventBuilder("acct-7", created_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
                               ).customer("c-1", "Rivera Family", email="r@example.com")
    topic, key, value = encode_event(event, topic_prefix="bc.")
    assert (topic, key) == ("bc.customers", b"acct-7") and topic == topic_for(event, "bc.")
    assert value[:2] == b"\xc3\x01"  # Avro single-object encoding without a registry
    decoded = AvroCodec().decode(value)
    back = event_from_avro(decoded.schema_name, decoded.value)
    assert back.record == event.record and back.record_created_at == event.record_created_at
