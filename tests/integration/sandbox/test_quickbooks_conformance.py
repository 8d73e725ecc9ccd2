"""QuickBooks simulator conformance: one test per behaviour the adapter relies on, named after
the rule, with its public source in the docstring. ``providers.md`` is
``/work/shared/providers.md``; XSDs are ``shared/specs/qbo-xsd/``. The rule table is in
``sandbox/quickbooks/README.md``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.faults import FaultPlan, FaultSwitchboard
from sandbox.quickbooks import QuickBooksLimits, create_app
from sandbox.serve import serve_in_thread

MV = {"minorversion": "75"}


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def board() -> FaultSwitchboard:
    return FaultSwitchboard(seed=11)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def base(board: FaultSwitchboard, clock: FakeClock) -> Iterator[str]:
    app = create_app(board=board, limits=QuickBooksLimits(requestid_retention_s=1800),
                     clock=clock)
    with serve_in_thread(app) as url:
        yield url


class Co:
    def __init__(self, http: httpx.Client, base: str) -> None:
        self.http, self.base = http, base
        self.realm = f"9341{uuid.uuid4().int % 10**12:012d}"
        tok = http.post(f"{base}/_sandbox/grants", json={"tenant": self.realm}).json()
        self.headers = {"Authorization": f"Bearer {tok['access_token']}",
                        "Accept": "application/json"}

    def post(self, path: str, body: Any, **params: str) -> httpx.Response:
        return self.http.post(f"{self.base}/v3/company/{self.realm}/{path}", json=body,
                              headers=self.headers, params={**MV, **params})

    def query(self, text: str) -> httpx.Response:
        return self.http.get(f"{self.base}/v3/company/{self.realm}/query",
                             headers=self.headers, params={**MV, "query": text})

    def create(self, entity: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
        r = self.post(entity.lower(), body, **params)
        assert r.status_code == 200, r.text
        obj: dict[str, Any] = r.json()[entity]
        return obj

    def seed(self, data: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/_sandbox/seed/{self.realm}", json=data)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def books(self) -> dict[str, Any]:
        out: dict[str, Any] = self.http.get(f"{self.base}/_sandbox/books/{self.realm}").json()
        return out


@pytest.fixture
def co(base: str) -> Iterator[Co]:
    with httpx.Client(timeout=10) as http:
        yield Co(http, base)


def error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["Fault"]["Error"][0]
    return err


def sale(co: Co) -> tuple[dict[str, Any], dict[str, Any]]:
    cust = co.create("Customer", {"DisplayName": f"Buyer {uuid.uuid4().hex[:6]}"})
    item = co.create("Item", {"Name": "Labour", "Type": "Service",
                              "IncomeAccountRef": {"value": "1"}})
    return cust, item


# -- money -----------------------------------------------------------------------------------

def test_line_amount_is_tax_exclusive_and_taxinclusiveamt_carries_the_gross(co: Co) -> None:
    """Finance.xsd ``SalesItemLineDetail/TaxInclusiveAmt`` (shared/specs/qbo-xsd/Finance.xsd):
    the tax-inclusive line figure has its own element, so ``Line.Amount`` is exclusive;
    providers.md section 0 (2nd: quickbooks-ruby #346, #569).

    Hand-worked: 3 x 19.99 incl. 20% = 59.97 gross; tax 59.97 x 20/120 = 9.995 -> 10.00;
    net 49.97. TotalAmt = 49.97 + 10.00 = 59.97 (not 49.97 + 10 + 10 or 59.97 + 10)."""
    cust, item = sale(co)
    inv = co.create("Invoice", {
        "CustomerRef": {"value": cust["Id"]}, "GlobalTaxCalculation": "TaxInclusive",
        "TxnTaxDetail": {"TotalTax": "10.00"},
        "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "49.97",
                  "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 3,
                                          "TaxInclusiveAmt": "59.97"}}]})
    assert inv["TotalAmt"] == 59.97 and inv["Balance"] == 59.97
    line = inv["Line"][0]
    assert line["Amount"] == 49.97 and line["SalesItemLineDetail"]["TaxInclusiveAmt"] == 59.97
    # Without TotalTax the tax is what the lines carry: 59.97 - 49.97.
    inv2 = co.create("Invoice", {
        "CustomerRef": {"value": cust["Id"]}, "GlobalTaxCalculation": "TaxInclusive",
        "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "49.97",
                  "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]},
                                          "TaxInclusiveAmt": "59.97"}}]})
    assert inv2["TxnTaxDetail"]["TotalTax"] == 10.0 and inv2["TotalAmt"] == 59.97


def test_replay_intuit_sample_invoice_shape_and_arithmetic(co: Co) -> None:
    """Intuit's API-reference sample invoice (DocNumber 1070, "Amy's Bird Sanctuary", one
    150.0 service line), as copied in PipedreamHQ/pipedream
    ``components/quickbooks/sources/new-invoice-updated/test-event.mjs``. Its request fields
    are replayed; the answer must have the sample's shape: numbered sales line, a
    ``SubTotalLineDetail`` line, TotalAmt = Balance = 150, TotalTax 0, EmailStatus/PrintStatus,
    ``domain``/``sparse``, MetaData."""
    cust, item = sale(co)
    sample_request = {
        "TxnDate": "2015-07-24", "PrintStatus": "NeedToPrint", "DueDate": "2015-08-23",
        "ApplyTaxAfterDiscount": False, "DocNumber": "1070", "Deposit": 0,
        "CustomerRef": {"value": cust["Id"]},
        "Line": [{"Amount": 150.0, "DetailType": "SalesItemLineDetail",
                  "SalesItemLineDetail": {"TaxCodeRef": {"value": "NON"},
                                          "ItemRef": {"value": item["Id"]}}}],
        "BillAddr": {"City": "Bayshore", "Line1": "4581 Finch St.", "PostalCode": "94326",
                     "CountrySubDivisionCode": "CA"},
        "CustomField": [{"DefinitionId": "1", "Type": "StringType", "Name": "Crew #"}],
    }
    inv = co.create("Invoice", sample_request)
    sample_keys = {"TxnDate", "domain", "PrintStatus", "TotalAmt", "Line", "DueDate",
                   "DocNumber", "sparse", "Balance", "CustomerRef", "TxnTaxDetail",
                   "SyncToken", "LinkedTxn", "EmailStatus", "BillAddr", "MetaData",
                   "CustomField", "Id"}
    assert sample_keys <= set(inv)
    assert inv["TotalAmt"] == 150 and inv["Balance"] == 150
    assert inv["TxnTaxDetail"]["TotalTax"] == 0 and inv["LinkedTxn"] == []
    assert (inv["domain"], inv["sparse"], inv["SyncToken"]) == ("QBO", False, "0")
    sales, sub = inv["Line"]
    assert (sales["Id"], sales["LineNum"], sales["Amount"]) == ("1", 1, 150)
    assert sub == {"Amount": 150, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
    assert set(inv["MetaData"]) == {"CreateTime", "LastUpdatedTime"}


# -- names -----------------------------------------------------------------------------------

def test_display_name_unique_across_customer_vendor_employee_6240(co: Co) -> None:
    """QuickBooks-V3-PHP-SDK issue #241: code 6240 "Duplicate Name Exists Error", Detail "The
    name supplied already exists. : Another customer, vendor or employee is already using
    this name. Please use a different name." Intuit dev blog 2017-06-08 (providers.md 1.4)."""
    co.seed({"Vendor": [{"DisplayName": "Acme Supplies"}],
             "Employee": [{"DisplayName": "Jo Bloggs", "Active": False}]})
    for name in ("acme supplies", "Jo Bloggs"):
        err = error(co.post("customer", {"DisplayName": name}))
        assert err["code"] == "6240" and err["Message"] == "Duplicate Name Exists Error"
        assert "Another customer, vendor or employee is already using this name" in err["Detail"]
    vendors = co.query("select * from Vendor where DisplayName = 'Acme Supplies'").json()
    assert vendors["QueryResponse"]["Vendor"][0]["DisplayName"] == "Acme Supplies"


