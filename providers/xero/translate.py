"""Canonical records -> Xero Accounting API 2.0 JSON (providers.md section 2), and back.

Xero's invoice rule (X-round; the simulator's `line_totals`): Quantity is kept to 4 dp,
UnitAmount to 4 dp with `?unitdp=4`; LineAmount = round2(Quantity x UnitAmount x
(100 - DiscountRate) / 100); tax per line, rounded to 2 dp, then summed; a client
`TaxAmount` per line replaces the computed tax. ROUND_HALF_UP throughout.

Translation choices:

- Lines: Quantity, UnitAmount and DiscountRate as BlueClerk has them when Xero's rule
  gives BlueClerk's own `line.amount`; otherwise (more than 4 dp, or a currency whose
  minor unit rounds differently) the line goes as Quantity 1 x `line.amount` without a
  discount, so the line amount is still BlueClerk's. `LineAmount` is always Xero's own
  arithmetic on what is sent (`xero_line_amount`): Xero refuses a LineAmount that
  differs from it ("The line total ... does not match the expected line total ...").
- Totals: `xero_totals(body)` is what Xero will make of the body (lines to 2 dp, a
  sent `TaxAmount` as is, summed); None when a line leaves the tax to Xero. The
  adapter compares it with BlueClerk's total before writing.
- DueDate: always sent (Xero refuses an AUTHORISED invoice without one unless the
  organisation has default terms): BlueClerk's due date, or the issue date when the
  invoice has none (due on receipt; BlueClerk names no terms to derive one from).
- Tax: `TaxAmount` per line is BlueClerk's own (exclusive: round(amount x rate / 100),
  inclusive: round(amount x rate / (100 + rate)), to the currency's minor unit), so the
  tax total is BlueClerk's to the cent whatever rate the Xero tax type carries. The tax
  type is the organisation's revenue tax rate with the line's rate when there is one,
  else `OUTPUT`; rate 0 (or tax mode "none") is `NONE`.
- Money goes out as JSON numbers (the spec's `number`); Xero totals have 2 dp, so a
  currency with 3 dp may not total the same: the adapter compares totals and raises
  TotalMismatch rather than keeping a wrong invoice.
- External keys: ContactNumber is the BlueClerk customer id (or "BC-" + 47 hex of its
  SHA-256 when longer than 50); an item's Code is its SKU when 1..30 characters, else
  "BC-" + the first 27 hex digits of the SHA-256 of the BlueClerk item id; a payment's
  Reference ends with "BC-<payment id>".
- Names: contact Name is trimmed to 255, item Name to 50 characters.
- The billing address is the contact's POBOX address (the one Xero prints on invoices).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from providers.port import RemoteCustomer, RemoteItem
from schemas.money import quantize_money
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

__all__ = [
    "ItemRef",
    "contact_body",
    "contact_name",
    "contact_number",
    "invoice_body",
    "item_body",
    "item_code",
    "line_item",
    "line_tax",
    "num",
    "parse_xero_date",
    "payment_body",
    "payment_reference",
    "quote_where",
    "reference_has_payment",
    "remote_customer",
    "remote_item",
    "xero_line_amount",
    "xero_totals",
]

_LINE_AMOUNT_TYPES = {"exclusive": "Exclusive", "inclusive": "Inclusive", "none": "NoTax"}
_CENT = Decimal("0.01")
_DP4 = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class ItemRef:
    """What an invoice line needs of a Xero item: its Code and its sales account code."""

    code: str
    account_code: str | None


def num(value: Decimal) -> float | int:
    """A Decimal as a JSON number (the spec's `number`); exact for <= 15 significant digits."""
    if value == value.to_integral_value() and abs(value) < 2**53:
        return int(value)
    return float(value)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def contact_number(customer_id: str) -> str:
    """ContactNumber (<= 50, API-only): the stable external key of a BlueClerk customer."""
    return customer_id if len(customer_id) <= 50 else "BC-" + _sha(customer_id)[:47]


def item_code(item: Item) -> str:
    sku = (item.sku or "").strip()
    if sku and len(sku) <= 30:
        return sku
    return "BC-" + _sha(item.id)[:27]


def contact_name(customer: Customer) -> str:
    name = customer.display_name.strip()
    if not name:
        person = " ".join(p for p in (customer.given_name, customer.family_name) if p)
        name = (customer.company_name or person or customer.email or customer.id).strip()
    return name[:255]


def _address(address: Address | None) -> dict[str, str]:
    a = address or Address()
    return {
        "AddressType": "POBOX",
        "AddressLine1": (a.line1 or "")[:500], "AddressLine2": (a.line2 or "")[:500],
        "City": (a.city or "")[:255], "Region": (a.region or "")[:255],
        "PostalCode": (a.postal_code or "")[:50], "Country": (a.country or "")[:50],
    }


def contact_body(customer: Customer) -> dict[str, Any]:
    """A full contact: empty strings clear fields BlueClerk no longer has."""
    return {
        "Name": contact_name(customer),
        "ContactNumber": contact_number(customer.id),
        "FirstName": (customer.given_name or "")[:255],
        "LastName": (customer.family_name or "")[:255],
        "EmailAddress": (customer.email or "")[:255],
        "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": (customer.phone or "")[:50]}],
        "Addresses": [_address(customer.billing_address)],
        "DefaultCurrency": customer.currency,
        "ContactStatus": "ACTIVE" if customer.active else "ARCHIVED",
    }


