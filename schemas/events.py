"""Mapping between Avro values and canonical records, with the contract's semantic checks.

Avro checks types; this module checks what Avro cannot: known currencies, sane
amounts, versions that grow from 1, and totals stated in the currency's minor unit.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from functools import cache
from typing import Any

from schemas.codec import SCHEMA_DIR
from schemas.error_codes import ErrorCode
from schemas.money import is_known_currency, minor_unit
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
    to_plain,
)

__all__ = [
    "ID_LIMITS",
    "SCHEMA_BY_ENTITY",
    "InvalidEvent",
    "check_id",
    "event_from_avro",
    "event_to_avro",
]

SCHEMA_BY_ENTITY: dict[EntityType, str] = {
    EntityType.CUSTOMER: "CustomerChangeEvent",
    EntityType.ITEM: "ItemChangeEvent",
    EntityType.INVOICE: "InvoiceChangeEvent",
    EntityType.PAYMENT: "PaymentChangeEvent",
}
_ENTITY_BY_SCHEMA = {v: k for k, v in SCHEMA_BY_ENTITY.items()}
_MAX_AMOUNT = Decimal("1e12")  # a single field-service document never reaches a trillion
_MAX_TEXT = 4000


class InvalidEvent(ValueError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class DecimalFieldError(ValueError):
    """A decimal the event's Avro schema cannot carry exactly. The message names the field
    by its path in the event, e.g. ``invoice.lines[2].unit_price``."""

    def __init__(self, path: str, value: Decimal, problem: str) -> None:
        super().__init__(f"{path} {value} {problem}")
        self.path = path
        self.value = value


# Every Avro decimal in the change-event contracts is decimal(18,4). What the event
# helpers do with a value that has more places than that, per field, and why. Values that
# fit exactly (``Decimal("12")``, ``Decimal("1.10000")``) are only rescaled to 4 places,
# which changes nothing. None of the fields is rounded:
DECIMAL_POLICY: dict[str, str] = {
    "item.unit_price": "refuse: the catalogue price is copied onto invoice lines and "
    "multiplied by quantities; a rounded price would price every later line differently "
    "from BlueClerk",
    "invoice.lines[].quantity": "refuse: quantity x unit price is the line amount BlueClerk "
    "printed; a rounded quantity makes the provider compute another amount",
    "invoice.lines[].unit_price": "refuse: same as quantity, the line amount is computed "
    "from it",
    "invoice.lines[].discount_percent": "refuse: the discount decides the line amount and "
    "the tax; a rounded percentage makes the provider's arithmetic differ from BlueClerk's",
    "invoice.lines[].tax_rate_percent": "refuse: the rate decides the tax the provider "
    "computes; rounding it changes the tax total",
    "invoice.lines[].amount": "refuse: an amount that must equal BlueClerk's books",
    "invoice.subtotal": "refuse: an amount that must equal BlueClerk's books",
    "invoice.tax_total": "refuse: an amount that must equal BlueClerk's books",
    "invoice.total": "refuse: an amount that must equal BlueClerk's books",
    "payment.amount": "refuse: the money received; it must equal BlueClerk's books",
}


@cache
def _contract(schema_name: str) -> Any:
    return json.loads((SCHEMA_DIR / f"{schema_name}.avsc").read_text())


def _walk_decimals(schema: Any, path: str, out: dict[str, tuple[int, int]]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _walk_decimals(branch, path, out)
    elif isinstance(schema, dict):
        if schema.get("logicalType") == "decimal":
            out[path] = (int(schema["precision"]), int(schema.get("scale", 0)))
        elif schema.get("type") == "record":
            for f in schema["fields"]:
                _walk_decimals(f["type"], f"{path}.{f['name']}" if path else f["name"], out)
        elif schema.get("type") == "array":
            _walk_decimals(schema["items"], f"{path}[]", out)
        elif isinstance(schema.get("type"), dict | list):
            _walk_decimals(schema["type"], path, out)


@cache
def decimal_fields(schema_name: str) -> dict[str, tuple[int, int]]:
    """The Avro decimals of a change-event contract: ``"invoice.lines[].amount"`` ->
    (precision, scale), read from the ``.avsc`` file itself."""
    out: dict[str, tuple[int, int]] = {}
    _walk_decimals(_contract(schema_name), "", out)
    return out


def _fit_decimal(path: str, value: Any, precision: int, scale: int) -> Any:
    """``value`` at exactly ``scale`` places, or DecimalFieldError; never rounded."""
    if not isinstance(value, Decimal):
        return value  # not money as this module builds it; the encoder judges
    if not value.is_finite():
        raise DecimalFieldError(path, value, "is not a finite number")
    if value and value.adjusted() >= precision - scale:
        raise DecimalFieldError(path, value, f"has more than {precision - scale} digits "
                                f"before the decimal point (Avro decimal({precision},{scale}))")
    exact = value.quantize(Decimal(1).scaleb(-scale))
    if exact != value:
        raise DecimalFieldError(path, value, f"has more than {scale} decimal places")
    return exact


def _fit(value: Any, path: str, prefix: str, fields: dict[str, tuple[int, int]]) -> Any:
    if isinstance(value, dict):
        return {k: _fit(v, f"{path}.{k}" if path else k,
                        f"{prefix}.{k}" if prefix else k, fields)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_fit(v, f"{path}[{i}]", f"{prefix}[]", fields) for i, v in enumerate(value)]
    spec = fields.get(prefix)
    if spec is None:
        return value
    return _fit_decimal(path, value, *spec)


def event_to_avro(event: ChangeEvent) -> dict[str, Any]:
    """The Avro value of an event, every decimal at its contract's exact scale.

    A decimal with more places than the contract holds (decimal(18,4)) is refused with a
    DecimalFieldError naming the field, e.g. ``invoice.lines[2].unit_price 1.23456 has
    more than 4 decimal places``, instead of fastavro's anonymous "Scale provided in schema
    does not match the decimal". Nothing is rounded (see DECIMAL_POLICY for why, per field).
    """
    value = {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "occurred_at": event.occurred_at,
        "account_id": event.account_id,
        "entity_id": event.entity_id,
        "entity_version": event.entity_version,
        "record_created_at": event.record_created_at,
        event.entity_type.value: _record_to_avro(event.record),
    }
    fields = decimal_fields(SCHEMA_BY_ENTITY[event.entity_type])
    fitted: dict[str, Any] = _fit(value, "", "", fields)
    return fitted


def _record_to_avro(record: Record) -> dict[str, Any]:
    value = to_plain(record)
    assert isinstance(value, dict)
    if isinstance(record, Invoice):
        value["lines"] = list(value["lines"])
    return value


def event_from_avro(schema_name: str, value: dict[str, Any]) -> ChangeEvent:
    entity_type = _ENTITY_BY_SCHEMA.get(schema_name)
    if entity_type is None:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID, f"{schema_name} is not a change event")
    raw = value[entity_type.value]
    record = _record_from_avro(entity_type, raw)
    event = ChangeEvent(
        event_id=value["event_id"],
        event_type=EventType(value["event_type"]),
        occurred_at=_utc(value["occurred_at"]),
        account_id=value["account_id"],
        entity_type=entity_type,
        entity_id=value["entity_id"],
        entity_version=value["entity_version"],
        record_created_at=_utc(value["record_created_at"]),
        record=record,
    )
    validate_event(event)
    return event


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _record_from_avro(entity_type: EntityType, raw: dict[str, Any]) -> Record:
    if entity_type is EntityType.CUSTOMER:
        address = raw.get("billing_address")
        return Customer(**{**raw, "billing_address": Address(**address) if address else None})
    if entity_type is EntityType.ITEM:
        return Item(**raw)
    if entity_type is EntityType.INVOICE:
        lines = tuple(InvoiceLine(**line) for line in raw["lines"])
        return Invoice(**{**raw, "lines": lines})
    return Payment(**raw)


# The longest ids the state tables hold (state/models.py); checked before any write.
ID_LIMITS = {"account_id": 64, "event_id": 64, "entity_id": 128}


def check_id(name: str, value: str, limit: int) -> None:
    """Refuse an id the database could not hold, naming it."""
    if len(value) > limit:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID,
                           f"{name} is {len(value)} characters; the limit is {limit}")


def validate_event(event: ChangeEvent) -> None:
    """Raise InvalidEvent when the event breaks a rule Avro cannot express."""
    if not event.account_id or not event.entity_id or not event.event_id:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID, "account_id, entity_id and event_id "
                           "must not be empty")
    for name, limit in ID_LIMITS.items():
        check_id(name, getattr(event, name), limit)
    for name in ("customer_id", "invoice_id"):
        ref = getattr(event.record, name, None)
        if isinstance(ref, str):
            check_id(name, ref, ID_LIMITS["entity_id"])
    for line in getattr(event.record, "lines", ()):
        if line.item_id:
            check_id("lines.item_id", line.item_id, ID_LIMITS["entity_id"])
    if event.entity_version < 1:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID,
                           f"entity_version must be >= 1, got {event.entity_version}")
    if event.record.id != event.entity_id:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID,
                           f"snapshot id {event.record.id!r} differs from entity_id")
    _check_text(event.record)
    record = event.record
    if isinstance(record, Customer | Item | Invoice | Payment):
        currency = record.currency
        if not is_known_currency(currency):
            raise InvalidEvent(ErrorCode.UNKNOWN_CURRENCY, f"unknown currency {currency!r}")
    if isinstance(record, Item):
        _check_amount("unit_price", record.unit_price)
    elif isinstance(record, Invoice):
        _check_invoice(record)
    elif isinstance(record, Payment):
        _check_amount("amount", record.amount, currency=record.currency)
        if record.amount <= 0:
            raise InvalidEvent(ErrorCode.SCHEMA_INVALID, "payment amount must be positive")


def _check_text(record: Record) -> None:
    def walk(name: str, value: object) -> None:
        if isinstance(value, str) and len(value) > _MAX_TEXT:
            raise InvalidEvent(ErrorCode.SCHEMA_INVALID,
                               f"{name} is {len(value)} characters; the limit is {_MAX_TEXT}")
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{name}.{key}" if name else str(key), inner)
        elif isinstance(value, list | tuple):
            for index, inner in enumerate(value):
                walk(f"{name}[{index}]", inner)

    walk("", to_plain(record))


def _check_amount(name: str, amount: Decimal, currency: str | None = None) -> None:
    if not amount.is_finite() or abs(amount) >= _MAX_AMOUNT:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID, f"{name} {amount} is out of range")
    if amount < 0:
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID, f"{name} {amount} is negative")
    if currency is not None and amount != amount.quantize(Decimal(1).scaleb(-minor_unit(currency))):
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID,
                           f"{name} {amount} has more decimals than {currency} allows")


def _check_invoice(invoice: Invoice) -> None:
    if not invoice.lines and invoice.status != "void":
        raise InvalidEvent(ErrorCode.SCHEMA_INVALID, "an invoice needs at least one line")
    for line in invoice.lines:
        _check_amount("quantity", line.quantity)
        _check_amount("unit_price", line.unit_price)
        _check_amount("line amount", line.amount, currency=invoice.currency)
        if not Decimal(0) <= line.discount_percent <= Decimal(100):
            raise InvalidEvent(ErrorCode.SCHEMA_INVALID, "discount_percent must be 0..100")
        if not Decimal(0) <= line.tax_rate_percent <= Decimal(100):
            raise InvalidEvent(ErrorCode.SCHEMA_INVALID, "tax_rate_percent must be 0..100")
    for name in ("subtotal", "tax_total", "total"):
        _check_amount(name, getattr(invoice, name), currency=invoice.currency)
