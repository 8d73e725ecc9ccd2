"""Records as the accounting system holds them, in BlueClerk's canonical form.

The inbound side (changes made in the books, `AccountingChangeEvent`) describes every
customer, item, invoice and payment with the same four snapshot types whichever provider
it came from. `providers/<provider>/canonical.py` parse a provider's JSON into them; the
poller compares them with what it knew before (the state it last saw, or what we last
wrote) to decide the operation, the changed fields and whether a change is our own echo.

Everything here is pure: no provider field names, no I/O.

`state(snapshot)` is the flat, JSON-able form used for hashing, diffs and storage: keys
are the canonical field names (a nested address flattens to `billing_address.line1`...,
invoice lines stay one list under `lines`), decimals are normalised strings (at least
two places, no trailing zeros beyond), dates ISO strings, empty strings None.

`echo_view(entity_type, state)` is the part of a state our own writes determine; our
write is recognised by its hash (`echo_hash`), stored with the link when we write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.records import Address

__all__ = [
    "INVOICE_STATUSES",
    "PAYMENT_METHODS",
    "BooksCustomer",
    "BooksInvoice",
    "BooksInvoiceLine",
    "BooksItem",
    "BooksPayment",
    "BooksRecord",
    "changed_fields",
    "dec",
    "echo_hash",
    "echo_state",
    "echo_view",
    "money_text",
    "state",
    "state_hash",
    "text",
]

# Invoice status vocabulary, the same for every provider.
INVOICE_STATUSES = ("draft", "open", "partially_paid", "paid", "void", "deleted")
PAYMENT_METHODS = ("cash", "check", "card", "bank_transfer", "other")


@dataclass(frozen=True, slots=True)
class BooksCustomer:
    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    billing_address: Address | None = None
    currency: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class BooksItem:
    name: str
    sku: str | None = None
    description: str | None = None
    unit_price: Decimal | None = None
    income_account_id: str | None = None  # QuickBooks account id, Xero account code
    active: bool = True


@dataclass(frozen=True, slots=True)
class BooksInvoiceLine:
    item_provider_id: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    amount: Decimal | None = None  # the provider's line amount


@dataclass(frozen=True, slots=True)
class BooksInvoice:
    number: str | None = None
    status: str = "open"  # one of INVOICE_STATUSES
    customer_provider_id: str | None = None
    issue_date: dt.date | None = None
    due_date: dt.date | None = None
    currency: str | None = None
    lines: tuple[BooksInvoiceLine, ...] = ()
    subtotal: Decimal | None = None
    tax_total: Decimal | None = None
    total: Decimal | None = None
    balance: Decimal | None = None  # still owed


@dataclass(frozen=True, slots=True)
class BooksPayment:
    amount: Decimal | None = None
    currency: str | None = None
    date: dt.date | None = None
    method: str = "other"  # one of PAYMENT_METHODS
    reference: str | None = None
    invoice_provider_id: str | None = None
    deleted: bool = False
    # The paid invoice after the payment (filled by the poller from the invoice's own
    # snapshot in the same fetch); not part of the payment's own state.
    invoice_balance: Decimal | None = field(default=None, compare=False)
    invoice_status: str | None = field(default=None, compare=False)


BooksRecord = BooksCustomer | BooksItem | BooksInvoice | BooksPayment

_NOT_STATE = {"invoice_balance", "invoice_status"}


# --------------------------------------------------------------------------- helpers


def text(value: Any) -> str | None:
    """A stripped string, None for missing or blank."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def dec(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def money_text(value: Decimal | None) -> str | None:
    """A decimal as text with at least two places and no redundant trailing zeros:
    120 -> "120.00", 120.5000 -> "120.50", 1.2345 -> "1.2345"."""
    if value is None:
        return None
    number = value.normalize()
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        number = number.quantize(Decimal("0.01"))
    out = f"{number:f}"
    return "0.00" if out in ("-0.00", "-0") else out


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return text(value)
    return value


def state(record: BooksRecord) -> dict[str, Any]:
    """The flat JSON-able state of a snapshot (see the module docstring)."""
    out: dict[str, Any] = {}
    for name in record.__dataclass_fields__:
        if name in _NOT_STATE:
            continue
        value = getattr(record, name)
        if isinstance(value, Address):
            for part in ("line1", "line2", "city", "region", "postal_code", "country"):
                out[f"{name}.{part}"] = text(getattr(value, part))
        elif name == "billing_address":
            for part in ("line1", "line2", "city", "region", "postal_code", "country"):
                out[f"{name}.{part}"] = None
        elif name == "lines":
            out[name] = [{k: _value(getattr(line, k)) for k in line.__dataclass_fields__}
                         for line in value]
        else:
            out[name] = _value(value)
    return out


def _digest(data: Mapping[str, Any]) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def state_hash(entity_state: Mapping[str, Any]) -> str:
    return _digest(entity_state)


# What our own writes determine, per entity type: the fields BlueClerk sends that every
# provider keeps as sent. Fields the books own (balance, payments' effect on status,
# the provider's own numbering of unsent fields) are not in it.
_ECHO_FIELDS: dict[str, tuple[str, ...]] = {
    "customer": ("display_name", "given_name", "family_name", "email", "phone",
                 "billing_address.line1", "billing_address.line2", "billing_address.city",
                 "billing_address.region", "billing_address.postal_code",
                 "billing_address.country", "active"),
    "item": ("name", "sku", "description", "unit_price", "active"),
    "invoice": ("number", "currency", "total", "removed"),
    "payment": ("amount", "date", "deleted"),
}


def _phone_digits(value: Any) -> str | None:
    if not value:
        return None
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return digits or None


def echo_view(entity_type: str, entity_state: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a state that our own write determines, normalised for comparison."""
    view: dict[str, Any] = {}
    removed = entity_state.get("status") in ("void", "deleted")
    for name in _ECHO_FIELDS.get(entity_type, ()):
        if name == "removed":
            view[name] = removed
        elif name == "total" and removed:
            view[name] = None  # QuickBooks zeroes a voided invoice's amounts
        elif name == "phone":
            view[name] = _phone_digits(entity_state.get(name))
        else:
            value = entity_state.get(name)
            view[name] = value.casefold() if isinstance(value, str) and name == "email" \
                else value
    return view


def echo_hash(entity_type: str, entity_state: Mapping[str, Any]) -> str:
    return _digest({"entity_type": entity_type, **echo_view(entity_type, entity_state)})


def echo_state(entity_type: str, entity_state: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a state an echo view is computed from (what our write determines),
    kept with the link as `written_state`: `echo_view(echo_state(s)) == echo_view(s)`."""
    names = ["status" if n == "removed" else n for n in _ECHO_FIELDS.get(entity_type, ())]
    return {n: entity_state.get(n) for n in names}


def changed_fields(before: Mapping[str, Any] | None, after: Mapping[str, Any],
                   only: Iterable[str] | None = None) -> list[str]:
    """Fields whose value differs; with no earlier state, every field that has a value.
    `only` limits the comparison to fields the earlier state knows (a partial state)."""
    names = sorted(after)
    if before is None:
        return [n for n in names if after[n] not in (None, [])]
    keys = set(only) if only is not None else set(names) | set(before)
    return [n for n in sorted(keys) if n in after and before.get(n) != after.get(n)]
