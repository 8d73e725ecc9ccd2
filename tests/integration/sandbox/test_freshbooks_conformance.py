"""FreshBooks simulator conformance: one test per behaviour the adapter relies on.

Each test is named after the rule and gives its public source in the docstring; the
table in sandbox/freshbooks/README.md maps rule -> source -> test. Sources:

- freshbooks.com/api/active_deleted ("Updates and vis_state"), /api/clients, /api/items,
  /api/invoices, /api/parameters, /api/errors;
- FreshBooks' Postman collection (documenter.getpostman.com 3322108/S1ERwwza);
- github.com/freshbooks/freshbooks-python-sdk (``freshbooks/client.py``,
  ``freshbooks/api/accounting.py``, ``tests/``) and its recorded fixtures, copied with their
  licence into tests/data/freshbooks-sdk-fixtures (= shared/specs/freshbooks-sdk-fixtures);
- shared/providers.md (section 0 and 3), which cites the pages above.

The fixture replay at the end sends the SDK tests' requests to the simulator and checks
the replies' shape (keys and value types) and paging arithmetic against the recordings.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.faults import FaultPlan, FaultSwitchboard
from sandbox.freshbooks import FreshBooksLimits, create_app
from sandbox.serve import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "freshbooks-sdk-fixtures"
_n = itertools.count(1)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def board() -> FaultSwitchboard:
    return FaultSwitchboard(seed=7)


@pytest.fixture(scope="module")
def base(board: FaultSwitchboard) -> Iterator[str]:
    app = create_app(board=board, limits=FreshBooksLimits(per_minute=100_000))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


class Api:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.account = f"CONF{next(_n)}X{int(time.time() * 1000) % 100000}"
        r = http.post("/_sandbox/grants", json={"tenant": self.account})
        assert r.status_code == 200
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def url(self, path: str) -> str:
        return f"/accounting/account/{self.account}/{path}"

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(self.url(path), params=params, headers=self.headers)

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(self.url(path), json=body, headers=self.headers)

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.http.put(self.url(path), json=body, headers=self.headers)

    def create(self, path: str, key: str, **fields: Any) -> dict[str, Any]:
        r = self.post(path, {key: fields})
        assert r.status_code == 200, r.text
        row: dict[str, Any] = r.json()["response"]["result"][key]
        return row

    def update(self, path: str, key: str, **fields: Any) -> dict[str, Any]:
        r = self.put(path, {key: fields})
        assert r.status_code == 200, r.text
        row: dict[str, Any] = r.json()["response"]["result"][key]
        return row

    def ids(self, path: str, plural: str, **params: Any) -> list[int]:
        r = self.get(path, **params)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["response"]["result"][plural]]

    def client(self, **fields: Any) -> dict[str, Any]:
        return self.create("users/clients", "client", **fields)

    def invoice(self, customerid: int, *lines: tuple[str, str]) -> dict[str, Any]:
        return self.create("invoices/invoices", "invoice", customerid=customerid,
                           create_date="2024-03-01",
                           lines=[{"type": 0, "name": "Work", "qty": q,
                                   "unit_cost": {"amount": a, "code": "USD"}}
                                  for q, a in lines])

    def pay(self, invoiceid: int, amount: str) -> dict[str, Any]:
        return self.create("payments/payments", "payment", invoiceid=invoiceid,
                           amount={"amount": amount, "code": "USD"}, date="2024-03-05",
                           type="Check")


def error(r: httpx.Response) -> dict[str, Any]:
    e: dict[str, Any] = r.json()["response"]["errors"][0]
    return e


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


# ---- update phases (freshbooks.com/api/active_deleted) ---------------------------------

def test_put_with_vis_state_applies_only_the_state_and_discards_the_rest(
        http: httpx.Client) -> None:
    """freshbooks.com/api/active_deleted, "Updates and vis_state": if vis_state is in a PUT,
    "even with the same value it used to have, its phase activates and we throw away the
    rest of the data silently"."""
    api = Api(http)
    c = api.client(fname="Ada", email="ada@example.com")
    same = api.update(f"users/clients/{c['id']}", "client", vis_state=0,
                      fname="Changed", email="changed@example.com", p_city="Lost")
    assert (same["fname"], same["email"], same["p_city"], same["vis_state"]) == (
        "Ada", "ada@example.com", "", 0)
    item = api.create("items/items", "item", name="Snake",
                      unit_cost={"amount": "5.00", "code": "USD"})
    archived = api.update(f"items/items/{item['id']}", "item", vis_state=2,
                          unit_cost={"amount": "9.00", "code": "USD"})
    assert (archived["vis_state"], archived["unit_cost"]["amount"]) == (2, "5.00")
    inv = api.invoice(c["id"], ("1", "10"))
    kept = api.update(f"invoices/invoices/{inv['id']}", "invoice", vis_state=0,
                      lines=[{"qty": "3", "unit_cost": {"amount": "10"}}])
    assert kept["amount"]["amount"] == "10.00" and len(kept["lines"]) == 1


