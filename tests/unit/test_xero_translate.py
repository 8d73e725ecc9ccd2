"""Xero translation: what is sent comes out, under Xero's rounding, at BlueClerk's amounts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
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
from providers.xero import translate
from providers.xero.adapter import classify_xero_error
from providers.xero.translate import ItemRef, LineTax
from sandbox.scenario import build_invoice
from sandbox.xero.books import DUPLICATE_NAME, line_totals
from sandbox.xero.openapi import element_errors
from schemas.error_codes import ErrorCode
from schemas.records import Address, Customer, Item, Payment

AMOUNT_TYPES = {"exclusive": "Exclusive", "inclusive": "Inclusive", "none": "NoTax"}


def dec(places: int, low: int, high: int) -> st.SearchStrategy[Decimal]:
    scale = 10 ** places
    return st.integers(low * scale, high * scale).map(lambda n: Decimal(n).scaleb(-places))


def _as_xero(sent: dict[str, Any], mode: str, rate: Decimal) -> tuple[Decimal, Decimal]:
    """The simulator's line rule applied to what the adapter sends, at the TaxType's rate."""
    tax = sent.get("TaxAmount")
    amount, tax_amount, _ = line_totals(
        Decimal(str(sent["Quantity"])).quantize(Decimal("0.0001")),
        Decimal(str(sent["UnitAmount"])).quantize(Decimal("0.0001")),
        Decimal(str(sent.get("DiscountRate", 0))), rate, AMOUNT_TYPES[mode],
        Decimal(str(tax)) if tax is not None else None)
    return amount, tax_amount


def _adapter_line_tax(line_rate: Decimal, bc_tax: Decimal, currency: str) -> LineTax:
    """As the adapter chooses: Xero computes, except 0 % and non-cent currencies."""
    if line_rate == 0 or currency == "JPY":
        return LineTax("TAX001", bc_tax)
    return LineTax("TAX001")


@settings(max_examples=400, deadline=None)
@given(qty=st.one_of(dec(4, 0, 500), dec(6, 0, 50)), price=st.one_of(dec(2, 0, 5000),
                                                                     dec(4, 0, 100)),
       discount=st.one_of(st.just(Decimal(0)), dec(2, 0, 100)),
       rate=st.sampled_from([Decimal(0), Decimal(5), Decimal("8.25"), Decimal(15),
                             Decimal("12.5")]),
       mode=st.sampled_from(["exclusive", "inclusive", "none"]),
       currency=st.sampled_from(["NZD", "USD", "JPY"]))
def test_line_amount_and_tax_match_blueclerk(qty: Decimal, price: Decimal, discount: Decimal,
                                             rate: Decimal, mode: str, currency: str) -> None:
    """A line sent with a TaxType at BlueClerk's own rate: Xero's per-line arithmetic
    (X-round) gives BlueClerk's line amount and tax, in every currency."""
    inv = build_invoice("i", "c", "1", currency, mode,  # type: ignore[arg-type]
                        [("itm", str(qty), str(price), str(discount), str(rate))])
    line = inv.lines[0]
    tax = _adapter_line_tax(rate, inv.tax_total, currency)
    sent = translate.line_item(line, mode, currency, ItemRef("CODE", "200"), "260", tax)
    assert element_errors("LineItem", sent) == []
    amount, xero_tax = _as_xero(sent, mode, rate)
    assert amount == line.amount == translate.sent_line_amount(line)
    assert xero_tax == inv.tax_total
    if tax.tax_amount is None:
        assert translate.xero_line_tax(amount, rate, mode) == xero_tax
    assert Decimal(str(sent["LineAmount"])) == line.amount
    assert sent["TaxType"] == "TAX001"
    assert ("TaxAmount" in sent) == (mode != "none" and tax.tax_amount is not None)
    assert sent["AccountCode"] == "200" and sent["ItemCode"] == "CODE"


def test_natural_lines_keep_quantity_price_and_discount() -> None:
    inv = build_invoice("i", "c", "1", "NZD", "exclusive", [("a", "2.5", "85.50", "10", "15")])
    sent = translate.line_item(inv.lines[0], "exclusive", "NZD", None, "200",
                               LineTax("OUTPUT2"))
    assert (sent["Quantity"], sent["UnitAmount"], sent["DiscountRate"]) == (2.5, 85.5, 10)
    assert "TaxAmount" not in sent and sent["LineAmount"] == 192.38
    assert sent["TaxType"] == "OUTPUT2"
    assert translate.xero_line_tax(Decimal("192.38"), Decimal(15), "exclusive") == \
        Decimal("28.86")
    assert sent["AccountCode"] == "200" and "ItemCode" not in sent


