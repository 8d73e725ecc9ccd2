"""QuickBooks Online rows (Customer, Item, Invoice, Payment; CDC rows) as canonical
snapshots (`schemas.inbound`). Pure functions over the JSON the API returns; element
names from Intuit's XSDs (shared/specs/qbo-xsd: Finance.xsd, IntuitBaseTypes.xsd).

- A CDC row with `status: "Deleted"` carries only Id and MetaData: it has no snapshot
  (`snapshot` returns None) and its operation is `deleted`.
- A voided invoice keeps its number but QuickBooks zeroes its amounts and prefixes
  "Voided" to PrivateNote: status `void`.
- Invoice status from the balance: 0 < Balance < TotalAmt partially_paid, Balance 0 of a
  non-zero total paid, otherwise open (QuickBooks has no draft invoices).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from providers.quickbooks import translate
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

__all__ = ["customer", "invoice", "invoice_ids", "item", "operation", "payment", "snapshot",
           "written_customer", "written_item"]


def _ref(row: Mapping[str, Any], name: str) -> str | None:
    ref = row.get(name)
    return text(ref.get("value")) if isinstance(ref, Mapping) else None


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _address(raw: Any) -> Address | None:
    if not isinstance(raw, Mapping):
        return None
    parts = [text(raw.get(k)) for k in ("Line1", "Line2", "City", "CountrySubDivisionCode",
                                        "PostalCode", "Country")]
    return Address(*parts) if any(parts) else None


def customer(row: Mapping[str, Any]) -> BooksCustomer:
    return BooksCustomer(
        display_name=text(row.get("DisplayName")) or "",
        given_name=text(row.get("GivenName")), family_name=text(row.get("FamilyName")),
        company_name=text(row.get("CompanyName")),
        email=text((row.get("PrimaryEmailAddr") or {}).get("Address")),
        phone=text((row.get("PrimaryPhone") or {}).get("FreeFormNumber")),
        billing_address=_address(row.get("BillAddr")),
        currency=_ref(row, "CurrencyRef"),
        active=row.get("Active", True) is not False,
    )


def item(row: Mapping[str, Any]) -> BooksItem:
    return BooksItem(
        name=text(row.get("Name")) or "", sku=text(row.get("Sku")),
        description=text(row.get("Description")), unit_price=dec(row.get("UnitPrice")),
        income_account_id=_ref(row, "IncomeAccountRef"),
        active=row.get("Active", True) is not False,
    )


def _voided(row: Mapping[str, Any]) -> bool:
    return str(row.get("PrivateNote") or "").startswith("Voided")


def invoice(row: Mapping[str, Any]) -> BooksInvoice:
    total, balance = dec(row.get("TotalAmt")), dec(row.get("Balance"))
    if _voided(row):
        status = "void"
    elif total and balance is not None and balance == 0:
        status = "paid"
    elif total and balance is not None and 0 < balance < total:
        status = "partially_paid"
    else:
        status = "open"
    lines = []
    subtotal = None
    for line in row.get("Line") or []:
        kind = line.get("DetailType")
        if kind == "SubTotalLineDetail":
            subtotal = dec(line.get("Amount"))
            continue
        if kind != "SalesItemLineDetail":
            continue
        detail = line.get("SalesItemLineDetail") or {}
        ref = detail.get("ItemRef") or {}
        lines.append(BooksInvoiceLine(
            item_provider_id=text(ref.get("value")), description=text(line.get("Description")),
            quantity=dec(detail.get("Qty")), unit_price=dec(detail.get("UnitPrice")),
            amount=dec(line.get("Amount"))))
    return BooksInvoice(
        number=text(row.get("DocNumber")), status=status,
        customer_provider_id=_ref(row, "CustomerRef"), issue_date=_date(row.get("TxnDate")),
        due_date=_date(row.get("DueDate")), currency=_ref(row, "CurrencyRef"),
        lines=tuple(lines), subtotal=subtotal,
        tax_total=dec((row.get("TxnTaxDetail") or {}).get("TotalTax")),
        total=total, balance=balance,
    )


_METHODS = {"cash": "cash", "check": "check", "cheque": "check", "credit card": "card",
            "visa": "card", "mastercard": "card", "american express": "card",
            "discover": "card", "diners club": "card", "bank transfer": "bank_transfer",
            "direct debit": "bank_transfer", "ach": "bank_transfer"}


def invoice_ids(row: Mapping[str, Any]) -> list[str]:
    """The invoices a payment row is applied to (Line[].LinkedTxn of TxnType Invoice)."""
    return [str(t.get("TxnId")) for line in row.get("Line") or []
            for t in (line.get("LinkedTxn") or []) if t.get("TxnType") == "Invoice"]


def payment(row: Mapping[str, Any]) -> BooksPayment:
    method_ref = row.get("PaymentMethodRef") or {}
    method = _METHODS.get(str(method_ref.get("name") or "").strip().lower(), "other")
    invoices = invoice_ids(row)
    return BooksPayment(
        amount=dec(row.get("TotalAmt")), currency=_ref(row, "CurrencyRef"),
        date=_date(row.get("TxnDate")), method=method,
        reference=text(row.get("PaymentRefNum")),
        invoice_provider_id=invoices[0] if invoices else None,
    )


def snapshot(entity_type: str, row: Mapping[str, Any]) -> BooksRecord | None:
    """The canonical snapshot of a row; None for a deleted CDC stub (no data left)."""
    if row.get("status") == "Deleted":
        return None
    if entity_type == "customer":
        return customer(row)
    if entity_type == "item":
        return item(row)
    if entity_type == "invoice":
        return invoice(row)
    return payment(row)


def operation(entity_type: str, row: Mapping[str, Any]) -> str | None:
    """What the row itself says happened: deleted, voided, or None (created or updated is
    decided by whether BlueClerk knew the record, not by the row's timestamps)."""
    if row.get("status") == "Deleted":
        return "deleted"
    if entity_type == "invoice" and _voided(row):
        return "voided"
    return None


def written_customer(record: Customer) -> BooksCustomer:
    """The customer as our write leaves it in QuickBooks (the body the adapter sends)."""
    return customer(translate.customer_body(record))


def written_item(record: Item) -> BooksItem:
    return item(translate.item_body(record, None))