def test_ext_vis_state_phase_comes_first(http: httpx.Client) -> None:
    """freshbooks.com/api/active_deleted: phases in order ext_vis_state, vis_state, actions,
    regular data; "The first phase to activate from that list above is the only one"."""
    api = Api(http)
    c = api.client(fname="Ada", email="ada@example.com")
    row = api.update(f"users/clients/{c['id']}", "client", ext_vis_state=0, vis_state=1,
                     fname="Changed")
    assert (row["vis_state"], row["fname"]) == (0, "Ada")


def test_action_phase_discards_data_fields(http: httpx.Client) -> None:
    """freshbooks.com/api/active_deleted: "This also happens if you include ext_vis_state or
    a special action (like sending an invoice)"; action_mark_as_sent from
    freshbooks.com/api/invoices, "Sending An Invoice"."""
    api = Api(http)
    c = api.client(organization="Acme")
    inv = api.invoice(c["id"], ("1", "10"))
    sent = api.update(f"invoices/invoices/{inv['id']}", "invoice", action_mark_as_sent=True,
                      lines=[{"qty": "5", "unit_cost": {"amount": "10"}}], notes="lost")
    assert sent["v3_status"] == "sent"
    assert sent["amount"]["amount"] == "10.00" and sent["notes"] == ""
    # vis_state outranks the action: the invoice stays a draft.
    other = api.invoice(c["id"], ("1", "10"))
    row = api.update(f"invoices/invoices/{other['id']}", "invoice", vis_state=0,
                     action_mark_as_sent=True)
    assert row["v3_status"] == "draft"


def test_put_without_state_or_action_updates_only_the_keys_given(http: httpx.Client) -> None:
    """freshbooks.com/api/active_deleted: "PUT calls will only update the keys they are
    given"."""
    api = Api(http)
    c = api.client(fname="Ada", lname="Lovelace", email="ada@example.com", p_city="London")
    row = api.update(f"users/clients/{c['id']}", "client", lname="King")
    assert (row["fname"], row["lname"], row["email"], row["p_city"]) == (
        "Ada", "King", "ada@example.com", "London")


def test_invoices_are_created_as_drafts_and_marked_as_sent_by_action(
        http: httpx.Client) -> None:
    """freshbooks.com/api/invoices, "Sending An Invoice": invoices are created in Draft and
    marked as sent with PUT {"action_mark_as_sent": true}; status codes 1 draft, 2 sent."""
    api = Api(http)
    inv = api.invoice(api.client(organization="Acme")["id"], ("1", "10"))
    assert (inv["status"], inv["v3_status"]) == (1, "draft")
    row = api.update(f"invoices/invoices/{inv['id']}", "invoice", action_mark_as_sent=True)
    assert (row["status"], row["v3_status"]) == (2, "sent")


# ---- soft delete -------------------------------------------------------------------------

def test_delete_is_vis_state_1_and_deleted_records_leave_default_lists(
        http: httpx.Client) -> None:
    """freshbooks.com/api/active_deleted: vis_state 0 active, 1 deleted, 2 archived; "By
    default list endpoints will return all active and archived resources";
    search[vis_state]=n filters. SDK freshbooks/api/accounting.py delete(): PUT
    {"<name>": {"vis_state": 1}} (delete_via_update, the default in freshbooks/client.py
    for clients, items, payments)."""
    api = Api(http)
    a, b, c = (api.client(organization=n) for n in ("A", "B", "C"))
    api.update(f"users/clients/{a['id']}", "client", vis_state=1)
    api.update(f"users/clients/{b['id']}", "client", vis_state=2)
    assert sorted(api.ids("users/clients", "clients")) == sorted([b["id"], c["id"]])
    assert api.ids("users/clients", "clients", **{"search[vis_state]": "1"}) == [a["id"]]
    assert api.ids("users/clients", "clients", **{"search[vis_state]": "2"}) == [b["id"]]
    assert api.ids("users/clients", "clients", **{"search[vis_state]": "0"}) == [c["id"]]


