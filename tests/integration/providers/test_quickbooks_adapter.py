"""QuickBooksAdapter against the QuickBooks simulator over real HTTP, with tokens in a
ConnectionStore on SQLite (refresh, rotation, revocation) or an in-memory store."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import (
    DuplicateName,
    PermanentProviderError,
    ReconnectRequired,
    Throttled,
    TotalMismatch,
    TransientProviderError,
    UnknownOutcome,
)
from providers.http import ProviderHttp
from providers.oauth import ClientCredentials, OAuthEndpoints, OAuthFlow, TokenSet
from providers.port import ProviderRecord, WriteIntent
from providers.quickbooks.adapter import (
    QuickBooksAdapter,
    QuickBooksTaxMismatch,
    classify_quickbooks_error,
)
from providers.ratelimit import RateLimiter, RateLimits
from providers.taxes import ProviderTaxRate
from providers.testing import MemoryTokenStore
from providers.tokens import ConnectionTokens, TokenStore
from sandbox.scenario import build_invoice
from schemas.error_codes import ErrorCode
from schemas.records import Customer, Invoice, InvoiceLine, Item, Payment
from state.connections import ConnectionStore
from state.crypto import TokenCipher, generate_key
from state.db import Database

CLIENT = ("blueclerk-local", "local-secret")
KEY = generate_key()


class CountingFlow:
    """The real OAuth refresh against the simulator, counted."""

    def __init__(self, flow: OAuthFlow) -> None:
        self.flow = flow
        self.refreshed: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, refresh_token: str) -> TokenSet:
        with self._lock:
            self.refreshed.append(refresh_token)
        return self.flow.refresh(refresh_token)


class Company:
    """A fresh QuickBooks realm with its own grant, and adapters over it."""

    def __init__(self, base: str, db_url: str | None = None, timeout: float = 10.0) -> None:
        self.base = base
        self.realm = f"9341{uuid.uuid4().int % 10**12:012d}"
        self.sim = httpx.Client(base_url=base, timeout=15)
        grant = self.sim.post("/_sandbox/grants", json={"tenant": self.realm})
        assert grant.status_code == 200, grant.text
        self.grant: dict[str, Any] = grant.json()
        self.flow = OAuthFlow(
            OAuthEndpoints(authorize_url=f"{base}/connect/oauth2",
                           token_url=f"{base}/oauth2/v1/tokens/bearer",
                           revoke_url=f"{base}/v2/oauth2/tokens/revoke",
                           scope="com.intuit.quickbooks.accounting", revoke_style="json_basic"),
            ClientCredentials(*CLIENT, "http://localhost/callback"))
        self.refresh = CountingFlow(self.flow)
        self.db_url = db_url
        self.store: TokenStore
        if db_url is not None:
            self.store = self.connection_store()
            assert isinstance(self.store, ConnectionStore)
            self.store.connect(self.realm, "quickbooks", self.realm,
                               TokenSet.from_response(self.grant))
        else:
            self.store = MemoryTokenStore(TokenSet.from_response(self.grant))
        self.adapter = self.build(self.store, timeout)

    def connection_store(self) -> ConnectionStore:
        assert self.db_url is not None
        return ConnectionStore(Database(self.db_url), TokenCipher(KEY))

    def build(self, store: TokenStore, timeout: float = 10.0) -> QuickBooksAdapter:
        tokens = ConnectionTokens(store, self.realm, self.refresh)
        http = ProviderHttp(httpx.Client(timeout=timeout), tokens,
                            RateLimiter(RateLimits(per_minute=100_000, concurrent=10)),
                            classify_quickbooks_error, {"Accept": "application/json"})
        return QuickBooksAdapter(http, f"{self.base}/v3/company", self.realm)

    def api(self, method: str, path: str, params: dict[str, str] | None = None,
            **kw: Any) -> httpx.Response:
        token = self.store.current(self.realm).access_token
        return self.sim.request(method, f"/v3/company/{self.realm}/{path}",
                                headers={"Authorization": f"Bearer {token}",
                                         "Accept": "application/json"},
                                params=params or {"minorversion": "75"}, **kw)

    def books(self) -> dict[str, Any]:
        r = self.sim.get(f"/_sandbox/books/{self.realm}")
        assert r.status_code == 200
        data: dict[str, Any] = r.json()
        return data

    def faults(self, **plan: Any) -> None:
        r = self.sim.put(f"/_sandbox/faults/{self.realm}", json=plan)
        assert r.status_code == 200, r.text

    def expire(self) -> None:
        assert self.sim.post(f"/_sandbox/tokens/{self.realm}/expire").status_code == 200


@pytest.fixture
def qbo(sandbox_url: str) -> str:
    return f"{sandbox_url}/quickbooks"


@pytest.fixture
def co(qbo: str, sqlite_url: str) -> Iterator[Company]:
    company = Company(qbo, sqlite_url)
    yield company
    company.faults()  # clear


def W(unknown: bool = False, key: str | None = None) -> WriteIntent:
    return WriteIntent(key or f"k-{uuid.uuid4().hex[:24]}", after_unknown_outcome=unknown)


def customer(cid: str = "c1", name: str = "Ada Lovelace", currency: str = "USD",
             **kw: Any) -> Customer:
    return Customer(cid, name, given_name="Ada", family_name="Lovelace",
                    email="ada@example.com", currency=currency, **kw)


def sale(co: Company, currency: str = "USD", n_items: int = 2
         ) -> tuple[ProviderRecord, dict[str, ProviderRecord]]:
    cust = co.adapter.upsert_customer(customer(f"c-{currency}", f"Buyer {currency}",
                                               currency), None, W())
    items = {f"i{n}": co.adapter.upsert_item(Item(f"i{n}", f"Service {n}",
                                                  unit_price=Decimal("10")), "1", None, W())
             for n in range(1, n_items + 1)}
    return cust, items


# ---- customers -----------------------------------------------------------------------------

def test_customer_create_and_update(co: Company) -> None:
    first = co.adapter.upsert_customer(customer(), None, W())
    assert first.version == "0"
    second = co.adapter.upsert_customer(customer(phone="555-0100"), first, W())
    assert (second.id, second.version) == (first.id, "1")
    (row,) = co.books()["Customer"]
    assert row["PrimaryPhone"]["FreeFormNumber"] == "555-0100"
    remote = co.adapter.list_customers()
    assert [(r.id, r.display_name, r.phone) for r in remote] == [
        (first.id, "Ada Lovelace", "555-0100")]


def test_stale_sync_token_is_reread_and_retried(co: Company) -> None:
    rec = co.adapter.upsert_customer(customer(), None, W())
    # Someone edits the customer in QuickBooks: the SyncToken moves on.
    r = co.api("POST", "customer", json={"Id": rec.id, "SyncToken": rec.version,
                                         "sparse": True, "CompanyName": "Edited in QBO"})
    assert r.status_code == 200 and r.json()["Customer"]["SyncToken"] == "1"
    updated = co.adapter.upsert_customer(customer(phone="555-0199"), rec, W())
    assert (updated.id, updated.version) == (rec.id, "2")
    (row,) = co.books()["Customer"]
    assert row["PrimaryPhone"]["FreeFormNumber"] == "555-0199"


def test_duplicate_name(co: Company) -> None:
    co.adapter.upsert_customer(customer("c1"), None, W())
    with pytest.raises(DuplicateName):
        co.adapter.upsert_customer(customer("c2", name="ada lovelace "), None, W())
    assert len(co.books()["Customer"]) == 1


@pytest.mark.parametrize("name", ["O'Brien's Plumbing", 'The "Best" Drains', "back\\slash",
                                  "it\\'s", "山田配管サービス", "Crème brûlée & Co."])
def test_awkward_names_round_trip_through_the_query_lookup(co: Company, name: str) -> None:
    rec = co.adapter.upsert_customer(customer(name=name), None, W())
    found = co.adapter._find_one("Customer", "DisplayName", name)
    assert found is not None and str(found["Id"]) == rec.id
    assert found["DisplayName"] == name
    # and the unknown-outcome path finds it rather than creating a duplicate
    again = co.adapter.upsert_customer(customer(name=name), None, W(unknown=True))
    assert again.id == rec.id
    assert len(co.books()["Customer"]) == 1


# ---- tokens --------------------------------------------------------------------------------

def test_expired_access_token_is_refreshed_once(co: Company) -> None:
    co.adapter.upsert_customer(customer(), None, W())
    old_refresh = co.store.current(co.realm).refresh_token
    co.expire()
    assert co.adapter.list_customers()
    assert co.refresh.refreshed == [old_refresh]
    assert co.store.current(co.realm).refresh_token != old_refresh


def test_rotated_refresh_token_shared_by_two_workers(co: Company) -> None:
    """Two workers (own stores, same database) both see 401; one refresh serves both, and
    the old refresh token is dead for anyone who still holds it."""
    old = co.store.current(co.realm).refresh_token
    workers = [co.build(co.connection_store()), co.build(co.connection_store())]
    for w in workers:
        w.list_customers()  # both cache the current access token
    co.expire()
    results: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = workers[i].list_customers()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(isinstance(r, list) for r in results), results
    assert co.refresh.refreshed == [old]
    info = co.connection_store().get(co.realm)
    assert info is not None and info.status == "active"
    # A third party replaying the old refresh token directly is refused.
    r = httpx.post(co.flow.endpoints.token_url, auth=CLIENT,
                   data={"grant_type": "refresh_token", "refresh_token": old})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_revoked_grant_requires_reconnect_and_marks_the_connection(co: Company) -> None:
    co.faults(revoked=True)
    with pytest.raises(ReconnectRequired):
        co.adapter.upsert_customer(customer(), None, W())
    assert isinstance(co.store, ConnectionStore)
    info = co.store.get(co.realm)
    assert info is not None and info.status == "reconnect_required"
    assert co.books()["Customer"] == []


# ---- limits and timeouts -------------------------------------------------------------------

@pytest.fixture(scope="module")
def qbo_documented_limits() -> Iterator[str]:
    """A QuickBooks simulator with the documented limits (Retry-After 60 on a 429); the
    shared sandbox runs with fast limits and a short Retry-After."""
    from sandbox.quickbooks.app import create_app
    from sandbox.serve import serve_in_thread

    with serve_in_thread(create_app()) as url:
        yield url


def test_throttle_burst_gives_retry_after_60(qbo_documented_limits: str,
                                             sqlite_url: str) -> None:
    co = Company(qbo_documented_limits, sqlite_url)
    co.faults(throttle_burst=1)
    with pytest.raises(Throttled) as info:
        co.adapter.list_customers()
    assert info.value.retry_after == 60
    assert info.value.status == 429
    co.adapter.list_customers()  # the burst is over


def test_throttle_follows_the_advertised_retry_after(co: Company) -> None:
    co.faults(throttle_burst=1)
    probe = co.api("GET", "query", params={"query": "SELECT * FROM Customer",
                                           "minorversion": "75"})
    assert probe.status_code == 429
    co.faults(throttle_burst=1)
    with pytest.raises(Throttled) as info:
        co.adapter.list_customers()
    assert info.value.retry_after == float(probe.headers["Retry-After"])


def test_timeout_after_the_write_applied_then_no_duplicate(qbo: str, sqlite_url: str) -> None:
    co = Company(qbo, sqlite_url, timeout=1.0)
    try:
        co.faults(timeout_rate=1.0, hang_s=3)
        with pytest.raises(UnknownOutcome):
            co.adapter.upsert_customer(customer(), None, W(key="k-timeout-1"))
        co.faults()
        assert len(co.books()["Customer"]) == 1  # it was applied
        rec = co.adapter.upsert_customer(customer(), None, W(unknown=True, key="k-timeout-1"))
        rows = co.books()["Customer"]
        assert len(rows) == 1 and str(rows[0]["Id"]) == rec.id
    finally:
        co.faults()


def test_timeout_retry_with_a_new_key_still_finds_the_record(qbo: str,
                                                             sqlite_url: str) -> None:
    co = Company(qbo, sqlite_url, timeout=1.0)
    try:
        cust, items = sale(co)
        inv = build_invoice("inv-t", "c-USD", "T-1", "USD", "exclusive",
                            [("i1", "1", "10", "0", "0")])
        co.faults(timeout_rate=1.0, hang_s=3)
        with pytest.raises(UnknownOutcome):
            co.adapter.upsert_invoice(inv, cust, items, None, W())
        co.faults()
        rec = co.adapter.upsert_invoice(inv, cust, items, None, W(unknown=True))
        assert [str(i["Id"]) for i in co.books()["Invoice"]] == [rec.id]
    finally:
        co.faults()


# ---- items, invoices, void, payments -------------------------------------------------------

def test_items_with_income_accounts(co: Company) -> None:
    accounts = {a.id: a.name for a in co.adapter.list_income_accounts()}
    assert "1" in accounts and "79" in accounts
    item = co.adapter.upsert_item(Item("i1", "Drain: cleaning", sku="DR-1",
                                       unit_price=Decimal("89.5")), "1", None, W())
    again = co.adapter.upsert_item(Item("i1", "Drain: cleaning", sku="DR-1",
                                        unit_price=Decimal("95")), "79", item, W())
    assert again.id == item.id
    (remote,) = co.adapter.list_items()
    assert (remote.name, remote.unit_price, remote.income_account_id, remote.sku) == (
        "Drain - cleaning", Decimal("95"), "79", "DR-1")


@pytest.mark.parametrize(("currency", "mode", "lines"), [
    ("USD", "exclusive", [("i1", "2", "45.50", "0", "8.25"), ("i2", "1", "19.99", "0", "0")]),
    ("USD", "inclusive", [("i1", "3", "33.33", "0", "20"), ("i2", "0.3333", "100", "0", "5")]),
    ("USD", "exclusive", [("i1", "1", "100", "15", "10"), ("i2", "3", "9.99", "33.3333", "5")]),
    ("USD", "inclusive", [("i1", "7", "14.29", "12.5", "7.125")]),
    ("USD", "none", [("i1", "1.5", "80", "10", "0")]),
    ("JPY", "exclusive", [("i1", "3", "1234", "5", "10"), ("i2", "1", "999", "0", "8")]),
    ("KWD", "inclusive", [("i1", "2", "12.345", "10", "5"), ("i2", "0.6667", "3.5", "0", "0")]),
])
def test_invoice_totals_equal_blueclerk(co: Company, currency: str, mode: str,
                                        lines: list[tuple[str, str, str, str, str]]) -> None:
    cust, items = sale(co, currency)
    inv = build_invoice("inv-1", f"c-{currency}", "INV-1", currency, mode, lines)  # type: ignore[arg-type]
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W())
    assert rec.total == inv.total
    (row,) = co.books()["Invoice"]
    assert Decimal(str(row["TotalAmt"])) == inv.total
    if mode != "none":
        assert Decimal(str(row["TxnTaxDetail"]["TotalTax"])) == inv.tax_total
    assert row["CurrencyRef"]["value"] == currency


def test_invoice_update_void_and_payment(co: Company) -> None:
    cust, items = sale(co)
    inv = build_invoice("inv-1", "c-USD", "INV-7", "USD", "exclusive",
                        [("i1", "2", "50", "0", "10")])
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W())
    bigger = build_invoice("inv-1", "c-USD", "INV-7", "USD", "exclusive",
                           [("i1", "3", "50", "0", "10"), ("i2", "1", "5", "0", "0")])
    rec2 = co.adapter.upsert_invoice(bigger, cust, items, rec, W())
    assert (rec2.id, rec2.total) == (rec.id, Decimal("170.00"))

    pay = Payment("p-1", "inv-1", "c-USD", Decimal("70.00"), "USD", dt.date(2026, 11, 3))
    prec = co.adapter.record_payment(pay, rec2, cust, None, W())
    (row,) = co.books()["Invoice"]
    assert Decimal(str(row["Balance"])) == Decimal("100.00")
    again = co.adapter.record_payment(pay, rec2, cust, None, W(unknown=True))
    assert again.id == prec.id and len(co.books()["Payment"]) == 1

    other = build_invoice("inv-2", "c-USD", "INV-8", "USD", "none", [("i1", "1", "20", "0", "0")])
    orec = co.adapter.upsert_invoice(other, cust, items, None, W())
    voided = co.adapter.void_invoice(other, orec, W())
    assert voided.id == orec.id and voided.total == 0
    row2 = next(i for i in co.books()["Invoice"] if str(i["Id"]) == orec.id)
    assert Decimal(str(row2["TotalAmt"])) == 0
    # void with a stale SyncToken re-reads and succeeds
    third = co.adapter.upsert_invoice(
        build_invoice("inv-3", "c-USD", "INV-9", "USD", "none", [("i1", "1", "5", "0", "0")]),
        cust, items, None, W())
    co.api("POST", "invoice", json={"Id": third.id, "SyncToken": third.version,
                                    "sparse": True, "PrivateNote": "edited"})
    assert co.adapter.void_invoice(other, third, W()).id == third.id


def test_a_wrong_blueclerk_total_is_a_total_mismatch(co: Company) -> None:
    cust, items = sale(co)
    inv = build_invoice("inv-1", "c-USD", "INV-1", "USD", "exclusive",
                        [("i1", "1", "10", "0", "0")])
    wrong = Invoice(**{**{f: getattr(inv, f) for f in inv.__dataclass_fields__},
                       "total": inv.total + Decimal("0.01")})
    with pytest.raises(TotalMismatch) as info:
        co.adapter.upsert_invoice(wrong, cust, items, None, W())
    assert info.value.ours == inv.total + Decimal("0.01") and info.value.theirs == inv.total


# ---- property: any BlueClerk invoice lands with BlueClerk's total, or fails loudly ----------

_companies: dict[str, tuple[Company, dict[str, ProviderRecord], dict[str, ProviderRecord]]] = {}


def _shared(qbo: str) -> tuple[Company, dict[str, ProviderRecord], dict[str, ProviderRecord]]:
    if qbo not in _companies:
        co = Company(qbo)  # in-memory token store
        customers = {c: co.adapter.upsert_customer(customer(f"c-{c}", f"Buyer {c}", c), None,
                                                   W()) for c in ("USD", "JPY", "KWD")}
        items = {f"i{n}": co.adapter.upsert_item(Item(f"i{n}", f"Line item {n}"), "1", None,
                                                 W()) for n in range(1, 4)}
        _companies[qbo] = (co, customers, items)
    return _companies[qbo]


_LINE = st.tuples(
    st.sampled_from(["i1", "i2", "i3"]),
    st.one_of(st.sampled_from(["1", "0.3333", "0.6667", "2.5", "1.0001", "12"]),
              st.decimals(Decimal("0.0001"), Decimal("100"), places=4).map(str)),
    st.decimals(Decimal("0"), Decimal("2000"), places=4).map(str),
    st.sampled_from(["0", "0", "5", "10", "12.5", "33.3333", "100"]),
    st.sampled_from(["0", "5", "8.25", "20", "7.125"]),
)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(_LINE, min_size=1, max_size=10),
       currency=st.sampled_from(["USD", "JPY", "KWD"]),
       mode=st.sampled_from(["exclusive", "inclusive", "none"]))
def test_generated_invoices_total_to_the_cent_or_mismatch(
        qbo: str, lines: list[tuple[str, str, str, str, str]], currency: str,
        mode: str) -> None:
    co, customers, items = _shared(qbo)
    number = uuid.uuid4().hex[:12]
    inv = build_invoice(f"inv-{number}", f"c-{currency}", number, currency, mode,  # type: ignore[arg-type]
                        lines)
    used = {line.item_id: items[line.item_id] for line in inv.lines}
    try:
        rec = co.adapter.upsert_invoice(inv, customers[currency], used, None, W())
    except TotalMismatch as mismatch:
        theirs = mismatch.theirs
        row = next(i for i in co.books()["Invoice"] if str(i["Id"]) == mismatch.provider_id)
        assert Decimal(str(row["TotalAmt"])) == theirs != inv.total
        pytest.fail(f"simulator total {theirs} differs from BlueClerk {inv.total}")
    assert rec.total == inv.total


# ---- fidelity fixes (tax-inclusive lines, names, balances, queries, 5xx after apply) -------

def test_tax_inclusive_invoice_sends_exclusive_amounts_and_taxinclusiveamt(co: Company) -> None:
    """Hand-worked: 3 x 19.99 incl. 20% = 59.97; tax 59.97 x 20/120 = 9.995 -> 10.00; line
    Amount (exclusive) 49.97; QuickBooks' total 49.97 + 10.00 = 59.97."""
    cust, items = sale(co, n_items=1)
    inv = Invoice("inv-incl", "c-USD", "INC-1", dt.date(2026, 11, 2), None, "USD",
                  "inclusive", (InvoiceLine("i1", "3 x i1", Decimal("3"), Decimal("19.99"),
                                            Decimal("0"), Decimal("20"), Decimal("59.97")),),
                  Decimal("49.97"), Decimal("10.00"), Decimal("59.97"))
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W())
    assert rec.total == Decimal("59.97")
    (row,) = co.books()["Invoice"]
    line = row["Line"][0]
    assert line["Amount"] == 49.97
    assert line["SalesItemLineDetail"]["TaxInclusiveAmt"] == 59.97
    assert row["TxnTaxDetail"]["TotalTax"] == 10.0 and row["TotalAmt"] == 59.97


