"""QuickBooks Online simulator over real HTTP (uvicorn in a thread, httpx client)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.faults import FaultPlan, FaultSwitchboard
from sandbox.quickbooks import QuickBooksLimits, create_app
from sandbox.quickbooks.query import quote
from sandbox.serve import serve_in_thread

CLIENT = ("blueclerk-local", "local-secret")
REDIRECT = "http://localhost:9999/callback"
SCOPE = "com.intuit.quickbooks.accounting openid"
MV = {"minorversion": "75"}


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def board() -> FaultSwitchboard:
    return FaultSwitchboard(seed=7)


@pytest.fixture(scope="module")
def base(board: FaultSwitchboard) -> Iterator[str]:
    with serve_in_thread(create_app(board=board)) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


class Company:
    """A fresh realm with a token, plus helpers for its API."""

    def __init__(self, http: httpx.Client, base: str, realm: str | None = None) -> None:
        self.http = http
        self.base = base
        self.realm = realm or f"9341{uuid.uuid4().int % 10**12:012d}"
        tok = http.post(f"{base}/_sandbox/grants", json={"tenant": self.realm}).json()
        self.token: str = tok["access_token"]
        self.refresh_token: str = tok["refresh_token"]

    @property
    def api(self) -> str:
        return f"{self.base}/v3/company/{self.realm}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def post(self, path: str, body: Any, **params: str) -> httpx.Response:
        return self.http.post(f"{self.api}/{path}", json=body, headers=self.headers(),
                              params={**MV, **params})

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(f"{self.api}/{path}", headers=self.headers(),
                             params={**MV, **params})

    def query(self, text: str) -> dict[str, Any]:
        r = self.get("query", query=text)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()["QueryResponse"]
        return result

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.post(entity.lower(), body)
        assert r.status_code == 200, r.text
        obj: dict[str, Any] = r.json()[entity]
        return obj

    def books(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"{self.base}/_sandbox/books/{self.realm}").json()
        return data


@pytest.fixture
def co(http: httpx.Client, base: str) -> Company:
    return Company(http, base)


def fault_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"Fault", "time"}, body
    err: dict[str, Any] = body["Fault"]["Error"][0]
    assert set(err) == {"Message", "Detail", "code", "element"}
    err["type"] = body["Fault"]["type"]
    return err


# ----------------------------------------------------------------------------- OAuth


def _authorize(http: httpx.Client, base: str, realm: str, decision: str = "approve",
               state: str = "st-1") -> dict[str, list[str]]:
    params = {"client_id": CLIENT[0], "response_type": "code", "scope": SCOPE,
              "redirect_uri": REDIRECT, "state": state}
    page = http.get(f"{base}/connect/oauth2", params=params)
    assert page.status_code == 200 and "<form" in page.text
    r = http.post(f"{base}/connect/oauth2/decision",
                  data={**params, "decision": decision, "tenant": realm})
    assert r.status_code == 302
    loc = r.headers["location"]
    assert loc.startswith(REDIRECT)
    return parse_qs(urlsplit(loc).query)


def test_authorization_code_flow_and_single_use_code(http: httpx.Client, base: str) -> None:
    realm = "9341000000000001"
    q = _authorize(http, base, realm)
    assert q["state"] == ["st-1"] and q["realmId"] == [realm]
    form = {"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": REDIRECT}
    r = http.post(f"{base}/oauth2/v1/tokens/bearer", data=form, auth=CLIENT)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 3600
    assert tok["x_refresh_token_expires_in"] == 8726400
    api = http.get(f"{base}/v3/company/{realm}/customer/1",
                   headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert api.status_code == 400 and fault_of(api)["code"] == "610"  # authenticated
    replay = http.post(f"{base}/oauth2/v1/tokens/bearer", data=form, auth=CLIENT)
    assert replay.status_code == 400 and replay.json() == {"error": "invalid_grant"}


def test_code_redirect_uri_must_match_and_client_must_authenticate(
    http: httpx.Client, base: str
) -> None:
    q = _authorize(http, base, "9341000000000002")
    form = {"grant_type": "authorization_code", "code": q["code"][0],
            "redirect_uri": "http://evil.test/cb"}
    bad_client = http.post(f"{base}/oauth2/v1/tokens/bearer", data=form,
                           auth=(CLIENT[0], "wrong"))
    assert bad_client.status_code == 401 and bad_client.json() == {"error": "invalid_client"}
    r = http.post(f"{base}/oauth2/v1/tokens/bearer", data=form, auth=CLIENT)
    assert r.status_code == 400 and r.json() == {"error": "invalid_grant"}


def test_denied_consent_redirects_with_access_denied(http: httpx.Client, base: str) -> None:
    q = _authorize(http, base, "9341000000000003", decision="deny", state="xyz")
    assert q == {"error": ["access_denied"], "state": ["xyz"]}


def test_code_expires_after_ten_minutes(http: httpx.Client) -> None:
    clock = FakeClock()
    with serve_in_thread(create_app(clock=clock)) as base:
        q = _authorize(http, base, "9341000000000004")
        clock.now += 601
        r = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT, data={
            "grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": REDIRECT})
        assert r.status_code == 400 and r.json() == {"error": "invalid_grant"}


def test_refresh_rotation_old_refresh_token_is_invalid(http: httpx.Client, base: str) -> None:
    co = Company(http, base)
    first = co.refresh_token
    r = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT,
                  data={"grant_type": "refresh_token", "refresh_token": first})
    assert r.status_code == 200
    new = r.json()
    assert new["refresh_token"] != first and new["access_token"] != co.token
    again = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT,
                      data={"grant_type": "refresh_token", "refresh_token": first})
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}
    newest = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT,
                       data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert newest.status_code == 200


def test_access_token_expires_after_an_hour_and_via_sandbox_hook(http: httpx.Client) -> None:
    clock = FakeClock()
    with serve_in_thread(create_app(clock=clock)) as base:
        co = Company(http, base)
        assert co.get("customer/1").status_code == 400  # valid token, missing record
        clock.now += 3599
        assert co.get("customer/1").status_code == 400
        clock.now += 2
        r = co.get("customer/1")
        assert r.status_code == 401
        err = fault_of(r)
        assert err["code"] == "3200" and err["type"] == "AuthenticationFault"
        assert err["Message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
        # refresh gives a working token; then the sandbox hook expires it
        tok = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT, data={
            "grant_type": "refresh_token", "refresh_token": co.refresh_token}).json()
        co.token = tok["access_token"]
        assert co.get("customer/1").status_code == 400
        assert http.post(f"{base}/_sandbox/tokens/{co.realm}/expire").json() == {"expired": 1}
        assert co.get("customer/1").status_code == 401


def test_revoke_kills_access_and_refresh(http: httpx.Client, base: str, co: Company) -> None:
    r = http.post(f"{base}/v2/oauth2/tokens/revoke", json={"token": co.refresh_token},
                  auth=CLIENT)
    assert r.status_code == 200
    assert co.get("customer/1").status_code == 401
    rr = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT,
                   data={"grant_type": "refresh_token", "refresh_token": co.refresh_token})
    assert rr.status_code == 400 and rr.json() == {"error": "invalid_grant"}


def test_missing_token_and_wrong_realm(http: httpx.Client, base: str, co: Company) -> None:
    r = http.get(f"{co.api}/customer/1", params=MV)
    assert r.status_code == 401 and fault_of(r)["code"] == "3200"
    other = http.get(f"{base}/v3/company/1234/customer/1", headers=co.headers(), params=MV)
    assert other.status_code == 403
    assert fault_of(other)["type"] == "AuthorizatonFault"


# ----------------------------------------------------------------------------- customers


def test_customer_create_read_and_metadata(co: Company) -> None:
    c = co.create("Customer", {"DisplayName": "Ada Lovelace",
                               "PrimaryEmailAddr": {"Address": "ada@example.com"}})
    assert c["Id"] and c["SyncToken"] == "0"
    assert {"CreateTime", "LastUpdatedTime"} <= set(c["MetaData"])
    assert c["Active"] is True and c["CurrencyRef"]["value"] == "USD"
    r = co.get(f"customer/{c['Id']}")
    body = r.json()
    assert r.status_code == 200 and body["Customer"]["DisplayName"] == "Ada Lovelace"
    assert "time" in body


def test_duplicate_display_name_case_insensitive_and_colon(co: Company) -> None:
    co.create("Customer", {"DisplayName": "Acme Plumbing"})
    r = co.post("customer", {"DisplayName": "ACME plumbing"})
    assert r.status_code == 400
    err = fault_of(r)
    assert err["code"] == "6240" and err["Message"] == "Duplicate Name Exists Error"
    assert "Another customer, vendor or employee is already using this name" in err["Detail"]
    assert err["type"] == "ValidationFault"
    colon = co.post("customer", {"DisplayName": "Parent:Child"})
    assert colon.status_code == 400
    missing = co.post("customer", {"Notes": "no name"})
    assert missing.status_code == 400 and fault_of(missing)["code"] == "2020"
    assert len(co.books()["Customer"]) == 1


def test_stale_sync_token_and_sparse_vs_full_update(co: Company) -> None:
    c = co.create("Customer", {"DisplayName": "Grace Hopper", "GivenName": "Grace",
                               "CompanyName": "Navy"})
    sparse = co.post("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True,
                                  "GivenName": "Amazing Grace"})
    assert sparse.status_code == 200
    s = sparse.json()["Customer"]
    assert s["SyncToken"] == "1" and s["GivenName"] == "Amazing Grace"
    assert s["CompanyName"] == "Navy" and s["DisplayName"] == "Grace Hopper"
    stale = co.post("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True,
                                 "GivenName": "x"})
    assert stale.status_code == 400
    err = fault_of(stale)
    assert err["code"] == "5010" and err["Message"] == "Stale Object Error"
    full = co.post("customer", {"Id": c["Id"], "SyncToken": "1",
                                "DisplayName": "Grace B. Hopper"})
    assert full.status_code == 200
    f = full.json()["Customer"]
    assert f["SyncToken"] == "2" and "CompanyName" not in f and "GivenName" not in f
    assert f["MetaData"]["CreateTime"] == c["MetaData"]["CreateTime"]
    missing = co.post("customer", {"Id": "99999", "SyncToken": "0", "DisplayName": "Nobody"})
    assert missing.status_code == 400 and fault_of(missing)["code"] == "610"


def test_unknown_customer_is_object_not_found(co: Company) -> None:
    r = co.get("customer/424242")
    assert r.status_code == 400 and fault_of(r)["code"] == "610"


def test_requestid_replay_returns_original_without_second_record(co: Company) -> None:
    rid = str(uuid.uuid4())
    first = co.post("customer", {"DisplayName": "Replay Ltd"}, requestid=rid)
    second = co.post("customer", {"DisplayName": "Replay Ltd"}, requestid=rid)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(co.books()["Customer"]) == 1
    other = co.post("customer", {"DisplayName": "Replay Ltd"}, requestid=str(uuid.uuid4()))
    assert other.status_code == 400 and fault_of(other)["code"] == "6240"
    too_long = co.post("customer", {"DisplayName": "Long Rid"}, requestid="x" * 51)
    assert too_long.status_code == 400
    assert co.post("customer", {"DisplayName": "Rid 50"}, requestid="y" * 50).status_code == 200


def test_minorversion_below_75_rejected(co: Company) -> None:
    r = co.http.get(f"{co.api}/customer/1", headers=co.headers(),
                    params={"minorversion": "65"})
    assert r.status_code == 400 and "minorversion" in fault_of(r)["Detail"]
    ok = co.http.get(f"{co.api}/query", headers=co.headers(),
                     params={"minorversion": "75", "query": "select * from Customer"})
    assert ok.status_code == 200


# ----------------------------------------------------------------------------- query


def test_query_quoting_backslashes_and_japanese(co: Company) -> None:
    names = ["O'Brien & Sons \"Best\" Plumbing", "Back\\slash \\\\ Supplies",
             "山田商事株式会社", "Plain Co"]
    for n in names:
        co.create("Customer", {"DisplayName": n})
    for n in names:
        res = co.query(f"select * from Customer where DisplayName = {quote(n)}")
        assert [c["DisplayName"] for c in res["Customer"]] == [n]
    # POST form with Content-Type application/text
    for text, expected in (("SELECT * FROM Customer WHERE DisplayName LIKE '%\\'brien%'", 0),
                           ("select * from customer where displayname like '山田%'", 2)):
        r = co.http.post(f"{co.api}/query", params=MV, content=text.encode(),
                         headers={**co.headers(), "Content-Type": "application/text"})
        assert r.status_code == 200
        assert r.json()["QueryResponse"]["Customer"][0]["DisplayName"] == names[expected]
    assert co.query("select * from Customer where DisplayName = 'Nobody'") == {}
    count = co.query("select count(*) from Customer")
    assert count == {"totalCount": 4}
    page = co.query("select * from Customer orderby DisplayName startposition 2 maxresults 2")
    assert page["startPosition"] == 2 and page["maxResults"] == 2
    bad = co.get("query", query="select * from Customer where DisplayName = 'O'Brien'")
    assert bad.status_code == 400
    err = fault_of(bad)
    assert err["code"] == "4000" and err["Message"] == "Error parsing query"


def test_query_hides_inactive_customers_by_default(co: Company) -> None:
    c = co.create("Customer", {"DisplayName": "Sleepy"})
    co.post("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    assert co.query("select * from Customer") == {}
    res = co.query("select * from Customer where Active in (true, false)")
    assert res["Customer"][0]["Active"] is False
    # an inactive name still blocks the name
    assert co.post("customer", {"DisplayName": "sleepy"}).status_code == 400


def test_default_chart_of_accounts(co: Company) -> None:
    income = co.query("select * from Account where AccountType = 'Income'")["Account"]
    by_name = {a["Name"]: a for a in income}
    assert by_name["Services"]["Id"] == "1"
    assert by_name["Sales of Product Income"]["Id"] == "79"
    assert all(a["Classification"] == "Revenue" for a in income)
    other = co.query("select * from Account where AccountType = 'Other Income'")["Account"]
    assert [a["Name"] for a in other] == ["Other Income"]
    names = {a["Name"] for a in co.books()["Account"]}
    assert {"Undeposited Funds", "Checking"} <= names
    assert co.get("account/35").json()["Account"]["AccountType"] == "Bank"


def test_seed_prepopulates(http: httpx.Client, base: str, co: Company) -> None:
    r = http.post(f"{base}/_sandbox/seed/{co.realm}", json={
        "Customer": [{"DisplayName": "Seeded One"}, {"Id": "500", "DisplayName": "Seeded Two"}],
        "Item": [{"Name": "Labor", "Type": "Service", "IncomeAccountRef": {"value": "1"},
                  "UnitPrice": 85}],
    })
    assert r.status_code == 200, r.text
    assert co.get("customer/500").json()["Customer"]["DisplayName"] == "Seeded Two"
    assert co.query("select * from Item where Name = 'Labor'")["Item"][0]["UnitPrice"] == 85


# ----------------------------------------------------------------------------- limits, faults


def test_rate_limit_per_minute_429_with_retry_after(http: httpx.Client) -> None:
    limits = QuickBooksLimits(requests_per_minute=5)
    with serve_in_thread(create_app(limits=limits)) as base:
        co = Company(http, base)
        other = Company(http, base)
        codes = [co.get("customer/1").status_code for _ in range(6)]
        assert codes[:5] == [400] * 5 and codes[5] == 429
        r = co.get("customer/1")
        assert r.status_code == 429 and r.headers["Retry-After"] == "60"
        err = fault_of(r)
        assert err["code"] == "3001" and err["type"] == "SERVICE"
        assert err["Message"] == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
        assert other.get("customer/1").status_code == 400  # per realm


def test_concurrency_limit(http: httpx.Client) -> None:
    board = FaultSwitchboard()
    limits = QuickBooksLimits(max_concurrent=2)
    with serve_in_thread(create_app(board=board, limits=limits)) as base:
        co = Company(http, base)
        board.set(co.realm, FaultPlan(latency_s=0.6))
        results: list[int] = []

        def call() -> None:
            with httpx.Client(timeout=10) as c:
                results.append(c.get(f"{co.api}/customer/1", headers=co.headers()).status_code)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert sorted(results) == [400, 400, 429, 429]


def test_fault_switches(http: httpx.Client, base: str, board: FaultSwitchboard,
                        co: Company) -> None:
    # throttle burst: next 2 requests 429, then normal
    http.put(f"{base}/_sandbox/faults/{co.realm}", json={"throttle_burst": 2})
    assert [co.get("customer/1").status_code for _ in range(3)] == [429, 429, 400]
    # 5xx before any effect
    board.set(co.realm, FaultPlan(error_rate=1.0))
    r = co.post("customer", {"DisplayName": "Never Stored"})
    assert r.status_code == 503 and fault_of(r)["type"] == "SystemFault"
    assert co.books()["Customer"] == []
    # hang after apply: write lands, client times out, retry with requestid gets the original
    board.set(co.realm, FaultPlan(timeout_rate=1.0, hang_s=1.5))
    rid = str(uuid.uuid4())
    with pytest.raises(httpx.ReadTimeout):
        co.http.post(f"{co.api}/customer", json={"DisplayName": "Hung Ltd"},
                     headers=co.headers(), params={**MV, "requestid": rid}, timeout=0.5)
    board.clear(co.realm)
    retry = co.post("customer", {"DisplayName": "Hung Ltd"}, requestid=rid)
    assert retry.status_code == 200
    assert [c["DisplayName"] for c in co.books()["Customer"]] == ["Hung Ltd"]
    # latency
    board.set(co.realm, FaultPlan(latency_s=0.3))
    t0 = time.monotonic()
    co.get("customer/1")
    assert time.monotonic() - t0 >= 0.3
    # revoked: 401 and refresh invalid_grant
    board.set(co.realm, FaultPlan(revoked=True))
    assert co.get("customer/1").status_code == 401
    rr = http.post(f"{base}/oauth2/v1/tokens/bearer", auth=CLIENT,
                   data={"grant_type": "refresh_token", "refresh_token": co.refresh_token})
    assert rr.status_code == 400 and rr.json() == {"error": "invalid_grant"}
    board.clear(co.realm)


# ----------------------------------------------------------------------------- items, accounts


def _item(co: Company, name: str = "Labor", price: Any = 85, **extra: Any) -> dict[str, Any]:
    return co.create("Item", {"Name": name, "Type": "Service",
                              "IncomeAccountRef": {"value": "1"}, "UnitPrice": price, **extra})


def test_item_rules(co: Company) -> None:
    item = _item(co, Sku="LAB-1", price=85.125)
    assert item["Type"] == "Service" and item["UnitPrice"] == 85.125
    assert item["IncomeAccountRef"] == {"value": "1", "name": "Services"}
    assert item["Sku"] == "LAB-1" and item["Active"] is True
    dup = co.post("item", {"Name": "labor", "Type": "Service",
                           "IncomeAccountRef": {"value": "1"}})
    assert dup.status_code == 400 and fault_of(dup)["code"] == "6240"
    bad_type = co.post("item", {"Name": "Gadget", "Type": "Gizmo",
                                "IncomeAccountRef": {"value": "1"}})
    assert bad_type.status_code == 400
    no_acct = co.post("item", {"Name": "Gadget", "Type": "NonInventory"})
    assert no_acct.status_code == 400 and fault_of(no_acct)["code"] == "2500"
    missing_acct = co.post("item", {"Name": "Gadget", "Type": "NonInventory",
                                    "IncomeAccountRef": {"value": "9999"}})
    assert missing_acct.status_code == 400 and fault_of(missing_acct)["code"] == "2500"
    bank_acct = co.post("item", {"Name": "Gadget", "Type": "NonInventory",
                                 "IncomeAccountRef": {"value": "35"}})
    assert bank_acct.status_code == 400 and fault_of(bank_acct)["code"] == "2500"
    other_income = co.post("item", {"Name": "Gadget", "Type": "NonInventory",
                                    "IncomeAccountRef": {"value": "83"}})
    assert other_income.status_code == 200
    # a customer and an item may share a name (different name lists)
    assert co.post("customer", {"DisplayName": "Labor"}).status_code == 200
    upd = co.post("item", {"Id": item["Id"], "SyncToken": "0", "sparse": True,
                           "UnitPrice": 90})
    assert upd.status_code == 200 and upd.json()["Item"]["Sku"] == "LAB-1"
    assert co.query("select * from Item where Sku = 'LAB-1'")["Item"][0]["UnitPrice"] == 90


# ----------------------------------------------------------------------------- invoices


def _invoice_setup(co: Company) -> tuple[dict[str, Any], dict[str, Any]]:
    cust = co.create("Customer", {"DisplayName": f"Cust {uuid.uuid4().hex[:6]}"})
    return cust, _item(co, f"Labor {uuid.uuid4().hex[:6]}")


def _line(item: dict[str, Any], qty: Any, price: Any, amount: Any = None) -> dict[str, Any]:
    line: dict[str, Any] = {"DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {
        "ItemRef": {"value": item["Id"]}, "Qty": qty, "UnitPrice": price}}
    if amount is not None:
        line["Amount"] = amount
    return line


def test_invoice_totals_discount_tax_and_server_fields(co: Company) -> None:
    cust, item = _invoice_setup(co)
    inv = co.create("Invoice", {
        "CustomerRef": {"value": cust["Id"]},
        "Line": [_line(item, 3, 33.335), _line(item, 1, 10, 10.00),
                 {"DetailType": "DiscountLineDetail", "Amount": 0,
                  "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10}}],
        "TxnTaxDetail": {"TotalTax": 8.125},
        "GlobalTaxCalculation": "TaxExcluded",
    })
    # 3 * 33.335 = 100.005 -> 100.01 (half-up); subtotal 110.01; 10% = 11.001 -> 11.00
    sales = [ln for ln in inv["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert [ln["Amount"] for ln in sales] == [100.01, 10.0]
    assert [ln["Id"] for ln in sales] == ["1", "2"] and [ln["LineNum"] for ln in sales] == [1, 2]
    sub = [ln for ln in inv["Line"] if ln["DetailType"] == "SubTotalLineDetail"]
    assert sub[0]["Amount"] == 110.01
    disc = [ln for ln in inv["Line"] if ln["DetailType"] == "DiscountLineDetail"]
    assert disc[0]["Amount"] == 11.0
    assert inv["TxnTaxDetail"]["TotalTax"] == 8.13
    assert inv["TotalAmt"] == 107.14 and inv["Balance"] == 107.14  # 110.01 - 11 + 8.13
    assert inv["CurrencyRef"]["value"] == "USD" and inv["DocNumber"]
    assert inv["SyncToken"] == "0"
    inclusive = co.create("Invoice", {
        "CustomerRef": {"value": cust["Id"]}, "Line": [_line(item, 1, 100)],
        "TxnTaxDetail": {"TotalTax": 9.09}, "GlobalTaxCalculation": "TaxInclusive"})
    # Line Amount is tax-exclusive in every mode (Finance.xsd TaxInclusiveAmt): 100 + 9.09.
    assert inclusive["TotalAmt"] == 109.09
    na = co.create("Invoice", {
        "CustomerRef": {"value": cust["Id"]}, "Line": [_line(item, 2, 5)],
        "TxnTaxDetail": {"TotalTax": 1}, "GlobalTaxCalculation": "NotApplicable"})
    assert na["TotalAmt"] == 10.0
    bad_gtc = co.post("invoice", {"CustomerRef": {"value": cust["Id"]},
                                  "Line": [_line(item, 1, 1)], "GlobalTaxCalculation": "Auto"})
    assert bad_gtc.status_code == 400


def test_invoice_validation(co: Company) -> None:
    cust, item = _invoice_setup(co)
    wrong = co.post("invoice", {"CustomerRef": {"value": cust["Id"]},
                                "Line": [_line(item, 2, 10, 25)]})
    assert wrong.status_code == 400 and fault_of(wrong)["code"] == "6070"
    no_cust = co.post("invoice", {"CustomerRef": {"value": "9999"},
                                  "Line": [_line(item, 1, 1)]})
    assert no_cust.status_code == 400 and fault_of(no_cust)["code"] == "2500"
    no_item = co.post("invoice", {"CustomerRef": {"value": cust["Id"]},
                                  "Line": [_line({"Id": "9999"}, 1, 1)]})
    assert no_item.status_code == 400 and fault_of(no_item)["code"] == "2500"
    fixed_disc = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]}, "Line": [
        _line(item, 1, 50), {"DetailType": "DiscountLineDetail", "Amount": 5.555,
                             "DiscountLineDetail": {"PercentBased": False}}]})
    assert fixed_disc["TotalAmt"] == 44.44  # 50 - 5.56
    assert len(co.books()["Invoice"]) == 1


def test_invoice_currency_minor_units(http: httpx.Client, base: str) -> None:
    jp = Company(http, base)
    http.post(f"{base}/_sandbox/seed/{jp.realm}", json={"HomeCurrency": "JPY"})
    cust, item = _invoice_setup(jp)
    inv = jp.create("Invoice", {"CustomerRef": {"value": cust["Id"]},
                                "Line": [_line(item, 3, 333.5)]})
    assert inv["CurrencyRef"]["value"] == "JPY" and inv["TotalAmt"] == 1001  # 1000.5 -> 1001
    kw = Company(http, base)
    cust = kw.create("Customer", {"DisplayName": "Kuwait Co", "CurrencyRef": {"value": "KWD"}})
    item = _item(kw)
    inv = kw.create("Invoice", {"CustomerRef": {"value": cust["Id"]}, "ExchangeRate": 3.25,
                                "Line": [_line(item, 1, 1.2345)]})
    assert inv["TotalAmt"] == 1.235 and inv["CurrencyRef"]["value"] == "KWD"
    assert inv["HomeTotalAmt"] == 4.01  # 1.235 * 3.25 = 4.01375 -> 4.01 USD
    mismatch = kw.post("invoice", {"CustomerRef": {"value": cust["Id"]},
                                   "CurrencyRef": {"value": "USD"},
                                   "Line": [_line(item, 1, 1)]})
    assert mismatch.status_code == 400


def test_invoice_update_void_delete(co: Company) -> None:
    cust, item = _invoice_setup(co)
    inv = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]},
                                "Line": [_line(item, 1, 100)], "PrivateNote": "job 7",
                                "DocNumber": "BC-1"})
    sparse = co.post("invoice", {"Id": inv["Id"], "SyncToken": "0", "sparse": True,
                                 "Line": [_line(item, 2, 100)]})
    assert sparse.status_code == 200
    s = sparse.json()["Invoice"]
    assert s["TotalAmt"] == 200.0 and s["PrivateNote"] == "job 7" and s["SyncToken"] == "1"
    assert s["DocNumber"] == "BC-1"
    stale = co.post("invoice", {"Id": inv["Id"], "SyncToken": "0", "sparse": True,
                                "PrivateNote": "x"})
    assert fault_of(stale)["code"] == "5010"
    full = co.post("invoice", {"Id": inv["Id"], "SyncToken": "1",
                               "CustomerRef": {"value": cust["Id"]},
                               "Line": [_line(item, 1, 100)]})
    assert full.status_code == 200 and "PrivateNote" not in full.json()["Invoice"]
    void = co.post("invoice", {"Id": inv["Id"], "SyncToken": "2"}, operation="void")
    assert void.status_code == 200
    v = void.json()["Invoice"]
    assert v["TotalAmt"] == 0 and v["Balance"] == 0 and v["PrivateNote"].startswith("Voided")
    assert all(ln["Amount"] == 0 for ln in v["Line"])
    other = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]},
                                  "Line": [_line(item, 1, 5)]})
    deleted = co.post("invoice", {"Id": other["Id"], "SyncToken": "0"}, operation="delete")
    assert deleted.status_code == 200
    assert deleted.json()["Invoice"] == {"Id": other["Id"], "status": "Deleted", "domain": "QBO"}
    assert fault_of(co.get(f"invoice/{other['Id']}"))["code"] == "610"


# ----------------------------------------------------------------------------- payments


def test_payment_applies_to_invoice_and_unapplied_remainder(co: Company) -> None:
    cust, item = _invoice_setup(co)
    inv = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]},
                                "Line": [_line(item, 1, 100)]})
    link = [{"TxnId": inv["Id"], "TxnType": "Invoice"}]
    too_much = co.post("payment", {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 150,
                                   "Line": [{"Amount": 120, "LinkedTxn": link}]})
    assert too_much.status_code == 400 and fault_of(too_much)["code"] == "6000"
    bad_deposit = co.post("payment", {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 1,
                                      "DepositToAccountRef": {"value": "9999"}})
    assert bad_deposit.status_code == 400
    pay = co.create("Payment", {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 70,
                                "TxnDate": "2025-03-01", "DepositToAccountRef": {"value": "35"},
                                "Line": [{"Amount": 60, "LinkedTxn": link}]})
    assert pay["UnappliedAmt"] == 10.0 and pay["TxnDate"] == "2025-03-01"
    after = co.get(f"invoice/{inv['Id']}").json()["Invoice"]
    assert after["Balance"] == 40.0 and after["SyncToken"] == "1"
    assert after["LinkedTxn"] == [{"TxnId": pay["Id"], "TxnType": "Payment"}]
    assert co.get(f"customer/{cust['Id']}").json()["Customer"]["Balance"] == 30.0
    # voiding an invoice with an applied payment is refused
    v = co.post("invoice", {"Id": inv["Id"], "SyncToken": "1"}, operation="void")
    assert v.status_code == 400 and fault_of(v)["code"] == "6000"
    # remove the payment: the invoice is open again and can be voided
    d = co.post("payment", {"Id": pay["Id"], "SyncToken": "0"}, operation="delete")
    assert d.status_code == 200
    reopened = co.get(f"invoice/{inv['Id']}").json()["Invoice"]
    assert reopened["Balance"] == 100.0 and reopened["LinkedTxn"] == []
    v2 = co.post("invoice", {"Id": inv["Id"], "SyncToken": reopened["SyncToken"]},
                 operation="void")
    assert v2.status_code == 200


# ----------------------------------------------------------------------------- batch, CDC


def test_batch(co: Company) -> None:
    co.create("Customer", {"DisplayName": "Existing"})
    r = co.post("batch", {"BatchItemRequest": [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Batch One"}},
        {"bId": "2", "operation": "create", "Customer": {"DisplayName": "existing"}},
        {"bId": "3", "Query": "select * from Customer where DisplayName = 'Batch One'"},
        {"bId": "4", "Query": "select * from Customer where"},
    ]}, requestid="b" * 36)
    assert r.status_code == 200, r.text
    items = {it["bId"]: it for it in r.json()["BatchItemResponse"]}
    assert items["1"]["Customer"]["DisplayName"] == "Batch One"
    assert items["2"]["Fault"]["Error"][0]["code"] == "6240"
    assert items["3"]["QueryResponse"]["Customer"][0]["DisplayName"] == "Batch One"
    assert items["4"]["Fault"]["Error"][0]["code"] == "4000"
    too_many = co.post("batch", {"BatchItemRequest": [
        {"bId": str(i), "Query": "select * from Customer"} for i in range(31)]})
    assert too_many.status_code == 400
    long_rid = co.post("batch", {"BatchItemRequest": [
        {"bId": "1", "Query": "select * from Customer"}]}, requestid="b" * 37)
    assert long_rid.status_code == 400


def test_batch_rate_limit(http: httpx.Client) -> None:
    with serve_in_thread(create_app(limits=QuickBooksLimits(batch_per_minute=2))) as base:
        co = Company(http, base)
        body = {"BatchItemRequest": [{"bId": "1", "Query": "select * from Customer"}]}
        codes = [co.post("batch", body).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert co.get("customer/1").status_code == 400  # ordinary calls still allowed


def test_cdc(http: httpx.Client) -> None:
    clock = FakeClock()
    with serve_in_thread(create_app(clock=clock)) as base:
        co = Company(http, base)
        cust, item = _invoice_setup(co)
        inv = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]},
                                    "Line": [_line(item, 1, 10)]})
        clock.now += 600
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - 1))
        later = co.create("Customer", {"DisplayName": "Later Co"})
        co.post("invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="delete")
        r = co.get("cdc", entities="Customer,Invoice", changedSince=since)
        assert r.status_code == 200, r.text
        responses = r.json()["CDCResponse"][0]["QueryResponse"]
        assert [c["Id"] for c in responses[0]["Customer"]] == [later["Id"]]
        assert responses[1]["Invoice"] == [{
            "Id": inv["Id"], "status": "Deleted", "domain": "QBO",
            "MetaData": responses[1]["Invoice"][0]["MetaData"]}]
        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - 31 * 86400))
        too_old = co.get("cdc", entities="Customer", changedSince=old)
        assert too_old.status_code == 400 and "30 days" in fault_of(too_old)["Detail"]


def test_payment_void_reopens_invoice(co: Company) -> None:
    cust, item = _invoice_setup(co)
    inv = co.create("Invoice", {"CustomerRef": {"value": cust["Id"]},
                                "Line": [_line(item, 4, 25)]})
    pay = co.create("Payment", {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 100,
                                "Line": [{"Amount": 100, "LinkedTxn": [
                                    {"TxnId": inv["Id"], "TxnType": "Invoice"}]}]})
    assert pay["UnappliedAmt"] == 0
    assert pay["DepositToAccountRef"]["value"] == "4"  # Undeposited Funds
    assert co.get(f"invoice/{inv['Id']}").json()["Invoice"]["Balance"] == 0
    v = co.post("payment", {"Id": pay["Id"], "SyncToken": "0"}, operation="void")
    assert v.status_code == 200
    assert v.json()["Payment"]["TotalAmt"] == 0
    assert v.json()["Payment"]["PrivateNote"] == "Voided"
    assert co.get(f"invoice/{inv['Id']}").json()["Invoice"]["Balance"] == 100.0


def test_mounted_under_prefix_consent_form_posts_back(http: httpx.Client) -> None:
    from fastapi import FastAPI

    root = FastAPI()
    root.mount("/quickbooks", create_app())
    with serve_in_thread(root) as base:
        params = {"client_id": CLIENT[0], "response_type": "code", "scope": SCOPE,
                  "redirect_uri": REDIRECT, "state": "m"}
        page = http.get(f"{base}/quickbooks/connect/oauth2", params=params)
        action = page.text.split('action="', 1)[1].split('"', 1)[0]
        target = httpx.URL(str(page.url)).join(action)
        assert target.path == "/quickbooks/connect/oauth2/decision"
        r = http.post(target, data={**params, "decision": "approve", "tenant": "77"})
        assert r.status_code == 302 and "realmId=77" in r.headers["location"]
