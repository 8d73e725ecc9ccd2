"""`write_batch` of the three adapters against the simulators over real HTTP.

QuickBooks: one `batch` call per 30 writes; Xero: one multi-element PUT (creates) or POST
(updates) per collection and 50 writes; FreshBooks: the single-record calls in turn.
Expected values are written out from the inputs (names, counts, ids read back from the
books), never taken from the adapter's own helpers.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.errors import (
    DuplicateName,
    PermanentProviderError,
    ProviderError,
    Throttled,
    TransientProviderError,
    UnknownOutcome,
)
from providers.freshbooks.adapter import FreshBooksAdapter
from providers.http import ProviderHttp
from providers.oauth import ClientCredentials, OAuthEndpoints, OAuthFlow
from providers.port import BatchWrite, ProviderRecord, WriteIntent
from providers.quickbooks.adapter import (
    QuickBooksAdapter,
    batch_request_id,
    classify_quickbooks_error,
)
from providers.ratelimit import RateLimiter, RateLimits
from providers.tokens import ConnectionTokens
from providers.xero.adapter import XeroAdapter, batch_idempotency_key, classify_xero_error
from sandbox.app import create_sandbox
from sandbox.faults import FaultSwitchboard
from sandbox.quickbooks.app import QuickBooksLimits
from sandbox.quickbooks.app import create_app as create_quickbooks
from sandbox.serve import serve_in_thread
from schemas.error_codes import ErrorCode
from schemas.records import Customer, Item
from service.providers import QBO_BATCH_LIMITS
from tests.integration.providers.test_freshbooks_adapter import Conn as FreshBooksConn
from tests.integration.providers.test_quickbooks_adapter import Company
from tests.integration.providers.test_xero_adapter import Conn as XeroConn


class Wire:
    """Every request an adapter sent and every status it got back."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.requests.append],
                "response": [lambda r: self.statuses.append(r.status_code)]}

    def writes(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method in ("POST", "PUT")]


def key() -> str:
    return f"k-{uuid.uuid4().hex[:24]}"


def cw(cid: str, name: str, link: ProviderRecord | None = None, unknown: bool = False,
       k: str | None = None, **kw: Any) -> BatchWrite:
    return BatchWrite(Customer(cid, name, email=f"{cid}@example.com", **kw), link,
                      WriteIntent(k or key(), unknown))


def iw(iid: str, name: str, price: str, account: str | None, link: ProviderRecord | None = None,
       unknown: bool = False, k: str | None = None, sku: str | None = None) -> BatchWrite:
    return BatchWrite(Item(iid, name, sku=sku, unit_price=Decimal(price)), link,
                      WriteIntent(k or key(), unknown), account)


def again(writes: list[BatchWrite], unknown: bool = True, new_keys: bool = False
          ) -> list[BatchWrite]:
    """The same writes retried (after an unknown outcome, by default)."""
    return [dataclasses.replace(w, write=WriteIntent(key() if new_keys else w.write.key,
                                                     unknown)) for w in writes]


def records(outcomes: list[ProviderRecord | ProviderError]) -> list[ProviderRecord]:
    assert all(isinstance(o, ProviderRecord) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, ProviderRecord)]


# ---- QuickBooks --------------------------------------------------------------------------


def qbo_adapter(co: Company, wire: Wire, batch_limiter: RateLimiter | None = None,
                limits: RateLimits | None = None, timeout: float = 10.0) -> QuickBooksAdapter:
    tokens = ConnectionTokens(co.store, co.realm, co.refresh)
    http = ProviderHttp(httpx.Client(timeout=timeout, event_hooks=wire.hooks()), tokens,
                        RateLimiter(limits or RateLimits(per_minute=100_000, concurrent=10)),
                        classify_quickbooks_error, {"Accept": "application/json"})
    return QuickBooksAdapter(http, f"{co.base}/v3/company", co.realm, batch_limiter)


@pytest.fixture
def qco(sandbox_url: str) -> Iterator[Company]:
    company = Company(f"{sandbox_url}/quickbooks")
    yield company
    company.faults()


