"""Builders for upstream change events, as BlueClerk's services would publish them.

Used by the demo, the tests and the benchmarks (test helpers offered as API). Invoice
builders compute BlueClerk's own totals: line amounts after discount rounded to the
currency's minor unit, tax per line rounded, then summed.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from confluent_kafka import Producer

from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.money import quantize_money
from schemas.records import (
    Address,
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

__all__ = ["Edit", "EventFactory", "Week", "build_invoice", "field_service_week", "publish"]

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
    """Keeps entity versions per record so successive changes carry growing versions.

    ``record_created_at`` is when BlueClerk created the record, and the sync skips records
    created before the account connected (``pre_connection``). Without ``created_at`` each
    record is stamped when the factory builds its first event, and keeps that stamp on its
    later versions (a record is created once); it is never the time the factory itself was
    made, so a factory built before connecting still produces post-connection records. A
    ``created_at`` given here (or to ``event``) is used as is: pass one to script history.

    Every event is checked against its Avro contract as it is built: money with more
    decimal places than the contract carries (decimal(18,4)) raises DecimalFieldError
    naming the field (schemas/events.py says why nothing is rounded).
    """

    def __init__(self, account_id: str, created_at: dt.datetime | None = None) -> None:
        self.account_id = account_id
        self.created_at = created_at
        self._versions: dict[tuple[EntityType, str], int] = {}
        self._created: dict[tuple[EntityType, str], dt.datetime] = {}

    def event(self, record: Record, event_type: EventType | None = None,
              version: int | None = None, created_at: dt.datetime | None = None) -> ChangeEvent:
        entity_type = _ENTITY[type(record)]
        key = (entity_type, record.id)
        if version is None:
            version = self._versions.get(key, 0) + 1
        if event_type is None:
            event_type = EventType.CREATED if version == 1 else EventType.UPDATED
        now = dt.datetime.now(dt.UTC)
        stamp = created_at or self.created_at or self._created.get(key) or now
        event = ChangeEvent(
            event_id=str(uuid.uuid4()), event_type=event_type,
            occurred_at=now, account_id=self.account_id,
            entity_type=entity_type, entity_id=record.id, entity_version=version,
            record_created_at=stamp, record=record,
        )
        event_to_avro(event)  # refuses, naming the field, what the contract cannot carry
        self._versions[key] = max(self._versions.get(key, 0), version)
        self._created.setdefault(key, stamp)
        return event

    def version_of(self, entity_type: EntityType, entity_id: str) -> int:
        return self._versions.get((entity_type, entity_id), 0)

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


_FIRST = ["Maria", "James", "Aiko", "Robert", "Linda", "Carlos", "Priya", "Tom", "Grace", "Omar"]
_LAST = ["Rivera", "Smith", "Tanaka", "Kowalski", "Nguyen", "Okafor", "Brown", "Patel", "Lee",
         "Garcia"]
_SERVICES = [("Drain cleaning", "95.00"), ("Water heater install", "1450.00"),
             ("Service call", "79.00"), ("Pipe repair (per hour)", "120.00"),
             ("Faucet replacement", "185.50"), ("Sump pump", "640.00"),
             ("Camera inspection", "225.00"), ("Gas line check", "150.00"),
             ("Backflow test", "110.00"), ("Toilet install", "310.00"),
             ("Emergency surcharge", "99.99"), ("Filter (each)", "12.35"),
             ("Thermostat", "249.00"), ("Valve kit", "38.40"), ("Travel (per mile)", "0.655")]


_NEW_FAMILY = ["Delgado", "Whitfield", "Moreau", "Haddad", "Lindqvist", "Mbeki", "Castellano",
               "Ferreira"]
_STREETS = [("1204 Oak Hollow Dr", "Suite 200"), ("88 Pecan St", None),
            ("17 Harbour View Rd", None), ("4500 Commerce Blvd", "Unit 12"),
            ("9 Kōwhai Lane", None), ("312 Elm St", "Apt 3B")]
_CITIES = [("Austin", "TX", "78745", "US"), ("Auckland", "AKL", "1010", "NZ"),
           ("Portland", "OR", "97201", "US"), ("Wellington", "WGN", "6011", "NZ")]


@dataclass(frozen=True)
class Edit:
    """One edit of an existing record in the week: which fields BlueClerk changed."""

    entity_type: EntityType
    entity_id: str
    version: int
    fields: tuple[str, ...]  # "name", "email", "address", "unit_price"


@dataclass
class Week:
    """A scripted week of a small field-service business, and what its books must show."""

    events: list[ChangeEvent]
    customers: dict[str, Customer]  # latest snapshot of each customer
    items: dict[str, Item]  # latest snapshot of each item
    invoices: dict[str, Invoice]  # latest snapshot; status "void" for voided ones
    payments: dict[str, Payment]
    edits: list[Edit] = field(default_factory=list)


def _name_key(name: str) -> str:
    """How QuickBooks compares DisplayNames: trimmed, case-insensitive (error 6240)."""
    return " ".join(name.split()).casefold()


def _renamed(customer: Customer, family: str) -> Customer:
    """A new family name (marriage, new owner), keeping the record's unique suffix."""
    if customer.id == "cust-000":
        return replace(customer, display_name="O'Brien & Daughters \"Best\" Plumbing",
                       given_name="O'Brien", family_name=None)
    if customer.id == "cust-001":
        return replace(customer, display_name="山田 花子", given_name="花子", family_name="山田")
    first, *_, suffix = customer.display_name.split()
    return replace(customer, display_name=f"{first} {family} {suffix}", given_name=first,
                   family_name=family)