def test_invoice_delete_by_put_vis_state_1_or_http_delete(http: httpx.Client) -> None:
    """FreshBooks Postman collection, "Delete Invoice": PUT {"invoice": {"vis_state": 1}}.
    SDK freshbooks/client.py: invoices use delete_via_update=False, i.e. HTTP DELETE
    (freshbooks/api/accounting.py delete())."""
    api = Api(http)
    cid = api.client(organization="Acme")["id"]
    one, two = api.invoice(cid, ("1", "10")), api.invoice(cid, ("1", "20"))
    assert api.update(f"invoices/invoices/{one['id']}", "invoice", vis_state=1)["vis_state"] == 1
    r = http.delete(api.url(f"invoices/invoices/{two['id']}"), headers=api.headers)
    assert r.status_code == 200 and r.json()["response"]["result"]["invoice"]["vis_state"] == 1
    assert api.ids("invoices/invoices", "invoices") == []


def test_invoice_with_live_payments_cannot_be_deleted(http: httpx.Client) -> None:
    """FreshBooks Postman collection, "Delete Invoice": an invoice with payments can only be
    deleted once the payments are deleted or converted to credit (shared/providers.md
    section 0). The reply's shape is not published: 422, accounting envelope, errno 1004 on
    vis_state is the simulator's assumption. Payments are deleted with PUT vis_state 1 (SDK
    freshbooks/client.py: payments use the default delete_via_update)."""
    api = Api(http)
    inv = api.invoice(api.client(organization="Acme")["id"], ("1", "100"))
    api.update(f"invoices/invoices/{inv['id']}", "invoice", action_mark_as_sent=True)
    pay = api.pay(inv["id"], "40.00")
    for attempt in (api.put(f"invoices/invoices/{inv['id']}", {"invoice": {"vis_state": 1}}),
                    http.delete(api.url(f"invoices/invoices/{inv['id']}"),
                                headers=api.headers)):
        assert attempt.status_code == 422
        assert (error(attempt)["errno"], error(attempt)["field"]) == (1004, "vis_state")
    assert api.get(f"invoices/invoices/{inv['id']}").json()["response"]["result"][
        "invoice"]["vis_state"] == 0
    api.update(f"payments/payments/{pay['id']}", "payment", vis_state=1)
    assert api.update(f"invoices/invoices/{inv['id']}", "invoice", vis_state=1)["vis_state"] == 1


# ---- searches ---------------------------------------------------------------------------

def test_client_documented_filters(http: httpx.Client) -> None:
    """freshbooks.com/api/clients, "Searches / Filters": email (Equals, exact email),
    organization_like, fname_like, lname_like (Like: "matches ... containing the
    parameter"); freshbooks.com/api/parameters for Equals and Like."""
    api = Api(http)
    ada = api.client(fname="Ada", lname="Lovelace", email="ada@example.com",
                     organization="Analytical Engines")
    bob = api.client(fname="Bob", lname="Lovell", email="bob@example.com",
                     organization="Lovell Plumbing")
    assert api.ids("users/clients", "clients", **{"search[email]": "ada@example.com"}) == [
        ada["id"]]
    assert api.ids("users/clients", "clients", **{"search[email]": "ada@example"}) == []
    assert api.ids("users/clients", "clients",
                   **{"search[organization_like]": "plumb"}) == [bob["id"]]
    assert api.ids("users/clients", "clients", **{"search[fname_like]": "ad"}) == [ada["id"]]
    assert sorted(api.ids("users/clients", "clients", **{"search[lname_like]": "Lov"})) == \
        sorted([ada["id"], bob["id"]])