def test_customer_update_sends_active_only_when_it_changes(co: Company) -> None:
    """Active is sent only when it differs from QuickBooks' current value. A customer with a
    balance, inactive in BlueClerk: QuickBooks refuses the deactivation; the adapter saves the
    other changes and fails with a clear permanent error (each later edit lands too), instead
    of every later edit being refused whole."""
    cust, items = sale(co, n_items=1)
    co.adapter.upsert_invoice(build_invoice("inv-b", "c-USD", "B-1", "USD", "none",
                                            [("i1", "2", "10", "0", "0")]),
                              cust, items, None, W())
    base = customer("c-USD", "Buyer USD")
    # An ordinary edit of an active customer with a balance does not send Active at all.
    edited = co.adapter.upsert_customer(replace(base, phone="555-0000"), cust, W())
    assert edited.id == cust.id
    for phone in ("555-0001", "555-0002"):
        with pytest.raises(PermanentProviderError, match="open balance of 20"):
            co.adapter.upsert_customer(replace(base, active=False, phone=phone), cust, W())
        (row,) = co.books()["Customer"]
        assert row["Active"] is True and row["PrimaryPhone"]["FreeFormNumber"] == phone


def test_6240_against_a_vendor_is_a_clear_permanent_error(co: Company) -> None:
    r = co.sim.post(f"/_sandbox/seed/{co.realm}",
                    json={"Vendor": [{"DisplayName": "Ada Lovelace"}]})
    assert r.status_code == 200, r.text
    with pytest.raises(DuplicateName, match=r"vendor named 'Ada Lovelace' \(Vendor Id"):
        co.adapter.upsert_customer(customer(), None, W())
    assert co.books()["Customer"] == []