def qbo_batches(wire: Wire) -> list[httpx.Request]:
    return [r for r in wire.writes() if r.url.path.endswith("/batch")]


def test_qbo_batch_creates_customers_and_items_in_one_call(qco: Company) -> None:
    wire = Wire()
    a = qbo_adapter(qco, wire)
    writes = [cw("c1", "Ada Plumbing"), cw("c2", "Bob Heating"),
              iw("i1", "Drain clean", "89.5", "1"), cw("c3", "Cy Electric"),
              iw("i2", "Call-out", "45", "79", sku="CO-1")]
    out = records(a.write_batch(writes))
    assert len(qbo_batches(wire)) == 1 and len(wire.writes()) == 1
    books = qco.books()
    customers = {c["Id"]: c for c in books["Customer"]}
    items = {i["Id"]: i for i in books["Item"]}
    assert len(customers) == 3 and len(items) == 2
    assert [customers[r.id]["DisplayName"] for r in (out[0], out[1], out[3])] == [
        "Ada Plumbing", "Bob Heating", "Cy Electric"]
    assert customers[out[1].id]["PrimaryEmailAddr"]["Address"] == "c2@example.com"
    assert (items[out[2].id]["Name"], Decimal(str(items[out[2].id]["UnitPrice"])),
            items[out[2].id]["IncomeAccountRef"]["value"]) == ("Drain clean", Decimal("89.5"),
                                                               "1")
    assert (items[out[4].id]["Sku"], items[out[4].id]["IncomeAccountRef"]["value"]) == (
        "CO-1", "79")
    assert all(r.version == "0" for r in out)


def test_qbo_refused_record_leaves_the_others_applied(qco: Company) -> None:
    wire = Wire()
    a = qbo_adapter(qco, wire)
    held = a.upsert_customer(Customer("other", "Smith Heating"), None, WriteIntent(key()))
    out = a.write_batch([cw("c1", "Ada Plumbing"), cw("c2", "Smith Heating"),
                         cw("c3", "Cy Electric"), iw("i1", "Bad account", "1", "999999")])
    assert isinstance(out[1], DuplicateName)
    assert out[1].code == ErrorCode.DUPLICATE_NAME
    # The single path's message: who holds the name, and what to do.
    assert f"Id {held.id}" in str(out[1]) and "did not create" in str(out[1])
    assert isinstance(out[3], PermanentProviderError)
    assert out[3].code == ErrorCode.VALIDATION_FAILED
    assert isinstance(out[0], ProviderRecord) and isinstance(out[2], ProviderRecord)
    names = sorted(c["DisplayName"] for c in qco.books()["Customer"])
    assert names == ["Ada Plumbing", "Cy Electric", "Smith Heating"]
    assert qco.books().get("Item", []) == []


@pytest.mark.parametrize("retry", ["same keys, after unknown outcome",
                                   "same keys, plain retry (requestid replay)",
                                   "new keys, after unknown outcome (lookup only)"])
def test_qbo_5xx_after_apply_then_retry_makes_no_duplicate(qco: Company, retry: str) -> None:
    wire = Wire()
    a = qbo_adapter(qco, wire)
    writes = [cw("c1", "Ada Plumbing"), cw("c2", "Bob Heating"),
              iw("i1", "Drain clean", "89.5", "1")]
    qco.faults(error_after_apply_rate=1.0)
    with pytest.raises(TransientProviderError) as err:
        a.write_batch(writes)
    assert err.value.status == 500
    qco.faults()
    assert len(qco.books()["Customer"]) == 2  # applied despite the 500
    unknown = not retry.startswith("same keys, plain")
    out = records(a.write_batch(again(writes, unknown, new_keys=retry.startswith("new"))))
    books = qco.books()
    assert sorted(c["Id"] for c in books["Customer"]) == sorted([out[0].id, out[1].id])
    assert [i["Id"] for i in books["Item"]] == [out[2].id]


