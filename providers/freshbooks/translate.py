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
- Tax-inclusive invoices: FreshBooks is tax-exclusive. Each line is sent at the largest
  net amount n with n + round2(n x rate) <= the inclusive line amount; when tax
  rounding skips the exact cent (about one amount in eleven at 10%), the missing cents
  (at most one minor unit per line) go on one untaxed "Rounding" line, so the invoice
  total equals BlueClerk's to the cent.
- Tax: ``taxName1``/``taxAmount1`` (a percent, at most 3 decimals; more is refused as
  UNSUPPORTED). The name is the account's tax with that rate when there is one.
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
from collections.abc import Iterable, Mapping
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
    "client_body",
    "client_organization",
    "eastern_day",
    "freshbooks_totals",
    "inclusive_net",
    "invoice_body",
    "invoice_lines",
    "item_body",
    "money",
    "payment_body",
    "payment_tag",
    "q2",
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


def freshbooks_totals(lines: Iterable[Mapping[str, Any]],
                      discount_value: Decimal = Decimal(0)) -> FreshBooksTotals:
    """What FreshBooks will total for these request lines (taxName2 taken as simple)."""
    subtotal = tax_total = Decimal(0)
    factor = (Decimal(100) - discount_value) / Decimal(100)
    for line in lines:
        amount = q2(Decimal(str(line["qty"])) * Decimal(str(line["unit_cost"]["amount"])))
        subtotal += amount
        base = amount * factor
        tax1 = q2(base * Decimal(str(line.get("taxAmount1") or 0)) / 100)
        tax2 = q2(base * Decimal(str(line.get("taxAmount2") or 0)) / 100)
        tax_total += tax1 + tax2
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


def invoice_lines(invoice: Invoice, item_names: Mapping[str, str],
                  tax_names: Mapping[Decimal, str] | None = None) -> list[dict[str, Any]]:
    """FreshBooks request lines for `invoice` (see the module docstring for the rules).

    `item_names` maps BlueClerk item ids to the item's FreshBooks name; `tax_names` maps
    a normalised rate to the account's tax of that rate.
    """
    currency = invoice.currency
    names = tax_names or {}
    out: list[dict[str, Any]] = []
    residual = Decimal(0)
    for line in invoice.lines:
        rate = _line_rate(invoice, line)
        inclusive = invoice.tax_mode == "inclusive" and rate > 0
        if inclusive:
            net = inclusive_net(line.amount, rate, currency)
            residual += line.amount - _with_tax(net, rate)
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
        if rate > 0:
            percent = _tax_percent(rate)
            body["taxName1"] = names.get(rate.normalize()) or f"Tax {percent}%"
            body["taxAmount1"] = percent
        out.append(body)
    if residual:
        out.append(_rounding_line(residual, currency, "Rounding of tax-inclusive prices"))
    return _close_precision_gap(invoice, out)


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
                 tax_names: Mapping[Decimal, str] | None = None) -> dict[str, Any]:
    return {
        "customerid": int(customer_id),
        "create_date": invoice.issue_date.isoformat(),
        "due_offset_days": due_offset_days(invoice),
        "currency_code": invoice.currency,
        "invoice_number": invoice.number,
        "discount_value": "0",
        "notes": invoice.memo or "",
        "lines": invoice_lines(invoice, item_names, tax_names),
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