def test_unrepresentable_lines_fall_back_to_one_times_the_amount() -> None:
    inv = build_invoice("i", "c", "1", "JPY", "exclusive", [("a", "3", "333.5", "0", "10")])
    sent = translate.line_item(inv.lines[0], "exclusive", "JPY", None, "200",
                               LineTax("TAX001", Decimal(100)))
    assert (sent["Quantity"], sent["UnitAmount"], sent["TaxAmount"]) == (1, 1001, 100)
    assert "DiscountRate" not in sent


def test_three_decimal_currencies_cannot_always_be_represented() -> None:
    """KWD fils below a cent: Xero totals have 2 dp, the adapter's total check catches it."""
    inv = build_invoice("i", "c", "1", "KWD", "none", [("a", "1", "1.235", "0", "0")])
    sent = translate.line_item(inv.lines[0], "none", "KWD", None, "200", LineTax("NONE"))
    assert _as_xero(sent, "none", Decimal(0))[0] != inv.lines[0].amount


def test_invoice_body_is_valid_and_complete() -> None:
    inv = build_invoice("i", "c", "INV-77", "USD", "inclusive",
                        [("a", "1", "10", "0", "15"), ("b", "2", "3", "0", "0")])
    body = translate.invoice_body(inv, "8d7e7e48-0c3a-4b7d-9f1e-1f7f2b0f3a11",
                                  {"a": ItemRef("A", None)}, "200",
                                  [LineTax("OUTPUT2"), LineTax("NONE", Decimal(0))])
    assert element_errors("Invoice", body) == []
    assert body["Type"] == "ACCREC" and body["Status"] == "AUTHORISED"
    assert body["LineAmountTypes"] == "Inclusive" and body["CurrencyCode"] == "USD"
    assert body["Date"] == "2026-11-02" and body["DueDate"] == "2026-12-02"
    assert [li["AccountCode"] for li in body["LineItems"]] == ["200", "200"]
    assert [li.get("ItemCode") for li in body["LineItems"]] == ["A", None]
    assert [li["TaxType"] for li in body["LineItems"]] == ["OUTPUT2", "NONE"]
    assert [li.get("TaxAmount") for li in body["LineItems"]] == [None, 0]
    # Xero's figures for that body at OUTPUT2 15 %: 10 inclusive -> tax 1.30 (X-round).
    assert translate.xero_lines(body, {"OUTPUT2": Decimal(15)}) == [
        (Decimal("10.00"), Decimal("1.30")), (Decimal("6.00"), Decimal("0.00"))]
    assert translate.xero_totals(body, {"OUTPUT2": Decimal(15)}) == (
        Decimal("14.70"), Decimal("1.30"), Decimal("16.00"))
    assert translate.xero_totals(body) is None  # OUTPUT2's rate unknown


def test_contact_body() -> None:
    c = Customer("cus_1", '  O\'Brien & Sons "Best" Plumbing ', given_name="Seán",
                 email="a@b.test", phone="021 555", currency="AUD", active=False,
                 billing_address=Address("1 Main St", "Unit 2", "Sydney", "NSW", "2000", "AU"))
    body = translate.contact_body(c)
    assert element_errors("Contact", body) == []
    assert body["Name"] == 'O\'Brien & Sons "Best" Plumbing'
    assert body["ContactNumber"] == "cus_1" and body["ContactStatus"] == "ARCHIVED"
    assert body["DefaultCurrency"] == "AUD" and body["LastName"] == ""
    assert body["Addresses"][0]["AddressType"] == "POBOX"
    assert body["Addresses"][0]["Region"] == "NSW"
    long_id = "x" * 80
    number = translate.contact_number(long_id)
    assert len(number) == 50 and number == translate.contact_number(long_id)
    assert translate.contact_name(Customer("c", "  ", given_name="Ann", family_name="Lee")) == \
        "Ann Lee"


def test_item_codes_and_body() -> None:
    assert translate.item_code(Item("i1", "n", " AB-1 ")) == "AB-1"
    generated = translate.item_code(Item("i1", "n", "S" * 31))
    assert generated == translate.item_code(Item("i1", "other", None))
    assert len(generated) == 30 and generated.startswith("BC-")
    assert translate.item_code(Item("i2", "n")) != generated
    body = translate.item_body(Item("i1", "N" * 60, None, "desc", Decimal("1.23456")), "200")
    assert element_errors("Item", body) == []
    assert len(body["Name"]) == 50
    assert body["SalesDetails"] == {"UnitPrice": 1.2346, "TaxType": "NONE", "AccountCode": "200"}
    # A taxable item leaves its TaxType to the sales account's default (OUTPUT2 in NZ/UK,
    # OUTPUT in AU/US).
    taxable = translate.item_body(Item("i3", "T", taxable=True), "200")
    assert "TaxType" not in taxable["SalesDetails"]


