"""FreshBooks rows (clients, items, invoices, payments) as canonical snapshots
(`schemas.inbound`). Pure functions over the JSON the API returns; shapes from the
FreshBooks SDK's recorded fixtures (tests/data/freshbooks-sdk-fixtures) and
shared/providers.md section 3.

- vis_state 1 is a deletion (FreshBooks has no void; a PUT `vis_state: 1` and the SDK's
  HTTP DELETE both set it): status `deleted`, operation `deleted`, for every entity.
- Client display name: `organization`, else "fname lname" (what FreshBooks shows);
  `organization` is the company name only when it is not just the person's name.
- Invoice status from `status`: 1 draft, 4/5 paid, 8 partial, the rest open; the
  balance is `outstanding`. Lines are present when the list was read with
  `include[]=lines`; FreshBooks lines name their item but hold no item id.
- Payment `type`: Cash, Check; Credit Card and card brands; Bank Transfer, ACH, Debit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from providers.freshbooks import translate
from schemas.inbound import (
    BooksCustomer,
    BooksInvoice,
    BooksInvoiceLine,
    BooksItem,
    BooksPayment,
    BooksRecord,
    dec,
    text,
)
from schemas.records import Address, Customer, Item

__all__ = ["customer", "invoice", "item", "operation", "payment", "snapshot",
           "written_customer", "written_item"]

DELETED = 1


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _amount(value: Any) -> Any:
    return value.get("amount") if isinstance(value, Mapping) else value


def _deleted(row: Mapping[str, Any]) -> bool:
    return str(row.get("vis_state", 0)) == str(DELETED)


def customer(row: Mapping[str, Any]) -> BooksCustomer:
    fname, lname = text(row.get("fname")), text(row.get("lname"))
    person = " ".join(p for p in (fname, lname) if p) or None
    organization = text(row.get("organization"))
    parts = [text(row.get(k)) for k in ("p_street", "p_street2", "p_city", "p_province",
                                        "p_code", "p_country")]
    return BooksCustomer(
        display_name=organization or person or text(row.get("email")) or "",
        given_name=fname, family_name=lname,
        company_name=organization if organization and organization != person else None,
        email=text(row.get("email")),
        phone=text(row.get("bus_phone")) or text(row.get("mob_phone"))
        or text(row.get("home_phone")),
        billing_address=Address(*parts) if any(parts) else None,
        currency=text(row.get("currency_code")),
        active=str(row.get("vis_state", 0)) == "0",
    )


def item(row: Mapping[str, Any]) -> BooksItem:
    return BooksItem(
        name=text(row.get("name")) or "", sku=text(row.get("sku")),
        description=text(row.get("description")),
        unit_price=dec(_amount(row.get("unit_cost"))), income_account_id=None,
        active=str(row.get("vis_state", 0)) == "0",
    )


def invoice(row: Mapping[str, Any]) -> BooksInvoice:
    code = int(row.get("status") or 0) if str(row.get("status") or "").isdigit() else 0
    if _deleted(row):
        status = "deleted"
    elif code == 1:
        status = "draft"
    elif code in (4, 5):
        status = "paid"
    elif code == 8:
        status = "partially_paid"
    else:
        status = "open"
    lines = tuple(
        BooksInvoiceLine(item_provider_id=None,
                         description=text(line.get("description")) or text(line.get("name")),
                         quantity=dec(line.get("qty")),
                         unit_price=dec(_amount(line.get("unit_cost"))),
                         amount=dec(_amount(line.get("amount"))))
        for line in row.get("lines") or [])
    amount = row.get("amount")
    return BooksInvoice(
        number=text(row.get("invoice_number")), status=status,
        customer_provider_id=text(row.get("customerid")),
        issue_date=_date(row.get("create_date")), due_date=_date(row.get("due_date")),
        currency=text(row.get("currency_code"))
        or (text(amount.get("code")) if isinstance(amount, Mapping) else None),
        lines=lines, subtotal=None, tax_total=None, total=dec(_amount(amount)),
        balance=dec(_amount(row.get("outstanding"))),
    )


_METHODS = {"cash": "cash", "check": "check", "credit card": "card", "visa": "card",
            "mastercard": "card", "discover": "card", "amex": "card", "diners": "card",
            "eurocard": "card", "jcb": "card", "nova": "card", "bank transfer": "bank_transfer",
            "ach": "bank_transfer", "debit": "bank_transfer"}


def payment(row: Mapping[str, Any]) -> BooksPayment:
    amount = row.get("amount")
    return BooksPayment(
        amount=dec(_amount(amount)),
        currency=text(amount.get("code")) if isinstance(amount, Mapping) else None,
        date=_date(row.get("date")),
        method=_METHODS.get(str(row.get("type") or "").strip().lower(), "other"),
        reference=text(row.get("note")), invoice_provider_id=text(row.get("invoiceid")),
        deleted=_deleted(row),
    )


def snapshot(entity_type: str, row: Mapping[str, Any]) -> BooksRecord:
    if entity_type == "customer":
        return customer(row)
    if entity_type == "item":
        return item(row)
    if entity_type == "invoice":
        return invoice(row)
    return payment(row)


def operation(entity_type: str, row: Mapping[str, Any]) -> str | None:
    """deleted when vis_state is 1 (invoices included: FreshBooks has no void); None
    otherwise (created or updated is decided by whether BlueClerk knew the record)."""
    return "deleted" if _deleted(row) else None


def written_customer(record: Customer) -> BooksCustomer:
    """The client as our write leaves it in FreshBooks (the body the adapter sends)."""
    return customer(translate.client_body(record))


def written_item(record: Item) -> BooksItem:
    return item(translate.item_body(record))