def _address(rng: random.Random) -> Address:
    line1, line2 = rng.choice(_STREETS)
    city, region, postal, country = rng.choice(_CITIES)
    return Address(line1, line2, city, region, postal, country)


def _edit_customers(factory: EventFactory, people: dict[str, Customer], rng: random.Random,
                    count: int) -> tuple[list[ChangeEvent], list[Edit]]:
    """Edit ``count`` customers: renames, new e-mails, new addresses, and some customers
    edited twice so that only the latest version may be in the books (the second address
    drops the first one's line 2). Every name ever used stays unique (QuickBooks refuses a
    DisplayName another customer holds, error 6240; the simulator enforces it)."""
    events: list[ChangeEvent] = []
    edits: list[Edit] = []
    used = {_name_key(c.display_name) for c in people.values()}
    ids = sorted(people)
    others = rng.sample(ids[2:], k=min(max(0, count - 2), len(ids) - 2))
    # The awkward names go first: cust-000 is renamed (quotes, '&'), cust-001 (Japanese)
    # is edited twice, the second time renamed.
    chosen = [*ids[:1], *others[:2], *ids[1:2], *others[2:]][:count]
    for n, cid in enumerate(chosen):
        plan: list[tuple[str, ...]] = [(("name",), ("email",), ("address",))[n % 3]]
        if n % 4 == 3:
            plan = [("address",), ("name", "email", "address")]
        for fields in plan:
            old = people[cid]
            new = old
            if "name" in fields:
                new = _renamed(new, _NEW_FAMILY[n % len(_NEW_FAMILY)])
                key = _name_key(new.display_name)
                if key in used:
                    raise ValueError(f"rename of {cid} to {new.display_name!r} would reuse a "
                                     "name; QuickBooks refuses duplicate DisplayNames (6240)")
                used.add(key)
            if "email" in fields:
                new = replace(new, email=f"{cid}.billing{n}@example.net")
            if "address" in fields:
                address = _address(rng)
                if old.billing_address is not None:  # a move: line 2 of the old one goes
                    address = replace(address, line2=None)
                    if address == old.billing_address:
                        address = replace(address, line1=f"2{address.line1}")
                new = replace(new, billing_address=address)
            event = factory.event(new)
            people[cid] = new
            events.append(event)
            edits.append(Edit(EntityType.CUSTOMER, cid, event.entity_version, fields))
    return events, edits


def _edit_prices(factory: EventFactory, catalogue: dict[str, Item], rng: random.Random,
                 count: int) -> tuple[list[ChangeEvent], list[Edit]]:
    """New catalogue prices for ``count`` items, in cents, one of them changed twice."""
    events: list[ChangeEvent] = []
    edits: list[Edit] = []
    chosen = rng.sample(sorted(catalogue), k=min(count, len(catalogue)))
    for n, item_id in enumerate([*chosen, *chosen[:1]]):
        old = catalogue[item_id]
        factor = Decimal("1.075") if n % 2 == 0 else Decimal("0.9")
        price = quantize_money(old.unit_price * factor, old.currency)
        if price == old.unit_price:
            price += Decimal(1).scaleb(-2)
        new = replace(old, unit_price=price)
        event = factory.event(new)
        catalogue[item_id] = new
        events.append(event)
        edits.append(Edit(EntityType.ITEM, item_id, event.entity_version, ("unit_price",)))
    return events, edits