def test_6240_on_a_retried_create_links_our_inactive_customer(co: Company) -> None:
    """Our earlier attempt created the customer (inactive, so not found by a default query)
    before the outcome was lost: the retry's 6240 is resolved by linking it."""
    first = co.adapter.upsert_customer(customer(active=False), None, W())
    again = co.adapter.upsert_customer(customer(active=False), None, W(unknown=True))
    assert again.id == first.id and len(co.books()["Customer"]) == 1


def test_create_answered_5xx_after_apply_retried_leaves_one_record(co: Company) -> None:
    co.faults(error_after_apply_rate=1.0)
    intent = W()
    with pytest.raises(TransientProviderError):
        co.adapter.upsert_customer(customer(), None, intent)
    co.faults()
    rec = co.adapter.upsert_customer(customer(), None,
                                     WriteIntent(intent.key, after_unknown_outcome=True))
    (row,) = co.books()["Customer"]
    assert row["Id"] == rec.id


def test_payment_lookup_after_timeout_uses_documented_filters(co: Company) -> None:
    cust, items = sale(co, n_items=1)
    inv = build_invoice("inv-p", "c-USD", "P-1", "USD", "none", [("i1", "1", "10", "0", "0")])
    inv_rec = co.adapter.upsert_invoice(inv, cust, items, None, W())
    pay = Payment("pay-1", "inv-p", "c-USD", Decimal("4"), "USD", dt.date(2026, 11, 3))
    first = co.adapter.record_payment(pay, inv_rec, cust, None, W())
    seen: list[str] = []
    real = co.adapter.query

    def spy(statement: str) -> dict[str, Any]:
        seen.append(statement)
        return real(statement)

    co.adapter.query = spy  # type: ignore[method-assign]
    again = co.adapter.record_payment(pay, inv_rec, cust, None, W(unknown=True))
    assert again.id == first.id and len(co.books()["Payment"]) == 1
    payment_queries = [q for q in seen if "FROM Payment" in q]
    assert payment_queries
    for q in payment_queries:
        assert "CustomerRef = " in q and "TxnDate = " in q and "PaymentRefNum" not in q
        assert "MAXRESULTS 1000" in q