def test_qbo_timeout_then_retry_in_another_grouping_makes_no_duplicate(qco: Company) -> None:
    wire = Wire()
    slow = qbo_adapter(qco, wire, timeout=1.0)
    writes = [cw("c1", "Ada Plumbing"), iw("i1", "Drain clean", "89.5", "1")]
    qco.faults(timeout_rate=1.0, hang_s=3)
    with pytest.raises(UnknownOutcome):
        slow.write_batch(writes)
    qco.faults()
    # The engine regroups: the two uncertain writes with a new one, so another requestid.
    retry = [*again(writes), cw("c2", "Bob Heating")]
    out = records(qbo_adapter(qco, Wire()).write_batch(retry))
    books = qco.books()
    assert sorted(c["DisplayName"] for c in books["Customer"]) == ["Ada Plumbing",
                                                                   "Bob Heating"]
    assert len(books["Item"]) == 1 and books["Item"][0]["Id"] == out[1].id
    assert out[0].id == next(c["Id"] for c in books["Customer"]
                             if c["DisplayName"] == "Ada Plumbing")


def test_qbo_more_writes_than_a_batch_split_into_calls(qco: Company) -> None:
    wire = Wire()
    a = qbo_adapter(qco, wire)
    assert a.batch_size == 30
    writes = [cw(f"c{n}", f"Customer {n:03d}") for n in range(65)]
    out = records(a.write_batch(writes))
    calls = qbo_batches(wire)
    assert [len(_json(r)["BatchItemRequest"]) for r in calls] == [30, 30, 5]
    ids = [_json(r)["BatchItemRequest"][-1]["bId"] for r in calls]
    assert ids == ["30", "30", "5"]
    request_ids = [r.url.params["requestid"] for r in calls]
    assert len(set(request_ids)) == 3 and all(len(x) <= 36 for x in request_ids)
    by_id = {c["Id"]: c["DisplayName"] for c in qco.books()["Customer"]}
    assert len(by_id) == 65
    assert [by_id[r.id] for r in out] == [f"Customer {n:03d}" for n in range(65)]


def test_qbo_updates_with_links(qco: Company) -> None:
    wire = Wire()
    a = qbo_adapter(qco, wire)
    first = records(a.write_batch([cw("c1", "Ada Plumbing"), cw("c2", "Bob Heating"),
                                   iw("i1", "Drain clean", "89.5", "1")]))
    out = records(a.write_batch([
        cw("c1", "Ada Plumbing Ltd", first[0]),
        cw("c2", "Bob Heating", first[1], active=False),
        iw("i1", "Drain clean", "95", "79", first[2]),
        cw("c3", "Cy Electric"),  # a create in the same call
    ]))
    assert [r.id for r in out[:3]] == [r.id for r in first]
    assert [r.version for r in out[:3]] == ["1", "1", "1"]
    books = qco.books()
    customers = {c["Id"]: c for c in books["Customer"]}
    assert customers[first[0].id]["DisplayName"] == "Ada Plumbing Ltd"
    assert customers[first[1].id]["Active"] is False
    assert customers[out[3].id]["DisplayName"] == "Cy Electric"
    (item,) = books["Item"]
    assert (Decimal(str(item["UnitPrice"])), item["IncomeAccountRef"]["value"]) == (
        Decimal("95"), "79")
    second = _json(qbo_batches(wire)[1])["BatchItemRequest"]
    assert [b["operation"] for b in second] == ["update", "update", "update", "create"]
    # A stale SyncToken (the item's first version) in a batch: re-read, retried once.
    stale = records(a.write_batch([iw("i1", "Drain clean", "99", "79", first[2])]))
    assert stale[0].id == first[2].id and stale[0].version == "2"
    assert Decimal(str(qco.books()["Item"][0]["UnitPrice"])) == Decimal("99")


