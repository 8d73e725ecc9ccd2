"""FreshBooks translation: line math against the simulator's rule, bodies, error mapping."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.errors import (
    AuthExpired,
    DuplicateName,
    PermanentProviderError,
    RecordNotFound,
    Throttled,
    TransientProviderError,
)
from providers.freshbooks import translate
from providers.freshbooks.adapter import classify_freshbooks_error
from sandbox.freshbooks.books import invoice_totals
from schemas.error_codes import ErrorCode
from schemas.money import quantize_money
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

CENT = Decimal("0.01")


def q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def decimals(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(lo), Decimal(hi), places=places, allow_nan=False,
                       allow_infinity=False)


def bc_line(qty: Decimal, price: Decimal, discount: Decimal, rate: Decimal,
            currency: str = "USD", inclusive: bool = False) -> InvoiceLine:
    amount = quantize_money(qty * price * (100 - discount) / 100, currency)
    return InvoiceLine("i1", "Work", qty, price, discount, rate, amount)


def bc_invoice(lines: list[InvoiceLine], mode: str = "exclusive",
               currency: str = "USD") -> Invoice:
    # BlueClerk's own arithmetic: tax per line, rounded (inclusive: amount x r / (100 + r)).
    lines_total = sum((li.amount for li in lines), Decimal(0))
    if mode == "inclusive":
        tax = sum((quantize_money(li.amount * li.tax_rate_percent
                                  / (100 + li.tax_rate_percent), currency) for li in lines),
                  Decimal(0))
        subtotal, total = lines_total - tax, lines_total
    else:
        tax = sum((quantize_money(li.amount * li.tax_rate_percent / 100, currency)
                   for li in lines), Decimal(0)) if mode == "exclusive" else Decimal(0)
        subtotal, total = lines_total, lines_total + tax
    return Invoice("inv", "c1", "INV-1", dt.date(2024, 1, 1), dt.date(2024, 1, 31), currency,
                   mode, tuple(lines), subtotal, tax, total)  # type: ignore[arg-type]


line_args = st.tuples(
    decimals("0", "500", 2),     # quantity
    decimals("0", "5000", 4),    # unit price (Avro scale 4)
    decimals("0", "100", 2),     # discount percent
    decimals("0", "30", 3),      # tax rate percent (FreshBooks: at most 3 dp)
)


@settings(max_examples=400, deadline=None)
@given(st.lists(line_args, min_size=1, max_size=6))
def test_exclusive_lines_hit_blueclerk_amounts_under_the_simulator_rule(
        args: list[tuple[Decimal, Decimal, Decimal, Decimal]]) -> None:
    lines = [bc_line(*a) for a in args]
    inv = bc_invoice(lines)
    body = translate.invoice_lines(inv, {"i1": "Drain"})
    sim = invoice_totals(body, Decimal(0), set())
    # Each FreshBooks line multiplies out to BlueClerk's own line amount ...
    assert sim["line_amounts"] == [li.amount for li in lines]
    # ... so with per-line tax rounding the totals agree to the cent.
    assert sim["subtotal"] == inv.subtotal
    assert sim["tax_total"] == inv.tax_total
    assert sim["total"] == inv.total
    for out in body:
        amount = Decimal(out["unit_cost"]["amount"])
        assert amount == amount.quantize(CENT)  # money at the currency's minor unit


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(decimals("0", "1000", 3), decimals("0", "9999", 2),
                          decimals("0", "25", 3), decimals("0", "10", 3)),
                min_size=0, max_size=6),
       decimals("0", "100", 2))
def test_predicted_totals_equal_the_simulator(rows: list[tuple[Decimal, ...]],
                                              discount: Decimal) -> None:
    lines: list[dict[str, Any]] = [
        {"qty": str(q), "unit_cost": {"amount": str(u), "code": "USD"},
         "taxAmount1": str(t1), "taxAmount2": str(t2)} for q, u, t1, t2 in rows]
    ours = translate.freshbooks_totals(lines, discount)
    sim = invoice_totals(lines, discount, set())
    assert (ours.subtotal, ours.discount_total, ours.tax_total, ours.total) == (
        sim["subtotal"], sim["discount_total"], sim["tax_total"], sim["total"])


@settings(max_examples=400, deadline=None)
@given(st.lists(line_args, min_size=1, max_size=6))
def test_inclusive_lines_total_to_the_cent(
        args: list[tuple[Decimal, Decimal, Decimal, Decimal]]) -> None:
    lines = [bc_line(*a) for a in args]
    inv = bc_invoice(lines, mode="inclusive")
    body = translate.invoice_lines(inv, {})
    sim = invoice_totals(body, Decimal(0), set())
    assert sim["total"] == inv.total
    # FreshBooks' tax is BlueClerk's own, line by line, so the tax total is too.
    assert sim["tax_total"] == inv.tax_total
    assert translate.tax_mismatch(inv, body) is None
    rounding = [b for b in body if b["name"] == "Rounding"]
    assert len(body) == len(lines) + len(rounding)
    if rounding:
        residual = Decimal(rounding[0]["unit_cost"]["amount"])
        assert Decimal(0) < abs(residual) <= CENT * len(lines)
        assert "taxAmount1" not in rounding[0]


@settings(max_examples=500, deadline=None)
@given(decimals("0", "100000", 2), decimals("0.001", "100", 3))
def test_inclusive_net_is_the_largest_that_fits(amount: Decimal, rate: Decimal) -> None:
    net = translate.inclusive_net(amount, rate, "USD")
    assert net + q2(net * rate / 100) <= amount
    nxt = net + CENT
    assert nxt + q2(nxt * rate / 100) > amount
    assert amount - (net + q2(net * rate / 100)) <= CENT


def test_discount_folding_tiers() -> None:
    lines = [bc_line(Decimal("2"), Decimal("50"), Decimal("10"), Decimal(0)),       # exact
             bc_line(Decimal("3"), Decimal("19.99"), Decimal("15"), Decimal(0)),    # rounded
             bc_line(Decimal("7"), Decimal("19.99"), Decimal("15"), Decimal(0))]    # folded
    body = translate.invoice_lines(bc_invoice(lines), {"i1": "Drain"})
    assert [(b["qty"], b["unit_cost"]["amount"]) for b in body] == [
        ("2", "45.00"), ("3", "16.99"), ("1", "118.94")]
    assert body[0]["description"] == "Work (list price 50, less 10%)"
    assert body[2]["description"] == "Work (7 x 19.99, less 15%)"
    assert all(b["name"] == "Drain" for b in body)


def test_tax_names_and_unsupported_precision() -> None:
    lines = [bc_line(Decimal(1), Decimal(10), Decimal(0), Decimal("8.250")),
             bc_line(Decimal(1), Decimal(10), Decimal(0), Decimal("5"))]
    body = translate.invoice_lines(bc_invoice(lines), {},
                                   [translate.LineTax("IL Sales Tax", Decimal("8.25")), None])
    assert [(b.get("taxName1"), b.get("taxAmount1")) for b in body] == [
        ("IL Sales Tax", "8.25"), (None, None)]
    # Without taxes per line (no mapping given), a taxed line is named by its percent.
    body = translate.invoice_lines(bc_invoice(lines), {})
    assert [(b["taxName1"], b["taxAmount1"]) for b in body] == [
        ("Tax 8.25%", "8.25"), ("Tax 5%", "5")]
    with pytest.raises(PermanentProviderError) as err:
        translate.invoice_lines(bc_invoice(
            [bc_line(Decimal(1), Decimal(10), Decimal(0), Decimal("8.1234"))]), {})
    assert err.value.code == ErrorCode.UNSUPPORTED


def test_no_tax_mode_drops_rates_and_jpy_is_whole_yen() -> None:
    line = bc_line(Decimal(3), Decimal("333"), Decimal("10"), Decimal("10"), "JPY")
    inv = bc_invoice([line], mode="none", currency="JPY")
    body = translate.invoice_body(inv, "42", {})
    assert body["customerid"] == 42 and body["due_offset_days"] == 30
    assert body["currency_code"] == "JPY" and body["discount_value"] == "0"
    (out,) = body["lines"]
    assert "taxAmount1" not in out
    assert Decimal(out["qty"]) * Decimal(out["unit_cost"]["amount"]) == line.amount == 899
    assert "." not in out["unit_cost"]["amount"]


def test_customer_item_and_payment_bodies() -> None:
    c = Customer("c1", "O'Brien & Sons", given_name="Pat", family_name="O'Brien",
                 email=" pat@example.com ", phone="555",
                 billing_address=Address("1 Main", None, "Cork", None, "T12", "IE"),
                 currency="EUR")
    body = translate.client_body(c)
    assert body == {"fname": "Pat", "lname": "O'Brien", "email": "pat@example.com",
                    "organization": "O'Brien & Sons", "currency_code": "EUR",
                    "bus_phone": "555", "p_street": "1 Main", "p_street2": "",
                    "p_city": "Cork", "p_province": "", "p_code": "T12", "p_country": "IE"}
    assert translate.client_body(Customer("c2", "Shown", company_name="Co"))["organization"] \
        == "Co"
    item = translate.item_body(Item("i", "Pipe", unit_price=Decimal("1.005")))
    assert item == {"name": "Pipe", "description": "", "sku": "",
                    "unit_cost": {"amount": "1.01", "code": "USD"}}
    pay = Payment("p-9", "inv", "c1", Decimal("12.5"), "USD", dt.date(2024, 2, 3), "cash",
                  reference="R1")
    pb = translate.payment_body(pay, "77")
    assert pb == {"invoiceid": 77, "amount": {"amount": "12.50", "code": "USD"},
                  "date": "2024-02-03", "type": "Check",
                  "note": "R1 method: cash [BlueClerk p-9]"}
    types = {m: translate.payment_body(
        Payment("p", "i", "c", Decimal(1), "USD", dt.date(2024, 1, 1), m), "1")["type"]
        for m in ("cash", "check", "card", "bank_transfer", "other", "weird")}
    assert types == {"cash": "Check", "check": "Check", "card": "Credit Card",
                     "bank_transfer": "Bank Transfer", "other": "Check", "weird": "Check"}


def test_eastern_day_and_stamps() -> None:
    # 02:00 UTC in January is the previous evening in New York.
    assert translate.eastern_day(dt.datetime(2024, 1, 2, 2, 0, tzinfo=dt.UTC)) == "2024-01-01"
    assert translate.eastern_day(dt.datetime(2024, 7, 2, 5, 0, tzinfo=dt.UTC)) == "2024-07-02"
    assert translate.parse_stamp("2024-01-01 21:00:00") == dt.datetime(
        2024, 1, 2, 2, 0, tzinfo=dt.UTC)
    assert translate.parse_stamp("") is None and translate.parse_stamp("junk") is None


# ---- error classification -----------------------------------------------------------

def response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def acct(errno: int, field: str | None = "email", message: str = "Invalid value.") -> Any:
    return {"response": {"errors": [{"errno": errno, "field": field, "message": message,
                                     "object": "client", "value": "x"}]}}


def test_classify_accounting_envelope() -> None:
    assert isinstance(classify_freshbooks_error(response(401, acct(1003, None))), AuthExpired)
    conflict = classify_freshbooks_error(response(409, acct(409, None)))
    assert isinstance(conflict, TransientProviderError)
    assert conflict.code == ErrorCode.CONFLICT
    assert isinstance(classify_freshbooks_error(response(404, acct(1012, "userid"))),
                      RecordNotFound)
    assert isinstance(classify_freshbooks_error(response(422, acct(1011, "customerid"))),
                      RecordNotFound)
    for errno in (1001, 1004, 1005, 1017, 1018, 1040):
        err = classify_freshbooks_error(response(422 if errno != 1005 else 400, acct(errno)))
        assert isinstance(err, PermanentProviderError)
        assert err.code == ErrorCode.VALIDATION_FAILED
        assert "client.email" in str(err)
    denied = classify_freshbooks_error(response(403, acct(1003, None)))
    assert denied is not None and denied.code == ErrorCode.PERMISSION_DENIED
    assert isinstance(classify_freshbooks_error(response(422, acct(1026, "name"))),
                      DuplicateName)
    throttled = classify_freshbooks_error(response(429, acct(429, None),
                                                   {"Retry-After": "59"}))
    assert isinstance(throttled, Throttled) and throttled.retry_after == 59.0
    server = classify_freshbooks_error(response(500, acct(500, None)))
    assert isinstance(server, TransientProviderError) and server.code == \
        ErrorCode.PROVIDER_UNAVAILABLE


def test_classify_events_ledger_and_auth_envelopes() -> None:
    events = classify_freshbooks_error(response(422, {
        "errno": 422, "message": "Unprocessable.", "details": ["uri: Input should be a URL"]}))
    assert isinstance(events, PermanentProviderError) and "uri" in str(events)
    assert isinstance(classify_freshbooks_error(response(401, {
        "errno": 401, "message": "invalid_token: failed"})), AuthExpired)
    ledger = classify_freshbooks_error(response(400, {"errors": {
        "message": "Request failed with status code 400", "status": 400,
        "details": [{"reason": "name: This field is required.",
                     "metadata": {"field": "name", "message": "This field is required."}}]}}))
    assert isinstance(ledger, PermanentProviderError)
    assert ledger.code == ErrorCode.VALIDATION_FAILED and "name" in str(ledger)
    assert isinstance(classify_freshbooks_error(response(404, {"errors": {
        "message": "x", "status": 404, "details": []}})), RecordNotFound)
    assert isinstance(classify_freshbooks_error(response(401, {
        "error": "unauthenticated", "error_description": "needs auth"})), AuthExpired)
    assert classify_freshbooks_error(httpx.Response(418, text="teapot")) is None


def test_jpy_rounding_gap_is_closed_by_an_adjustment_line() -> None:
    """FreshBooks rounds tax to the cent; BlueClerk to whole yen. 259 JPY fits."""
    lines = [bc_line(Decimal(1), Decimal(118), Decimal(0), Decimal(10), "JPY"),
             bc_line(Decimal(1), Decimal(117), Decimal(0), Decimal(10), "JPY")]
    inv = bc_invoice(lines, currency="JPY")
    inv = Invoice(inv.id, inv.customer_id, inv.number, inv.issue_date, inv.due_date, "JPY",
                  "exclusive", inv.lines, Decimal(235), Decimal(24), Decimal("259.0000"))
    body = translate.invoice_lines(inv, {})
    assert body[-1]["name"] == "Rounding" and body[-1]["unit_cost"]["amount"] == "0.50"
    assert "taxAmount1" not in body[-1]
    assert translate.freshbooks_totals(body).total == Decimal(259)
    assert invoice_totals(body, Decimal(0), set())["total"] == Decimal(259)


def test_no_adjustment_where_the_gap_is_not_rounding() -> None:
    usd = bc_invoice([bc_line(Decimal(2), Decimal(50), Decimal(0), Decimal(10))])
    off = Invoice(usd.id, usd.customer_id, usd.number, usd.issue_date, usd.due_date, "USD",
                  "exclusive", usd.lines, usd.subtotal, usd.tax_total,
                  usd.total + Decimal("0.01"))
    assert [b["name"] for b in translate.invoice_lines(off, {})] == ["Work"]
    kwd = [bc_line(Decimal(1), Decimal("25.206"), Decimal(0), Decimal(0), "KWD")]
    inv = bc_invoice(kwd, currency="KWD")  # 25.206 KWD: FreshBooks cannot hold it
    body = translate.invoice_lines(inv, {})
    assert [b["name"] for b in body] == ["Work"]
    assert translate.freshbooks_totals(body).total == Decimal("25.21") != inv.total
    jpy = [bc_line(Decimal(1), Decimal(118), Decimal(0), Decimal(10), "JPY")]
    base = bc_invoice(jpy, currency="JPY")
    far = Invoice(base.id, base.customer_id, base.number, base.issue_date, base.due_date,
                  "JPY", "exclusive", base.lines, Decimal(118), Decimal(12), Decimal(140))
    assert [b["name"] for b in translate.invoice_lines(far, {})] == ["Work"]