def test_undocumented_search_keys_are_ignored(http: httpx.Client) -> None:
    """A search key a resource does not document changes nothing: FreshBooks staff on
    search[active] (FreshBooksArchives/freshbooks-python-sdk issue #42, "the list doesn't
    seem to change whether I use the filter or not"; "Our accounting endpoints don't have an
    'active' filter") [second-hand]. Whether FreshBooks ever refuses one is unknown."""
    api = Api(http)
    api.client(organization="Acme", email="a@acme.test")
    api.client(organization="Other", email="o@other.test")
    for key in ("organization", "fname", "active", "userid"):
        assert len(api.ids("users/clients", "clients", **{f"search[{key}]": "Acme"})) == 2
    api.create("items/items", "item", name="Snake", sku="SN-1")
    api.create("items/items", "item", name="Auger", sku="AU-1")
    assert len(api.ids("items/items", "items", **{"search[name]": "Snake"})) == 2


def test_item_sku_filter_is_exact(http: httpx.Client) -> None:
    """freshbooks.com/api/items, "Filters": sku (Equals, "matches exact SKU"); there is no
    name filter."""
    api = Api(http)
    snake = api.create("items/items", "item", name="Snake", sku="SN-1")
    api.create("items/items", "item", name="Snake 2", sku="SN-10")
    assert api.ids("items/items", "items", **{"search[sku]": "SN-1"}) == [snake["id"]]


def test_updated_between_has_day_granularity(http: httpx.Client) -> None:
    """freshbooks.com/api/parameters: Betweens on date-time columns like "updated" have
    day-level granularity, YYYY-MM-DD; freshbooks.com/api/clients: updated_min "greater than
    or equal to", updated_max "less than"."""
    api = Api(http)
    seeded = http.post(f"/_sandbox/seed/{api.account}", json={"clients": [
        {"organization": "Old", "updated": "2020-01-01 23:59:59"},
        {"organization": "New", "updated": "2020-01-02 00:00:00"}]})
    old, new = seeded.json()["clients"]
    assert api.ids("users/clients", "clients", **{"search[updated_min]": "2020-01-02",
                                                  "search[updated_max]": "2020-01-03"}) == [new]
    assert api.ids("users/clients", "clients", **{"search[updated_min]": "2020-01-01",
                                                  "search[updated_max]": "2020-01-02"}) == [old]


def test_paging_rules(http: httpx.Client) -> None:
    """freshbooks.com/api/parameters, "Paging": per_page silently capped at 100; page 0
    returns page 1; a non-positive-integer page is an error; past the last page an empty
    list. Reply keys page, pages, per_page, total (fixture list_clients_response.json)."""
    api = Api(http)
    http.post(f"/_sandbox/seed/{api.account}",
              json={"clients": [{"organization": f"Org {i}"} for i in range(101)]})
    big = api.get("users/clients", per_page=500).json()["response"]["result"]
    assert (big["per_page"], big["pages"], big["total"], len(big["clients"])) == (
        100, 2, 101, 100)
    assert api.get("users/clients", page=0).json()["response"]["result"]["page"] == 1
    past = api.get("users/clients", page=9, per_page=100).json()["response"]["result"]
    assert past["clients"] == []
    bad = api.get("users/clients", page="x")
    assert bad.status_code == 400 and error(bad)["errno"] == 1014


# ---- writes, money, errors ---------------------------------------------------------------

def test_no_idempotency_key_a_replayed_create_makes_a_second_record(
        http: httpx.Client) -> None:
    """FreshBooks publishes no idempotency key or version token (shared/providers.md 3.3,
    4; freshbooks.com/api/errors documents only errno 409 for concurrent modification)."""
    api = Api(http)
    body = {"client": {"organization": "Acme", "email": "ap@acme.test"}}
    for _ in range(2):
        http.post(api.url("users/clients"), json=body,
                  headers={**api.headers, "Idempotency-Key": "same"})
    assert len(api.ids("users/clients", "clients", **{"search[email]": "ap@acme.test"})) == 2


def test_a_5xx_can_come_after_the_write_was_applied(http: httpx.Client,
                                                    board: FaultSwitchboard) -> None:
    """shared/providers.md section 0: "A 5xx can come after the write was applied, not only
    before" (QuickBooks .NET SDK issue #352 for the general case). Error body: accounting
    envelope with errno 500 FreshAlchemyUnexpected (freshbooks.com/api/errors)."""
    api = Api(http)
    board.set(api.account, FaultPlan(error_after_apply_rate=1.0))
    try:
        r = api.post("users/clients", {"client": {"organization": "Acme"}})
        assert r.status_code == 500 and error(r)["errno"] == 500
        assert api.get("users/clients").status_code == 200  # reads are not affected
    finally:
        board.clear(api.account)
    assert [c["organization"] for c in http.get(f"/_sandbox/books/{api.account}")
            .json()["clients"]] == ["Acme"]