def test_qbo_requestid_is_stable_for_the_same_writes(qco: Company) -> None:
    writes = [cw("c1", "Ada Plumbing", k="intent-a"), cw("c2", "Bob Heating", k="intent-b")]
    rid = batch_request_id(writes)
    assert len(rid) <= 36
    assert batch_request_id(again(writes, unknown=True)) == rid  # the flag is not part of it
    assert batch_request_id(list(reversed(writes))) != rid
    assert batch_request_id([writes[0], cw("c2", "Bob Heating", k="intent-c")]) != rid
    wire = Wire()
    a = qbo_adapter(qco, wire)
    first = records(a.write_batch(writes))
    second = records(a.write_batch(again(writes, unknown=False)))  # answered from storage
    sent = [r.url.params["requestid"] for r in qbo_batches(wire)]
    assert sent == [rid, rid]
    assert second == first and len(qco.books()["Customer"]) == 2


@pytest.fixture(scope="module")
def tight_qbo() -> Iterator[str]:
    """A QuickBooks simulator whose realms take 3 batch calls a minute (the documented 40
    scaled down, so the limit is reached in a test)."""
    limits = QuickBooksLimits(batch_per_minute=3, retry_after_s=60)
    with serve_in_thread(create_quickbooks(FaultSwitchboard(), limits)) as url:
        yield url


def test_qbo_batch_limiter_keeps_batch_calls_under_quickbooks_limit(tight_qbo: str) -> None:
    writes = [cw(f"c{n}", f"Customer {n:03d}") for n in range(120)]  # 4 batch calls
    wire = Wire()
    co = Company(tight_qbo)
    limiter = RateLimiter(RateLimits(per_minute=3, concurrent=10), max_wait_s=0.2)
    out = qbo_adapter(co, wire, batch_limiter=limiter).write_batch(writes)
    assert len(records(out[:90])) == 90
    assert all(isinstance(o, Throttled) and o.status is None for o in out[90:])  # ours
    assert 429 not in wire.statuses and len(qbo_batches(wire)) == 3
    assert len(co.books()["Customer"]) == 90
    # Without the batch limiter the fourth call reaches QuickBooks and is refused there.
    bare_wire = Wire()
    bare = Company(tight_qbo)
    out = qbo_adapter(bare, bare_wire).write_batch(writes)
    assert all(isinstance(o, Throttled) and o.status == 429 for o in out[90:])
    assert bare_wire.statuses.count(429) == 1


def test_qbo_batch_stopped_by_the_connection_limiter_gives_its_batch_slot_back(
        qco: Company) -> None:
    # The connection's own limiter refuses before anything is sent: the batch slot (40 a
    # minute) taken for that call must be free again, not held for a minute.
    batch = RateLimiter(RateLimits(per_minute=2, concurrent=10), max_wait_s=0.1)
    wire = Wire()
    connection = RateLimits(per_minute=1, concurrent=10)
    adapter = qbo_adapter(qco, wire, batch_limiter=batch, limits=connection)
    first = adapter.write_batch([cw("g1", "Given Back 1"), cw("g2", "Given Back 2")])
    assert len(records(first)) == 2 and len(qbo_batches(wire)) == 1
    with pytest.raises(Throttled) as refused:
        adapter.write_batch([cw("g3", "Given Back 3"), cw("g4", "Given Back 4")])
    assert refused.value.status is None and len(qbo_batches(wire)) == 1
    assert batch.usage()["minute"] == 1  # the refused call's slot was given back


# ---- Xero ----------------------------------------------------------------------------------


def xero_adapter(conn: XeroConn, wire: Wire, limiter: RateLimiter | None = None,
                 timeout: float = 5.0) -> XeroAdapter:
    flow = OAuthFlow(
        OAuthEndpoints(authorize_url=f"{conn.base}/identity/connect/authorize",
                       token_url=f"{conn.base}/connect/token",
                       revoke_url=f"{conn.base}/connect/revocation",
                       scope="offline_access accounting.contacts", revoke_style="form_basic"),
        ClientCredentials("blueclerk-local", "local-secret", "http://127.0.0.1/cb"))
    tokens = ConnectionTokens(conn.store, conn.tenant, flow.refresh)
    http = ProviderHttp(httpx.Client(timeout=timeout, event_hooks=wire.hooks()), tokens,
                        limiter or RateLimiter(RateLimits(per_minute=60, concurrent=5,
                                                          per_day=5000)),
                        classify_xero_error,
                        {"xero-tenant-id": conn.tenant, "Accept": "application/json"})
    return XeroAdapter(http, f"{conn.base}/api.xro/2.0")


