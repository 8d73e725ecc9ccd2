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
