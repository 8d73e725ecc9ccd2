"""Canonical records -> FreshBooks JSON (providers.md section 3), and the invoice arithmetic.

FreshBooks' invoice rule (the simulator's, from the API's behaviour): line amount =
round2(qty x unit_cost); an invoice-level discount percent reduces every line's tax base;
tax = round2(base x taxAmount / 100) per line; total = subtotal - discount + taxes;
ROUND_HALF_UP, always two decimals.

Translation choices (FreshBooks has less to say than BlueClerk):

- Per-line discounts: FreshBooks has only an invoice-level ``discount_value`` (percent)
  whose rounding (on the subtotal, with the tax base left unrounded) differs from
  BlueClerk's per-line rounding by a cent now and then. So the discount is folded into
  each line instead, and ``discount_value`` is never sent. Each line must come out at
  BlueClerk's own ``line.amount``; the first that holds of
  1. ``qty`` x the exact discounted unit cost (when it fits the currency's minor unit),
  2. ``qty`` x that unit cost rounded to the minor unit,
  3. ``qty`` 1 x the line amount, the real quantity and price written in the description,
  is sent. A discounted line says "list price P less D%" in its description.
- Tax-inclusive invoices: FreshBooks is tax-exclusive. Each line is sent at a net
  amount n whose FreshBooks tax, round2(n x percent), is BlueClerk's own tax for the line
  (BlueClerk: amount x rate / (100 + rate), rounded to the minor unit): BlueClerk's net
  (amount - tax) when that works, else the cent below or above it (one of the three
  always does, as a step of one cent moves the tax by less than a cent). The cents left
  between n + tax and the inclusive amount (at most one per line, either sign) go on one
  untaxed "Rounding" line, so both the tax total and the invoice total equal BlueClerk's
  to the cent. (Other currencies: the largest n with n + round2(n x percent) <= the
  amount, and the rounding-line rule below.)
- Tax: each taxed line carries its tax by name and percent, ``taxName1``/``taxAmount1``
  (freshbooks.com/api/invoices; a percent, at most 3 decimals: more is refused as
  UNSUPPORTED). The adapter passes the tax per line (``LineTax``): the mapped FreshBooks
  tax's name and its current percent. Without one (callers that pass no mapping) the
  line is named "Tax <percent>%" at BlueClerk's percent.
- Compound rates: a BlueClerk line carries one rate (InvoiceChangeEvent v2), so a
  compound BlueClerk rate has no other tax on its line to stack on, and BlueClerk's tax
  for the line is amount x rate like any other. It is written as the line's only tax,
  ``taxName1``: FreshBooks computes a compound tax "on top of primary taxes"
  (freshbooks.com/api/taxes), i.e. only in second position over the first, so in first
  position it is the line amount x percent, BlueClerk's figure. ``taxName2`` is never
  written; the prediction below still honours FreshBooks' compound second tax.
- Before writing, FreshBooks' figures are predicted line by line (``freshbooks_figures``)
  and compared with BlueClerk's (``tax_mismatch``): the invoice total after the
  rounding line, and for 2-decimal currencies the tax of every line and the tax total.
- Money goes out at the currency's minor unit; FreshBooks itself keeps and rounds to 2
  decimals (tax included), so for a currency with another exponent FreshBooks' total can
  differ from BlueClerk's by the rounding alone (259 JPY, where FreshBooks rounds each
  line's tax to the cent and gets 258.50). When BlueClerk's total fits in 2 decimals and
  the gap is within one unit (the coarser of the currency's minor unit and the cent) per
  line, an untaxed "Rounding" adjustment line closes it, as for tax-inclusive prices (the
  line may be negative). Only a total FreshBooks cannot hold (a non-zero third decimal,
  25.206 KWD) is left unequal: the adapter compares totals and raises TotalMismatch rather
  than writing a wrong invoice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from providers.errors import PermanentProviderError
from schemas.error_codes import ErrorCode
from schemas.money import minor_unit, quantize_money
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

__all__ = [
    "PAYMENT_TYPES",
    "FreshBooksTotals",
    "LineTax",
    "blueclerk_line_tax",
    "client_body",
    "client_organization",
    "eastern_day",
    "freshbooks_figures",
    "freshbooks_totals",
    "inclusive_net",
    "invoice_body",
    "invoice_lines",
    "item_body",
    "line_taxes_or_default",
    "money",
    "payment_body",
    "payment_tag",
    "q2",
    "tax_mismatch",
]

CENT = Decimal("0.01")

# BlueClerk payment method -> FreshBooks payment type. FreshBooks' documented (classic)
# list has no "Cash": cash and other go out as "Check", FreshBooks' default type, and
# the note says what the method was.
PAYMENT_TYPES: dict[str, str] = {
    "cash": "Check",
    "check": "Check",
    "card": "Credit Card",
    "bank_transfer": "Bank Transfer",
    "other": "Check",
}


def q2(value: Decimal) -> Decimal:
    """FreshBooks' rounding: half up to two decimals."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def _plain(value: Decimal) -> str:
    """A decimal string without exponent or trailing zeros ("1.5", "10", "0")."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def money(value: Decimal, currency: str) -> str:
    return format(quantize_money(value, currency), "f")


# ---- customers and items ------------------------------------------------------------

def client_organization(customer: Customer) -> str:
    return (customer.company_name or customer.display_name).strip()


def _address(address: Address | None) -> dict[str, str]:
    a = address or Address()
    return {
        "p_street": a.line1 or "", "p_street2": a.line2 or "", "p_city": a.city or "",
        "p_province": a.region or "", "p_code": a.postal_code or "",
        "p_country": a.country or "",
    }


def client_body(customer: Customer) -> dict[str, Any]:
    """Every field is sent (empty strings clear), so an update is a full replacement."""
    return {
        "fname": customer.given_name or "",
        "lname": customer.family_name or "",
        "email": (customer.email or "").strip(),
        "organization": client_organization(customer),
        "currency_code": customer.currency,
        "bus_phone": customer.phone or "",
        **_address(customer.billing_address),
    }


def item_body(item: Item) -> dict[str, Any]:
    """FreshBooks items have no income account (providers.md 3.2): the mapping is not
    sent. ``taxable`` is not sent either: tax is stated per invoice line."""
    return {
        "name": item.name,
        "description": item.description or "",
        "sku": item.sku or "",
        "unit_cost": {"amount": money(item.unit_price, item.currency), "code": item.currency},
    }


# ---- invoices -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FreshBooksTotals:
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class LineTax:
    """The tax a FreshBooks line carries (taxName1/taxAmount1): a name and a percent."""

    name: str
    percent: Decimal
    compound: bool = False


def _pct(line: Mapping[str, Any], n: int) -> Decimal:
    return Decimal(str(line.get(f"taxAmount{n}") or 0))


def freshbooks_figures(lines: Iterable[Mapping[str, Any]],
                       discount_value: Decimal = Decimal(0),
                       compound_names: Iterable[str] = ()) -> list[tuple[Decimal, Decimal]]:
    """(line amount, line tax) as FreshBooks computes them for these request lines: amount
    round2(qty x unit_cost); tax1 = round2(base x taxAmount1 / 100); tax2 on base + tax1
    when the second tax is compound (the line's ``compounded_tax`` or a compound tax of
    that name), else on base; base = amount less the invoice discount percent."""
    compound = {n.strip().lower() for n in compound_names}
    factor = (Decimal(100) - discount_value) / Decimal(100)
    out = []
    for line in lines:
        amount = q2(Decimal(str(line["qty"])) * Decimal(str(line["unit_cost"]["amount"])))
        base = amount * factor
        tax1 = q2(base * _pct(line, 1) / 100)
        stacked = bool(line.get("compounded_tax")) or (
            str(line.get("taxName2") or "").strip().lower() in compound)
        tax2 = q2((base + tax1 if stacked else base) * _pct(line, 2) / 100)
        out.append((amount, tax1 + tax2))
    return out


def freshbooks_totals(lines: Iterable[Mapping[str, Any]],
                      discount_value: Decimal = Decimal(0),
                      compound_names: Iterable[str] = ()) -> FreshBooksTotals:
    """What FreshBooks will total for these request lines (``freshbooks_figures``)."""
    figures = freshbooks_figures(lines, discount_value, compound_names)
    subtotal = sum((a for a, _ in figures), Decimal(0))
    tax_total = sum((t for _, t in figures), Decimal(0))
    discount_total = q2(subtotal * discount_value / 100)
    return FreshBooksTotals(subtotal, discount_total, tax_total,
                            subtotal - discount_total + tax_total)


def _with_tax(net: Decimal, rate: Decimal) -> Decimal:
    return net + q2(net * rate / 100)


def inclusive_net(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """The largest net n (in the currency's minor unit) with n + round2(n x rate) <= amount.

    n + tax(n) grows strictly with n, so the search is a few steps from amount/(1+rate).
    """
    step = _quantum(currency)
    net = (amount * 100 / (100 + rate)).quantize(step, rounding=ROUND_HALF_UP)
    while net > 0 and _with_tax(net, rate) > amount:
        net -= step
    while _with_tax(net + step, rate) <= amount:
        net += step
    return max(net, Decimal(0))


def blueclerk_line_tax(invoice: Invoice, line: InvoiceLine) -> Decimal:
    """BlueClerk's own tax on a line: per line, rounded to the currency's minor unit;
    exclusive amount x rate / 100, inclusive amount x rate / (100 + rate)."""
    rate = _line_rate(invoice, line)
    if not rate:
        return Decimal(0)
    if invoice.tax_mode == "inclusive":
        return quantize_money(line.amount * rate / (100 + rate), invoice.currency)
    return quantize_money(line.amount * rate / 100, invoice.currency)


def _inclusive_net(invoice: Invoice, line: InvoiceLine, percent: Decimal) -> Decimal:
    """The net amount of an inclusive line (module docstring): FreshBooks' tax on it is
    BlueClerk's tax for the line, and the cents left over are at most one minor unit."""
    currency = invoice.currency
    step = max(_quantum(currency), CENT)
    if minor_unit(currency) == 2:
        tax = blueclerk_line_tax(invoice, line)
        net = line.amount - tax
        for candidate in (net, net - CENT, net + CENT):
            if candidate >= 0 and q2(candidate * percent / 100) == tax:
                return candidate
    net = inclusive_net(line.amount, percent, currency)
    if abs(line.amount - _with_tax(net, percent)) > step:
        # FreshBooks' percent is not BlueClerk's rate: send BlueClerk's own net and let
        # the comparison name the line, rather than hide the gap in a rounding line.
        return line.amount - blueclerk_line_tax(invoice, line)
    return net


def _tax_percent(rate: Decimal) -> str:
    text = _plain(rate)
    exponent = rate.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -3:
        raise PermanentProviderError(
            f"FreshBooks takes tax percentages to 3 decimal places; {text}% does not fit",
            code=ErrorCode.UNSUPPORTED)
    return text


def _qty_and_unit(qty: Decimal, exact_unit: Decimal, net: Decimal,
                  currency: str) -> tuple[Decimal, Decimal] | None:
    """(qty, unit cost) that FreshBooks multiplies out to exactly `net`, or None."""
    step = _quantum(currency)
    if exact_unit == exact_unit.quantize(step, rounding=ROUND_DOWN) \
            and q2(qty * exact_unit) == net:
        return qty, exact_unit.quantize(step)
    rounded = exact_unit.quantize(step, rounding=ROUND_HALF_UP)
    if q2(qty * rounded) == net:
        return qty, rounded
    return None


def _line_rate(invoice: Invoice, line: InvoiceLine) -> Decimal:
    return line.tax_rate_percent if invoice.tax_mode != "none" else Decimal(0)


def _default_tax(invoice: Invoice, line: InvoiceLine) -> LineTax | None:
    rate = _line_rate(invoice, line)
    return LineTax(f"Tax {_plain(rate)}%", rate) if rate > 0 else None


def line_taxes_or_default(invoice: Invoice,
                          taxes: Sequence[LineTax | None] | None) -> list[LineTax | None]:
    if invoice.tax_mode == "none":
        return [None] * len(invoice.lines)
    if taxes is None:
        return [_default_tax(invoice, li) for li in invoice.lines]
    if len(taxes) != len(invoice.lines):
        raise ValueError("one LineTax (or None) per invoice line")
    return list(taxes)


def invoice_lines(invoice: Invoice, item_names: Mapping[str, str],
                  taxes: Sequence[LineTax | None] | None = None) -> list[dict[str, Any]]:
    """FreshBooks request lines for `invoice` (see the module docstring for the rules).

    `item_names` maps BlueClerk item ids to the item's FreshBooks name; `taxes` gives the
    FreshBooks tax of each BlueClerk line (None: untaxed), in order; without it each
    taxed line is "Tax <percent>%" at BlueClerk's percent. The first len(invoice.lines)
    request lines are BlueClerk's lines in order; a "Rounding" line may follow.
    """
    currency = invoice.currency
    line_taxes = line_taxes_or_default(invoice, taxes)
    out: list[dict[str, Any]] = []
    residual = Decimal(0)
    for line, tax in zip(invoice.lines, line_taxes, strict=True):
        rate = _line_rate(invoice, line)
        percent = tax.percent if tax is not None else Decimal(0)
        inclusive = invoice.tax_mode == "inclusive" and rate > 0
        if inclusive:
            net = _inclusive_net(invoice, line, percent)
            residual += line.amount - _with_tax(net, percent)
            exact_unit = net / line.quantity if line.quantity else net
        else:
            net = line.amount
            exact_unit = line.unit_price * (100 - line.discount_percent) / 100
        fitted = _qty_and_unit(line.quantity, exact_unit, net, currency)
        notes: list[str] = []
        if fitted is None:
            qty, unit = Decimal(1), net
            notes.append(f"{_plain(line.quantity)} x {_plain(line.unit_price)}")
        else:
            qty, unit = fitted
            if line.discount_percent or inclusive:
                notes.append(f"list price {_plain(line.unit_price)}")
        if line.discount_percent:
            notes.append(f"less {_plain(line.discount_percent)}%")
        if inclusive:
            notes.append(f"incl. {_plain(rate)}% tax")
        description = line.description or ""
        if notes:
            description = f"{description} ({', '.join(notes)})".strip()
        body: dict[str, Any] = {
            "type": 0,
            "name": item_names.get(line.item_id) or (line.description or "Item")[:100],
            "description": description,
            "qty": _plain(qty),
            "unit_cost": {"amount": format(unit, "f"), "code": currency},
        }
        if tax is not None:
            body["taxName1"] = tax.name
            body["taxAmount1"] = _tax_percent(tax.percent)
        out.append(body)
    if residual:
        out.append(_rounding_line(residual, currency, "Rounding of tax-inclusive prices"))
    return _close_precision_gap(invoice, out)


def _shown(amount: Decimal, currency: str) -> str:
    """An amount in the currency's precision (more only when it really has more)."""
    exponent = amount.normalize().as_tuple().exponent
    places = max(minor_unit(currency), -exponent if isinstance(exponent, int) else 0)
    return f"{amount.quantize(Decimal(1).scaleb(-places))} {currency}"


def tax_mismatch(invoice: Invoice, lines: Sequence[Mapping[str, Any]],
                 taxes: Sequence[LineTax | None] | None = None,
                 compound_names: Iterable[str] = ()) -> tuple[Decimal, str] | None:
    """None when FreshBooks' figures for `lines` equal BlueClerk's, else FreshBooks'
    total and a sentence naming the first line that differs with both figures.

    Compared: the invoice total (always; the rounding lines are in `lines`), and for
    2-decimal currencies each line's tax and the tax total (other currencies: FreshBooks
    keeps cents, so their tax cannot equal BlueClerk's; the rounding line closes the
    total only)."""
    cur = invoice.currency
    figures = freshbooks_figures(lines, Decimal(0), compound_names)
    totals = freshbooks_totals(lines, Decimal(0), compound_names)
    exact_tax = minor_unit(cur) == 2
    if totals.total == invoice.total and (not exact_tax or totals.tax_total
                                          == invoice.tax_total):
        return None
    line_taxes = line_taxes_or_default(invoice, taxes)
    where = ""
    for n, (line, tax, (_, theirs)) in enumerate(
            zip(invoice.lines, line_taxes, figures, strict=False), start=1):
        ours = blueclerk_line_tax(invoice, line)
        if ours != theirs and (exact_tax or abs(ours - theirs) > _quantum(cur)):
            label = line.tax_rate_name or "tax"
            fb = f"{tax.name} {_plain(tax.percent)}%" if tax is not None else "no tax"
            where = (f"line {n} ({line.description or line.item_id}): BlueClerk tax "
                     f"{_shown(ours, cur)} at {label} {_plain(_line_rate(invoice, line))}% "
                     f"but FreshBooks would compute {_shown(theirs, cur)} at {fb}; ")
            break
    return totals.total, (
        f"invoice {invoice.number}: {where}BlueClerk tax {_shown(invoice.tax_total, cur)}, "
        f"total {_shown(invoice.total, cur)}; FreshBooks would have tax "
        f"{_shown(totals.tax_total, cur)}, total {_shown(totals.total, cur)} "
        "(it rounds each line's tax to 2 decimals)")


def _rounding_line(amount: Decimal, currency: str, description: str) -> dict[str, Any]:
    return {"type": 0, "name": "Rounding", "description": description, "qty": "1",
            "unit_cost": {"amount": format(amount, "f"), "code": currency}}


def _close_precision_gap(invoice: Invoice,
                         lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a currency whose minor unit is not the cent, absorb the difference between
    FreshBooks' 2-decimal rounding and BlueClerk's in one Rounding line (see module doc).

    Nothing changes when the currency has 2 decimals (the lines are already exact there,
    so a gap is a real disagreement), when BlueClerk's total does not fit in 2 decimals
    (FreshBooks cannot hold it), or when the gap is larger than rounding can explain.
    """
    currency = invoice.currency
    if minor_unit(currency) == 2 or not lines:
        return lines
    gap = invoice.total - freshbooks_totals(lines).total
    bound = max(_quantum(currency), CENT) * len(invoice.lines)
    if not gap or gap != q2(gap) or abs(gap) > bound:
        return lines
    last = lines[-1]
    if last["name"] == "Rounding" and "taxAmount1" not in last:
        amount = Decimal(last["unit_cost"]["amount"]) + gap
        last["unit_cost"]["amount"] = format(amount, "f")
        last["description"] = f"Rounding to 2 decimals ({currency})"
        return lines if amount else lines[:-1]
    return [*lines, _rounding_line(q2(gap), currency,
                                   f"Rounding to 2 decimals ({currency})")]


def due_offset_days(invoice: Invoice) -> int:
    if invoice.due_date is None:
        return 0
    return max((invoice.due_date - invoice.issue_date).days, 0)


def invoice_body(invoice: Invoice, customer_id: str, item_names: Mapping[str, str],
                 taxes: Sequence[LineTax | None] | None = None) -> dict[str, Any]:
    return {
        "customerid": int(customer_id),
        "create_date": invoice.issue_date.isoformat(),
        "due_offset_days": due_offset_days(invoice),
        "currency_code": invoice.currency,
        "invoice_number": invoice.number,
        "discount_value": "0",
        "notes": invoice.memo or "",
        "lines": invoice_lines(invoice, item_names, taxes),
    }


# ---- payments -----------------------------------------------------------------------

def payment_tag(payment: Payment) -> str:
    """Written into the payment's note: how the adapter finds its own payment again."""
    return f"[BlueClerk {payment.id}]"


def payment_body(payment: Payment, invoice_id: str) -> dict[str, Any]:
    method = payment.method if payment.method in PAYMENT_TYPES else "other"
    note_parts = [payment.reference or ""]
    if PAYMENT_TYPES[method] == "Check" and method != "check":
        note_parts.append(f"method: {method}")
    note_parts.append(payment_tag(payment))
    return {
        "invoiceid": int(invoice_id),
        "amount": {"amount": money(payment.amount, payment.currency),
                   "code": payment.currency},
        "date": payment.paid_on.isoformat(),
        "type": PAYMENT_TYPES[method],
        "note": " ".join(p for p in note_parts if p),
    }


# ---- timestamps ---------------------------------------------------------------------

try:
    from zoneinfo import ZoneInfo

    EASTERN: dt.tzinfo = ZoneInfo("America/New_York")
except Exception:  # pragma: no cover - tzdata missing
    EASTERN = dt.timezone(dt.timedelta(hours=-5))


def eastern_day(at: dt.datetime) -> str:
    """The day FreshBooks' ``updated_min`` compares: ``updated`` is US Eastern time."""
    aware = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return aware.astimezone(EASTERN).date().isoformat()


def parse_stamp(value: str | None, zone: dt.tzinfo = EASTERN) -> dt.datetime | None:
    """FreshBooks' "YYYY-MM-DD HH:MM:SS" (US Eastern for ``updated``) -> aware UTC."""
    if not value:
        return None
    try:
        naive = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    aware = naive if naive.tzinfo else naive.replace(tzinfo=zone)
    return aware.astimezone(dt.UTC)
