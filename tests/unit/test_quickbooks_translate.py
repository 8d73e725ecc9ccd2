"""QuickBooks translation: bodies, query quoting, error mapping, and invoice arithmetic
checked against the simulator's documented rules (in process, no HTTP)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import (
    AuthExpired,
    DuplicateName,
    PermanentProviderError,
    RecordNotFound,
    StaleVersion,
    Throttled,
    TransientProviderError,
)
from providers.quickbooks import translate
from providers.quickbooks.adapter import classify_quickbooks_error
from sandbox.quickbooks.books import Books, plain
from sandbox.quickbooks.query import evaluate, parse_query
from sandbox.scenario import build_invoice
from schemas.error_codes import ErrorCode
from schemas.records import Address, Customer, Invoice, Item, Payment

# ---- bodies ------------------------------------------------------------------------------

def test_customer_body() -> None:
    c = Customer("c-1", "Acme: North", given_name="Ada", email="a@x.com", phone="555",
                 billing_address=Address("1 Main", None, "Springfield", "IL", "62701", "US"),
                 currency="CAD", active=False)
    body = translate.customer_body(c)
    assert body["DisplayName"] == "Acme - North"  # ':' is refused by QuickBooks
    assert body["BillAddr"] == {"Line1": "1 Main", "City": "Springfield",
                                "CountrySubDivisionCode": "IL", "PostalCode": "62701",
                                "Country": "US"}
    assert body["CurrencyRef"] == {"value": "CAD"} and body["Active"] is False
    assert body["PrimaryEmailAddr"] == {"Address": "a@x.com"}
    assert "BillAddr" not in translate.customer_body(Customer("c", "x"))
    assert len(translate.display_name(Customer("c", "x" * 600))) == 500


def test_item_body() -> None:
    body = translate.item_body(Item("i", "Pipe: copper", sku="P1", description="d",
                                    unit_price=Decimal("12.3400"), taxable=True), "79")
    assert body == {"Name": "Pipe - copper", "Type": "Service", "UnitPrice": "12.3400",
                    "Taxable": True, "Active": True, "Sku": "P1", "Description": "d",
                    "IncomeAccountRef": {"value": "79"}}
    assert "IncomeAccountRef" not in translate.item_body(Item("i", "x"), None)


def test_invoice_body_lines_discount_and_tax() -> None:
    inv = build_invoice("inv", "c", "INV-000000000000000000001", "USD", "exclusive",
                        [("i1", "3", "10.005", "10", "8.25"), ("i2", "1", "5", "0", "0")])
    body = translate.invoice_body(inv, "58", {"i1": "7", "i2": "8"})
    sales = [li for li in body["Line"] if li["DetailType"] == "SalesItemLineDetail"]
    assert [li["Amount"] for li in sales] == ["30.02", "5.00"]  # gross, rounded
    assert sales[0]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "TAX"}
    assert sales[1]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "NON"}
    (discount,) = [li for li in body["Line"] if li["DetailType"] == "DiscountLineDetail"]
    assert Decimal(discount["Amount"]) == Decimal("30.02") - inv.lines[0].amount
    assert body["TxnTaxDetail"] == {"TotalTax": str(inv.tax_total)}
    assert body["GlobalTaxCalculation"] == "TaxExcluded"
    assert len(body["DocNumber"]) == 21
    assert body["DueDate"] == "2026-12-02"
    none = translate.invoice_body(build_invoice("i", "c", "1", "USD", "none",
                                                [("i1", "1", "1", "0", "0")]), "1", {"i1": "1"})
    assert "TxnTaxDetail" not in none and none["GlobalTaxCalculation"] == "NotApplicable"
    assert not [li for li in none["Line"] if li["DetailType"] == "DiscountLineDetail"]


def test_payment_body_and_reference() -> None:
    p = Payment("p-1", "inv-1", "c-1", Decimal("12.50"), "USD", dt.date(2026, 1, 2))
    body = translate.payment_body(p, "58", "130", "4")
    assert body["Line"] == [{"Amount": "12.50",
                             "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}]
    assert body["DepositToAccountRef"] == {"value": "4"}
    ref = translate.payment_ref(p)
    assert ref == body["PaymentRefNum"] and len(ref) <= 21
    assert translate.payment_ref(p) == ref  # stable


@pytest.mark.parametrize("name", ["O'Brien", 'Say "hi"', "back\\slash", "日本語の顧客",
                                  "it\\'s", "'", "\\", "a ' OR '1'='1"])
def test_query_literal_parses_back(name: str) -> None:
    literal = translate.quote_query_literal(name)
    query = parse_query(f"SELECT * FROM Customer WHERE DisplayName = {literal}")
    # the simulator's own evaluation finds exactly the row with that name
    rows = [{"Id": "1", "DisplayName": name}, {"Id": "2", "DisplayName": name + "x"}]
    found = evaluate(query, rows)["Customer"]
    assert [r["Id"] for r in found] == ["1"]


# ---- error classification ----------------------------------------------------------------

def _fault(status: int, code: str, fault_type: str = "ValidationFault",
           headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"Fault": {"Error": [{"Message": "m", "Detail": "d", "code": code, "element": ""}],
                      "type": fault_type}, "time": "2026-01-01T00:00:00.000-08:00"}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(("response", "kind", "code"), [
    (_fault(400, "5010"), StaleVersion, ErrorCode.CONFLICT),
    (_fault(400, "6240"), DuplicateName, ErrorCode.DUPLICATE_NAME),
    (_fault(400, "610"), RecordNotFound, ErrorCode.NOT_FOUND),
    (_fault(400, "2050"), PermanentProviderError, ErrorCode.VALIDATION_FAILED),
    (_fault(401, "3200", "AuthenticationFault"), AuthExpired, ErrorCode.AUTH_EXPIRED),
    (_fault(403, "", "AuthorizatonFault"), PermanentProviderError,
     ErrorCode.PERMISSION_DENIED),
    (_fault(500, "", "SystemFault"), TransientProviderError, ErrorCode.PROVIDER_UNAVAILABLE),
    (_fault(503, "", "SystemFault"), TransientProviderError, ErrorCode.PROVIDER_UNAVAILABLE),
    (_fault(429, "3001", "SERVICE", {"Retry-After": "60"}), Throttled, ErrorCode.THROTTLED),
    (httpx.Response(429, text="<IntuitResponse><Fault type=\"SERVICE\"><Error code=\"3001\">"
                    "<Message>message=ThrottleExceeded; errorCode=003001</Message></Error>"
                    "</Fault></IntuitResponse>"), Throttled, ErrorCode.THROTTLED),
])
def test_classification(response: httpx.Response, kind: type, code: ErrorCode) -> None:
    error = classify_quickbooks_error(response)
    assert type(error) is kind
    assert error is not None and error.code is code


def test_throttle_retry_after() -> None:
    err = classify_quickbooks_error(_fault(429, "3001", "SERVICE", {"Retry-After": "17"}))
    assert isinstance(err, Throttled) and err.retry_after == 17
    err = classify_quickbooks_error(httpx.Response(429, text="ThrottleExceeded"))
    assert isinstance(err, Throttled) and err.retry_after == 60  # providers.md: wait 60 s


def test_unclassified_answers_fall_through() -> None:
    assert classify_quickbooks_error(httpx.Response(404, text="nope")) is None


# ---- invoice arithmetic against the simulator's rules -------------------------------------

def _realm(currency: str) -> tuple[Books, Any, str, dict[str, str]]:
    books = Books(clock=lambda: 1_760_000_000.0)
    realm = books.realm("r1")
    cust = books.write(realm, "Customer", "create",
                       {"DisplayName": "C", "CurrencyRef": {"value": currency}})["Customer"]
    items = {}
    for name in ("i1", "i2", "i3"):
        items[name] = books.write(realm, "Item", "create", {
            "Name": name, "Type": "Service", "IncomeAccountRef": {"value": "79"}})["Item"]["Id"]
    return books, realm, cust["Id"], items


_LINE = st.tuples(
    st.sampled_from(["i1", "i2", "i3"]),
    st.one_of(st.sampled_from(["1", "0.3333", "0.6667", "2.5", "1.0001"]),
              st.decimals(Decimal("0.0001"), Decimal("200"), places=4).map(str)),
    st.decimals(Decimal("0"), Decimal("3000"), places=4).map(str),
    st.sampled_from(["0", "0", "5", "10", "12.5", "33.3333", "99.9999", "100"]),
    st.sampled_from(["0", "5", "8.25", "10", "20", "7.125"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINE, min_size=1, max_size=15), st.sampled_from(["USD", "JPY", "KWD"]),
       st.sampled_from(["exclusive", "inclusive", "none"]))
def test_simulator_total_equals_blueclerk_total(lines: list[tuple[str, str, str, str, str]],
                                               currency: str, mode: str) -> None:
    inv: Invoice = build_invoice("inv", "c", "1", currency, mode, lines)  # type: ignore[arg-type]
    books, realm, cust, items = _realm(currency)
    body = json.loads(json.dumps(translate.invoice_body(inv, cust, items)))
    stored = plain(books.write(realm, "Invoice", "create", body)["Invoice"])
    assert Decimal(str(stored["TotalAmt"])) == inv.total
    if mode != "none":
        assert Decimal(str(stored["TxnTaxDetail"]["TotalTax"])) == inv.tax_total


# ---- non-US tax codes and QuickBooks' line-by-line arithmetic --------------------------------

def _code(*parts: tuple[str, str, str]) -> translate.QboTaxCode:
    return translate.QboTaxCode("9", "code", tuple(
        translate.QboTaxPart(str(n), name, Decimal(pct), applicable)
        for n, (name, pct, applicable) in enumerate(parts)))


def test_tax_codes_read_sales_rates_and_skip_purchase_only_codes() -> None:
    codes = translate.tax_codes(
        [{"Id": "7", "Name": "GST/PST BC", "SalesTaxRateList": {"TaxRateDetail": [
            {"TaxRateRef": {"value": "3"}, "TaxOrder": 1},
            {"TaxRateRef": {"value": "1"}, "TaxOrder": 0}]}},
         {"Id": "8", "Name": "Purchases only", "SalesTaxRateList": {"TaxRateDetail": []}},
         {"Id": "2", "Name": "Zero-rated", "Active": False, "SalesTaxRateList": {
             "TaxRateDetail": [{"TaxRateRef": {"value": "5"}}]}}],
        [{"Id": "1", "Name": "GST", "RateValue": 5}, {"Id": "3", "Name": "PST BC",
                                                      "RateValue": "7"},
         {"Id": "5", "Name": "Zero", "RateValue": 0, "SpecialTaxType": "ZERO_RATE"}])
    assert set(codes) == {"7", "2"}
    assert [p.name for p in codes["7"].parts] == ["GST", "PST BC"]
    assert codes["7"].percent == 12 and not codes["7"].compound
    assert codes["2"].zero_kind == "ZERO_RATE" and not codes["2"].active


def test_effective_percent_of_compound_codes() -> None:
    assert _code(("GST", "5", "TaxOnAmount"),
                 ("QST", "9.5", "TaxOnAmountPlusTax")).percent == Decimal("14.975")
    assert _code(("A", "10", "TaxOnAmount"), ("B", "50", "TaxOnTax")).percent == 15


def test_predict_line_tax_rounds_each_rate_on_the_line() -> None:
    """17.49 at GST 5% + PST 7%: 0.8745 -> 0.87 and 1.2243 -> 1.22 = 2.09; at one 12% rate
    2.0988 -> 2.10; QST on amount plus GST: 100 x 5% = 5.00, 105 x 9.5% = 9.975 -> 9.98."""
    bc = _code(("GST", "5", "TaxOnAmount"), ("PST", "7", "TaxOnAmount"))
    assert translate.predict_line_tax(bc, Decimal("17.49"), "CAD") == Decimal("2.09")
    assert translate.predict_line_tax(_code(("HST", "12", "TaxOnAmount")), Decimal("17.49"),
                                      "CAD") == Decimal("2.10")
    qc = _code(("GST", "5", "TaxOnAmount"), ("QST", "9.5", "TaxOnAmountPlusTax"))
    assert translate.predict_line_tax(qc, Decimal("100"), "CAD") == Decimal("14.98")
    assert translate.predict_line_tax(_code(("GST", "10", "TaxOnAmount")), Decimal("1234"),
                                      "JPY") == Decimal("123")


def test_blueclerk_line_taxes_by_mode() -> None:
    inc = build_invoice("i", "c", "N", "AUD", "inclusive", [("i1", "1", "5.00", "0", "10"),
                                                            ("i2", "1", "110", "0", "10")])
    assert translate.blueclerk_line_taxes(inc) == [Decimal("0.45"), Decimal("10.00")]
    exc = build_invoice("i", "c", "N", "GBP", "exclusive", [("i1", "1", "19.99", "0", "5")])
    assert translate.blueclerk_line_taxes(exc) == [Decimal("1.00")]
    none = build_invoice("i", "c", "N", "GBP", "none", [("i1", "1", "19.99", "0", "0")])
    assert translate.blueclerk_line_taxes(none) == [Decimal(0)]


def test_global_invoice_body_names_each_code_and_leaves_the_tax_to_quickbooks() -> None:
    inv = build_invoice("i", "c", "N", "GBP", "exclusive", [("i1", "3", "45.50", "0", "20"),
                                                            ("i2", "2", "10", "10", "0")])
    body = translate.global_invoice_body(inv, "5", {"i1": "11", "i2": "12"}, ["3", "7"],
                                         [Decimal("136.50"), Decimal("18.00")])
    first, second = body["Line"]
    assert first["SalesItemLineDetail"] == {"ItemRef": {"value": "11"}, "Qty": "3",
                                            "TaxCodeRef": {"value": "3"}, "UnitPrice": "45.50"}
    assert first["Amount"] == "136.50"
    # Discounted: the amount after discount, no UnitPrice (Qty x UnitPrice must equal it).
    assert second["Amount"] == "18.00" and "UnitPrice" not in second["SalesItemLineDetail"]
    assert "TxnTaxDetail" not in body and body["GlobalTaxCalculation"] == "TaxExcluded"
    inc = build_invoice("i", "c", "N", "AUD", "inclusive", [("i1", "1", "110", "0", "10")])
    body = translate.global_invoice_body(inc, "5", {"i1": "11"}, ["4"], [Decimal("100.00")])
    assert body["GlobalTaxCalculation"] == "TaxInclusive"
    assert body["Line"][0]["SalesItemLineDetail"]["TaxInclusiveAmt"] == "110.00"
    assert body["Line"][0]["Amount"] == "100.00"


def test_us_body_takes_the_mapped_code_per_line() -> None:
    inv = build_invoice("i", "c", "N", "USD", "exclusive", [("i1", "1", "10", "0", "8.25"),
                                                            ("i2", "1", "10", "0", "0")])
    body = translate.invoice_body(inv, "5", {"i1": "1", "i2": "2"}, {"rate:8.25": "TAX"})
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in body["Line"]] == [
        "TAX", "NON"]
    assert body["TxnTaxDetail"] == {"TotalTax": "0.83"}