@pytest.fixture
def xsim(sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sandbox_url}/xero", timeout=10) as client:
        yield client


@pytest.fixture
def xconn(sandbox_url: str, xsim: httpx.Client) -> Iterator[XeroConn]:
    conn = XeroConn(f"{sandbox_url}/xero", xsim)
    yield conn
    conn.faults()


def _json(request: httpx.Request) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(request.content)
    return body


def test_xero_batch_creates_contacts_and_items(xconn: XeroConn) -> None:
    wire = Wire()
    a = xero_adapter(xconn, wire)
    assert a.batch_size == 50
    writes = [cw("c1", "Ada Plumbing"), iw("i1", "Drain clean", "89.5", "200", sku="DR-1"),
              cw("c2", "Bob Heating"), cw("c3", "Cy Electric"),
              iw("i2", "Call-out", "45", "260", sku="CO-1")]
    out = records(a.write_batch(writes))
    sent = wire.writes()
    assert [(r.method, r.url.path.rsplit("/", 1)[-1], len(next(iter(_json(r).values()))))
            for r in sent] == [("PUT", "Contacts", 3), ("PUT", "Items", 2)]
    assert all(r.url.params["summarizeErrors"] == "false" for r in sent)
    books = xconn.books()
    contacts = {c["ContactID"]: c for c in books["Contacts"]}
    items = {i["ItemID"]: i for i in books["Items"]}
    assert [(contacts[out[n].id]["Name"], contacts[out[n].id]["ContactNumber"])
            for n in (0, 2, 3)] == [("Ada Plumbing", "c1"), ("Bob Heating", "c2"),
                                    ("Cy Electric", "c3")]
    assert contacts[out[2].id]["EmailAddress"] == "c2@example.com"
    assert [(items[out[n].id]["Code"], items[out[n].id]["SalesDetails"]["AccountCode"],
             Decimal(str(items[out[n].id]["SalesDetails"]["UnitPrice"]))) for n in (1, 4)] == [
        ("DR-1", "200", Decimal("89.5")), ("CO-1", "260", Decimal("45"))]


def test_xero_refused_elements_leave_the_others_applied(xconn: XeroConn) -> None:
    wire = Wire()
    a = xero_adapter(xconn, wire)
    a.upsert_customer(Customer("other", "Smith Heating"), None, WriteIntent(key()))
    out = a.write_batch([cw("c1", "Ada Plumbing"), cw("c2", "Smith Heating"),
                         iw("i1", "Bad account", "1", "999", sku="BAD-1"),
                         iw("i2", "Good", "2", "200", sku="OK-1"), cw("c3", "Cy Electric")])
    assert isinstance(out[1], DuplicateName) and "Smith Heating" in str(out[1])
    assert isinstance(out[2], PermanentProviderError)
    assert out[2].code == ErrorCode.VALIDATION_FAILED and "999" in str(out[2])
    assert all(isinstance(out[n], ProviderRecord) for n in (0, 3, 4))
    books = xconn.books()
    assert sorted(c["Name"] for c in books["Contacts"]) == [
        "Ada Plumbing", "Cy Electric", "Smith Heating"]
    assert [i["Code"] for i in books["Items"]] == ["OK-1"]


@pytest.mark.parametrize("retry", ["same keys, after unknown outcome",
                                   "same keys, plain retry (Idempotency-Key replay)",
                                   "new keys, after unknown outcome (lookup only)"])