def test_money_is_a_two_decimal_string_with_currency_code(http: httpx.Client) -> None:
    """freshbooks.com/api/invoices and /api/items: money is {"amount": "<decimal string>",
    "code": "<ISO 4217>"} with 2 decimals (shared/providers.md 3.7)."""
    api = Api(http)
    item = api.create("items/items", "item", name="Snake",
                      unit_cost={"amount": "9.999", "code": "USD"})
    assert item["unit_cost"] == {"amount": "10.00", "code": "USD"}
    inv = api.invoice(api.client(organization="Acme")["id"], ("3", "0.335"))
    assert inv["amount"] == {"amount": "1.01", "code": "USD"}


def test_payments_set_invoice_status_partial_then_paid(http: httpx.Client) -> None:
    """freshbooks.com/api/invoices, "Invoice Statuses": 4 paid, 8 partial (v3 statuses
    "paid", "partial")."""
    api = Api(http)
    inv = api.invoice(api.client(organization="Acme")["id"], ("1", "100"))
    api.update(f"invoices/invoices/{inv['id']}", "invoice", action_mark_as_sent=True)
    api.pay(inv["id"], "40.00")
    row = api.get(f"invoices/invoices/{inv['id']}").json()["response"]["result"]["invoice"]
    assert (row["status"], row["v3_status"], row["outstanding"]["amount"]) == (
        8, "partial", "60.00")
    api.pay(inv["id"], "60.00")
    row = api.get(f"invoices/invoices/{inv['id']}").json()["response"]["result"]["invoice"]
    assert (row["status"], row["v3_status"]) == (4, "paid")


def test_overpayment_becomes_credit(http: httpx.Client) -> None:
    """FreshBooks payments reply carries overpaymentid: the excess becomes a credit
    (shared/providers.md 3.2, from the payments documentation, F-pay)."""
    api = Api(http)
    inv = api.invoice(api.client(organization="Acme")["id"], ("1", "100"))
    pay = api.pay(inv["id"], "130.00")
    assert pay["overpaymentid"] and pay["amount"]["amount"] == "130.00"
    credits = http.get(f"/_sandbox/books/{api.account}").json()["credits"]
    assert [c["amount"]["amount"] for c in credits] == ["30.00"]


def test_rate_limit_headers_and_429(http: httpx.Client, board: FaultSwitchboard) -> None:
    """FreshBooks Postman collection example reply: X-RateLimit-Limit, X-RateLimit-Remaining,
    X-RateLimit-Reset, Retry-After: 59 (shared/providers.md 3.4). The limit itself is
    unpublished (simulator default 120/min is an assumption)."""
    api = Api(http)
    ok = api.get("users/clients")
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
        ok.headers)
    board.set(api.account, FaultPlan(throttle_burst=1))
    try:
        r = api.get("users/clients")
    finally:
        board.clear(api.account)
    assert r.status_code == 429 and r.headers["retry-after"] == "59"


# ---- fixture replay (SDK tests' requests against the recorded responses) ---------------

def test_replay_create_and_update_client_fixture(http: httpx.Client) -> None:
    """SDK tests/test_accounting_resource.py test_create_client / test_update_client: POST
    and PUT {"client": {"email": "john.doe@abcorp.com"}}, recorded reply
    create_client_response.json."""
    api = Api(http)
    want = fixture("create_client_response")["response"]["result"]["client"]
    got = api.client(email="john.doe@abcorp.com")
    assert set(got) == set(want)
    assert got["email"] == want["email"] and got["organization"] == want["organization"]
    assert got["id"] == got["userid"]
    same_types = {k for k in want if want[k] is not None and got[k] is not None}
    assert {k: shape(got[k]) for k in same_types} == {k: shape(want[k]) for k in same_types}
    updated = api.update(f"users/clients/{got['id']}", "client", email="john.doe@abcorp.com")
    assert set(updated) == set(want)