@pytest.mark.parametrize(("currency", "lines", "total", "shown"), [
    ("JPY", [("i1", "7", "37", "0", "0")], "260.0000", "BlueClerk total 260 JPY but the books "
                                                      "total 259 JPY"),
    ("KWD", [("i1", "2", "12.603", "0", "0")], "25.2070", "BlueClerk total 25.207 KWD but the "
                                                         "books total 25.206 KWD"),
])
def test_total_mismatch_shows_currency_precision(co: Company, currency: str,
                                                 lines: list[tuple[str, ...]], total: str,
                                                 shown: str) -> None:
    cust, items = sale(co, currency=currency, n_items=1)
    inv = replace(build_invoice("inv-m", f"c-{currency}", "M-1", currency, "none",
                                [tuple(x) for x in lines]),  # type: ignore[misc]
                  total=Decimal(total))
    with pytest.raises(TotalMismatch) as err:
        co.adapter.upsert_invoice(inv, cust, items, None, W())
    assert shown in str(err.value)


# ---- sales tax by region (sandbox/quickbooks/README.md, rules T1-T10) ------------------------
# Hand-worked figures: QuickBooks outside the US taxes each line's exclusive amount, each
# rate rounded half-up on the line; BlueClerk rounds each line's tax (sandbox/scenario.py).

