"""The supported helper for BlueClerk's upstream services: build change events from plain
values, check them against the contract, encode them and publish them with the right key.

Everything here follows docs/producing.md. Money is given as strings or Decimals (never
floats) and is refused, naming the field, when the contract cannot carry it exactly
(`schemas.events.DecimalFieldError`) or when the event breaks a rule Avro cannot express
(`schemas.events.InvalidEvent`: unknown currency, totals not in the currency's minor
unit, an id too long). Nothing is rounded for you except what BlueClerk itself rounds
when it prints an invoice: line amounts and per-line tax, to the currency's minor unit.

    events = ChangeEventBuilder("acct-42")
    customer = events.customer("cust-1", "Rivera Family", email="rivera@example.com")
    with ChangeEventPublisher("localhost:9092") as publisher:
        publisher.publish([customer])

Importing it silences authlib's deprecation notice about its httpx fallback (pulled in
through the service's configuration), so a producer's terminal stays clean.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any

from service.logging import quiet_library_warnings

quiet_library_warnings()  # before anything imports authlib (through service.config)

from producers.kafka import make_producer, produce_and_wait  # noqa: E402
from sandbox.scenario import EventFactory  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro, validate_event  # noqa: E402
from schemas.money import quantize_money  # noqa: E402
from schemas.records import (  # noqa: E402
    Address,
    ChangeEvent,
    Customer,
    EventType,
    Invoice,
    InvoiceLine,
    Item,
    Payment,
    TaxMode,
)
from schemas.status import FINAL_STATUSES, SyncStatusEvent  # noqa: E402
from service.config import Topics  # noqa: E402

__all__ = ["ChangeEventBuilder", "ChangeEventPublisher", "Line", "Money", "encode_event",
           "topic_for", "wait_for_statuses"]

Money = str | Decimal | int


def _decimal(name: str, value: Money) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{name}: pass money as a string or Decimal, not a float")
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError):
        raise ValueError(f"{name}: {value!r} is not a number") from None


@dataclass(frozen=True)
class Line:
    """One invoice line as BlueClerk shows it; the amount is computed (see `invoice`)."""

    item_id: str
    quantity: Money
    unit_price: Money
    description: str | None = None
    discount_percent: Money = "0"
    tax_rate_percent: Money = "0"
    tax_rate_id: str | None = None  # BlueClerk's tax rate id (InvoiceChangeEvent v2)
    tax_rate_name: str | None = None
    tax_compound: bool = False


class ChangeEventBuilder:
    """Builds the envelope for one BlueClerk account: event ids, `occurred_at`, growing
    `entity_version`s per record, and `record_created_at` (when BlueClerk created the
    record: pass `created_at=` for records that existed before; records created before
    the account connected are not synced, `pre_connection`)."""

    def __init__(self, account_id: str, created_at: dt.datetime | None = None) -> None:
        self.account_id = account_id
        self._factory = EventFactory(account_id, created_at)

    def _emit(self, record: Customer | Item | Invoice | Payment, event_type: EventType | None,
              version: int | None, created_at: dt.datetime | None) -> ChangeEvent:
        event = self._factory.event(record, event_type, version, created_at)
        validate_event(event)  # the rules Avro cannot express, before anything is sent
        return event

    def customer(self, customer_id: str, display_name: str, *, currency: str = "USD",
                 address: Address | None = None, event_type: EventType | None = None,
                 version: int | None = None, created_at: dt.datetime | None = None,
                 **fields: Any) -> ChangeEvent:
        """`fields`: given_name, family_name, company_name, email, phone, customer_type
        (Homeowner, Business or Builder), active."""
        record = Customer(customer_id, display_name, currency=currency,
                          billing_address=address, **fields)
        return self._emit(record, event_type, version, created_at)

    def item(self, item_id: str, name: str, *, unit_price: Money, currency: str = "USD",
             sku: str | None = None, description: str | None = None, taxable: bool = False,
             active: bool = True, event_type: EventType | None = None,
             version: int | None = None, created_at: dt.datetime | None = None
             ) -> ChangeEvent:
        record = Item(item_id, name, sku, description, _decimal("item.unit_price", unit_price),
                      currency, taxable, active)
        return self._emit(record, event_type, version, created_at)

    def invoice(self, invoice_id: str, *, customer_id: str, number: str, currency: str,
                lines: Sequence[Line], tax_mode: TaxMode = "exclusive",
                issue_date: dt.date | None = None, due_date: dt.date | None = None,
                status: str = "open", memo: str | None = None,
                event_type: EventType | None = None, version: int | None = None,
                created_at: dt.datetime | None = None) -> ChangeEvent:
        """An invoice with BlueClerk's totals: each line's amount is quantity x unit price
        less its discount, rounded to the currency's minor unit; tax per line, rounded,
        then summed (exclusive: added to the total; inclusive: already in the amounts)."""
        built: list[InvoiceLine] = []
        tax_total = Decimal(0)
        for n, line in enumerate(lines):
            where = f"invoice.lines[{n}]"
            q = _decimal(f"{where}.quantity", line.quantity)
            p = _decimal(f"{where}.unit_price", line.unit_price)
            d = _decimal(f"{where}.discount_percent", line.discount_percent)
            r = _decimal(f"{where}.tax_rate_percent", line.tax_rate_percent)
            amount = quantize_money(q * p * (1 - d / 100), currency)
            if tax_mode == "exclusive":
                tax_total += quantize_money(amount * r / 100, currency)
            elif tax_mode == "inclusive":
                tax_total += quantize_money(amount * r / (100 + r), currency)
            built.append(InvoiceLine(line.item_id, line.description, q, p, d, r, amount,
                                     line.tax_rate_id, line.tax_rate_name, line.tax_compound))
        lines_total = sum((line.amount for line in built), Decimal(0))
        if tax_mode == "inclusive":
            subtotal, total = lines_total - tax_total, lines_total
        else:
            subtotal, total = lines_total, lines_total + tax_total
        issue = issue_date or dt.datetime.now(dt.UTC).date()
        record = Invoice(invoice_id, customer_id, number, issue, due_date, currency, tax_mode,
                         tuple(built), subtotal, tax_total, total, status, memo)
        return self._emit(record, event_type, version, created_at)

    def void(self, invoice_event: ChangeEvent) -> ChangeEvent:
        """The `voided` event of an invoice: the same snapshot with status `void`."""
        invoice = invoice_event.record
        if not isinstance(invoice, Invoice):
            raise TypeError("void() takes an invoice event")
        return self._emit(replace(invoice, status="void"), EventType.VOIDED, None, None)

    def payment(self, payment_id: str, *, invoice: ChangeEvent, amount: Money,
                paid_on: dt.date | None = None, method: str = "other",
                reference: str | None = None, event_type: EventType | None = None,
                version: int | None = None, created_at: dt.datetime | None = None
                ) -> ChangeEvent:
        """A payment against `invoice` (its event): customer, currency and the invoice
        version the payment was taken against (`invoice_version`) come from it."""
        record = invoice.record
        if not isinstance(record, Invoice):
            raise TypeError("payment(invoice=...) takes the invoice's change event")
        pay = Payment(payment_id, record.id, record.customer_id,
                      _decimal("payment.amount", amount), record.currency,
                      paid_on or dt.datetime.now(dt.UTC).date(), method, reference,
                      invoice_version=invoice.entity_version)
        return self._emit(pay, event_type, version, created_at)


def topic_for(event: ChangeEvent, topic_prefix: str = "blueclerk.") -> str:
    """`<prefix>customers`, `items`, `invoices` or `payments`."""
    return Topics(topic_prefix).entity(event.entity_type.value)


def encode_event(event: ChangeEvent, codec: AvroCodec | None = None,
                 topic_prefix: str = "blueclerk.") -> tuple[str, bytes, bytes]:
    """(topic, key, value) for one event: the key is the account id, the value the Avro
    body in the codec's wire format (single-object encoding without a registry)."""
    codec = codec or AvroCodec()
    topic = topic_for(event, topic_prefix)
    value = codec.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event), topic)
    return topic, event.account_id.encode(), value


