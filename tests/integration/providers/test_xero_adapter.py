"""XeroAdapter against the Xero simulator over real HTTP (OpenAPI-validated bodies).

Organisations are NZ ones (the simulator's default) with two tax rates added, TAX001
8.25 % and TAX002 10 %, unless a test says otherwise; invoices get their tax types as the
engine gives them: each BlueClerk rate matched automatically (`match_tax_rate`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.errors import (
    DuplicateName,
    PermanentProviderError,
    Throttled,
    TotalMismatch,
    TransientProviderError,
    UnknownOutcome,
)
from providers.http import ProviderHttp
from providers.oauth import ClientCredentials, OAuthEndpoints, OAuthFlow, TokenSet
from providers.port import ProviderRecord, WriteIntent
from providers.ratelimit import RateLimiter, RateLimits
from providers.taxes import BlueClerkTaxRate, ProviderTaxRate, match_tax_rate
from providers.testing import MemoryTokenStore
from providers.tokens import ConnectionTokens
from providers.xero import translate
from providers.xero.adapter import XeroAdapter, XeroTaxMismatch, classify_xero_error
from sandbox.scenario import build_invoice
from sandbox.serve import serve_in_thread
from sandbox.xero.app import create_app
from sandbox.xero.limits import XeroLimits
from schemas.error_codes import ErrorCode
from schemas.records import Address, Customer, Invoice, InvoiceLine, Item, Payment

FAST = XeroLimits(per_minute=100000, app_per_minute=1000000, per_day=1000000, concurrent=50)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_in_thread(create_app(limits=FAST)) as url:
        yield url


@pytest.fixture
def sim(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


def auto_taxes(adapter: XeroAdapter, invoice: Invoice) -> dict[str, ProviderTaxRate]:
    """What the engine passes: each taxed line's BlueClerk rate matched automatically."""
    codes = adapter.list_tax_rates()
    out: dict[str, ProviderTaxRate] = {}
    for li in invoice.lines:
        if invoice.tax_mode != "none" and li.taxed and li.tax_key not in out:
            match = match_tax_rate(BlueClerkTaxRate(li.tax_key, li.tax_rate_name,
                                                    li.tax_rate_percent), codes, "xero")
            assert match.code is not None, match.reason
            out[li.tax_key] = match.code
    return out


class AutoTaxAdapter(XeroAdapter):
    """The adapter, given the automatically matched tax types when a test names none."""

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Any, link: ProviderRecord | None, write: WriteIntent,
                       taxes: Any = None) -> ProviderRecord:
        if taxes is None:
            taxes = auto_taxes(self, invoice)
        return super().upsert_invoice(invoice, customer, items, link, write, taxes)


class Conn:
    """One connected organisation (a fresh tenant per test) and an adapter for it."""

    def __init__(self, base: str, sim: httpx.Client, tenant: str | None = None,
                 seed: dict[str, Any] | None = None) -> None:
        self.base, self.sim = base, sim
        self.tenant = tenant or str(uuid.uuid4())
        r = sim.post("/_sandbox/grants", json={"tenant": self.tenant})
        assert r.status_code == 200, r.text
        self.store = MemoryTokenStore(TokenSet.from_response(r.json()))
        self.seed(seed if seed is not None else {"TaxRates": [
            {"TaxType": "TAX001", "Name": "Sales Tax", "EffectiveRate": "8.25"},
            {"TaxType": "TAX002", "Name": "Local Tax", "EffectiveRate": "10"}]})
        self.adapter = self.build()

    def seed(self, body: dict[str, Any]) -> None:
        r = self.sim.post(f"/_sandbox/seed/{self.tenant}", json=body)
        assert r.status_code == 200, r.text

    def build(self, timeout: float = 5.0, tenant_header: str | None = None) -> XeroAdapter:
        flow = OAuthFlow(
            OAuthEndpoints(authorize_url=f"{self.base}/identity/connect/authorize",
                           token_url=f"{self.base}/connect/token",
                           revoke_url=f"{self.base}/connect/revocation",
                           scope="offline_access accounting.contacts",
                           revoke_style="form_basic"),
            ClientCredentials("blueclerk-local", "local-secret", "http://127.0.0.1/cb"),
        )
        tokens = ConnectionTokens(self.store, self.tenant, flow.refresh)
        limiter = RateLimiter(RateLimits(per_minute=60, concurrent=5, per_day=5000))
        http = ProviderHttp(httpx.Client(timeout=timeout), tokens, limiter, classify_xero_error,
                            {"xero-tenant-id": tenant_header or self.tenant,
                             "Accept": "application/json"})
        return AutoTaxAdapter(http, f"{self.base}/api.xro/2.0")

    def books(self) -> dict[str, Any]:
        r = self.sim.get(f"/_sandbox/books/{self.tenant}")
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body

    def faults(self, **plan: Any) -> None:
        assert self.sim.put(f"/_sandbox/faults/{self.tenant}", json=plan).status_code == 200

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        return next(i for i in self.books()["Invoices"] if i["InvoiceID"] == invoice_id)