def test_xero_5xx_after_apply_then_retry_makes_no_duplicate(xconn: XeroConn,
                                                            retry: str) -> None:
    wire = Wire()
    a = xero_adapter(xconn, wire)
    writes = [cw("c1", "Ada Plumbing"), cw("c2", "Bob Heating")]
    xconn.faults(error_after_apply_rate=1.0)
    with pytest.raises(TransientProviderError) as err:
        a.write_batch(writes)
    assert err.value.status in (500, 503)
    xconn.faults()
    assert len(xconn.books()["Contacts"]) == 2  # applied despite the 5xx
    unknown = not retry.startswith("same keys, plain")
    out = records(a.write_batch(again(writes, unknown, new_keys=retry.startswith("new"))))
    contacts = xconn.books()["Contacts"]
    assert sorted(c["ContactID"] for c in contacts) == sorted(r.id for r in out)
    assert sorted(c["Name"] for c in contacts) == ["Ada Plumbing", "Bob Heating"]


def test_xero_timeout_then_retry_in_another_grouping_makes_no_duplicate(
        xconn: XeroConn) -> None:
    writes = [iw("i1", "Drain clean", "89.5", "200", sku="DR-1"), cw("c1", "Ada Plumbing")]
    xconn.faults(timeout_rate=1.0, hang_s=3)
    with pytest.raises(UnknownOutcome):
        xero_adapter(xconn, Wire(), timeout=1.0).write_batch(writes)
    xconn.faults()
    wire = Wire()
    out = records(xero_adapter(xconn, wire).write_batch(
        [*again(writes, new_keys=True), cw("c2", "Bob Heating")]))
    books = xconn.books()
    assert sorted(c["Name"] for c in books["Contacts"]) == ["Ada Plumbing", "Bob Heating"]
    assert [i["ItemID"] for i in books["Items"]] == [out[0].id]
    # Contacts go first and timed out, so the items were never sent: the contact found by
    # its ContactNumber is updated (POST), the new contact and the item created (PUT).
    assert sorted((r.method, r.url.path.rsplit("/", 1)[-1]) for r in wire.writes()) == [
        ("POST", "Contacts"), ("PUT", "Contacts"), ("PUT", "Items")]


def test_xero_more_writes_than_a_batch_split_into_requests(xconn: XeroConn) -> None:
    wire = Wire()
    a = xero_adapter(xconn, wire)
    out = records(a.write_batch([cw(f"c{n}", f"Customer {n:03d}") for n in range(120)]))
    assert [len(_json(r)["Contacts"]) for r in wire.writes()] == [50, 50, 20]
    keys = [r.headers["Idempotency-Key"] for r in wire.writes()]
    assert len(set(keys)) == 3 and all(len(k) <= 128 for k in keys)
    by_id = {c["ContactID"]: c["Name"] for c in xconn.books()["Contacts"]}
    assert [by_id[r.id] for r in out] == [f"Customer {n:03d}" for n in range(120)]


def test_xero_updates_with_links(xconn: XeroConn) -> None:
    wire = Wire()
    a = xero_adapter(xconn, wire)
    first = records(a.write_batch([cw("c1", "Ada Plumbing"), cw("c2", "Bob Heating"),
                                   iw("i1", "Drain clean", "89.5", "200", sku="DR-1")]))
    out = records(a.write_batch([
        cw("c1", "Ada Plumbing Ltd", first[0]), cw("c2", "Bob Heating", first[1],
                                                   active=False),
        iw("i1", "Drain cleaning", "95", "260", first[2], sku="DR-1"),
        cw("c3", "Cy Electric")]))
    assert [r.id for r in out[:3]] == [r.id for r in first]
    second = wire.writes()[2:]
    assert [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in second] == [
        ("PUT", "Contacts"), ("POST", "Contacts"), ("POST", "Items")]
    assert [e["ContactID"] for e in _json(second[1])["Contacts"]] == [first[0].id, first[1].id]
    books = xconn.books()
    contacts = {c["ContactID"]: c for c in books["Contacts"]}
    assert contacts[first[0].id]["Name"] == "Ada Plumbing Ltd"
    assert contacts[first[1].id]["ContactStatus"] == "ARCHIVED"
    assert contacts[out[3].id]["Name"] == "Cy Electric"
    (item,) = books["Items"]
    assert (item["Name"], item["SalesDetails"]["AccountCode"],
            Decimal(str(item["SalesDetails"]["UnitPrice"]))) == ("Drain cleaning", "260",
                                                                 Decimal("95"))


