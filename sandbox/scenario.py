"""Builders for upstream change events, as BlueClerk's services would publish them.

Used by the demo, the tests and the benchmarks (test helpers offered as API). Invoice
builders compute BlueClerk's own totals: line amounts after discount rounded to the
currency's minor unit, tax per line rounded, then summed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from confluent_kafka import Producer

from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.money import quantize_money
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
    TaxMode,
)
from service.config import Topics

__all__ = ["EventFactory", "build_invoice", "publish"]

_ENTITY = {Customer: EntityType.CUSTOMER, Item: EntityType.ITEM, Invoice: EntityType.INVOICE,
           Payment: EntityType.PAYMENT}


def build_invoice(invoice_id: str, customer_id: str, number: str, currency: str,
                  tax_mode: TaxMode, lines: Sequence[tuple[str, str, str, str, str]],
                  issue_date: dt.date | None = None, status: str = "open") -> Invoice:
    """`lines`: (item_id, quantity, unit_price, discount_percent, tax_rate_percent)."""
    built: list[InvoiceLine] = []
    tax_total = Decimal(0)
    for item_id, qty, price, discount, rate in lines:
        q, p, d, r = Decimal(qty), Decimal(price), Decimal(discount), Decimal(rate)
        amount = quantize_money(q * p * (1 - d / 100), currency)
        if tax_mode == "exclusive":
            tax = quantize_money(amount * r / 100, currency)
        elif tax_mode == "inclusive":
            tax = quantize_money(amount * r / (100 + r), currency)
        else:
            tax = Decimal(0)
        tax_total += tax
        built.append(InvoiceLine(item_id, f"{qty} x {item_id}", q, p, d, r, amount))
    lines_total = sum((line.amount for line in built), Decimal(0))
    if tax_mode == "inclusive":
        subtotal, total = lines_total - tax_total, lines_total
    else:
        subtotal, total = lines_total, lines_total + tax_total
    issue = issue_date or dt.date(2026, 11, 2)
    return Invoice(invoice_id, customer_id, number, issue, issue + dt.timedelta(days=30),
                   currency, tax_mode, tuple(built), subtotal, tax_total, total, status)


class EventFactory:
    """Keeps entity versions per record so successive changes carry growing versions."""

    def __init__(self, account_id: str, created_at: dt.datetime | None = None) -> None:
        self.account_id = account_id
        self.created_at = created_at or dt.datetime.now(dt.UTC)
        self._versions: dict[tuple[EntityType, str], int] = {}

    def event(self, record: Record, event_type: EventType | None = None,
              version: int | None = None, created_at: dt.datetime | None = None) -> ChangeEvent:
        entity_type = _ENTITY[type(record)]
        key = (entity_type, record.id)
        if version is None:
            version = self._versions.get(key, 0) + 1
        self._versions[key] = max(self._versions.get(key, 0), version)
        if event_type is None:
            event_type = EventType.CREATED if version == 1 else EventType.UPDATED
        return ChangeEvent(
            event_id=str(uuid.uuid4()), event_type=event_type,
            occurred_at=dt.datetime.now(dt.UTC), account_id=self.account_id,
            entity_type=entity_type, entity_id=record.id, entity_version=version,
            record_created_at=created_at or self.created_at, record=record,
        )

    def customer(self, customer_id: str, name: str, **fields: Any) -> ChangeEvent:
        return self.event(Customer(id=customer_id, display_name=name, **fields))

    def void(self, invoice: Invoice) -> ChangeEvent:
        return self.event(replace(invoice, status="void"), EventType.VOIDED)


def publish(producer: Producer, codec: AvroCodec, topics: Topics,
            events: Iterable[ChangeEvent], flush: bool = True) -> int:
    count = 0
    for event in events:
        schema = SCHEMA_BY_ENTITY[event.entity_type]
        topic = topics.entity(event.entity_type.value)
        value = codec.encode(schema, event_to_avro(event), topic)
        while True:
            try:
                producer.produce(topic, key=event.account_id.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    if flush:
        producer.flush(30)
    return count