def seed_region(co: Company, region: str) -> None:
    r = co.sim.post(f"/_sandbox/seed/{co.realm}", json={"Region": region})
    assert r.status_code == 200, r.text


def tax_invoice(number: str, currency: str, mode: str,
                lines: list[tuple[str, str, str, str | None, str | None]]) -> Invoice:
    """`lines`: (qty, unit price, tax percent, BlueClerk tax rate id, its name)."""
    base = build_invoice(f"inv-{number}", f"c-{currency}", number, currency, mode,  # type: ignore[arg-type]
                         [(f"i{n % 2 + 1}", q, p, "0", r)
                          for n, (q, p, r, _, _) in enumerate(lines)])
    return replace(base, lines=tuple(
        replace(line, tax_rate_id=rid, tax_rate_name=name)
        for line, (_, _, _, rid, name) in zip(base.lines, lines, strict=True)))


def code(co: Company, name: str) -> ProviderTaxRate:
    return next(c for c in co.adapter.list_tax_rates() if c.name == name)


def line_codes(row: dict[str, Any]) -> list[str]:
    return [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in row["Line"]
            if ln["DetailType"] == "SalesItemLineDetail"]


def test_list_tax_rates_per_region(co: Company) -> None:
    """US: automated sales tax (TAX) and NON for 0% rates; UK/CA/AU: the company's codes
    with their rates from TaxRate, a code of several rates at their sum."""
    assert [(c.code, c.rate, c.kind) for c in co.adapter.list_tax_rates()] == [
        ("TAX", None, "automated"), ("NON", Decimal(0), "rate")]
    ca = Company(co.base)
    seed_region(ca, "CA")
    got = {c.name: (c.rate, c.compound) for c in ca.adapter.list_tax_rates()}
    assert got["GST/PST BC"] == (Decimal(12), False)
    assert got["GST/QST QC"] == (Decimal("14.975"), False)
    assert got["HST ON"] == (Decimal(13), False) and got["Zero-rated"] == (Decimal(0), False)
    # A rate on the amount plus the earlier tax is compound: 5 + 9.5 x 1.05 = 14.975.
    ca.sim.post(f"/_sandbox/seed/{ca.realm}", json={
        "TaxRate": [{"Id": "70", "Name": "QST 2012", "RateValue": 9.5}],
        "TaxCode": [{"Id": "70", "Name": "GST/QST 2012", "SalesTaxRateList": {"TaxRateDetail": [
            {"TaxRateRef": {"value": "1"}}, {"TaxRateRef": {"value": "70"}, "TaxOrder": 1,
                                             "TaxTypeApplicable": "TaxOnAmountPlusTax"}]}}]})
    qst = code(ca, "GST/QST 2012")
    assert (qst.code, qst.rate, qst.compound) == ("70", Decimal("14.975"), True)


