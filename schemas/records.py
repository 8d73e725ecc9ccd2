"""Canonical records: BlueClerk's view of customers, items, invoices and payments.

These are what every event snapshot decodes to and what every provider adapter
translates from. They carry no provider field names. Money and quantities are
Decimal; every document names its ISO 4217 currency.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

__all__ = [
    "Address",
    "ChangeEvent",
    "Customer",
    "EntityType",
    "EventType",
    "Invoice",
    "InvoiceLine",
    "Item",
    "Payment",
    "Record",
    "TaxMode",
    "to_plain",
]


class EntityType(StrEnum):
    CUSTOMER = "customer"
    ITEM = "item"
    INVOICE = "invoice"
    PAYMENT = "payment"


class EventType(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    VOIDED = "voided"


TaxMode = Literal["exclusive", "inclusive", "none"]


@dataclass(frozen=True, slots=True)
class Address:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    billing_address: Address | None = None
    currency: str = "USD"
    customer_type: str | None = None  # Homeowner, Business or Builder
    active: bool = True


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    name: str
    sku: str | None = None
    description: str | None = None
    unit_price: Decimal = Decimal("0")
    currency: str = "USD"
    taxable: bool = False
    active: bool = True


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    item_id: str
    description: str | None
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal = Decimal("0")
    tax_rate_percent: Decimal = Decimal("0")
    # BlueClerk's own line amount after discount, before tax (exclusive mode) or
    # including tax (inclusive mode), rounded to the currency's minor unit.
    amount: Decimal = Decimal("0")
    # The BlueClerk tax rate the line is taxed at (InvoiceChangeEvent v2); each maps to
    # one tax code of the connected company (`tax_key`).
    tax_rate_id: str | None = None
    tax_rate_name: str | None = None
    tax_compound: bool = False

    @property
    def taxed(self) -> bool:
        return self.tax_rate_percent != 0 or self.tax_rate_id is not None

    @property
    def tax_key(self) -> str:
        """The key a tax mapping is saved under: BlueClerk's rate id, or for producers
        that send only a percent, the percent itself ("rate:8.25"); "none" when untaxed."""
        if self.tax_rate_id:
            return self.tax_rate_id
        if self.tax_rate_percent == 0:
            return "none"
        return f"rate:{self.tax_rate_percent.normalize():f}"


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    customer_id: str
    number: str
    issue_date: dt.date
    due_date: dt.date | None
    currency: str
    tax_mode: TaxMode
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    status: str = "open"  # draft, open, void
    memo: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    invoice_id: str
    customer_id: str
    amount: Decimal
    currency: str
    paid_on: dt.date
    method: str = "other"  # cash, check, card, bank_transfer, other
    reference: str | None = None
    invoice_version: int | None = None  # the invoice version the payment was taken against


Record = Customer | Item | Invoice | Payment


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """The envelope every upstream event carries, with a full snapshot of the record."""

    event_id: str
    event_type: EventType
    occurred_at: dt.datetime
    account_id: str
    entity_type: EntityType
    entity_id: str
    entity_version: int
    record_created_at: dt.datetime
    record: Record
    headers: dict[str, str] = field(default_factory=dict)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_ATOMS = frozenset({str, int, bool, float, Decimal, dt.date, dt.datetime, type(None)})


def to_plain(value: object) -> object:
    """`dataclasses.asdict` for these records without its deep copies: dataclasses become
    dicts (fields in declaration order), lists, tuples and dicts are rebuilt with their
    type, every other value is returned as is (all immutable here: str, Decimal, dates,
    enums). The result equals asdict's, so hashes of its JSON do not change
    (tests/unit/test_records_plain.py); it takes a fraction of asdict's time, which was
    the hot path's largest single cost (hashing and validating every event)."""
    names = _FIELD_NAMES.get(type(value))
    if names is not None:
        plain = {}
        for name in names:
            inner = getattr(value, name)
            plain[name] = inner if type(inner) in _ATOMS else to_plain(inner)
        return plain
    if isinstance(value, list | tuple):
        return type(value)(to_plain(inner) for inner in value)
    if isinstance(value, dict):
        return {key: to_plain(inner) for key, inner in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value))
        return to_plain(value)
    return value