def test_replay_get_and_list_clients_fixtures(http: httpx.Client) -> None:
    """SDK tests test_get_client / test_list_clients: replies get_client_response.json and
    list_clients_response.json (paging keys; pages = ceil(total / per_page)). Client
    includes (outstanding_balance, ...; freshbooks.com/api/clients "Includes") are not
    simulated."""
    api = Api(http)
    for n in range(3):
        api.client(fname="Gordon", lname=f"Shumway{n}", email=f"g{n}@example.com",
                   currency_code="CAD")
    want_one = fixture("get_client_response")["response"]["result"]["client"]
    listing = api.get("users/clients").json()["response"]["result"]
    one = api.get(f"users/clients/{listing['clients'][0]['id']}").json()["response"][
        "result"]["client"]
    # The recording carries include[] data (outstanding_balance, grand_total_balance and a
    # test_amount of the SDK's own); the simulator does not serve includes for clients.
    assert set(one) == set(want_one) - {"outstanding_balance", "grand_total_balance",
                                        "test_amount"}
    want = fixture("list_clients_response")["response"]["result"]
    assert set(listing) == set(want)
    for result in (want, listing):
        assert result["pages"] == math.ceil(result["total"] / result["per_page"])
        assert result["total"] == len(result["clients"]) == 3
        assert (result["page"], result["per_page"]) == (1, 15)
    assert set(listing["clients"][0]) == set(want["clients"][0])


def test_replay_not_found_and_no_auth_fixtures(http: httpx.Client) -> None:
    """SDK test_get_client__not_found: get_client_response__not_found.json (errno 1012,
    field userid, object client, value "12345"); no-auth message from
    get_project_response__no_auth.json; /users/me unauthenticated from
    auth_me_response__no_auth.json."""
    api = Api(http)
    r = api.get("users/clients/12345")
    assert r.json() == fixture("get_client_response__not_found")
    noauth = http.get(api.url("users/clients"))
    assert noauth.status_code == 401
    assert error(noauth)["message"] == fixture("get_project_response__no_auth")["message"]
    me = http.get("/auth/api/v1/users/me")
    assert set(me.json()) == set(fixture("auth_me_response__no_auth"))


def test_replay_identity_and_token_fixtures(http: httpx.Client) -> None:
    """auth_me_response.json (business_memberships[].business.account_id/business_uuid)
    and auth_token_response.json (token body keys; id_token is only for OpenID scopes and is
    not sent by the simulator)."""
    api = Api(http)
    me = http.get("/auth/api/v1/users/me", headers=api.headers).json()["response"]
    want = fixture("auth_me_response")["response"]
    assert set(want) <= set(me)
    business = me["business_memberships"][0]["business"]
    assert business["account_id"] == api.account and business["business_uuid"]
    token = http.post("/_sandbox/grants", json={"tenant": api.account}).json()
    assert set(fixture("auth_token_response")) - {"id_token"} <= set(token)
    assert token["token_type"] == "Bearer"


def test_replay_ledger_fixtures(http: httpx.Client) -> None:
    """SDK tests/test_accounting_business_resource.py: list_ledger_accounts_response.json,
    get_ledger_account_response.json, get_ledger_account_response__not_found.json and
    create_ledger_account_response__validation_errors.json (empty body -> name, sub_type,
    parent_account required)."""
    api = Api(http)
    me = http.get("/auth/api/v1/users/me", headers=api.headers).json()["response"]
    uuid = me["business_memberships"][0]["business"]["business_uuid"]
    lbase = f"/accounting/businesses/{uuid}/ledger_accounts/accounts"
    listing = http.get(lbase, headers=api.headers).json()
    want = fixture("list_ledger_accounts_response")
    assert set(listing["data"][0]) == set(want["data"][0])
    assert {row["type"] for row in want["data"]} <= {row["type"] for row in listing["data"]}
    one = http.get(f"{lbase}/{listing['data'][0]['uuid']}", headers=api.headers).json()
    assert set(one["data"]) == set(fixture("get_ledger_account_response")["data"])
    missing = http.get(f"{lbase}/nope", headers=api.headers)
    assert missing.status_code == 404
    assert missing.json() == fixture("get_ledger_account_response__not_found")
    bad = http.post(lbase, json={"data": {}}, headers=api.headers)
    assert bad.status_code == 400
    assert bad.json() == fixture("create_ledger_account_response__validation_errors")


# ---- taxes (freshbooks.com/api/taxes, /api/invoices) -----------------------------------