def field_service_week(account_id: str, rng: random.Random, *, currency: str = "USD",
                       customers: int = 40, items: int = 15, invoices: int = 120,
                       payments: int = 80, created_at: dt.datetime | None = None,
                       customer_edits: int = 0, price_edits: int = 0) -> Week:
    """Creates, then half the invoices; then ``customer_edits`` customers and
    ``price_edits`` item prices are edited (new entity versions), and the rest of the
    week's invoices use the new prices; then invoice updates, payments and voids."""
    factory = EventFactory(account_id, created_at)
    events: list[ChangeEvent] = []
    edits: list[Edit] = []
    tag = account_id[-4:]
    people: dict[str, Customer] = {}
    for i in range(customers):
        cid = f"cust-{i:03d}"
        if i == 0:
            name = "O'Brien & Sons \"Best\" Plumbing"
        elif i == 1:
            name = "山田 太郎"
        else:
            name = f"{_FIRST[i % 10]} {_LAST[(i * 7) % 10]} {tag}-{i:03d}"
        customer = Customer(cid, name, given_name=name.split()[0], email=f"{cid}@example.com",
                            currency=currency)
        people[cid] = customer
        events.append(factory.event(customer))
    catalogue: dict[str, Item] = {}
    for i in range(items):
        name, price = _SERVICES[i % len(_SERVICES)]
        item = Item(f"item-{i:02d}", f"{name} {tag}" if i >= len(_SERVICES) else name,
                    sku=f"SKU-{i:02d}", unit_price=Decimal(price), currency=currency)
        catalogue[item.id] = item
        events.append(factory.event(item))
    books: dict[str, Invoice] = {}
    tax_modes: list[TaxMode] = ["exclusive", "exclusive", "inclusive", "none"]
    item_ids = sorted(catalogue)
    for i in range(invoices):
        if i == invoices // 2 and (customer_edits or price_edits):
            for more, done in (_edit_customers(factory, people, rng, customer_edits),
                               _edit_prices(factory, catalogue, rng, price_edits)):
                events.extend(more)
                edits.extend(done)
        lines = []
        for _ in range(rng.randint(1, 4)):
            item = catalogue[rng.choice(item_ids)]
            qty = rng.choice(["1", "2", "0.5", "1.25", "3", "0.3333"])
            discount = rng.choice(["0", "0", "10", "5"])
            rate = rng.choice(["0", "8.25", "10"])
            lines.append((item.id, qty, str(item.unit_price), discount, rate))
        invoice = build_invoice(f"inv-{i:03d}", rng.choice(sorted(people)), f"{tag}-{1000 + i}",
                                currency, tax_modes[i % len(tax_modes)], lines,
                                dt.date(2026, 11, 2) + dt.timedelta(days=i % 5))
        books[invoice.id] = invoice
        events.append(factory.event(invoice))
    invoice_ids = sorted(books)
    for invoice_id in rng.sample(invoice_ids, k=min(len(invoice_ids) // 4, len(invoice_ids))):
        old = books[invoice_id]  # an update: one more line
        item = catalogue[rng.choice(item_ids)]
        lines = [(line.item_id, str(line.quantity), str(line.unit_price),
                  str(line.discount_percent), str(line.tax_rate_percent)) for line in old.lines]
        lines.append((item.id, "1", str(item.unit_price), "0", "0"))
        updated = build_invoice(old.id, old.customer_id, old.number, currency, old.tax_mode,
                                lines, old.issue_date)
        books[invoice_id] = updated
        events.append(factory.event(updated))
    paid: dict[str, Payment] = {}
    payable = rng.sample(invoice_ids, k=min(payments, len(invoice_ids)))
    for n, invoice_id in enumerate(payable):
        invoice = books[invoice_id]
        amount = invoice.total if n % 3 else quantize_money(invoice.total / 2, currency)
        if amount <= 0:
            continue
        payment = Payment(f"pay-{n:03d}", invoice_id, invoice.customer_id, amount, currency,
                          dt.date(2026, 11, 6), rng.choice(["card", "check", "cash"]),
                          invoice_version=factory.version_of(EntityType.INVOICE, invoice_id))
        paid[payment.id] = payment
        events.append(factory.event(payment))
    unpaid = [i for i in invoice_ids if i not in set(payable)]
    for invoice_id in unpaid[: max(1, len(unpaid) // 4)]:
        voided = replace(books[invoice_id], status="void")
        books[invoice_id] = voided
        events.append(factory.event(voided, EventType.VOIDED))
    return Week(events, people, catalogue, books, paid, edits)
