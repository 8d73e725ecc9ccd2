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
- Totals: `xero_lines(body, rates)` is what Xero will make of each line (LineAmount to
  2 dp; TaxAmount as sent, else the line's TaxType rate applied per X-round: exclusive
  round2(amount x rate / 100), inclusive round2(amount x rate / (100 + rate))) and
  `xero_totals` their sums. The adapter compares them with BlueClerk's, line by line,
  before writing.
- DueDate: always sent (Xero refuses an AUTHORISED invoice without one unless the
  organisation has default terms): BlueClerk's due date, or the issue date when the
  invoice has none (due on receipt; BlueClerk names no terms to derive one from).
- Tax (`LineTax` per line, chosen by the adapter): every line carries a TaxType, the
  organisation's code mapped to BlueClerk's tax rate (`upsert_invoice(taxes=...)`);
  untaxed lines carry `NONE` ("No GST", "No VAT", "Tax Exempt"; an AU organisation
  files it as BAS Excluded). Xero computes the tax of a taxed line itself; `TaxAmount`
  is sent only where Xero's figure is already known to be BlueClerk's: 0 on a 0 % line,
  and in currencies whose minor unit is not the cent (JPY, KWD), where Xero's 2 dp tax
  would carry fractions of the currency, BlueClerk's own rounded amount.
- Items: a taxable item leaves `SalesDetails.TaxType` to its sales account's default
  tax type (TaxTypes differ per region: OUTPUT2 in NZ/UK, OUTPUT in AU/US); an untaxed
  one says NONE. Invoice lines always name their own TaxType.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from providers.port import RemoteCustomer, RemoteItem
from schemas.money import quantize_money
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

__all__ = [
    "ItemRef",
    "LineTax",
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
    "sent_line_amount",
    "xero_line_amount",
    "xero_line_tax",
    "xero_lines",
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


@dataclass(frozen=True, slots=True)
class LineTax:
    """A line's Xero TaxType and, where the adapter sends one, its TaxAmount."""

    tax_type: str
    tax_amount: Decimal | None = None


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
    }
    if not item.taxable:
        sales["TaxType"] = "NONE"
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


def xero_line_tax(line_amount: Decimal, rate: Decimal, mode: str) -> Decimal:
    """Xero's own tax on one line at its TaxType's rate, to 2 dp (X-round: per line).
    `mode` is BlueClerk's (exclusive, inclusive, none) or Xero's LineAmountTypes."""
    if mode in ("none", "NoTax") or rate == 0:
        return Decimal("0.00")
    if mode in ("inclusive", "Inclusive"):
        tax = line_amount * rate / (Decimal(100) + rate)
    else:
        tax = line_amount * rate / Decimal(100)
    return tax.quantize(_CENT, rounding=ROUND_HALF_UP)


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


def _quantities(line: InvoiceLine) -> tuple[Decimal, Decimal, Decimal | None]:
    """(Quantity, UnitAmount, DiscountRate or None) as sent: BlueClerk's own when Xero's
    rule gives BlueClerk's line amount, else 1 x the amount."""
    natural = (_places(line.discount_percent) <= 2
               and xero_line_amount(line.quantity, line.unit_price, line.discount_percent)
               == line.amount)
    if natural:
        return (line.quantity.quantize(_DP4, rounding=ROUND_HALF_UP),
                line.unit_price.quantize(_DP4, rounding=ROUND_HALF_UP),
                line.discount_percent or None)
    return Decimal(1), line.amount.quantize(_DP4, rounding=ROUND_HALF_UP), None


def sent_line_amount(line: InvoiceLine) -> Decimal:
    """The LineAmount Xero will have for the line as `line_item` sends it."""
    qty, unit, discount = _quantities(line)
    return xero_line_amount(qty, unit, discount or Decimal(0))


def line_item(line: InvoiceLine, mode: str, currency: str, ref: ItemRef | None,
              account_code: str, tax: LineTax) -> dict[str, Any]:
    qty, unit, discount = _quantities(line)
    out: dict[str, Any] = {"Description": (line.description or "")[:4000] or "Item",
                           "Quantity": num(qty), "UnitAmount": num(unit)}
    if discount is not None:
        out["DiscountRate"] = num(discount)
    out["LineAmount"] = num(xero_line_amount(qty, unit, discount or Decimal(0)))
    if ref is not None:
        out["ItemCode"] = ref.code
    out["AccountCode"] = (ref.account_code if ref and ref.account_code else account_code)
    out["TaxType"] = tax.tax_type
    if tax.tax_amount is not None and mode != "none":
        out["TaxAmount"] = num(tax.tax_amount)
    return out


def invoice_body(invoice: Invoice, contact_id: str, refs: Mapping[str, ItemRef],
                 account_code: str, taxes: Sequence[LineTax]) -> dict[str, Any]:
    """`taxes`: one LineTax per line of the invoice, in order."""
    body: dict[str, Any] = {
        "Type": "ACCREC",
        "Contact": {"ContactID": contact_id},
        "LineAmountTypes": _LINE_AMOUNT_TYPES[invoice.tax_mode],
        "LineItems": [line_item(li, invoice.tax_mode, invoice.currency, refs.get(li.item_id),
                                account_code, tax)
                      for li, tax in zip(invoice.lines, taxes, strict=True)],
        "Date": invoice.issue_date.isoformat(),
        "InvoiceNumber": invoice.number[:255],
        "Reference": (invoice.memo or "")[:255],
        "CurrencyCode": invoice.currency,
        "Status": "DRAFT" if invoice.status == "draft" else "AUTHORISED",
        "DueDate": (invoice.due_date or invoice.issue_date).isoformat(),
    }
    return body


def xero_lines(body: Mapping[str, Any], rates: Mapping[str, Decimal] | None = None
               ) -> list[tuple[Decimal, Decimal | None]]:
    """(LineAmount, TaxAmount) Xero will compute for each line of an invoice body: line
    amounts to 2 dp; a sent TaxAmount as is (OpenAPI LineItem.TaxAmount), else the rate
    of the line's TaxType from `rates` per line, to 2 dp (X-round); None where the rate
    is not known. NoTax lines have no tax."""
    mode = body.get("LineAmountTypes", "Exclusive")
    out: list[tuple[Decimal, Decimal | None]] = []
    for li in body.get("LineItems") or []:
        amount = xero_line_amount(_dec(li.get("Quantity"), "1"), _dec(li.get("UnitAmount")),
                                  _dec(li.get("DiscountRate")))
        tax: Decimal | None
        if mode == "NoTax":
            tax = Decimal("0.00")
        elif li.get("TaxAmount") is not None:
            tax = _dec(li["TaxAmount"]).quantize(_CENT, rounding=ROUND_HALF_UP)
        else:
            rate = (rates or {}).get(str(li.get("TaxType") or ""))
            tax = None if rate is None else xero_line_tax(amount, rate, mode)
        out.append((amount, tax))
    return out


def xero_totals(body: Mapping[str, Any], rates: Mapping[str, Decimal] | None = None
                ) -> tuple[Decimal, Decimal, Decimal] | None:
    """(SubTotal, TotalTax, Total) Xero will compute for an invoice body (`xero_lines`
    summed), or None when the tax of some line is not known."""
    lines = tax = Decimal("0.00")
    for amount, line_tax_ in xero_lines(body, rates):
        if line_tax_ is None:
            return None
        lines += amount
        tax += line_tax_
    if body.get("LineAmountTypes", "Exclusive") == "Inclusive":
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
