"""Decoding never fails in an unplanned way: a valid event, DecodeError or InvalidEvent."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import AvroCodec, DecodeError
from schemas.events import SCHEMA_BY_ENTITY, InvalidEvent, event_from_avro, event_to_avro
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

CODEC = AvroCodec()
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def decode_event(data: bytes) -> ChangeEvent | None:
    """The consumer's first step; returns None for the two planned failures."""
    try:
        decoded = CODEC.decode(data)
        if decoded.schema_name not in SCHEMA_BY_ENTITY.values():
            return None  # a status/inbound record on a change topic: rejected upstream
        return event_from_avro(decoded.schema_name, decoded.value)
    except (DecodeError, InvalidEvent):
        return None


def _event(record: Record, version: int = 1) -> ChangeEvent:
    entity = {Customer: EntityType.CUSTOMER, Item: EntityType.ITEM,
              Invoice: EntityType.INVOICE, Payment: EntityType.PAYMENT}[type(record)]
    return ChangeEvent("e-1", EventType.UPDATED, T0, "a-1", entity, record.id, version, T0,
                       record)


def _encode(ev: ChangeEvent) -> bytes:
    return CODEC.encode(SCHEMA_BY_ENTITY[ev.entity_type], event_to_avro(ev))


VALID = [
    _encode(_event(Customer("c-1", "Ada", email="a@example.com"))),
    _encode(_event(Item("i-1", "Drain", unit_price=Decimal("19.99")))),
    _encode(_event(Invoice("inv-1", "c-1", "1", dt.date(2026, 3, 1), None, "USD", "exclusive",
                           (InvoiceLine("i-1", "x", Decimal("1"), Decimal("10"), Decimal("0"),
                                        Decimal("10"), Decimal("10.00")),),
                           Decimal("10.00"), Decimal("1.00"), Decimal("11.00")))),
    _encode(_event(Payment("p-1", "inv-1", "c-1", Decimal("11.00"), "USD",
                           dt.date(2026, 3, 2)))),
]


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    decode_event(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bodies_behind_a_valid_header(body: bytes) -> None:
    for valid in VALID:
        decode_event(valid[:10] + body)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_truncations(valid: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    assert decode_event(valid[:cut]) is None  # a cut record never decodes as valid


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_bit_flips(valid: bytes, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.integers(min_value=0, max_value=len(valid) * 8 - 1),
                               min_size=1, max_size=6))
    corrupted = bytearray(valid)
    for bit in flips:
        corrupted[bit // 8] ^= 1 << (bit % 8)
    result = decode_event(bytes(corrupted))
    if result is not None:
        assert result.entity_version >= 1 and result.record.id == result.entity_id


@FUZZ
@given(st.sampled_from(VALID), st.binary(min_size=1, max_size=30), st.data())
def test_insertions(valid: bytes, junk: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(valid)))
    decode_event(valid[:at] + junk + valid[at:])


# -- valid Avro carrying absurd values ----------------------------------------------------

_absurd_amount = st.one_of(
    st.decimals(min_value=Decimal("-1e13"), max_value=Decimal("1e13"), places=4),
    st.sampled_from([Decimal("1e15"), Decimal("-0.0001"), Decimal("99999999999999.9999"),
                     Decimal("0"), Decimal("0.0001")]),
)
_text = st.one_of(st.text(max_size=20), st.just("x" * 5000), st.just(""),
                  st.text(alphabet="\x00'\"\\日本語🙂", max_size=30))
_currency = st.sampled_from(["USD", "JPY", "KWD", "XXX", "usd", "", "EURO", "BTC"])


@st.composite
def absurd_events(draw: st.DrawFn) -> ChangeEvent:
    entity_id = draw(st.sampled_from(["r-1", "", "x" * 5000]))
    kind = draw(st.sampled_from(["customer", "item", "invoice", "payment"]))
    record: Record
    if kind == "customer":
        record = Customer(entity_id, draw(_text), email=draw(_text), currency=draw(_currency))
    elif kind == "item":
        record = Item(entity_id, draw(_text), unit_price=draw(_absurd_amount),
                      currency=draw(_currency))
    elif kind == "invoice":
        lines = tuple(
            InvoiceLine(draw(_text), draw(st.none() | _text), draw(_absurd_amount),
                        draw(_absurd_amount), draw(_absurd_amount), draw(_absurd_amount),
                        draw(_absurd_amount))
            for _ in range(draw(st.integers(0, 3))))
        record = Invoice(entity_id, "c-1", draw(_text), dt.date(2026, 3, 1), None,
                         draw(_currency), draw(st.sampled_from(["exclusive", "inclusive",
                                                               "none"])),
                         lines, draw(_absurd_amount), draw(_absurd_amount),
                         draw(_absurd_amount), draw(st.sampled_from(["open", "void", "?"])))
    else:
        record = Payment(entity_id, "inv-1", "c-1", draw(_absurd_amount), draw(_currency),
                         dt.date(2026, 3, 2))
    version = draw(st.sampled_from([0, -1, 1, 2, 2**62]))
    ev = _event(record, version)
    return replace(ev, entity_id=draw(st.sampled_from([record.id, record.id, "other"])),
                   account_id=draw(st.sampled_from(["a-1", ""])))


@FUZZ
@given(absurd_events())
def test_absurd_values(ev: ChangeEvent) -> None:
    try:
        data = _encode(ev)
    except (ValueError, TypeError, OverflowError):
        return  # Avro itself cannot carry it (e.g. a decimal beyond precision 18)
    result = decode_event(data)
    if result is not None:
        assert result == ev
        assert result.entity_version >= 1
        record: Any = result.record
        assert record.currency in ("USD", "JPY", "KWD")
        for name in ("unit_price", "amount", "total"):
            value = getattr(record, name, None)
            if value is not None:
                assert 0 <= value < Decimal("1e12")