def test_xero_idempotency_key_is_stable_for_the_same_writes(xconn: XeroConn) -> None:
    writes = [cw("c1", "Ada Plumbing", k="intent-a"), cw("c2", "Bob Heating", k="intent-b")]
    elements = [{"Name": "Ada"}]
    k1 = batch_idempotency_key(["intent-a", "intent-b"], "PUT", "Contacts", elements)
    assert len(k1) <= 128
    assert batch_idempotency_key(["intent-a", "intent-b"], "PUT", "Contacts", elements) == k1
    assert batch_idempotency_key(["intent-a", "intent-c"], "PUT", "Contacts", elements) != k1
    assert batch_idempotency_key(["intent-a", "intent-b"], "POST", "Contacts", elements) != k1
    wire = Wire()
    a = xero_adapter(xconn, wire)
    first = records(a.write_batch(writes))
    second = records(a.write_batch(again(writes, unknown=False)))
    sent = wire.writes()
    assert sent[0].headers["Idempotency-Key"] == sent[1].headers["Idempotency-Key"]
    assert second == first and len(xconn.books()["Contacts"]) == 2


def test_xero_failure_after_another_request_keeps_the_known_outcomes(
        xconn: XeroConn) -> None:
    """Contacts go first; the items' request is stopped by our limiter (one call a
    minute): the contacts keep their records, the items carry the Throttled."""
    limiter = RateLimiter(RateLimits(per_minute=1, concurrent=5), max_wait_s=0.1)
    a = xero_adapter(xconn, Wire(), limiter)
    out = a.write_batch([iw("i1", "Drain clean", "1", "200", sku="DR-1"),
                         cw("c1", "Ada Plumbing")])
    assert isinstance(out[1], ProviderRecord)
    assert isinstance(out[0], Throttled) and out[0].status is None
    assert xconn.books()["Items"] == []
    with pytest.raises(Throttled):  # nothing known: raised for the whole call
        a.write_batch([cw("c2", "Bob Heating")])


# ---- FreshBooks ----------------------------------------------------------------------------


@pytest.fixture
def fconn(sandbox_url: str) -> Iterator[FreshBooksConn]:
    base = f"{sandbox_url}/freshbooks"
    with httpx.Client(base_url=base, timeout=10) as sim:
        conn = FreshBooksConn(base, sim)
        yield conn
        conn.faults()


def test_freshbooks_writes_one_by_one(fconn: FreshBooksConn) -> None:
    a: FreshBooksAdapter = fconn.adapter
    assert a.batch_size == 1
    out = records(a.write_batch([cw("c1", "Ada Plumbing", company_name="Ada Plumbing"),
                                 iw("i1", "Drain clean", "89.5", None, sku="DR-1"),
                                 cw("c2", "Bob Heating", company_name="Bob Heating")]))
    books = fconn.books()
    clients = {str(c["id"]): c for c in books["clients"]}
    assert (clients[out[0].id]["email"], clients[out[2].id]["email"]) == (
        "c1@example.com", "c2@example.com")
    (item,) = books["items"]
    assert (str(item["id"]), item["name"]) == (out[1].id, "Drain clean")


def test_freshbooks_refused_record_leaves_the_others_applied(fconn: FreshBooksConn) -> None:
    bad = BatchWrite(Customer("c2", "Bad Email", email="not-an-email"), None,
                     WriteIntent(key()))
    out = fconn.adapter.write_batch([cw("c1", "Ada Plumbing", company_name="Ada"), bad,
                                     cw("c3", "Cy Electric", company_name="Cy")])
    assert isinstance(out[1], PermanentProviderError)
    assert out[1].code == ErrorCode.VALIDATION_FAILED and "email" in str(out[1])
    assert isinstance(out[0], ProviderRecord) and isinstance(out[2], ProviderRecord)
    assert sorted(c["email"] for c in fconn.books()["clients"]) == ["c1@example.com",
                                                                   "c3@example.com"]