@pytest.fixture
def conn(base: str, sim: httpx.Client) -> Conn:
    return Conn(base, sim)


def W(key: str, unknown: bool = False) -> WriteIntent:
    return WriteIntent(key, after_unknown_outcome=unknown)


def D(value: Any) -> Decimal:
    return Decimal(str(value))


def customer(cid: str = "cus_1", name: str = "Acme Plumbing", **kw: Any) -> Customer:
    return Customer(id=cid, display_name=name, **kw)


def setup_items(conn: Conn) -> dict[str, ProviderRecord]:
    a = conn.adapter
    return {
        "itm_labor": a.upsert_item(Item("itm_labor", "Labour", "LAB-1", "Hourly labour",
                                        Decimal("85.5"), taxable=True), "200", None,
                                   W("i-labor")),
        "itm_parts": a.upsert_item(Item("itm_parts", "Parts"), "260", None, W("i-parts")),
    }


# -- contacts ---------------------------------------------------------------------------


def test_contact_create_then_update(conn: Conn) -> None:
    a = conn.adapter
    c = customer(given_name="Ada", family_name="Lovelace", email="ada@example.com",
                 phone="+64 9 555 0100", currency="NZD",
                 billing_address=Address("1 Queen St", None, "Auckland", None, "1010", "NZ"))
    rec = a.upsert_customer(c, None, W("c1"))
    assert rec.version is None
    updated = dataclasses.replace(c, display_name="Acme Plumbing Ltd", email="ops@acme.test")
    rec2 = a.upsert_customer(updated, rec, W("c2"))
    assert rec2.id == rec.id
    contacts = conn.books()["Contacts"]
    assert len(contacts) == 1
    stored = contacts[0]
    assert stored["Name"] == "Acme Plumbing Ltd"
    assert stored["ContactNumber"] == "cus_1"
    assert stored["EmailAddress"] == "ops@acme.test"
    assert stored["FirstName"] == "Ada" and stored["LastName"] == "Lovelace"
    assert stored["Phones"][0]["PhoneNumber"] == "+64 9 555 0100"
    assert stored["Addresses"][0]["AddressType"] == "POBOX"
    assert stored["Addresses"][0]["City"] == "Auckland"
    remote = a.list_customers()
    assert [(r.id, r.display_name, r.email) for r in remote] == [
        (rec.id, "Acme Plumbing Ltd", "ops@acme.test")]
    assert remote[0].address is not None and remote[0].address.postal_code == "1010"


def test_awkward_names_round_trip(conn: Conn) -> None:
    a = conn.adapter
    names = ['O\'Brien & Sons "Best" Plumbing', "山田水道工業株式会社", "x" * 300]
    ids = [a.upsert_customer(customer(f"cus_{n}", name), None, W(f"n{n}")).id
           for n, name in enumerate(names)]
    by_id = {c["ContactID"]: c["Name"] for c in conn.books()["Contacts"]}
    assert [by_id[i] for i in ids] == [names[0], names[1], "x" * 255]


def test_duplicate_name_is_reported(conn: Conn) -> None:
    a = conn.adapter
    a.upsert_customer(customer("cus_a", "Smith Heating"), None, W("d1"))
    with pytest.raises(DuplicateName) as err:
        a.upsert_customer(customer("cus_b", "smith heating"), None, W("d2"))
    assert err.value.code is ErrorCode.DUPLICATE_NAME
    assert len(conn.books()["Contacts"]) == 1


def test_lost_link_adopts_by_contact_number(conn: Conn) -> None:
    """A second create for the same customer (new key, link lost) updates, not duplicates."""
    a = conn.adapter
    first = a.upsert_customer(customer("cus_9", "Lost Link Ltd"), None, W("l1"))
    again = a.upsert_customer(customer("cus_9", "Lost Link Limited"), None, W("l2"))
    assert again.id == first.id
    assert [c["Name"] for c in conn.books()["Contacts"]] == ["Lost Link Limited"]


def test_unknown_outcome_then_lookup_creates_exactly_one(conn: Conn) -> None:
    conn.faults(timeout_rate=1.0, hang_s=3)
    slow = conn.build(timeout=1.0)
    c = customer("cus_hang", "Hang Ten Builders")
    with pytest.raises(UnknownOutcome):
        slow.upsert_customer(c, None, W("h1"))
    conn.faults()
    # Within Xero's 6 minutes the same key replays the stored answer ...
    replayed = conn.adapter.upsert_customer(c, None, W("h1"))
    # ... and after them the lookup by ContactNumber finds the record.
    adopted = conn.adapter.upsert_customer(c, None, W("h1", unknown=True))
    assert adopted.id == replayed.id
    contacts = conn.books()["Contacts"]
    assert [x["ContactNumber"] for x in contacts] == ["cus_hang"]