def test_customer_with_balance_cannot_be_made_inactive(co: Co) -> None:
    """quickbooks-ruby issue #390: "Delete List Has Balance Error: The entity you are trying to
    delete has an open balance. : This customer cannot be deleted because it has a non-zero
    balance" (deleting a name = making it inactive). Numeric code not public (assumed 6000).
    Other edits of such a customer still work."""
    cust, item = sale(co)
    co.create("Invoice", {"CustomerRef": {"value": cust["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 20,
         "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}}}]})
    err = error(co.post("customer", {"Id": cust["Id"], "SyncToken": cust["SyncToken"],
                                     "sparse": True, "Active": False}))
    assert err["Message"] == "Delete List Has Balance Error"
    assert "non-zero balance" in err["Detail"]
    ok = co.create("Customer", {"Id": cust["Id"], "SyncToken": cust["SyncToken"],
                                "sparse": True, "CompanyName": "Still editable"})
    assert ok["Active"] is True and ok["Balance"] == 20


# -- request validation ----------------------------------------------------------------------

def test_unknown_body_property_is_error_2010(co: Co) -> None:
    """python-quickbooks issue #164 and QuickBooks-V3-DotNET-SDK #163 (providers.md section 0):
    an unknown property gives 2010 "Request has invalid or unsupported property". Known
    properties are the XSD elements (IntuitNamesTypes.xsd, Finance.xsd; sandbox schema.py)."""
    err = error(co.post("customer", {"DisplayName": "X", "Nickname": "x"}))
    assert err["code"] == "2010" and err["element"] == "Nickname"
    cust, item = sale(co)
    err = error(co.post("invoice", {"CustomerRef": {"value": cust["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 1,
         "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "TaxAmount": 1}}]}))
    assert err["code"] == "2010"


def test_unqueryable_property_is_a_query_validation_error(co: Co) -> None:
    """quickbooks-ruby #258 (Payment.UnappliedAmt) and #24 (Account.AcctNum) answer "not
    queryable" (providers.md section 0)."""
    for text in ("select * from Payment where UnappliedAmt > '0'",
                 "select * from Account where AcctNum = '4000'"):
        err = error(co.query(text))
        assert err["code"] == "4001" and "not queryable" in err["Detail"]


def test_payment_queryable_by_customerref_and_txndate(co: Co) -> None:
    """Payment filters CustomerRef and TxnDate (Intuit payment reference, as tabulated in
    the Mescius/CData QuickBooks Online connector "Payments" table: Filterable = true for Id,
    MetaData, TxnDate, CustomerRef). The adapter finds a payment after a timeout with them."""
    cust, item = sale(co)
    inv = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 20,
         "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}}}]})
    co.create("Payment", {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 5,
                          "TxnDate": "2026-11-02", "PaymentRefNum": "BC-1",
                          "Line": [{"Amount": 5, "LinkedTxn": [{"TxnId": inv["Id"],
                                                                "TxnType": "Invoice"}]}]})
    r = co.query(f"select * from Payment where CustomerRef = '{cust['Id']}' "
                 "and TxnDate = '2026-11-02'")
    assert r.status_code == 200 and r.json()["QueryResponse"]["Payment"][0]["PaymentRefNum"] \
        == "BC-1"


def test_maxresults_above_1000_is_refused_not_capped(co: Co) -> None:
    """QuickBooks-V3-DotNET-SDK #163 (providers.md section 0): MAXRESULTS above 1000 is a
    QueryValidationError; 1000 with STARTPOSITION is how to page."""
    err = error(co.query("select * from Customer maxresults 1001"))
    assert err["code"] == "4001" and "MAXRESULTS" in err["Detail"]
    assert co.query("select * from Customer startposition 1 maxresults 1000").status_code == 200


def test_stale_synctoken_is_5010(co: Co) -> None:
    """providers.md 1.4: an old SyncToken gives 400 code 5010 "Stale Object Error" [2nd]."""
    cust = co.create("Customer", {"DisplayName": "Stale"})
    co.create("Customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True,
                           "CompanyName": "A"})
    err = error(co.post("customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True,
                                     "CompanyName": "B"}))
    assert err["code"] == "5010" and err["Message"] == "Stale Object Error"


# -- idempotency and failures ----------------------------------------------------------------

def test_requestid_replays_within_retention_then_executes_again(co: Co, clock: FakeClock) -> None:
    """blogs.intuit.com/2015/04/06/15346 (providers.md 1.4): a repeat with the same requestid
    returns the original response without re-executing. The retention window is not
    documented; QuickBooks-V3-DotNET-SDK #352 reports duplicates despite RequestId, so the
    simulator keeps requestids for ``requestid_retention_s`` (ASSUMPTION; 30 min here)."""
    body = {"DisplayName": "Replayed", "CompanyName": "R"}
    first = co.create("Customer", body, requestid="rid-1")
    again = co.post("customer", body, requestid="rid-1")
    assert again.status_code == 200 and again.json()["Customer"]["Id"] == first["Id"]
    assert len(co.books()["Customer"]) == 1
    clock.now += 1801
    late = co.post("customer", body, requestid="rid-1")  # executes: the name now clashes
    assert error(late)["code"] == "6240"


def test_5xx_after_the_write_applied_then_replay_returns_the_original(
        co: Co, board: FaultSwitchboard) -> None:
    """providers.md section 0: "A 5xx can come after the write was applied, not only before"
    (QuickBooks-V3-DotNET-SDK #352). The error body is a SystemFault envelope (IQ-err); the
    stored original answer is what a requestid replay returns."""
    board.set(co.realm, FaultPlan(error_after_apply_rate=1.0))
    r = co.post("customer", {"DisplayName": "Applied"}, requestid="rid-5xx")
    assert r.status_code == 500 and r.json()["Fault"]["type"] == "SystemFault"
    board.clear(co.realm)
    assert [c["DisplayName"] for c in co.books()["Customer"]] == ["Applied"]
    replay = co.post("customer", {"DisplayName": "Applied"}, requestid="rid-5xx")
    assert replay.status_code == 200 and replay.json()["Customer"]["DisplayName"] == "Applied"
    assert len(co.books()["Customer"]) == 1


def test_fault_envelope_shape(co: Co) -> None:
    """IntuitRestServiceDef.xsd ``Fault``/``Error`` (shared/specs/qbo-xsd) and Intuit's error
    page (providers.md 1.6): ``Message``/``Detail`` capitalised, ``code``/``element`` lower."""
    r = co.post("customer", {})
    body = r.json()
    assert set(body) == {"Fault", "time"} and body["Fault"]["type"] == "ValidationFault"
    assert set(body["Fault"]["Error"][0]) == {"Message", "Detail", "code", "element"}