def item_body(item: Item, account_code: str | None) -> dict[str, Any]:
    sales: dict[str, Any] = {
        "UnitPrice": num(item.unit_price.quantize(_DP4, rounding=ROUND_HALF_UP)),
        "TaxType": "OUTPUT" if item.taxable else "NONE",
    }
    if account_code:
        sales["AccountCode"] = account_code
    body: dict[str, Any] = {
        "Code": item_code(item),
        "Name": item.name.strip()[:50] or item_code(item),
        "IsSold": True,
        "SalesDetails": sales,
    }
    if item.description:
        body["Description"] = item.description[:4000]
    return body


def xero_line_amount(quantity: Decimal, unit: Decimal, discount: Decimal) -> Decimal:
    """What Xero makes of a line: 4 dp quantity and unit amount, 2 dp line amount."""
    q = quantity.quantize(_DP4, rounding=ROUND_HALF_UP)
    u = unit.quantize(_DP4, rounding=ROUND_HALF_UP)
    return (q * u * (Decimal(100) - discount) / Decimal(100)).quantize(
        _CENT, rounding=ROUND_HALF_UP)


def line_tax(amount: Decimal, rate: Decimal, mode: str, currency: str) -> Decimal:
    """BlueClerk's tax on one line, rounded to the currency's minor unit."""
    if mode == "none" or rate == 0:
        return quantize_money(Decimal(0), currency)
    if mode == "inclusive":
        return quantize_money(amount * rate / (Decimal(100) + rate), currency)
    return quantize_money(amount * rate / Decimal(100), currency)


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def line_item(line: InvoiceLine, mode: str, currency: str, ref: ItemRef | None,
              account_code: str, tax_types: Mapping[Decimal, str]) -> dict[str, Any]:
    natural = (_places(line.discount_percent) <= 2
               and xero_line_amount(line.quantity, line.unit_price, line.discount_percent)
               == line.amount)
    out: dict[str, Any] = {"Description": (line.description or "")[:4000] or "Item"}
    if natural:
        out["Quantity"] = num(line.quantity.quantize(_DP4, rounding=ROUND_HALF_UP))
        out["UnitAmount"] = num(line.unit_price.quantize(_DP4, rounding=ROUND_HALF_UP))
        if line.discount_percent:
            out["DiscountRate"] = num(line.discount_percent)
    else:
        out["Quantity"] = 1
        out["UnitAmount"] = num(line.amount.quantize(_DP4, rounding=ROUND_HALF_UP))
    out["LineAmount"] = num(xero_line_amount(_dec(out["Quantity"]), _dec(out["UnitAmount"]),
                                             _dec(out.get("DiscountRate"))))
    if ref is not None:
        out["ItemCode"] = ref.code
    out["AccountCode"] = (ref.account_code if ref and ref.account_code else account_code)
    if mode == "none" or line.tax_rate_percent == 0:
        out["TaxType"] = "NONE"
        if mode != "none":
            out["TaxAmount"] = 0
    else:
        out["TaxType"] = tax_types.get(line.tax_rate_percent, "OUTPUT")
        out["TaxAmount"] = num(line_tax(line.amount, line.tax_rate_percent, mode, currency))
    return out