def test_token_refresh_after_401(conn: Conn) -> None:
    a = conn.adapter
    a.upsert_customer(customer("cus_t", "Token Co"), None, W("t1"))
    r = conn.sim.post(f"/_sandbox/tokens/{conn.tenant}/expire")
    assert r.status_code == 200 and r.json()["expired"] >= 1
    assert [c.display_name for c in a.list_customers()] == ["Token Co"]
    assert conn.store.refreshes == 1


def test_unconnected_tenant_is_permission_denied(conn: Conn) -> None:
    other = conn.build(tenant_header=str(uuid.uuid4()))
    with pytest.raises(PermanentProviderError) as err:
        other.list_customers()
    assert err.value.code is ErrorCode.PERMISSION_DENIED


# -- items ------------------------------------------------------------------------------


def test_items_codes_names_and_accounts(conn: Conn) -> None:
    a = conn.adapter
    short = a.upsert_item(Item("itm_1", "Copper pipe", "CP-15", "15 mm copper",
                               Decimal("12.3456"), taxable=True), "200", None, W("it1"))
    long_sku = Item("itm_2", "A very long item name that Xero cannot hold in fifty chars",
                    "SKU-" + "9" * 40, None, Decimal("3"))
    generated = a.upsert_item(long_sku, None, None, W("it2"))
    items = {i["ItemID"]: i for i in conn.books()["Items"]}
    assert items[short.id]["Code"] == "CP-15"
    # A taxable item takes its sales account's default tax type (NZ: OUTPUT2).
    assert items[short.id]["SalesDetails"] == {"UnitPrice": 12.3456, "AccountCode": "200"}
    code = items[generated.id]["Code"]
    assert code == translate.item_code(long_sku) and code.startswith("BC-") and len(code) == 30
    assert items[generated.id]["Name"] == long_sku.name[:50]
    # update through the link; after an unknown outcome, adopt by Code
    a.upsert_item(dataclasses.replace(long_sku, unit_price=Decimal("4.5")), "260", generated,
                  W("it3"))
    again = a.upsert_item(long_sku, "260", None, W("it2", unknown=True))
    assert again.id == generated.id
    remote = {r.id: r for r in a.list_items()}
    assert len(remote) == 2
    assert remote[generated.id].income_account_id == "260"
    assert remote[short.id].sku == "CP-15" and remote[short.id].unit_price == D("12.3456")


def test_item_with_unknown_account_is_validation_failed(conn: Conn) -> None:
    with pytest.raises(PermanentProviderError) as err:
        conn.adapter.upsert_item(Item("itm_x", "Widget"), "999", None, W("bad"))
    assert err.value.code is ErrorCode.VALIDATION_FAILED
    assert "999" in str(err.value)


# -- invoices ---------------------------------------------------------------------------


def _invoice(number: str, mode: str, lines: list[tuple[str, str, str, str, str]],
             currency: str = "NZD", status: str = "open") -> Invoice:
    return build_invoice(f"inv_{number}", "cus_1", number, currency, mode,  # type: ignore[arg-type]
                         lines, status=status)


LINES = [("itm_labor", "2.5", "85.50", "10", "15"),
         ("itm_parts", "3", "19.99", "12.5", "8.25"),
         ("itm_parts", "1.3333", "7.1234", "0", "0"),
         ("itm_labor", "7", "0.333", "33.33", "15")]


@pytest.mark.parametrize("mode", ["exclusive", "inclusive", "none"])
def test_invoice_totals_match_blueclerk_to_the_cent(conn: Conn, mode: str) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice(f"BC-{mode}", mode, LINES)
    rec = a.upsert_invoice(inv, cust, items, None, W(f"inv-{mode}"))
    assert rec.total == inv.total
    stored = conn.invoice(rec.id)
    assert stored["Status"] == "AUTHORISED"
    assert stored["InvoiceNumber"] == f"BC-{mode}"
    assert stored["LineAmountTypes"] == {"exclusive": "Exclusive", "inclusive": "Inclusive",
                                         "none": "NoTax"}[mode]
    assert (D(stored["SubTotal"]), D(stored["TotalTax"]), D(stored["Total"])) == (
        inv.subtotal, inv.tax_total, inv.total)
    assert [D(li["LineAmount"]) for li in stored["LineItems"]] == [li.amount for li in inv.lines]
    assert [li["AccountCode"] for li in stored["LineItems"]] == ["200", "260", "260", "200"]
    assert [li["ItemCode"] for li in stored["LineItems"]][:2] == ["LAB-1",
                                                                 translate.item_code(
                                                                     Item("itm_parts", "P"))]