def taxed_total(api: Api, *lines: dict[str, Any], code: str = "USD") -> str:
    """The total FreshBooks computes for one invoice of these lines (amount x 1)."""
    cid = api.client(organization="Tax Co")["id"]
    inv = api.create("invoices/invoices", "invoice", customerid=cid, create_date="2024-03-01",
                     lines=[{"type": 0, "name": "Work", "qty": "1",
                             "unit_cost": {"amount": a, "code": code}, **taxes}
                            for a, taxes in ((li.pop("amount"), li) for li in lines)])
    total: str = inv["amount"]["amount"]
    return total


def test_tax_reply_has_the_documented_fields(http: httpx.Client) -> None:
    """freshbooks.com/api/taxes, "Field Descriptions" and "Get Single Tax": a tax is
    accounting_systemid, updated, name, number, taxid, amount (a string-decimal percent,
    "12"), compound (boolean), id."""
    api = Api(http)
    tax = api.create("taxes/taxes", "tax", name="PST", amount="12")
    got = api.get(f"taxes/taxes/{tax['id']}").json()["response"]["result"]["tax"]
    assert set(got) == {"accounting_systemid", "updated", "name", "number", "taxid",
                        "amount", "compound", "id"}
    assert (got["name"], got["amount"], got["compound"], got["number"]) == (
        "PST", "12", False, None)
    assert got["taxid"] == got["id"] and got["accounting_systemid"] == api.account


def test_tax_list_filters_are_the_documented_ones(http: httpx.Client) -> None:
    """freshbooks.com/api/taxes, "Filters": taxid (Equals), taxids (In), name and number
    (Like: containing), compound (Bool), updated_min/updated_max (Between)."""
    api = Api(http)
    gst = api.create("taxes/taxes", "tax", name="GST", amount="5", number="RT0001")["id"]
    qst = api.create("taxes/taxes", "tax", name="QST", amount="9.975", number="TQ0001",
                     compound=True)["id"]
    pst = api.create("taxes/taxes", "tax", name="PST", amount="7")["id"]
    assert sorted(api.ids("taxes/taxes", "taxes", **{"search[name]": "st"})) == sorted(
        [gst, qst, pst])
    assert api.ids("taxes/taxes", "taxes", **{"search[name]": "q"}) == [qst]
    assert api.ids("taxes/taxes", "taxes", **{"search[number]": "TQ"}) == [qst]
    assert api.ids("taxes/taxes", "taxes", **{"search[compound]": "true"}) == [qst]
    assert sorted(api.ids("taxes/taxes", "taxes", **{"search[compound]": "false"})) == [
        gst, pst]
    assert api.ids("taxes/taxes", "taxes", **{"search[taxid]": str(pst)}) == [pst]
    assert sorted(api.ids("taxes/taxes", "taxes",
                          **{"search[taxids][]": [str(gst), str(pst)]})) == [gst, pst]


def test_canadian_business_has_gst_hst_pst_and_qst_not_compound(http: httpx.Client) -> None:
    """Region CA. Rates: FreshBooks' own support article "Do I Have to Pay Sales Tax for My
    FreshBooks Account?" (support.freshbooks.com/hc/en-us/articles/115001736328): GST 5%,
    HST 13% (Ontario) and 15% (New Brunswick), Quebec 14.975% = 5% GST + 9.975% QST, so
    QST is charged on the price alone, not compound; PST 7% (British Columbia, Manitoba)
    [2nd: provincial rate tables]. Which taxes a business has defined is not published:
    the seed holds what a Canadian business would create (README assumption A15)."""
    api = Api(http)
    r = http.post(f"/_sandbox/seed/{api.account}", json={"Region": "CA"})
    assert r.status_code == 200, r.text
    assert r.json()["account"]["region"] == "CA"
    assert r.json()["account"]["currency_code"] == "CAD"
    rows = api.get("taxes/taxes").json()["response"]["result"]["taxes"]
    assert {(t["name"], t["amount"], t["compound"]) for t in rows} == {
        ("GST", "5", False), ("HST ON", "13", False), ("HST NB", "15", False),
        ("PST BC", "7", False), ("QST", "9.975", False)}
    # Quebec: 100.00 + 5.00 GST + 9.98 QST (9.975% of the price alone) = 114.98.
    assert taxed_total(api, {"amount": "100.00", "taxName1": "GST", "taxAmount1": "5",
                             "taxName2": "QST", "taxAmount2": "9.975"},
                       code="CAD") == "114.98"
    # Seeding the region again adds nothing twice.
    http.post(f"/_sandbox/seed/{api.account}", json={"Region": "CA"}).raise_for_status()
    assert len(api.get("taxes/taxes").json()["response"]["result"]["taxes"]) == 5