def test_us_invoice_sends_tax_non_and_the_explicit_total_tax(co: Company) -> None:
    """US automated sales tax: TaxCodeRef TAX on taxed lines (the mapped code), NON on the
    rest, BlueClerk's tax sent as TxnTaxDetail.TotalTax. 2 x 45.50 = 91.00 at 8.25% = 7.5075
    -> 7.51; 19.99 untaxed; total 118.50."""
    cust, items = sale(co)
    inv = tax_invoice("US-1", "USD", "exclusive", [("2", "45.50", "8.25", "st", "State"),
                                                   ("1", "19.99", "0", None, None)])
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W(),
                                    taxes={"st": code(co, "Automated sales tax")})
    (row,) = co.books()["Invoice"]
    assert line_codes(row) == ["TAX", "NON"]
    assert row["TxnTaxDetail"]["TotalTax"] == 7.51 and rec.total == Decimal("118.50")


@pytest.mark.parametrize(("region", "currency", "untaxed"), [
    ("UK", "GBP", "0.0% Z"), ("CA", "CAD", "Zero-rated"), ("AU", "AUD", "GST free")])
def test_untaxed_lines_use_the_company_zero_rated_code(co: Company, region: str,
                                                      currency: str, untaxed: str) -> None:
    """Every line needs a TaxCode outside the US (T4); BlueClerk's untaxed lines take the
    company's zero-rated code (README, "Untaxed lines")."""
    seed_region(co, region)
    cust, items = sale(co, currency)
    inv = tax_invoice(f"Z-{region}", currency, "exclusive", [("1", "40.00", "0", None, None)])
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W(), taxes={})
    (row,) = co.books()["Invoice"]
    assert line_codes(row) == [code(co, untaxed).code] and rec.total == Decimal("40.00")


