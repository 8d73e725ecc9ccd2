"""Canonical records -> QuickBooks Online v3 JSON (field names from Intuit's XSDs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.money import quantize_money
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

__all__ = [
    "QboTaxCode",
    "QboTaxPart",
    "blueclerk_line_taxes",
    "customer_body",
    "display_name",
    "global_invoice_body",
    "invoice_body",
    "item_body",
    "payment_body",
    "payment_ref",
    "predict_line_tax",
    "quote_query_literal",
    "tax_codes",
]

_TAX_MODES = {"exclusive": "TaxExcluded", "inclusive": "TaxInclusive", "none": "NotApplicable"}


def quote_query_literal(value: str) -> str:
    """Quote a string for QuickBooks' query language: backslash escapes \\ and '."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def display_name(customer: Customer) -> str:
    # QuickBooks forbids ':' in DisplayName (it separates sub-customers) and caps it at
    # 500 characters; both are rewritten rather than failing the customer.
    return customer.display_name.replace(":", " -").strip()[:500]


def _address(address: Address | None) -> dict[str, str] | None:
    if address is None:
        return None
    fields = {
        "Line1": address.line1, "Line2": address.line2, "City": address.city,
        "CountrySubDivisionCode": address.region, "PostalCode": address.postal_code,
        "Country": address.country,
    }
    return {k: v for k, v in fields.items() if v}


def customer_body(customer: Customer) -> dict[str, Any]:
    """The fields BlueClerk owns. ``Active`` is sent only for an inactive customer (a new
    customer is active by default); on updates the adapter adds it only when it changes,
    because QuickBooks refuses to make a customer with a balance inactive
    (quickbooks-ruby #390) and a body that always carried ``Active: false`` would fail every
    later edit of such a customer."""
    body: dict[str, Any] = {
        "DisplayName": display_name(customer),
        "GivenName": customer.given_name or "",
        "FamilyName": customer.family_name or "",
        "CompanyName": customer.company_name or "",
        "PrimaryEmailAddr": {"Address": customer.email or ""},
        "PrimaryPhone": {"FreeFormNumber": customer.phone or ""},
        "CurrencyRef": {"value": customer.currency},
    }
    if not customer.active:
        body["Active"] = False
    address = _address(customer.billing_address)
    if address:
        body["BillAddr"] = address
    return body


def _money(value: Decimal) -> str:
    return format(value, "f")


def item_body(item: Item, income_account_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": item.name.replace(":", " -")[:100],
        "Type": "Service",
        "UnitPrice": _money(item.unit_price),
        "Taxable": item.taxable,
        "Active": item.active,
    }
    if item.sku:
        body["Sku"] = item.sku
    if item.description:
        body["Description"] = item.description[:4000]
    if income_account_id:
        body["IncomeAccountRef"] = {"value": income_account_id}
    return body


def _inclusive_line_tax(invoice: Invoice) -> list[Decimal]:
    """Tax inside each tax-inclusive line: amount * r / (100 + r), rounded to the currency,
    with the rounding residue against ``invoice.tax_total`` put on the largest taxed line so
    that the lines' tax adds up to the invoice's own tax total."""
    return blueclerk_line_taxes(invoice)


def blueclerk_line_taxes(invoice: Invoice) -> list[Decimal]:
    """BlueClerk's tax on each line, rounded on the line (exclusive: amount x r / 100;
    inclusive: amount x r / (100 + r); no tax: 0); a residue against ``invoice.tax_total``
    (a producer that rounds otherwise) goes on the largest taxed line, so the lines add up
    to BlueClerk's own tax total."""
    def one(line: InvoiceLine) -> Decimal:
        r = line.tax_rate_percent
        if invoice.tax_mode == "inclusive":
            return quantize_money(line.amount * r / (100 + r), invoice.currency)
        if invoice.tax_mode == "exclusive":
            return quantize_money(line.amount * r / 100, invoice.currency)
        return Decimal(0)

    taxes = [one(line) for line in invoice.lines]
    residue = invoice.tax_total - sum(taxes, Decimal(0))
    if residue and invoice.lines:
        taxed = [i for i, line in enumerate(invoice.lines) if line.tax_rate_percent > 0]
        pool = taxed or list(range(len(invoice.lines)))
        biggest = max(pool, key=lambda i: invoice.lines[i].amount)
        taxes[biggest] += residue
    return taxes


def _us_code(line: InvoiceLine, codes: Mapping[str, str] | None) -> str:
    """US automated sales tax: TAX or NON per line (the mapped code when given)."""
    if codes is not None:
        return codes.get(line.tax_key, "NON") if line.taxed else "NON"
    return "TAX" if line.tax_rate_percent > 0 else "NON"