def test_payment_reference_and_body() -> None:
    p = Payment("pay_1", "inv", "cus", Decimal("12.5"), "NZD", dt.date(2026, 1, 2),
                reference="chq 9")
    body = translate.payment_body(p, "8d7e7e48-0c3a-4b7d-9f1e-1f7f2b0f3a11", "090")
    assert element_errors("Payment", body) == []
    assert body["Reference"] == "chq 9 BC-pay_1" and body["Amount"] == 12.5
    assert translate.reference_has_payment("chq 9 BC-pay_1", "pay_1")
    assert translate.reference_has_payment("BC-pay_1", "pay_1")
    assert not translate.reference_has_payment("chq 9 BC-pay_11", "pay_1")
    assert not translate.reference_has_payment("xBC-pay_1", "pay_1")


def test_dates_where_and_numbers() -> None:
    assert translate.parse_xero_date("/Date(1551399321043+0000)/") == dt.datetime(
        2019, 3, 1, 0, 15, 21, 43000, tzinfo=dt.UTC)
    assert translate.parse_xero_date("/Date(1551399321043+1300)/") == dt.datetime(
        2019, 3, 1, 0, 15, 21, 43000, tzinfo=dt.UTC)
    assert translate.parse_xero_date("2019-03-12T10:00:00") == dt.datetime(
        2019, 3, 12, 10, tzinfo=dt.UTC)
    assert translate.parse_xero_date("nonsense") is None
    assert translate.quote_where('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert translate.num(Decimal("10.00")) == 10 and isinstance(translate.num(Decimal(10)), int)
    assert translate.num(Decimal("0.1234")) == 0.1234


# -- error classification -----------------------------------------------------------------

def _resp(status: int, body: Any = None, text: str = "", **headers: str) -> httpx.Response:
    if body is not None:
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, text=text, headers=headers)


def test_classify_statuses() -> None:
    assert isinstance(classify_xero_error(_resp(401, {"Detail": "TokenExpired"})), AuthExpired)
    forbidden = classify_xero_error(_resp(403, {"Detail": "AuthenticationUnsuccessful"}))
    assert isinstance(forbidden, PermanentProviderError)
    assert forbidden.code is ErrorCode.PERMISSION_DENIED
    assert isinstance(classify_xero_error(_resp(404, text="Not found")), RecordNotFound)
    offline = classify_xero_error(_resp(503, text="The Organisation is offline"))
    assert isinstance(offline, TransientProviderError) and offline.status == 503
    day = classify_xero_error(_resp(429, text="limit", **{"Retry-After": "7200",
                                                          "X-Rate-Limit-Problem": "day"}))
    assert isinstance(day, Throttled) and day.scope == "day" and day.retry_after == 7200
    minute = classify_xero_error(_resp(429, text="limit", **{"Retry-After": "3"}))
    assert isinstance(minute, Throttled) and minute.scope == "minute"


def test_classify_validation_bodies() -> None:
    dup = {"ErrorNumber": 10, "Type": "ValidationException", "Elements": [
        {"Name": "X", "ValidationErrors": [{"Message": DUPLICATE_NAME.format(name="X")}]}]}
    assert isinstance(classify_xero_error(_resp(400, dup)), DuplicateName)
    bad = {"ErrorNumber": 10, "Type": "ValidationException", "Elements": [
        {"ValidationErrors": [{"Message": "Account code '999' is not a valid code."},
                              {"Message": "Invoice # must be unique."}]}]}
    err = classify_xero_error(_resp(400, bad))
    assert isinstance(err, PermanentProviderError) and not isinstance(err, DuplicateName)
    assert err.code is ErrorCode.VALIDATION_FAILED
    assert "999" in str(err) and "unique" in str(err)
    top = classify_xero_error(_resp(400, {"Type": "ValidationException", "Elements": [],
                                          "Message": "Idempotency-Key reused"}))
    assert top is not None and "Idempotency-Key" in str(top)
    assert classify_xero_error(_resp(412, text="Precondition")) is None


@pytest.mark.parametrize("status", [200, 201])
def test_classify_ignores_success(status: int) -> None:
    assert classify_xero_error(_resp(status, {})) is None