def test_uk_invoice_lands_on_the_mapped_vat_codes(co: Company) -> None:
    """Hand-worked (UK, exclusive): 3 x 45.50 = 136.50 at 20.0% S = 27.30; 19.99 at 5.0% R =
    0.9995 -> 1.00; 2 x 12.50 = 25.00 untaxed (0.0% Z); subtotal 181.49, VAT 28.30, total
    209.79 -- QuickBooks' figures equal BlueClerk's to the penny."""
    seed_region(co, "UK")
    cust, items = sale(co, "GBP")
    inv = tax_invoice("UK-1", "GBP", "exclusive", [("3", "45.50", "20", "vat-std", "VAT"),
                                                   ("1", "19.99", "5", "vat-red", "Reduced"),
                                                   ("2", "12.50", "0", None, None)])
    assert (inv.tax_total, inv.total) == (Decimal("28.30"), Decimal("209.79"))
    taxes = {"vat-std": code(co, "20.0% S"), "vat-red": code(co, "5.0% R")}
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W(), taxes=taxes)
    (row,) = co.books()["Invoice"]
    assert line_codes(row) == ["3", "5", "7"]
    assert row["TxnTaxDetail"]["TotalTax"] == 28.30 and row["TotalAmt"] == 209.79
    assert rec.total == Decimal("209.79")


def test_ca_two_rates_on_one_invoice_land_to_the_cent(co: Company) -> None:
    """Hand-worked (CA): 2 x 50.00 = 100.00 at GST/PST BC 12% -> GST 5.00 + PST 7.00 =
    12.00 (BlueClerk 12.00); 9.99 at HST ON 13% = 1.2987 -> 1.30; total 123.29."""
    seed_region(co, "CA")
    cust, items = sale(co, "CAD")
    inv = tax_invoice("CA-1", "CAD", "exclusive", [("2", "50.00", "12", "bc", "GST/PST BC"),
                                                   ("1", "9.99", "13", "on", "HST ON")])
    taxes = {"bc": code(co, "GST/PST BC"), "on": code(co, "HST ON")}
    rec = co.adapter.upsert_invoice(inv, cust, items, None, W(), taxes=taxes)
    (row,) = co.books()["Invoice"]
    assert row["TxnTaxDetail"]["TotalTax"] == 13.30 and rec.total == Decimal("123.29")


def test_a_combined_code_that_rounds_otherwise_is_refused_before_writing(co: Company) -> None:
    """Hand-worked (CA): 17.49 at 12%: BlueClerk 2.0988 -> 2.10; QuickBooks GST 0.8745 ->
    0.87 + PST 1.2243 -> 1.22 = 2.09 (T7). Refused before writing, naming the line and both
    figures."""
    seed_region(co, "CA")
    cust, items = sale(co, "CAD")
    inv = tax_invoice("CA-2", "CAD", "exclusive", [("1", "17.49", "12", "bc", "GST/PST BC")])
    with pytest.raises(QuickBooksTaxMismatch) as err:
        co.adapter.upsert_invoice(inv, cust, items, None, W(),
                                  taxes={"bc": code(co, "GST/PST BC")})
    text = str(err.value)
    assert "line 1 (1 x i1) at GST/PST BC: BlueClerk tax 2.10 CAD, QuickBooks would compute " \
           "2.09 CAD" in text
    assert "BlueClerk total 19.59 CAD, QuickBooks total 19.58 CAD" in text
    assert "nothing was written" in text and err.value.code == ErrorCode.TOTAL_MISMATCH
    assert co.books()["Invoice"] == []


def test_au_inclusive_prices_land_or_are_refused_naming_the_line(co: Company) -> None:
    """Hand-worked (AU, GST-inclusive): 110.00 incl. 10% -> BlueClerk tax 10.00, exclusive
    100.00, QuickBooks 100.00 x 10% = 10.00 (lands; line TaxInclusiveAmt 110.00); 30.00
    untaxed on GST free. 5.00 incl. -> BlueClerk 5 x 10/110 = 0.4545 -> 0.45, exclusive 4.55,
    QuickBooks 0.455 -> 0.46 and 5.01 (T9): refused."""
    seed_region(co, "AU")
    cust, items = sale(co, "AUD")
    gst = {"gst": code(co, "GST")}
    ok = tax_invoice("AU-1", "AUD", "inclusive", [("1", "110.00", "10", "gst", "GST"),
                                                  ("1", "30.00", "0", None, None)])
    rec = co.adapter.upsert_invoice(ok, cust, items, None, W(), taxes=gst)
    (row,) = co.books()["Invoice"]
    assert row["GlobalTaxCalculation"] == "TaxInclusive" and line_codes(row) == ["4", "5"]
    assert row["Line"][0]["Amount"] == 100 and row["Line"][0]["SalesItemLineDetail"][
        "TaxInclusiveAmt"] == 110
    assert row["TxnTaxDetail"]["TotalTax"] == 10 and rec.total == Decimal("140.00")
    bad = tax_invoice("AU-2", "AUD", "inclusive", [("1", "5.00", "10", "gst", "GST")])
    with pytest.raises(QuickBooksTaxMismatch) as err:
        co.adapter.upsert_invoice(bad, cust, items, None, W(), taxes=gst)
    assert "line 1 (1 x i1) at GST: BlueClerk tax 0.45 AUD, QuickBooks would compute " \
           "0.46 AUD" in str(err.value)
    assert "QuickBooks total 5.01 AUD" in str(err.value)
    assert len(co.books()["Invoice"]) == 1