def test_us_business_has_no_predefined_taxes(http: httpx.Client) -> None:
    """Region US (the default): US sales tax is state and local, so the owner creates the
    taxes (name and percent, freshbooks.com/api/taxes); nothing is predefined
    (README assumption A16). An unknown region is refused by the test hook."""
    api = Api(http)
    r = http.post(f"/_sandbox/seed/{api.account}", json={"Region": "US"})
    assert r.status_code == 200, r.text
    assert (r.json()["account"]["region"], r.json()["account"]["currency_code"]) == (
        "US", "USD")
    assert api.get("taxes/taxes").json()["response"]["result"]["taxes"] == []
    assert http.post(f"/_sandbox/seed/{api.account}",
                     json={"Region": "FR"}).status_code == 422


def test_compound_second_tax_is_calculated_on_top_of_the_first(http: httpx.Client) -> None:
    """freshbooks.com/api/taxes: "compound taxes are calculated on top of primary taxes":
    a compound second tax is a percent of the line amount plus the first tax. 100.00 with
    GST 5% (5.00) and a compound 10% (10% of 105.00 = 10.50) = 115.50; the same 10% not
    compound = 115.00 (freshbooks.com/api/invoices: taxName1/taxAmount1,
    taxName2/taxAmount2 per line)."""
    api = Api(http)
    api.create("taxes/taxes", "tax", name="PST PE 2012", amount="10", compound=True)
    api.create("taxes/taxes", "tax", name="Levy", amount="10")
    assert taxed_total(api, {"amount": "100.00", "taxName1": "GST", "taxAmount1": "5",
                             "taxName2": "PST PE 2012", "taxAmount2": "10"}) == "115.50"
    assert taxed_total(api, {"amount": "100.00", "taxName1": "GST", "taxAmount1": "5",
                             "taxName2": "Levy", "taxAmount2": "10"}) == "115.00"


def test_compound_tax_alone_on_a_line_is_on_the_line_amount(http: httpx.Client) -> None:
    """freshbooks.com/api/taxes ("calculated on top of primary taxes"): with no primary
    tax on the line there is nothing to stack on, so a compound tax in first position is
    the line amount x percent: 100.00 at a compound 9.975% = 109.98 (how BlueClerk's
    compound rates, one per line, are written: providers/freshbooks/translate.py). It
    does not stack on a tax that comes after it either: compound QST first, GST second
    = 100.00 + 9.98 + 5.00 = 114.98 (not 10.47 on 105.00)."""
    api = Api(http)
    api.create("taxes/taxes", "tax", name="QST 1991", amount="9.975", compound=True)
    assert taxed_total(api, {"amount": "100.00", "taxName1": "QST 1991",
                             "taxAmount1": "9.975"}) == "109.98"
    assert taxed_total(api, {"amount": "100.00", "taxName1": "QST 1991",
                             "taxAmount1": "9.975", "taxName2": "GST",
                             "taxAmount2": "5"}) == "114.98"


def test_line_tax_is_a_percent_and_rounded_per_line(http: httpx.Client) -> None:
    """freshbooks.com/api/invoices (lines: taxAmount1 is a percent, up to 3 decimals;
    [2nd] CData FreshBooks driver, InvoicesLineItems) and README assumption A4 (each
    line's tax is rounded half up to the cent, then summed): three lines of 0.10 at 5%
    are 3 x round(0.005) = 0.03 of tax (0.33), not round(0.015) = 0.02 (0.32); a line
    may name a tax the business has not defined (A17)."""
    api = Api(http)
    line = {"taxName1": "Anything", "taxAmount1": "5"}
    assert taxed_total(api, {"amount": "0.10", **line}, {"amount": "0.10", **line},
                       {"amount": "0.10", **line}) == "0.33"
    assert taxed_total(api, {"amount": "200.00", "taxName1": "NYC", "taxAmount1": "8.875"}
                       ) == "217.75"
