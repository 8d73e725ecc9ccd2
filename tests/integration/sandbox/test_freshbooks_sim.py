"""FreshBooks simulator over real HTTP (serve_in_thread + httpx)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from sandbox.faults import FaultPlan, FaultSwitchboard
from sandbox.freshbooks import FreshBooksLimits, create_app
from sandbox.serve import serve_in_thread

# FreshBooks' recorded SDK responses (MIT, copied from shared/specs with their licence).
FIXTURES = Path(__file__).resolve().parents[2] / "data" / "freshbooks-sdk-fixtures"
CLIENT_ID, SECRET = "blueclerk-local", "local-secret"
REDIRECT = "http://localhost/callback"
_n = itertools.count(1)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def board() -> FaultSwitchboard:
    return FaultSwitchboard(seed=1)


@pytest.fixture(scope="module")
def base(board: FaultSwitchboard) -> Iterator[str]:
    app = create_app(board=board, limits=FreshBooksLimits(per_minute=100_000))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


def tenant() -> str:
    return f"ACCT{next(_n)}X{int(time.time() * 1000) % 100000}"


def grant(http: httpx.Client, account: str) -> dict[str, Any]:
    r = http.post("/_sandbox/grants", json={"tenant": account})
    assert r.status_code == 200
    tok: dict[str, Any] = r.json()
    return tok


def auth(tok: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok['access_token']}"}


class Api:
    def __init__(self, http: httpx.Client, account: str | None = None) -> None:
        self.http = http
        self.account = account or tenant()
        self.tok = grant(http, self.account)

    def url(self, path: str) -> str:
        return f"/accounting/account/{self.account}/{path}"

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(self.url(path), params=params, headers=auth(self.tok))

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        headers = {**auth(self.tok), **kw.pop("headers", {})}
        return self.http.post(self.url(path), json=body, headers=headers, **kw)

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.http.put(self.url(path), json=body, headers=auth(self.tok))

    def client(self, **fields: Any) -> dict[str, Any]:
        r = self.post("users/clients", {"client": fields})
        assert r.status_code == 200, r.text
        c: dict[str, Any] = r.json()["response"]["result"]["client"]
        return c

    def books(self) -> dict[str, Any]:
        r = self.http.get(f"/_sandbox/books/{self.account}")
        assert r.status_code == 200
        b: dict[str, Any] = r.json()
        return b


def errors(r: httpx.Response) -> dict[str, Any]:
    e: dict[str, Any] = r.json()["response"]["errors"][0]
    return e


# ---- OAuth ---------------------------------------------------------------------------

def _consent(http: httpx.Client, decision: str, account: str) -> httpx.Response:
    q = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
         "state": "st4te", "scope": "user:clients:read"}
    page = http.get("/oauth/authorize", params=q)
    assert page.status_code == 200 and "<form" in page.text and "decision" in page.text
    return http.post("/oauth/authorize/decision",
                     data={**q, "decision": decision, "tenant": account})


def test_consent_approve_code_exchange_single_use_and_identity(http: httpx.Client) -> None:
    account = tenant()
    r = _consent(http, "approve", account)
    assert r.status_code == 302
    loc = urlparse(r.headers["location"])
    qs = parse_qs(loc.query)
    assert loc.geturl().startswith(REDIRECT) and qs["state"] == ["st4te"]
    form = {"grant_type": "authorization_code", "client_id": CLIENT_ID,
            "client_secret": SECRET, "code": qs["code"][0], "redirect_uri": REDIRECT}
    tok = http.post("/auth/oauth/token", data=form)
    assert tok.status_code == 200
    body = tok.json()
    assert set(fixture("auth_token_response.json")) - {"id_token"} <= set(body)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 43200
    assert body["scope"] == "user:clients:read"
    replay = http.post("/auth/oauth/token", json=form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    me = http.get("/auth/api/v1/users/me", headers=auth(body))
    assert me.status_code == 200
    membership = me.json()["response"]["business_memberships"][0]
    assert membership["role"] == "owner"
    biz = membership["business"]
    assert biz["account_id"] == account and isinstance(biz["id"], int) and biz["business_uuid"]
    assert set(fixture("auth_me_response.json")["response"]) <= set(me.json()["response"])


def test_consent_deny_redirects_with_access_denied(http: httpx.Client) -> None:
    r = _consent(http, "deny", tenant())
    assert r.status_code == 302
    qs = parse_qs(urlparse(r.headers["location"]).query)
    assert qs["error"] == ["access_denied"] and qs["state"] == ["st4te"] and "code" not in qs


def test_wrong_secret_and_wrong_redirect_uri(http: httpx.Client) -> None:
    bad = http.post("/auth/oauth/token", json={"grant_type": "refresh_token",
                                               "client_id": CLIENT_ID, "client_secret": "x",
                                               "refresh_token": "y"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert http.post("/_sandbox/grants", json={"tenant": "A1", "client_id": "nope"}
                     ).status_code == 422
    r = _consent(http, "approve", tenant())
    code = parse_qs(urlparse(r.headers["location"]).query)["code"][0]
    mismatch = http.post("/auth/oauth/token", json={
        "grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": SECRET,
        "code": code, "redirect_uri": "http://elsewhere/cb"})
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_grant"


def _refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/auth/oauth/token", json={
        "grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": SECRET,
        "refresh_token": refresh_token, "redirect_uri": REDIRECT})


def test_refresh_token_is_single_use(http: httpx.Client) -> None:
    api = Api(http)
    first = _refresh(http, api.tok["refresh_token"])
    assert first.status_code == 200
    new = first.json()
    assert new["refresh_token"] != api.tok["refresh_token"]
    again = _refresh(http, api.tok["refresh_token"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant" and again.json()["error_description"]
    assert _refresh(http, new["refresh_token"]).status_code == 200


def test_revoke_kills_the_grant(http: httpx.Client) -> None:
    api = Api(http)
    assert api.get("users/clients").status_code == 200
    r = http.post("/auth/oauth/revoke", json={"client_id": CLIENT_ID, "client_secret": SECRET,
                                              "token": api.tok["access_token"]})
    assert r.status_code == 200
    after = api.get("users/clients")
    assert after.status_code == 401 and errors(after)["errno"] == 1003
    assert _refresh(http, api.tok["refresh_token"]).json()["error"] == "invalid_grant"


def test_identity_unauthenticated_matches_fixture(http: httpx.Client) -> None:
    r = http.get("/auth/api/v1/users/me")
    assert r.status_code == 401
    assert r.json() == fixture("auth_me_response__no_auth.json")
    r = http.get("/auth/api/v1/users/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"


def test_expired_token_401_then_refresh_and_other_account_403(http: httpx.Client) -> None:
    api = Api(http)
    assert http.post(f"/_sandbox/tokens/{api.account}/expire").json()["expired"] >= 1
    r = api.get("users/clients")
    assert r.status_code == 401 and errors(r)["errno"] == 1003
    api.tok = _refresh(http, api.tok["refresh_token"]).json()
    assert api.get("users/clients").status_code == 200
    other = Api(http)
    r = http.get(other.url("users/clients"), headers=auth(api.tok))
    assert r.status_code == 403 and errors(r)["errno"] == 1003


# ---- clients ---------------------------------------------------------------------------

def test_client_shapes_match_fixtures(http: httpx.Client) -> None:
    api = Api(http)
    c = api.client(fname="Gordon", lname="Shumway", email="g@example.com",
                   currency_code="CAD", p_city="Toronto", bus_phone="555")
    assert set(c) == set(fixture("create_client_response.json")["response"]["result"]["client"])
    assert c["organization"] == "Gordon Shumway" and c["id"] == c["userid"]
    assert c["accounting_systemid"] == api.account and c["vis_state"] == 0
    assert c["currency_code"] == "CAD" and c["p_city"] == "Toronto" and c["bus_phone"] == "555"
    only_email = api.client(email="john.doe@abcorp.com")
    assert only_email["organization"] == "john.doe@abcorp.com"  # as in the fixture
    got = api.get(f"users/clients/{c['id']}")
    assert got.json()["response"]["result"]["client"] == c
    listing = api.get("users/clients").json()["response"]["result"]
    assert set(listing) == set(fixture("list_clients_response.json")["response"]["result"])
    assert listing["total"] == 2 and listing["per_page"] == 15 and listing["page"] == 1


def test_not_found_and_validation_envelopes(http: httpx.Client) -> None:
    api = Api(http)
    r = api.get("users/clients/12345")
    assert r.status_code == 404
    want = fixture("get_client_response__not_found.json")
    assert r.json() == want  # same errno, field, message, object, value
    r = api.post("users/clients", {"client": {"fname": "A", "email": "not-an-email"}})
    assert r.status_code == 422
    assert errors(r)["errno"] == 1004 and errors(r)["field"] == "email"
    r = api.post("users/clients", {"client": {}})
    assert errors(r)["errno"] == 1001 and errors(r)["field"] == "organization"
    r = http.post(api.url("users/clients"), content=b"{nope", headers=auth(api.tok))
    assert r.status_code == 400 and errors(r)["errno"] == 1005


def test_duplicates_allowed_idempotency_key_ignored(http: httpx.Client) -> None:
    api = Api(http)
    body = {"client": {"organization": "Acme", "email": "ap@acme.test"}}
    ids = {api.post("users/clients", body, headers={"Idempotency-Key": "k1"}).json()
           ["response"]["result"]["client"]["id"] for _ in range(2)}
    assert len(ids) == 2
    found = api.get("users/clients", **{"search[email]": "ap@acme.test"})
    assert found.json()["response"]["result"]["total"] == 2


def test_search_filters_and_soft_delete(http: httpx.Client) -> None:
    api = Api(http)
    target = api.client(fname="Dónal", lname="O'Brien", email="o'brien@example.com",
                        organization="O'Brien & Sons Ltd")
    api.client(fname="Mary", lname="Brien", email="mary@example.com", organization="Other")

    def ids(**params: Any) -> list[int]:
        r = api.get("users/clients", **params)
        assert r.status_code == 200
        return [c["id"] for c in r.json()["response"]["result"]["clients"]]

    assert ids(**{"search[email]": "o'brien@example.com"}) == [target["id"]]
    assert ids(**{"search[email]": "O'BRIEN@example.com"}) == [target["id"]]
    assert ids(**{"search[organization_like]": "brien & s"}) == [target["id"]]
    assert ids(**{"search[lname_like]": "o'bri"}) == [target["id"]]
    assert ids(**{"search[fname_like]": "Mary"}) != [target["id"]]
    # Not documented for clients (freshbooks.com/api/clients): ignored, not applied.
    assert len(ids(**{"search[lname]": "O'Brien"})) == 2
    deleted = api.put(f"users/clients/{target['id']}", {"client": {"vis_state": 1}})
    assert deleted.json()["response"]["result"]["client"]["vis_state"] == 1
    assert ids(**{"search[email]": "o'brien@example.com"}) == []
    assert ids(**{"search[email]": "o'brien@example.com", "search[vis_state]": "1"}) == [
        target["id"]]


def test_paging_cap_and_bounds(http: httpx.Client) -> None:
    api = Api(http)
    seeded = http.post(f"/_sandbox/seed/{api.account}", json={
        "clients": [{"organization": f"Org {i}"} for i in range(105)]})
    assert len(seeded.json()["clients"]) == 105

    def result(**params: Any) -> dict[str, Any]:
        r = api.get("users/clients", **params)
        assert r.status_code == 200, r.text
        res: dict[str, Any] = r.json()["response"]["result"]
        return res

    big = result(per_page=500)
    assert big["per_page"] == 100 and len(big["clients"]) == 100
    assert big["pages"] == 2 and big["total"] == 105
    assert result(page=0, per_page=10)["page"] == 1
    assert len(result(page=2, per_page=100)["clients"]) == 5
    assert result(page=9, per_page=100)["clients"] == []
    bad = api.get("users/clients", per_page="abc")
    assert bad.status_code == 400 and errors(bad)["errno"] == 1013


def test_concurrent_write_to_same_record_gets_409(http: httpx.Client,
                                                  board: FaultSwitchboard, base: str) -> None:
    api = Api(http)
    c = api.client(organization="Busy Co")
    board.set(api.account, FaultPlan(latency_s=0.4))

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as ac:
            async def put(org: str) -> httpx.Response:
                return await ac.put(api.url(f"users/clients/{c['id']}"),
                                    json={"client": {"organization": org}},
                                    headers=auth(api.tok))
            return list(await asyncio.gather(put("A"), put("B")))

    try:
        responses = asyncio.run(both())
    finally:
        board.clear(api.account)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409]
    conflict = next(r for r in responses if r.status_code == 409)
    assert errors(conflict)["errno"] == 409
    assert errors(conflict)["message"] == (
        "The resource being modified is being modified by another request.")


# ---- limits and faults -------------------------------------------------------------

def test_rate_limit_headers_and_429() -> None:
    app = create_app(limits=FreshBooksLimits(per_minute=3))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        api = Api(http)
        remaining = []
        for _ in range(3):
            r = api.get("users/clients")
            assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "3"
            remaining.append(r.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        r = api.get("users/clients")
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 59
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time())
        other = Api(http)  # limits are per account
        assert other.get("users/clients").status_code == 200


def test_faults(http: httpx.Client, board: FaultSwitchboard, base: str) -> None:
    api = Api(http)
    put = http.put(f"/_sandbox/faults/{api.account}", json={"throttle_burst": 1})
    assert put.status_code == 200
    r = api.get("users/clients")
    assert r.status_code == 429 and r.headers["Retry-After"] == "59"
    assert api.get("users/clients").status_code == 200

    board.set(api.account, FaultPlan(error_rate=1.0))
    r = api.post("users/clients", {"client": {"organization": "Never"}})
    assert r.status_code == 500 and errors(r)["errno"] == 500
    assert api.books()["clients"] == []

    board.set(api.account, FaultPlan(timeout_rate=1.0, hang_s=1.0))
    with pytest.raises(httpx.ReadTimeout):
        http.post(api.url("users/clients"), json={"client": {"organization": "Applied"}},
                  headers=auth(api.tok), timeout=0.3)
    assert [c["organization"] for c in api.books()["clients"]] == ["Applied"]

    board.set(api.account, FaultPlan(revoked=True))
    assert api.get("users/clients").status_code == 401
    assert _refresh(http, api.tok["refresh_token"]).status_code == 400
    board.set(api.account, FaultPlan(latency_s=0.3))
    t0 = time.monotonic()
    assert api.get("users/clients").status_code == 200
    assert time.monotonic() - t0 >= 0.3
    board.clear(api.account)


# ---- items, taxes, ledger ----------------------------------------------------------

def test_items_and_taxes(http: httpx.Client) -> None:
    api = Api(http)
    gst = api.post("taxes/taxes", {"tax": {"name": "GST", "amount": "5"}})
    assert gst.status_code == 200
    tax = gst.json()["response"]["result"]["tax"]
    assert tax["amount"] == "5" and tax["compound"] is False
    dup = api.post("taxes/taxes", {"tax": {"name": "gst", "amount": "6"}})
    assert dup.status_code == 422 and errors(dup)["errno"] == 1026
    bad = api.post("taxes/taxes", {"tax": {"name": "X", "amount": "5.12345"}})
    assert errors(bad)["errno"] == 1018
    r = api.post("items/items", {"item": {"name": "Widget", "qty": "2.5", "sku": "W-1",
                                          "unit_cost": {"amount": "9.99", "code": "USD"},
                                          "tax1": tax["id"], "income_account": "ignored"}})
    item = r.json()["response"]["result"]["item"]
    assert item["qty"] == "2.5" and item["unit_cost"] == {"amount": "9.99", "code": "USD"}
    assert item["tax1"] == tax["id"] and "income_account" not in item
    api.post("items/items", {"item": {"name": "Gadget", "sku": "G-1"}})
    # freshbooks.com/api/items documents no ``name`` filter: it is ignored.
    by_name = api.get("items/items", **{"search[name]": "Widget"}).json()["response"]["result"]
    assert len(by_name["items"]) == 2
    by_sku = api.get("items/items", **{"search[sku]": "G-1"}).json()["response"]["result"]
    assert [i["name"] for i in by_sku["items"]] == ["Gadget"]
    assert errors(api.post("items/items", {"item": {"sku": "x"}}))["errno"] == 1001
    assert errors(api.post("items/items", {"item": {"name": "Y", "tax2": 1}}))["errno"] == 1012


def test_ledger_accounts(http: httpx.Client) -> None:
    api = Api(http)
    me = http.get("/auth/api/v1/users/me", headers=auth(api.tok)).json()
    uuid = me["response"]["business_memberships"][0]["business"]["business_uuid"]
    path = f"/accounting/businesses/{uuid}/ledger_accounts/accounts"
    r = http.get(path, headers=auth(api.tok))
    assert r.status_code == 200
    data = r.json()["data"]
    assert set(fixture("list_ledger_accounts_response.json")["data"][0]) == set(data[0])
    assert any(a["type"] == "income" for a in data)
    bad = http.post(path, json={"data": {"number": "9"}}, headers=auth(api.tok))
    want = fixture("create_ledger_account_response__validation_errors.json")
    assert bad.status_code == 400 and bad.json() == want
    missing = http.get(path + "/no-such", headers=auth(api.tok))
    assert missing.status_code == 404
    assert missing.json() == fixture("get_ledger_account_response__not_found.json")
    assert http.get(path).status_code == 401


# ---- invoices and payments ---------------------------------------------------------

def _line(name: str, qty: str, cost: str, **taxes: Any) -> dict[str, Any]:
    return {"type": 0, "name": name, "description": "", "qty": qty,
            "unit_cost": {"amount": cost, "code": "USD"}, **taxes}


def test_invoice_totals_two_taxes_compound_and_discount(http: httpx.Client) -> None:
    api = Api(http)
    api.post("taxes/taxes", {"tax": {"name": "GST", "amount": "5"}})
    api.post("taxes/taxes", {"tax": {"name": "QST", "amount": "9.975", "compound": True}})
    c = api.client(organization="Taxed Inc", currency_code="USD")
    lines = [
        _line("A", "3", "33.333", taxName1="GST", taxAmount1="5",
              taxName2="QST", taxAmount2="9.975"),
        _line("B", "1.5", "10.00", taxName1="GST", taxAmount1=5),
    ]
    r = api.post("invoices/invoices", {"invoice": {
        "customerid": c["id"], "create_date": "2024-03-01", "due_offset_days": 30,
        "currency_code": "USD", "invoice_number": "INV-7", "lines": lines,
        "discount_value": "10"}})
    assert r.status_code == 200, r.text
    inv = r.json()["response"]["result"]["invoice"]
    # A: 99.999 -> 100.00; base 90; GST 4.50; QST (94.50 * 9.975%) = 9.43
    # B: 15.00; base 13.50; GST 0.675 -> 0.68. Discount 11.50. Total 118.11
    assert inv["amount"] == {"amount": "118.11", "code": "USD"}
    assert inv["discount_total"]["amount"] == "11.50"
    assert inv["outstanding"]["amount"] == "118.11" and inv["paid"]["amount"] == "0.00"
    assert [ln["amount"]["amount"] for ln in inv["lines"]] == ["100.00", "15.00"]
    assert inv["status"] == 1 and inv["v3_status"] == "draft"
    assert inv["due_date"] == "2024-03-31" and inv["customerid"] == c["id"]

    plain = api.post("invoices/invoices", {"invoice": {
        "customerid": c["id"], "create_date": "2024-03-01",
        "lines": [_line("A", "1", "100", taxName1="GST", taxAmount1="5",
                        taxName2="PST", taxAmount2="9.975")]}})
    # PST is not a compound tax: 5.00 + 9.975 (9.98) on the same base
    assert plain.json()["response"]["result"]["invoice"]["amount"]["amount"] == "114.98"

    sent = api.put(f"invoices/invoices/{inv['id']}", {"invoice": {"action_mark_as_sent": True}})
    assert sent.json()["response"]["result"]["invoice"]["status"] == 2
    relined = api.put(f"invoices/invoices/{inv['id']}", {"invoice": {
        "lines": [_line("C", "2", "10")], "discount_value": "0"}})
    assert relined.json()["response"]["result"]["invoice"]["amount"]["amount"] == "20.00"

    found = api.get("invoices/invoices", **{"search[invoice_number]": "INV-7",
                                            "include[]": "lines"})
    rows = found.json()["response"]["result"]["invoices"]
    assert [i["id"] for i in rows] == [inv["id"]] and len(rows[0]["lines"]) == 1
    no_lines = api.get("invoices/invoices", **{"search[customerid]": c["id"]})
    listed = no_lines.json()["response"]["result"]["invoices"]
    assert len(listed) == 2 and "lines" not in listed[0]

    gone = api.put(f"invoices/invoices/{inv['id']}", {"invoice": {"vis_state": 1}})
    assert gone.json()["response"]["result"]["invoice"]["vis_state"] == 1
    after = api.get("invoices/invoices", **{"search[invoice_number]": "INV-7"})
    assert after.json()["response"]["result"]["invoices"] == []


def test_invoice_validation(http: httpx.Client) -> None:
    api = Api(http)
    c = api.client(organization="V")
    r = api.post("invoices/invoices", {"invoice": {"customerid": 999, "create_date": "2024-01-01"}})
    assert r.status_code == 404 and errors(r)["errno"] == 1012
    assert errors(r)["message"] == "Client not found."
    r = api.post("invoices/invoices", {"invoice": {"create_date": "2024-01-01"}})
    assert errors(r)["errno"] == 1001 and errors(r)["field"] == "customerid"
    r = api.post("invoices/invoices", {"invoice": {
        "customerid": c["id"], "create_date": "2024-01-01",
        "lines": [_line("A", "1", "1", taxName1="T", taxAmount1="1.2345")]}})
    assert errors(r)["errno"] == 1018


def test_payments_partial_paid_and_overpayment(http: httpx.Client) -> None:
    api = Api(http)
    c = api.client(organization="Payer")
    inv = api.post("invoices/invoices", {"invoice": {
        "customerid": c["id"], "create_date": "2024-01-01",
        "lines": [_line("A", "1", "100.00")]}}).json()["response"]["result"]["invoice"]

    def pay(amount: str, type_: str = "Check") -> httpx.Response:
        return api.post("payments/payments", {"payment": {
            "invoiceid": inv["id"], "amount": {"amount": amount}, "date": "2024-01-05",
            "type": type_}})

    assert errors(pay("10.00", "Bitcoin"))["errno"] == 1004
    first = pay("40.00").json()["response"]["result"]["payment"]
    assert first["logid"] == first["id"] and first["clientid"] == c["id"]
    assert first["overpaymentid"] is None and first["amount"]["amount"] == "40.00"
    got = api.get(f"invoices/invoices/{inv['id']}").json()["response"]["result"]["invoice"]
    assert got["status"] == 8 and got["outstanding"]["amount"] == "60.00"
    second = pay("70.00", "Credit Card").json()["response"]["result"]["payment"]
    assert second["overpaymentid"] is not None
    got = api.get(f"invoices/invoices/{inv['id']}").json()["response"]["result"]["invoice"]
    assert got["status"] == 4 and got["v3_status"] == "paid"
    assert got["outstanding"]["amount"] == "0.00" and got["paid"]["amount"] == "100.00"
    credits = api.books()["credits"]
    assert [cr["amount"]["amount"] for cr in credits] == ["10.00"]
    listed = api.get("payments/payments", **{"search[invoiceid]": inv["id"]})
    assert listed.json()["response"]["result"]["total"] == 2
    api.put(f"payments/payments/{second['id']}", {"payment": {"vis_state": 1}})
    got = api.get(f"invoices/invoices/{inv['id']}").json()["response"]["result"]["invoice"]
    assert got["status"] == 8 and api.books()["credits"] == []


def test_updated_min_day_granularity(http: httpx.Client) -> None:
    api = Api(http)
    http.post(f"/_sandbox/seed/{api.account}", json={
        "clients": [{"organization": "Old", "updated": "2020-01-01 23:59:00"}],
        "items": [{"name": "Old item", "updated": "2020-01-01 08:00:00"}]})
    new = api.client(organization="New")
    today = new["updated"][:10]

    def orgs(**params: Any) -> list[str]:
        rows = api.get("users/clients", **params).json()["response"]["result"]["clients"]
        return sorted(r["organization"] for r in rows)

    assert orgs(**{"search[updated_min]": "2020-01-01"}) == ["New", "Old"]
    assert orgs(**{"search[updated_min]": "2020-01-02"}) == ["New"]
    assert orgs(**{"search[updated_min]": today}) == ["New"]
    assert orgs(**{"search[updated_max]": "2020-01-02"}) == ["Old"]
    items = api.get("items/items", **{"search[updated_min]": "2020-01-02"})
    assert items.json()["response"]["result"]["items"] == []
    bad = api.get("users/clients", **{"search[updated_min]": "2020-01-01T00:00:00"})
    assert bad.status_code == 400