def invoice_body(invoice: Invoice, contact_id: str, refs: Mapping[str, ItemRef],
                 account_code: str, tax_types: Mapping[Decimal, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Type": "ACCREC",
        "Contact": {"ContactID": contact_id},
        "LineAmountTypes": _LINE_AMOUNT_TYPES[invoice.tax_mode],
        "LineItems": [line_item(li, invoice.tax_mode, invoice.currency, refs.get(li.item_id),
                                account_code, tax_types) for li in invoice.lines],
        "Date": invoice.issue_date.isoformat(),
        "InvoiceNumber": invoice.number[:255],
        "Reference": (invoice.memo or "")[:255],
        "CurrencyCode": invoice.currency,
        "Status": "DRAFT" if invoice.status == "draft" else "AUTHORISED",
        "DueDate": (invoice.due_date or invoice.issue_date).isoformat(),
    }
    return body


def xero_totals(body: Mapping[str, Any]) -> tuple[Decimal, Decimal, Decimal] | None:
    """(SubTotal, TotalTax, Total) Xero will compute for an invoice body (X-round: per
    line, 2 dp, summed; a sent TaxAmount replaces the computed tax, per the OpenAPI
    LineItem.TaxAmount), or None when some line leaves its tax to Xero."""
    mode = body.get("LineAmountTypes", "Exclusive")
    lines = tax = Decimal("0.00")
    for li in body.get("LineItems") or []:
        lines += xero_line_amount(_dec(li.get("Quantity"), "1"), _dec(li.get("UnitAmount")),
                                  _dec(li.get("DiscountRate")))
        if mode == "NoTax":
            continue
        if li.get("TaxAmount") is None:
            return None
        tax += _dec(li["TaxAmount"]).quantize(_CENT, rounding=ROUND_HALF_UP)
    if mode == "Inclusive":
        return lines - tax, tax, lines
    return lines, tax, lines + tax


def payment_reference(payment: Payment) -> str:
    """Ends with "BC-<payment id>" so the payment can be found on its invoice again."""
    tag = f"BC-{payment.id}"
    if payment.reference:
        return f"{payment.reference.strip()[:200]} {tag}"
    return tag


def reference_has_payment(reference: str | None, payment_id: str) -> bool:
    tag = f"BC-{payment_id}"
    ref = (reference or "").strip()
    return ref == tag or ref.endswith(" " + tag)


def payment_body(payment: Payment, invoice_id: str, bank_code: str) -> dict[str, Any]:
    return {
        "Invoice": {"InvoiceID": invoice_id},
        "Account": {"Code": bank_code},
        "Date": payment.paid_on.isoformat(),
        "Amount": num(payment.amount),
        "Reference": payment_reference(payment),
    }


def quote_where(value: str) -> str:
    """A string literal for Xero's `where` parameter (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_MSDATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(value: Any) -> dt.datetime | None:
    """`/Date(1551399321043+0000)/` (epoch ms, UTC) or ISO-8601 -> an aware UTC datetime."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    m = _MSDATE.match(text)
    if m:
        return dt.datetime.fromtimestamp(int(m.group(1)) / 1000, dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _dec(value: Any, default: str = "0") -> Decimal:
    return Decimal(str(value)) if value is not None and value != "" else Decimal(default)


def _phone(c: Mapping[str, Any]) -> str | None:
    phones = {p.get("PhoneType"): p for p in c.get("Phones") or []}
    for kind in ("DEFAULT", "MOBILE", "DDI", "OFFICE"):
        p = phones.get(kind) or {}
        parts = [str(p.get(k) or "").strip() for k in
                 ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber")]
        text = " ".join(x for x in parts if x)
        if p.get("PhoneNumber") and text:
            return text
    return None


def _remote_address(c: Mapping[str, Any]) -> Address | None:
    by_type = {a.get("AddressType"): a for a in c.get("Addresses") or []}
    for kind in ("POBOX", "STREET"):
        a = by_type.get(kind) or {}
        fields = [a.get(k) or None for k in ("AddressLine1", "AddressLine2", "City", "Region",
                                             "PostalCode", "Country")]
        if any(fields):
            return Address(*fields)
    return None


def remote_customer(c: Mapping[str, Any]) -> RemoteCustomer:
    return RemoteCustomer(
        id=str(c["ContactID"]), display_name=str(c.get("Name") or ""),
        given_name=c.get("FirstName") or None, family_name=c.get("LastName") or None,
        company_name=None, email=c.get("EmailAddress") or None, phone=_phone(c),
        address=_remote_address(c), active=c.get("ContactStatus", "ACTIVE") == "ACTIVE",
    )


def remote_item(i: Mapping[str, Any]) -> RemoteItem:
    sales = i.get("SalesDetails") or {}
    return RemoteItem(
        id=str(i["ItemID"]), name=str(i.get("Name") or i.get("Code") or ""),
        sku=i.get("Code") or None, description=i.get("Description") or None,
        unit_price=_dec(sales.get("UnitPrice")),
        income_account_id=sales.get("AccountCode") or None,
        active=i.get("IsSold", True) is not False,
    )
