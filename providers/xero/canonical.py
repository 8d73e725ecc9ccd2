"""Xero rows (Contacts, Items, Invoices, Payments) as canonical snapshots
(`schemas.inbound`). Pure functions over the JSON the API returns; field names and shapes
from Xero's OpenAPI document (shared/specs/xero_accounting.yaml, v16.1.0).

- Contact: Name is the display name; Xero has no separate company name. The phone is the
  DEFAULT one (then MOBILE, DDI, OFFICE), the address the POBOX one (then STREET), as
  the adapter writes them. ARCHIVED is inactive; GDPRREQUEST is a deletion.
- Invoice status: DRAFT/SUBMITTED draft, AUTHORISED open (partially_paid once
  AmountPaid > 0), PAID paid, VOIDED void, DELETED deleted.
- Payment: Xero keeps no payment method; a payment against a bank account is
  `bank_transfer`. Status DELETED is a deletion. Its `Invoice` element carries the
  invoice's AmountDue and Status after the payment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from providers.xero import translate
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

__all__ = ["customer", "invoice", "invoice_status", "item", "operation", "payment",
           "snapshot", "written_customer", "written_item"]


def _date(value: Any) -> dt.date | None:
    parsed = translate.parse_xero_date(value)
    return parsed.date() if parsed is not None else None


def _phone(row: Mapping[str, Any]) -> str | None:
    phones = {p.get("PhoneType"): p for p in row.get("Phones") or []}
    for kind in ("DEFAULT", "MOBILE", "DDI", "OFFICE"):
        p = phones.get(kind) or {}
        if not text(p.get("PhoneNumber")):
            continue
        parts = [text(p.get(k)) for k in ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber")]
        return " ".join(x for x in parts if x)
    return None


def _address(row: Mapping[str, Any]) -> Address | None:
    by_type = {a.get("AddressType"): a for a in row.get("Addresses") or []}
    for kind in ("POBOX", "STREET"):
        a = by_type.get(kind) or {}
        parts = [text(a.get(k)) for k in ("AddressLine1", "AddressLine2", "City", "Region",
                                          "PostalCode", "Country")]
        if any(parts):
            return Address(*parts)
    return None


def customer(row: Mapping[str, Any]) -> BooksCustomer:
    return BooksCustomer(
        display_name=text(row.get("Name")) or "", given_name=text(row.get("FirstName")),
        family_name=text(row.get("LastName")), company_name=None,
        email=text(row.get("EmailAddress")), phone=_phone(row), billing_address=_address(row),
        currency=text(row.get("DefaultCurrency")),
        active=(row.get("ContactStatus") or "ACTIVE") == "ACTIVE",
    )


def item(row: Mapping[str, Any]) -> BooksItem:
    sales = row.get("SalesDetails") or {}
    return BooksItem(
        name=text(row.get("Name")) or text(row.get("Code")) or "", sku=text(row.get("Code")),
        description=text(row.get("Description")), unit_price=dec(sales.get("UnitPrice")),
        income_account_id=text(sales.get("AccountCode")),
        active=row.get("IsSold", True) is not False,
    )


def invoice_status(row: Mapping[str, Any]) -> str:
    status = str(row.get("Status") or "")
    if status in ("DRAFT", "SUBMITTED"):
        return "draft"
    if status == "PAID":
        return "paid"
    if status == "VOIDED":
        return "void"
    if status == "DELETED":
        return "deleted"
    paid = dec(row.get("AmountPaid")) or 0
    return "partially_paid" if paid > 0 else "open"


def invoice(row: Mapping[str, Any]) -> BooksInvoice:
    lines = []
    for line in row.get("LineItems") or []:
        ref = line.get("Item") or {}
        lines.append(BooksInvoiceLine(
            item_provider_id=text(ref.get("ItemID")) or text(line.get("ItemCode")),
            description=text(line.get("Description")), quantity=dec(line.get("Quantity")),
            unit_price=dec(line.get("UnitAmount")), amount=dec(line.get("LineAmount"))))
    contact = row.get("Contact") or {}
    return BooksInvoice(
        number=text(row.get("InvoiceNumber")), status=invoice_status(row),
        customer_provider_id=text(contact.get("ContactID")), issue_date=_date(row.get("Date")),
        due_date=_date(row.get("DueDate")), currency=text(row.get("CurrencyCode")),
        lines=tuple(lines), subtotal=dec(row.get("SubTotal")),
        tax_total=dec(row.get("TotalTax")), total=dec(row.get("Total")),
        balance=dec(row.get("AmountDue")),
    )


def payment(row: Mapping[str, Any]) -> BooksPayment:
    paid = row.get("Invoice") or {}
    account = row.get("Account") or {}
    return BooksPayment(
        amount=dec(row.get("Amount")), currency=text(paid.get("CurrencyCode")),
        date=_date(row.get("Date")),
        method="bank_transfer" if account.get("AccountID") or account.get("Code") else "other",
        reference=text(row.get("Reference")), invoice_provider_id=text(paid.get("InvoiceID")),
        deleted=row.get("Status") == "DELETED",
        invoice_balance=dec(paid.get("AmountDue")),
        invoice_status=invoice_status(paid) if paid.get("Status") else None,
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
    """deleted / voided when the row says so; None otherwise (created or updated is
    decided by whether BlueClerk knew the record: Xero keeps no creation time)."""
    status = row.get("Status")
    if entity_type == "invoice" and status == "VOIDED":
        return "voided"
    if status == "DELETED" or row.get("ContactStatus") == "GDPRREQUEST":
        return "deleted"
    return None


def written_customer(record: Customer) -> BooksCustomer:
    """The contact as our write leaves it in Xero (the body the adapter sends)."""
    return customer(translate.contact_body(record))


def written_item(record: Item) -> BooksItem:
    return item(translate.item_body(record, None))