class ChangeEventPublisher:
    """Publishes change events to Kafka (idempotent producer, acks=all) and waits for the
    broker to acknowledge them. With `schema_registry_url` the values use the Confluent
    wire format (schemas registered beforehand: `blueclerk-sync register-schemas`)."""

    def __init__(self, bootstrap_servers: str, topic_prefix: str = "blueclerk.",
                 schema_registry_url: str | None = None, **producer_config: Any) -> None:
        self.topic_prefix = topic_prefix
        self._codec = AvroCodec(schema_registry_url)
        self._producer = make_producer(bootstrap_servers, **producer_config)

    def publish(self, events: Iterable[ChangeEvent], timeout: float = 30.0) -> int:
        """Publish in the order given (one account's events stay in order: same key, same
        partition); return how many were acknowledged."""
        records = []
        for event in events:
            topic, key, value = encode_event(event, self._codec, self.topic_prefix)
            records.append({"topic": topic, "key": key, "value": value})
        produce_and_wait(self._producer, records, timeout)
        return len(records)

    def close(self) -> None:
        self._producer.flush(10)

    def __enter__(self) -> ChangeEventPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def wait_for_statuses(bootstrap_servers: str, events: Iterable[ChangeEvent], *,
                      topic_prefix: str = "blueclerk.", schema_registry_url: str | None = None,
                      timeout: float = 60.0) -> dict[str, SyncStatusEvent]:
    """Read `<prefix>sync-status` from the beginning until every event has its final
    status (synced, skipped, failed or dead_lettered), or `timeout` seconds pass; return
    the latest status per event id (a waiting status if no final one came in time)."""
    import time
    import uuid

    from confluent_kafka import Consumer

    wanted = {e.event_id for e in events}
    codec = AvroCodec(schema_registry_url)
    consumer = Consumer({"bootstrap.servers": bootstrap_servers,
                         "group.id": f"status-reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(topic_prefix).status])
    latest: dict[str, SyncStatusEvent] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if all(e in latest and latest[e].status in FINAL_STATUSES for e in wanted):
                break
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = message.value()
            if not isinstance(value, bytes):
                continue
            status = SyncStatusEvent.from_avro(codec.decode(value).value)
            if status.source_event_id in wanted:
                previous = latest.get(status.source_event_id)
                if previous is None or previous.status not in FINAL_STATUSES:
                    latest[status.source_event_id] = status
    finally:
        consumer.close()
    return latest