def test_invoice_in_jpy_falls_back_to_line_amounts(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("JPY-1", "exclusive", [("itm_labor", "3", "333.5", "0", "10"),
                                          ("itm_parts", "1", "1000", "5", "0")], "JPY")
    rec = a.upsert_invoice(inv, cust, items, None, W("jpy"))
    assert rec.total == inv.total == D("2051")


def test_invoice_total_mismatch_is_raised(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("MIS-1", "exclusive", LINES)
    wrong = dataclasses.replace(inv, total=inv.total + Decimal("0.01"))
    with pytest.raises(TotalMismatch) as err:
        a.upsert_invoice(wrong, cust, items, None, W("mis"))
    assert err.value.ours == wrong.total and err.value.theirs == inv.total
    assert err.value.code is ErrorCode.TOTAL_MISMATCH


def test_invoice_update_and_adopt_after_unknown_outcome(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("UPD-1", "exclusive", LINES[:1])
    rec = a.upsert_invoice(inv, cust, items, None, W("u1"))
    bigger = _invoice("UPD-1", "exclusive", LINES[:2])
    rec2 = a.upsert_invoice(bigger, cust, items, rec, W("u2"))
    assert rec2.id == rec.id and rec2.total == bigger.total
    rec3 = a.upsert_invoice(bigger, cust, items, None, W("u1", unknown=True))
    assert rec3.id == rec.id
    assert len(conn.books()["Invoices"]) == 1


def test_payments_partial_then_full_and_void(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("PAY-1", "exclusive", LINES[:2])
    rec = a.upsert_invoice(inv, cust, items, None, W("p-inv"))
    part = Payment("pay_1", inv.id, "cus_1", Decimal("100.00"), "NZD", dt.date(2026, 11, 5),
                   reference="chq 12")
    p1 = a.record_payment(part, rec, cust, None, W("p1"))
    assert p1.total == Decimal("100.00")
    stored = conn.invoice(rec.id)
    assert stored["Status"] == "AUTHORISED"
    assert D(stored["AmountDue"]) == inv.total - Decimal("100.00")
    assert stored["Payments"][0]["Reference"] == "chq 12 BC-pay_1"
    # a retry after an unknown outcome finds the payment by its reference
    assert a.record_payment(part, rec, cust, None, W("p1-x", unknown=True)).id == p1.id
    # a payment already linked with the same amount is left alone
    assert a.record_payment(part, rec, cust, p1, W("p1-y")) == p1
    rest = Payment("pay_2", inv.id, "cus_1", inv.total - Decimal("100.00"), "NZD",
                   dt.date(2026, 11, 6))
    a.record_payment(rest, rec, cust, None, W("p2"))
    stored = conn.invoice(rec.id)
    assert stored["Status"] == "PAID" and D(stored["AmountDue"]) == 0
    assert len(conn.books()["Payments"]) == 2
    # a paid invoice cannot be voided
    with pytest.raises(PermanentProviderError):
        a.void_invoice(inv, rec, W("p-void"))


def test_payment_amount_change_replaces_the_payment(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("PAY-2", "exclusive", LINES[:1])
    rec = a.upsert_invoice(inv, cust, items, None, W("inv"))
    pay = Payment("pay_9", inv.id, "cus_1", Decimal("50"), "NZD", dt.date(2026, 11, 5))
    p1 = a.record_payment(pay, rec, cust, None, W("p1"))
    p2 = a.record_payment(dataclasses.replace(pay, amount=Decimal("60")), rec, cust, p1,
                          W("p2"))
    assert p2.id != p1.id and p2.total == Decimal("60")
    stored = conn.invoice(rec.id)
    assert [D(p["Amount"]) for p in stored["Payments"]] == [Decimal("60")]


def test_void_authorised_and_delete_draft(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("VOID-1", "exclusive", LINES[:1])
    rec = a.upsert_invoice(inv, cust, items, None, W("v-inv"))
    voided = a.void_invoice(inv, rec, W("v1"))
    assert voided.id == rec.id
    assert conn.invoice(rec.id)["Status"] == "VOIDED"
    assert a.void_invoice(inv, rec, W("v2")).id == rec.id  # already voided: no-op
    draft = _invoice("DRAFT-1", "exclusive", LINES[:1], status="draft")
    drec = a.upsert_invoice(draft, cust, items, None, W("d-inv"))
    assert conn.invoice(drec.id)["Status"] == "DRAFT"
    a.void_invoice(draft, drec, W("d1"))
    assert conn.invoice(drec.id)["Status"] == "DELETED"


# -- lists and changes ------------------------------------------------------------------


def test_income_accounts_and_paging(conn: Conn) -> None:
    a = conn.adapter
    accounts = a.list_income_accounts()
    assert [(x.id, x.code) for x in accounts] == [("200", "200"), ("260", "260"),
                                                   ("270", "270")]
    assert accounts[0].name == "Sales"
    seed = {"Contacts": [{"Name": f"Seeded {n:03d}", "ContactNumber": f"s{n}"}
                         for n in range(205)]}
    assert conn.sim.post(f"/_sandbox/seed/{conn.tenant}", json=seed).status_code == 200
    remote = a.list_customers()
    assert len(remote) == 205 and len({r.id for r in remote}) == 205


def test_fetch_changes(conn: Conn) -> None:
    a = conn.adapter
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("CHG-1", "exclusive", LINES[:1])
    rec = a.upsert_invoice(inv, cust, items, None, W("inv"))
    pay = a.record_payment(Payment("pay_c", inv.id, "cus_1", Decimal("10"), "NZD",
                                   dt.date(2026, 11, 5)), rec, cust, None, W("pay"))
    changes = a.fetch_changes(since)
    seen = {(c.entity_type, c.provider_id) for c in changes}
    assert {("customer", cust.id), ("invoice", rec.id), ("payment", pay.id),
            *{("item", r.id) for r in items.values()}} <= seen
    assert all(c.changed_at >= since.replace(microsecond=0) for c in changes)
    assert changes == sorted(changes, key=lambda c: c.changed_at)
    assert a.fetch_changes(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) == []
    # a voided invoice comes back as "voided"
    time.sleep(1.1)
    later = dt.datetime.now(dt.UTC)
    inv2 = _invoice("CHG-2", "exclusive", LINES[:1])
    rec2 = a.upsert_invoice(inv2, cust, items, None, W("inv2"))
    a.void_invoice(inv2, rec2, W("void2"))
    ops = {(c.entity_type, c.provider_id): c.operation for c in a.fetch_changes(later)}
    assert ops[("invoice", rec2.id)] == "voided"
    assert ("invoice", rec.id) not in ops


# -- throttling -------------------------------------------------------------------------


def test_day_limit_is_throttled_with_day_scope(sim: httpx.Client) -> None:
    limits = XeroLimits(per_minute=100000, app_per_minute=1000000, per_day=3, concurrent=50)
    with serve_in_thread(create_app(limits=limits)) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        conn = Conn(url, client)
        for _ in range(3):
            conn.adapter.list_income_accounts()
        with pytest.raises(Throttled) as err:
            conn.adapter.list_income_accounts()
    assert err.value.scope == "day"
    assert err.value.retry_after is not None and err.value.retry_after > 3600
    assert err.value.code is ErrorCode.THROTTLED


def test_minute_throttle_fault(conn: Conn) -> None:
    conn.faults(throttle_burst=1)
    with pytest.raises(Throttled) as err:
        conn.adapter.list_items()
    assert err.value.scope == "minute" and err.value.retry_after == 1.0
    assert conn.adapter.list_items() == []


def test_offline_is_transient(conn: Conn) -> None:
    conn.faults(error_rate=1.0)
    with pytest.raises(TransientProviderError) as err:
        conn.adapter.list_items()
    assert err.value.transient and err.value.status == 503


# -- fidelity: due dates, line amounts, totals, unmapped items, 5xx after apply ----------


def test_invoice_without_due_date_is_sent_due_on_issue(conn: Conn) -> None:
    """Xero refuses an AUTHORISED invoice without DueDate when the organisation has no
    default terms; BlueClerk's invoice has none, so it is due on its issue date."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = dataclasses.replace(_invoice("DUE-1", "exclusive", LINES[:1]), due_date=None)
    rec = a.upsert_invoice(inv, cust, items, None, W("due"))
    stored = conn.invoice(rec.id)
    assert stored["Status"] == "AUTHORISED"
    assert stored["DueDateString"].startswith(inv.issue_date.isoformat())


def test_kwd_fils_are_refused_before_anything_is_written(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(currency="KWD"), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("KWD-1", "none", [("itm_parts", "1", "12.603", "0", "0"),
                                     ("itm_parts", "2", "6.3015", "0", "0")], "KWD")
    assert inv.total == D("25.206")
    with pytest.raises(TotalMismatch) as err:
        a.upsert_invoice(inv, cust, items, None, W("kwd"))
    assert err.value.code is ErrorCode.TOTAL_MISMATCH
    assert "25.206 KWD" in str(err.value) and "25.200 KWD" in str(err.value)
    assert "nothing was written" in str(err.value)
    assert "25.2060" not in str(err.value)
    assert conn.books()["Invoices"] == []


def test_line_amount_sent_always_agrees_with_xero(conn: Conn) -> None:
    """JPY line 3 x 333.5 = 1000.5 -> BlueClerk 1001: sent as 1 x 1001 with LineAmount 1001
    (Xero's arithmetic), accepted by the simulator's LineAmount check."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("JPY-2", "none", [("itm_parts", "3", "333.5", "0", "0")], "JPY")
    rec = a.upsert_invoice(inv, cust, items, None, W("jpy2"))
    line = conn.invoice(rec.id)["LineItems"][0]
    assert (line["Quantity"], line["UnitAmount"], line["LineAmount"]) == (1, 1001, 1001)


def test_tax_computed_by_xero_is_drafted_compared_then_authorised(conn: Conn) -> None:
    """Xero computes the tax of a taxed line (no TaxAmount sent): drafted, its figures
    compared with BlueClerk's, then authorised."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("TAX-OK", "exclusive", [("itm_labor", "2", "100", "0", "15")])
    rec = a.upsert_invoice(inv, cust, items, None, W("tax-ok"))
    stored = conn.invoice(rec.id)
    assert stored["Status"] == "AUTHORISED" and D(stored["Total"]) == inv.total == D("230")
    assert stored["LineItems"][0]["TaxType"] == "OUTPUT2"


def test_mapped_rate_taxing_differently_is_refused_before_writing(conn: Conn) -> None:
    """BlueClerk 8.25 % mapped to Xero's 15 % OUTPUT2: the line, BlueClerk's tax and the
    tax Xero would compute are named, in the currency's precision; nothing is written."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("TAX-MAP", "exclusive", [("itm_parts", "1", "40", "0", "0"),
                                            ("itm_parts", "1", "100", "0", "8.25")])
    wrong = {"rate:8.25": ProviderTaxRate("OUTPUT2", "15% GST on Income", D(15))}
    with pytest.raises(XeroTaxMismatch) as err:
        a.upsert_invoice(inv, cust, items, None, W("tax-map"), taxes=wrong)
    text = str(err.value)
    assert "line 2 (1 x itm_parts)" in text and "line 1" not in text
    assert "tax 8.25 NZD" in text and "Xero's tax would be 15.00 NZD" in text
    assert "OUTPUT2 (15% GST on Income) is 15%" in text and "Nothing was written" in text
    assert err.value.code is ErrorCode.TOTAL_MISMATCH
    assert err.value.theirs == D("155.00") and err.value.ours == D("148.25")
    assert conn.books()["Invoices"] == []


def test_rate_edited_in_xero_after_the_write_check_leaves_nothing_live(conn: Conn) -> None:
    """The organisation's TAX001 goes from 8.25 % to 9 % after the adapter read it: the
    draft Xero computed differs on line 1; it is deleted and the error names the line
    with both figures."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("TAX-BAD", "exclusive", [("itm_parts", "1", "100", "0", "8.25")])
    taxes = auto_taxes(a, inv)  # reads TAX001 at 8.25 % (kept for a minute)
    conn.seed({"TaxRates": [{"TaxType": "TAX001", "EffectiveRate": "9"}]})
    with pytest.raises(TotalMismatch) as err:
        a.upsert_invoice(inv, cust, items, None, W("tax-bad"), taxes=taxes)
    text = str(err.value)
    assert "108.25 NZD" in text and "109.00 NZD" in text
    assert "line 1 (1 x itm_parts): tax BlueClerk 8.25 NZD, Xero 9.00 NZD" in text
    assert "deleted (Status DELETED)" in text
    assert [i["Status"] for i in conn.books()["Invoices"]] == ["DELETED"]
    assert err.value.provider_id


def test_rate_edited_in_xero_and_blueclerk_is_read_again_and_lands(conn: Conn) -> None:
    """Both sides moved TAX001 to 9 %: the adapter's remembered 8.25 % disagrees, so it
    reads the organisation's rates again before refusing, and the invoice lands."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    a.list_tax_rates()
    conn.seed({"TaxRates": [{"TaxType": "TAX001", "EffectiveRate": "9"}]})
    inv = _invoice("TAX-9", "exclusive", [("itm_parts", "1", "100", "0", "9")])
    taxes = {"rate:9": ProviderTaxRate("TAX001", "Sales Tax", D("8.25"))}  # saved earlier
    rec = a.upsert_invoice(inv, cust, items, None, W("tax-9"), taxes=taxes)
    stored = conn.invoice(rec.id)
    assert (D(stored["TotalTax"]), D(stored["Total"])) == (D("9.00"), D("109.00"))


def test_taxed_line_without_a_tax_type_is_refused_before_writing(conn: Conn) -> None:
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("TAX-NONE", "exclusive", [("itm_parts", "1", "100", "0", "15")])
    with pytest.raises(PermanentProviderError) as err:
        XeroAdapter.upsert_invoice(a, inv, cust, items, None, W("tn"), taxes={})
    assert err.value.code is ErrorCode.UNMAPPED_TAX_RATE
    assert "line 1 (1 x itm_parts: 15%, rate:15)" in str(err.value)
    assert conn.books()["Invoices"] == []


@pytest.mark.parametrize("code", ["INPUT2", "NOSUCH"])
def test_mapped_type_not_usable_for_sales_is_refused_before_writing(conn: Conn,
                                                                    code: str) -> None:
    """A mapping to a purchases-only rate (INPUT2, CanApplyToRevenue false) or to a rate
    deleted since: Xero would refuse the line; the adapter says so first."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("TAX-IN", "exclusive", [("itm_parts", "1", "100", "0", "15")])
    with pytest.raises(XeroTaxMismatch) as err:
        a.upsert_invoice(inv, cust, items, None, W("ti"),
                         taxes={"rate:15": ProviderTaxRate(code, code, D(15))})
    assert f"Xero tax type {code} ({code}) is not one of the organisation's active tax " \
           "rates for sales" in str(err.value)
    assert conn.books()["Invoices"] == []


# (region, tax rates added, BlueClerk rates -> expected TaxType, untaxed TaxType in the books)
REGION_CASES = {
    "NZ": ({}, {"15": "OUTPUT2"}, "NONE"),
    "AU": ({}, {"10": "OUTPUT"}, "BASEXCLUDED"),
    "UK": ({}, {"20": "OUTPUT2", "5": "RROUTPUT"}, "NONE"),
    "US": ({"TaxRates": [{"Name": "State Sales Tax", "EffectiveRate": "8.25"},
                         {"Name": "City Sales Tax", "EffectiveRate": "10"}]},
           {"8.25": "TAX001", "10": "TAX002"}, "NONE"),
}


@pytest.mark.parametrize("mode", ["exclusive", "inclusive"])
@pytest.mark.parametrize("region", sorted(REGION_CASES))
def test_each_region_lands_on_its_own_tax_types(base: str, sim: httpx.Client, region: str,
                                                mode: str) -> None:
    """Per region, the automatically matched TaxType on each taxed line (two rates on one
    invoice where the region has two), NONE on the untaxed line (BASEXCLUDED once an AU
    organisation files it), and Xero's totals equal BlueClerk's to the cent."""
    extra, types, untaxed = REGION_CASES[region]
    conn = Conn(base, sim, seed={"Region": region, **extra})
    a = conn.adapter
    currency = {"NZ": "NZD", "AU": "AUD", "UK": "GBP", "US": "USD"}[region]
    cust = a.upsert_customer(customer(currency=currency), None, W("c"))
    items = setup_items(conn)
    lines = [("itm_labor", "2.5", "85.50", "10", rate) for rate in types]
    lines.append(("itm_parts", "3", "19.99", "0", "0"))
    inv = _invoice(f"{region}-{mode}", mode, lines, currency)
    rec = a.upsert_invoice(inv, cust, items, None, W("inv"))
    stored = conn.invoice(rec.id)
    assert stored["Status"] == "AUTHORISED" and stored["CurrencyCode"] == currency
    assert [li["TaxType"] for li in stored["LineItems"]] == [*types.values(), untaxed]
    assert (D(stored["SubTotal"]), D(stored["TotalTax"]), D(stored["Total"])) == (
        inv.subtotal, inv.tax_total, inv.total)


def test_jpy_tax_is_sent_in_yen(conn: Conn) -> None:
    """JPY: Xero's 2 dp tax would carry sen (333.5 x 3 = 1001 at 10 % -> 100.10), so the
    adapter sends BlueClerk's 100 as TaxAmount, having checked that Xero's own figure
    rounds to it in yen."""
    conn.seed({"TaxRates": [{"TaxType": "TAX002", "Name": "Consumption", "EffectiveRate": 10}]})
    a = conn.adapter
    cust = a.upsert_customer(customer(currency="JPY"), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("JPY-3", "exclusive", [("itm_labor", "3", "333.5", "0", "10")], "JPY")
    rec = a.upsert_invoice(inv, cust, items, None, W("jpy3"))
    line = conn.invoice(rec.id)["LineItems"][0]
    assert (line["TaxType"], line["TaxAmount"], line["LineAmount"]) == ("TAX002", 100, 1001)
    assert rec.total == inv.total == D("1101")


def test_two_blueclerk_rates_at_one_percent_keep_their_own_types(base: str,
                                                                 sim: httpx.Client) -> None:
    """UK: BlueClerk's "VAT" and "Hospitality VAT" are both 20 %; the user mapped them to
    OUTPUT2 and to a 20 % rate the organisation added (TAX001). Each line keeps its own
    type (the tax types are per BlueClerk rate, not per percent)."""
    conn = Conn(base, sim, seed={"Region": "UK", "TaxRates": [
        {"Name": "20% Hospitality (VAT on Income)", "EffectiveRate": 20}]})
    a = conn.adapter
    cust = a.upsert_customer(customer(currency="GBP"), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("UK-2X20", "exclusive", [("itm_labor", "1", "100", "0", "20"),
                                            ("itm_labor", "1", "50", "0", "20")], "GBP")
    inv = dataclasses.replace(inv, lines=tuple(
        dataclasses.replace(li, tax_rate_id=key) for li, key in
        zip(inv.lines, ("vat", "hosp"), strict=True)))
    taxes = {"vat": ProviderTaxRate("OUTPUT2", "20% (VAT on Income)", D(20)),
             "hosp": ProviderTaxRate("TAX001", "20% Hospitality (VAT on Income)", D(20))}
    rec = a.upsert_invoice(inv, cust, items, None, W("uk"), taxes=taxes)
    stored = conn.invoice(rec.id)
    assert [li["TaxType"] for li in stored["LineItems"]] == ["OUTPUT2", "TAX001"]
    assert (D(stored["TotalTax"]), D(stored["Total"])) == (D("30.00"), D("180.00"))
    assert isinstance(inv.lines[0], InvoiceLine)


def test_item_without_income_account_blocks_its_invoices(conn: Conn) -> None:
    """An item imported from the books with no SalesDetails.AccountCode: the invoice is
    refused with unmapped_item instead of posting to the default sales account."""
    a = conn.adapter
    r = conn.sim.post(f"/_sandbox/seed/{conn.tenant}", json={
        "Items": [{"Code": "NOACC", "Name": "No account", "SalesDetails": {"UnitPrice": 5}}]})
    assert r.status_code == 200, r.text
    imported = next(i for i in a.list_items() if i.sku == "NOACC")
    assert imported.income_account_id is None
    cust = a.upsert_customer(customer(), None, W("c"))
    inv = _invoice("UNM-1", "none", [("itm_imported", "1", "5", "0", "0")])
    with pytest.raises(PermanentProviderError) as err:
        a.upsert_invoice(inv, cust, {"itm_imported": ProviderRecord(imported.id)}, None,
                         W("unm"))
    assert err.value.code is ErrorCode.UNMAPPED_ITEM
    assert conn.books()["Invoices"] == []


@pytest.mark.parametrize("unknown", [False, True])
def test_create_answered_5xx_after_apply_then_retried_leaves_one(conn: Conn,
                                                                 unknown: bool) -> None:
    a = conn.adapter
    conn.faults(error_after_apply_rate=1.0)
    with pytest.raises(TransientProviderError):
        a.upsert_customer(customer(), None, W("c-5xx"))
    conn.faults()
    cust = a.upsert_customer(customer(), None, W("c-5xx", unknown=unknown))
    assert [c["ContactID"] for c in conn.books()["Contacts"]] == [cust.id]
    items = setup_items(conn)
    inv = _invoice("5XX-1", "exclusive", LINES[:1])
    conn.faults(error_after_apply_rate=1.0)
    with pytest.raises(TransientProviderError):
        a.upsert_invoice(inv, cust, items, None, W("inv-5xx"))
    conn.faults()
    rec = a.upsert_invoice(inv, cust, items, None, W("inv-5xx", unknown=unknown))
    assert [i["InvoiceID"] for i in conn.books()["Invoices"]] == [rec.id]
    pay = Payment("pay_5xx", inv.id, "cus_1", Decimal("10"), "NZD", dt.date(2026, 11, 3))
    conn.faults(error_after_apply_rate=1.0)
    with pytest.raises(TransientProviderError):
        a.record_payment(pay, rec, cust, None, W("pay-5xx"))
    conn.faults()
    a.record_payment(pay, rec, cust, None, W("pay-5xx", unknown=unknown))
    assert len(conn.books()["Payments"]) == 1


def test_one_intent_never_reuses_a_key_for_another_request(conn: Conn) -> None:
    """A retry after an unknown outcome may adopt a draft the first attempt created and,
    on a later retry, adopt it again once it was approved: two different bodies under one
    intent. Xero refuses a key reused with another body (X-idem, the simulator's rule), so
    each distinct request carries its own key; an exact repeat still replays (found by
    the chaos run: the adopting retry was refused, then "Invoice # must be unique")."""
    a = conn.adapter
    cust = a.upsert_customer(customer(), None, W("c"))
    items = setup_items(conn)
    inv = _invoice("ADOPT-2", "exclusive", [("itm_labor", "2", "100", "0", "15")])
    draft = {"Type": "ACCREC", "Contact": {"ContactID": cust.id}, "InvoiceNumber": "ADOPT-2",
             "Status": "DRAFT", "Date": "2026-11-02", "DueDate": "2026-12-02",
             "LineItems": [{"Description": "earlier attempt", "Quantity": 1,
                            "UnitAmount": 1, "AccountCode": "200", "TaxType": "NONE"}]}
    assert conn.sim.put("/api.xro/2.0/Invoices", json={"Invoices": [draft]},
                        headers={"xero-tenant-id": conn.tenant,
                                 "Authorization": f"Bearer {conn.store.current('').access_token}"}
                        ).status_code == 200
    first = a.upsert_invoice(inv, cust, items, None, W("adopt-2", unknown=True))
    again = a.upsert_invoice(inv, cust, items, None, W("adopt-2", unknown=True))
    assert again.id == first.id
    invoices = [i for i in conn.books()["Invoices"] if i["InvoiceNumber"] == "ADOPT-2"]
    assert len(invoices) == 1 and invoices[0]["Status"] == "AUTHORISED"
    assert D(invoices[0]["Total"]) == inv.total