def test_freshbooks_throttled_before_any_outcome_is_raised(fconn: FreshBooksConn) -> None:
    fconn.faults(throttle_burst=1)
    with pytest.raises(Throttled):
        fconn.adapter.write_batch([cw("c1", "Ada Plumbing", company_name="Ada")])


# ---- 1,000 writes at the providers' documented limits ----------------------------------------


@pytest.fixture(scope="module")
def documented_limits() -> Iterator[str]:
    """The simulators with their documented limits (QuickBooks: 500 requests and 40 batch
    calls a minute per realm, 10 in flight; Xero: 60 a minute, 5 in flight, 5,000 a day
    per tenant), not the suite's raised ones."""
    with serve_in_thread(create_sandbox(seed=11, fast_limits=False)) as url:
        yield url


def test_qbo_1000_customers_at_documented_limits_get_no_429(documented_limits: str) -> None:
    co = Company(f"{documented_limits}/quickbooks")
    wire = Wire()
    # The service's own limiters: 500/min and 10 in flight per connection, and the
    # batch limiter service.providers wires in (40 batch calls a minute).
    a = qbo_adapter(co, wire, RateLimiter(QBO_BATCH_LIMITS),
                    RateLimits(per_minute=500, concurrent=10))
    out = records(a.write_batch([cw(f"c{n}", f"Customer {n:04d}") for n in range(1000)]))
    assert len(qbo_batches(wire)) == 34  # 33 of 30 and one of 10
    assert 429 not in wire.statuses
    by_id = {c["Id"]: c["DisplayName"] for c in co.books()["Customer"]}
    assert len(by_id) == 1000
    assert [by_id[r.id] for r in out] == [f"Customer {n:04d}" for n in range(1000)]


def test_xero_1000_contacts_at_documented_limits_get_no_429(documented_limits: str) -> None:
    with httpx.Client(base_url=f"{documented_limits}/xero", timeout=10) as sim:
        conn = XeroConn(f"{documented_limits}/xero", sim)
        wire = Wire()
        out = records(xero_adapter(conn, wire).write_batch(
            [cw(f"c{n}", f"Customer {n:04d}") for n in range(1000)]))
        assert len(wire.writes()) == 20
        assert 429 not in wire.statuses
        by_id = {c["ContactID"]: c["Name"] for c in conn.books()["Contacts"]}
    assert len(by_id) == 1000
    assert [by_id[r.id] for r in out] == [f"Customer {n:04d}" for n in range(1000)]


def test_service_wires_the_batch_limiter_into_quickbooks_adapters(
        qco: Company, sqlite_url: str, sandbox_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.oauth import TokenSet
    from service.config import Settings
    from service.providers import ProviderDirectory
    from state.connections import ConnectionStore
    from state.crypto import TokenCipher, generate_key
    from state.db import Database

    monkeypatch.setenv("SANDBOX_URL", sandbox_url)
    store = ConnectionStore(Database(sqlite_url), TokenCipher(generate_key()))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    store.connect(account, "quickbooks", qco.realm, TokenSet.from_response(qco.grant))
    directory = ProviderDirectory(Settings.from_env(), store)
    try:
        info = store.get(account)
        assert info is not None
        adapter = directory.adapter(info)
        assert adapter.batch_size == 30
        out = records(adapter.write_batch([cw(f"c{n}", f"Wired {n:02d}") for n in range(31)]))
        assert len(out) == 31 and len(qco.books()["Customer"]) == 31
        assert directory.batch_limiter(account).limits == RateLimits(per_minute=40,
                                                                     concurrent=10)
        assert directory.batch_limiter(account).usage()["minute"] == 2  # 30 + 1
        assert directory.limiter(account, "quickbooks").usage()["minute"] == 2
    finally:
        directory.close()