def test_a_rate_changed_under_the_same_id_is_not_sent_on_the_old_code(co: Company) -> None:
    """BlueClerk's rate `hst` moved from 13% to 15% under the same id; its saved mapping
    still names HST ON (13%). The adapter refuses before writing (unmapped_tax_rate), naming
    the line, both percents and both figures: 100.00 x 15% = 15.00 vs 13.00."""
    seed_region(co, "CA")
    cust, items = sale(co, "CAD")
    inv = tax_invoice("CA-3", "CAD", "exclusive", [("1", "100.00", "15", "hst", "HST")])
    with pytest.raises(QuickBooksTaxMismatch) as err:
        co.adapter.upsert_invoice(inv, cust, items, None, W(),
                                  taxes={"hst": code(co, "HST ON")})
    assert err.value.code == ErrorCode.UNMAPPED_TAX_RATE
    assert "line 1 (1 x i1): BlueClerk charges HST 15% (hst) but it is mapped to QuickBooks " \
           "tax code HST ON (Id 6) at 13%: BlueClerk tax 15.00 CAD, QuickBooks would compute " \
           "13.00 CAD" in str(err.value)
    assert co.books()["Invoice"] == []


def test_a_mapping_to_a_code_the_company_lost_is_refused(co: Company) -> None:
    seed_region(co, "UK")
    cust, items = sale(co, "GBP")
    inv = tax_invoice("UK-2", "GBP", "exclusive", [("1", "10", "20", "vat", "VAT")])
    with pytest.raises(PermanentProviderError) as err:
        co.adapter.upsert_invoice(inv, cust, items, None, W(),
                                  taxes={"vat": ProviderTaxRate("99", "Gone", Decimal(20))})
    assert err.value.code == ErrorCode.UNMAPPED_TAX_RATE
    assert "line 1 (1 x i1): VAT (vat) is mapped to QuickBooks tax code Gone (Id 99)" in str(
        err.value)


def test_quickbooks_computing_otherwise_after_the_write_leaves_nothing_wrong(
        co: Company, monkeypatch: pytest.MonkeyPatch) -> None:
    """If QuickBooks' figures differ from the prediction (here the adapter is made to read
    GST/PST BC as one 12% rate, so it predicts 2.10 where QuickBooks computes 2.09), the
    saved invoice is deleted (a create) or voided (an update) and the error says so."""
    seed_region(co, "CA")
    cust, items = sale(co, "CAD")
    bc = {"bc": code(co, "GST/PST BC")}
    first = co.adapter.upsert_invoice(
        tax_invoice("CA-4", "CAD", "exclusive", [("2", "50.00", "12", "bc", "BC")]), cust,
        items, None, W(), taxes=bc)
    real = co.adapter._tax_codes

    def one_rate() -> dict[str, Any]:
        codes = real()
        c = codes["7"]
        return {**codes, "7": replace(c, parts=(replace(c.parts[0], percent=Decimal(12)),))}

    monkeypatch.setattr(co.adapter, "_tax_codes", one_rate)
    wrong = tax_invoice("CA-5", "CAD", "exclusive", [("1", "17.49", "12", "bc", "BC")])
    with pytest.raises(QuickBooksTaxMismatch) as err:
        co.adapter.upsert_invoice(wrong, cust, items, None, W(), taxes=bc)
    text = str(err.value)
    assert "QuickBooks computed tax 2.09 CAD (GST 0.87 CAD on 17.49 CAD; PST BC 1.22 CAD on " \
           "17.49 CAD) where BlueClerk's is 2.10 CAD (by line: line 1 2.10 CAD)" in text
    assert "was deleted, so nothing wrong is left in the books" in text
    books = co.books()
    assert [r["DocNumber"] for r in books["Invoice"]] == ["CA-4"]
    assert len(books["Deleted"]["Invoice"]) == 1
    edited = replace(wrong, id="inv-CA-4", number="CA-4")
    with pytest.raises(QuickBooksTaxMismatch) as err:
        co.adapter.upsert_invoice(edited, cust, items, first, W(), taxes=bc)
    assert "was voided" in str(err.value)
    (row,) = co.books()["Invoice"]
    assert row["TotalAmt"] == 0 and row["PrivateNote"].startswith("Voided")