def invoice_body(invoice: Invoice, customer_id: str, item_ids: dict[str, str],
                 codes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Line ``Amount`` is tax-exclusive in every mode (Finance.xsd: the inclusive figure is
    ``SalesItemLineDetail.TaxInclusiveAmt``); the tax total is stated explicitly, which
    QuickBooks honours instead of recomputing.

    Exclusive / no tax: lines at gross (Qty x UnitPrice), line discounts as one discount
    line. Inclusive: each line's ``Amount`` is BlueClerk's (discounted, tax-inclusive) line
    amount less the tax inside it, ``TaxInclusiveAmt`` the line amount itself; ``UnitPrice``
    is left out (BlueClerk's is tax-inclusive, QuickBooks' would have to be exclusive and
    Qty x UnitPrice = Amount), so QuickBooks' total is sum(Amount) + TotalTax = the total."""
    if invoice.tax_mode == "inclusive":
        return _inclusive_invoice_body(invoice, customer_id, item_ids, codes)
    lines: list[dict[str, Any]] = []
    discount = Decimal(0)
    for line in invoice.lines:
        gross = quantize_money(line.quantity * line.unit_price, invoice.currency)
        discount += gross - line.amount
        detail: dict[str, Any] = {
            "ItemRef": {"value": item_ids[line.item_id]},
            "Qty": _money(line.quantity),
            "UnitPrice": _money(line.unit_price),
            "TaxCodeRef": {"value": _us_code(line, codes)},
        }
        lines.append({
            "DetailType": "SalesItemLineDetail",
            "Amount": _money(gross),
            "Description": (line.description or "")[:4000],
            "SalesItemLineDetail": detail,
        })
    if discount:
        lines.append({
            "DetailType": "DiscountLineDetail",
            "Amount": _money(discount),
            "DiscountLineDetail": {"PercentBased": False},
        })
    return _invoice_header(invoice, customer_id, lines)


def _inclusive_invoice_body(invoice: Invoice, customer_id: str, item_ids: dict[str, str],
                            codes: Mapping[str, str] | None) -> dict[str, Any]:
    lines: list[dict[str, Any]] = []
    for line, tax in zip(invoice.lines, _inclusive_line_tax(invoice), strict=True):
        detail: dict[str, Any] = {
            "ItemRef": {"value": item_ids[line.item_id]},
            "Qty": _money(line.quantity),
            "TaxInclusiveAmt": _money(line.amount),
            "TaxCodeRef": {"value": _us_code(line, codes)},
        }
        lines.append({
            "DetailType": "SalesItemLineDetail",
            "Amount": _money(line.amount - tax),
            "Description": (line.description or "")[:4000],
            "SalesItemLineDetail": detail,
        })
    return _invoice_header(invoice, customer_id, lines)


def _invoice_header(invoice: Invoice, customer_id: str,
                    lines: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "CustomerRef": {"value": customer_id},
        "DocNumber": invoice.number[:21],
        "TxnDate": invoice.issue_date.isoformat(),
        "CurrencyRef": {"value": invoice.currency},
        "GlobalTaxCalculation": _TAX_MODES[invoice.tax_mode],
        "Line": lines,
    }
    if invoice.due_date:
        body["DueDate"] = invoice.due_date.isoformat()
    if invoice.tax_mode != "none":
        body["TxnTaxDetail"] = {"TotalTax": _money(invoice.tax_total)}
    if invoice.memo:
        body["CustomerMemo"] = {"value": invoice.memo[:1000]}
    return body


# ---- companies outside the US: their own TaxCodes, tax computed by QuickBooks ----------


@dataclass(frozen=True, slots=True)
class QboTaxPart:
    rate_id: str
    name: str
    percent: Decimal
    applicable: str  # TaxOnAmount | TaxOnAmountPlusTax | TaxOnTax (Finance.xsd)


@dataclass(frozen=True, slots=True)
class QboTaxCode:
    """A company TaxCode with its sales rates (``SalesTaxRateList`` -> ``TaxRate``)."""

    id: str
    name: str
    parts: tuple[QboTaxPart, ...]
    active: bool = True
    zero_kind: str | None = None  # "ZERO_RATE" for a zero-rated code (TaxRate.SpecialTaxType)

    @property
    def compound(self) -> bool:
        return any(p.applicable != "TaxOnAmount" for p in self.parts)

    @property
    def percent(self) -> Decimal:
        """The code's effective percent: its rates added, a tax-on-tax rate applied to the
        amount plus the earlier ones."""
        total = Decimal(0)
        for part in self.parts:
            if part.applicable == "TaxOnAmountPlusTax":
                total += part.percent * (100 + total) / 100
            elif part.applicable == "TaxOnTax":
                total += part.percent * total / 100
            else:
                total += part.percent
        return total.normalize()


def tax_codes(codes: Sequence[Mapping[str, Any]], rates: Sequence[Mapping[str, Any]]
              ) -> dict[str, QboTaxCode]:
    """The company's sales tax codes from ``select * from TaxCode`` and ``TaxRate``; codes
    without sales rates (purchase-only) are left out."""
    by_id = {str(r["Id"]): r for r in rates}
    out: dict[str, QboTaxCode] = {}
    for code in codes:
        details = ((code.get("SalesTaxRateList") or {}).get("TaxRateDetail")) or []
        parts: list[QboTaxPart] = []
        special = None
        for d in sorted(details, key=lambda d: int(d.get("TaxOrder") or 0)):
            rid = str((d.get("TaxRateRef") or {}).get("value"))
            rate = by_id.get(rid)
            if rate is None:
                parts = []
                break
            parts.append(QboTaxPart(rid, str(rate.get("Name") or rid),
                                    Decimal(str(rate.get("RateValue", 0))),
                                    str(d.get("TaxTypeApplicable") or "TaxOnAmount")))
            if rate.get("SpecialTaxType") == "ZERO_RATE":
                special = "ZERO_RATE"
        if not parts:
            continue
        out[str(code["Id"])] = QboTaxCode(str(code["Id"]), str(code.get("Name") or code["Id"]),
                                          tuple(parts), code.get("Active", True) is not False,
                                          special)
    return out


def predict_line_tax(code: QboTaxCode, net: Decimal, currency: str) -> Decimal:
    """QuickBooks' tax on one line: each of the code's rates on the line's exclusive amount,
    rounded on the line (sandbox/quickbooks/README.md, T5-T7)."""
    taxes: list[Decimal] = []
    for part in code.parts:
        earlier = sum(taxes, Decimal(0))
        base = {"TaxOnAmountPlusTax": net + earlier, "TaxOnTax": earlier}.get(
            part.applicable, net)
        taxes.append(quantize_money(base * part.percent / 100, currency))
    return sum(taxes, Decimal(0))


def global_invoice_body(invoice: Invoice, customer_id: str, item_ids: Mapping[str, str],
                        codes: Sequence[str], nets: Sequence[Decimal]) -> dict[str, Any]:
    """A non-US invoice: every line names its TaxCode and carries its exclusive amount
    (discount applied: QuickBooks' discount line would be spread over the codes by its own
    rule); the tax is left to QuickBooks, which computes it line by line."""
    lines: list[dict[str, Any]] = []
    for line, code, net in zip(invoice.lines, codes, nets, strict=True):
        detail: dict[str, Any] = {"ItemRef": {"value": item_ids[line.item_id]},
                                  "Qty": _money(line.quantity), "TaxCodeRef": {"value": code}}
        if invoice.tax_mode == "inclusive":
            detail["TaxInclusiveAmt"] = _money(line.amount)
        elif quantize_money(line.quantity * line.unit_price, invoice.currency) == net:
            detail["UnitPrice"] = _money(line.unit_price)
        lines.append({"DetailType": "SalesItemLineDetail", "Amount": _money(net),
                      "Description": (line.description or "")[:4000],
                      "SalesItemLineDetail": detail})
    body = _invoice_header(invoice, customer_id, lines)
    body.pop("TxnTaxDetail", None)
    body["GlobalTaxCalculation"] = ("TaxInclusive" if invoice.tax_mode == "inclusive"
                                    else "TaxExcluded")
    return body


def payment_body(payment: Payment, customer_id: str, invoice_id: str,
                 deposit_account_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": _money(payment.amount),
        "TxnDate": payment.paid_on.isoformat(),
        "CurrencyRef": {"value": payment.currency},
        "PaymentRefNum": payment_ref(payment),
        "Line": [{
            "Amount": _money(payment.amount),
            "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}],
        }],
    }
    if deposit_account_id:
        body["DepositToAccountRef"] = {"value": deposit_account_id}
    return body


def payment_ref(payment: Payment) -> str:
    """A short, stable reference (PaymentRefNum holds 21 characters) to find it again."""
    import hashlib

    return "BC-" + hashlib.sha1(payment.id.encode()).hexdigest()[:16]
