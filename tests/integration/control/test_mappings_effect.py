"""Income-account mappings have an effect in the books, or say that they cannot (issue 9,
"No silent wrong books"), through the control API against the provider simulators.

- An item imported from Xero without an income account blocks its invoices with
  `unmapped_item` (waiting, nothing written), and saving its mapping first gives the Xero
  item the account (`SalesDetails.AccountCode`), then posts the invoice on that account.
- Changing the mapping of an item linked to a provider item changes the item's account in
  the books (QuickBooks `IncomeAccountRef`, Xero `SalesDetails.AccountCode`).
- FreshBooks items have no income account: step 3 says so and refuses mappings.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from control.oauth_flow import sandbox_consent
from sandbox.scenario import EventFactory, build_invoice
from schemas.codec import AvroCodec
from schemas.error_codes import ErrorCode
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent
from schemas.status import SyncStatus, SyncStatusEvent
from service.bootstrap import Services
from state.models import IncomeAccountMapping, ParkedEvent

TOKEN = "control-tests-token"  # tests/integration/control/conftest.py
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _tenant(provider: str) -> str:
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


class Account:
    """One BlueClerk account connected to one simulated provider, through the API."""

    def __init__(self, api: TestClient, services: Services, sandbox: str,
                 provider: str) -> None:
        self.api, self.services, self.sandbox, self.provider = api, services, sandbox, provider
        self.id = f"acct-{uuid.uuid4().hex[:10]}"
        self.tenant = _tenant(provider)
        self.codec = AvroCodec()
        self.events = EventFactory(self.id)
        start = self.call("POST", "/connection", json={"provider": provider})
        redirect = sandbox_consent(start["authorization_url"], tenant=self.tenant)
        r = api.get("/oauth/callback", params=redirect)
        assert r.status_code == 200, r.text

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.api.request(method, f"/v1/accounts/{self.id}{path}", headers=AUTH, **kwargs)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def seed(self, body: dict[str, Any]) -> None:
        r = httpx.post(f"{self.sandbox}/{self.provider}/_sandbox/seed/{self.tenant}",
                       json=body, timeout=10)
        assert r.status_code == 200, r.text

    def books(self) -> dict[str, Any]:
        r = httpx.get(f"{self.sandbox}/{self.provider}/_sandbox/books/{self.tenant}",
                      timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def process(self, event: ChangeEvent) -> SyncStatusEvent:
        engine = self.api.app.state.control.engine()  # type: ignore[attr-defined]
        payload = self.codec.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))
        result = engine.process(event, payload)
        status: SyncStatusEvent = result.statuses[-1]
        return status

    def import_item(self, name: str) -> tuple[str, str]:
        """Step 2: import the provider item called `name`; (BlueClerk id, provider id)."""
        listed = self.call("GET", "/wizard/items")["items"]
        provider_id = next(r["provider_id"] for r in listed if r["name"] == name)
        done = self.call("POST", "/wizard/items/import",
                         json={"selections": [{"provider_id": provider_id}]})
        (imported,) = done["imported"]
        return imported["blueclerk_id"], provider_id

    def parked(self) -> list[ParkedEvent]:
        with self.services.db.transaction() as s:
            return list(s.execute(select(ParkedEvent).where(
                ParkedEvent.account_id == self.id)).scalars())

    def mappings(self) -> dict[str, str]:
        with self.services.db.transaction() as s:
            return {m.item_id: m.provider_account_id for m in s.execute(
                select(IncomeAccountMapping).where(
                    IncomeAccountMapping.account_id == self.id)).scalars()}


@pytest.fixture
def services(control_services: Services) -> Services:
    return control_services


@pytest.fixture
def api(control_api: TestClient) -> TestClient:
    return control_api


def _xero_item(books: dict[str, Any], item_id: str) -> dict[str, Any]:
    row: dict[str, Any] = next(i for i in books["Items"] if i["ItemID"] == item_id)
    return row


def test_xero_item_imported_without_account_blocks_its_invoice_until_mapped(
        api: TestClient, services: Services, sandbox_url: str) -> None:
    acct = Account(api, services, sandbox_url, "xero")
    acct.seed({"Items": [{"Code": "ROOF-INSP", "Name": "Roof Inspection",
                          "SalesDetails": {"UnitPrice": 150}}]})
    item_id, xero_item = acct.import_item("Roof Inspection")
    assert "AccountCode" not in (_xero_item(acct.books(), xero_item).get("SalesDetails") or {})
    assert acct.mappings() == {}

    customer = acct.process(acct.events.customer("cust-roof", "Hilltop Roofing Client"))
    assert customer.status is SyncStatus.SYNCED
    invoice = build_invoice("inv-roof", "cust-roof", "MAP-1001", "NZD", "none",
                            [(item_id, "2", "150", "0", "0")])
    waiting = acct.process(acct.events.event(invoice))
    # Waits for the mapping, not failed; nothing was written to Xero.
    assert (waiting.status, waiting.error_code) == (
        SyncStatus.WAITING_DEPENDENCY, ErrorCode.UNMAPPED_ITEM)
    assert waiting.message is not None
    assert f"blueclerk-sync wizard map --account {acct.id} --item {item_id}" in waiting.message
    assert f"/v1/accounts/{acct.id}/mappings/{item_id}" in waiting.message
    assert [(p.entity_type, p.reason, p.waits_for) for p in acct.parked()] == [
        ("invoice", "unmapped_item", f"mapping:{item_id}")]
    assert acct.books()["Invoices"] == []
    status = acct.call("GET", "/status")
    assert status["parked"] == {"unmapped_item": 1}

    step3 = acct.call("GET", "/wizard/income-accounts")
    assert step3["mappings_apply"] is True
    assert item_id in {u["item_id"] for u in step3["unmapped"]}
    # Not Xero's default sales account (200): the line must carry the mapped one.
    account = next(a["id"] for a in step3["income_accounts"] if a["id"] != "200")

    mapped = acct.call("PUT", f"/mappings/{item_id}", json={"income_account_id": account})
    assert mapped["mapped"] == [item_id]
    assert mapped["redriven"] == {"synced": 1}
    books = acct.books()
    assert _xero_item(books, xero_item)["SalesDetails"]["AccountCode"] == account
    assert _xero_item(books, xero_item)["Code"] == "ROOF-INSP"
    assert len(books["Items"]) == 1
    (posted,) = books["Invoices"]
    assert posted["InvoiceNumber"] == "MAP-1001"
    assert [(li.get("ItemCode"), li["AccountCode"]) for li in posted["LineItems"]] == [
        ("ROOF-INSP", account)]
    assert Decimal(str(posted["Total"])) == invoice.total
    assert acct.parked() == []
    assert acct.mappings() == {item_id: account}

    # The next invoice using the item goes straight through on the same account.
    later = build_invoice("inv-roof-2", "cust-roof", "MAP-1002", "NZD", "none",
                          [(item_id, "1", "150", "0", "0")])
    assert acct.process(acct.events.event(later)).status is SyncStatus.SYNCED
    lines = [li["AccountCode"] for inv in acct.books()["Invoices"] for li in inv["LineItems"]]
    assert lines == [account, account]


@pytest.mark.parametrize("provider", ["quickbooks", "xero"])
def test_changing_the_mapping_of_a_linked_item_changes_its_account_in_the_books(
        api: TestClient, services: Services, sandbox_url: str, provider: str) -> None:
    acct = Account(api, services, sandbox_url, provider)
    if provider == "quickbooks":
        acct.seed({"Item": [{"Name": "Gutter Cleaning", "Sku": "GUT-1", "Type": "Service",
                             "UnitPrice": 95.0, "IncomeAccountRef": {"value": "1"}}]})
    else:
        acct.seed({"Items": [{"Code": "GUT-1", "Name": "Gutter Cleaning",
                              "SalesDetails": {"UnitPrice": 95, "AccountCode": "200"}}]})
    item_id, provider_item = acct.import_item("Gutter Cleaning")
    before = acct.mappings()[item_id]  # the item's own account became its mapping
    other = next(a["id"] for a in acct.call("GET", "/wizard/income-accounts")
                 ["income_accounts"] if a["id"] != before)

    acct.call("PUT", f"/mappings/{item_id}", json={"income_account_id": other})

    books = acct.books()
    if provider == "quickbooks":
        row = next(i for i in books["Item"] if str(i["Id"]) == provider_item)
        assert row["IncomeAccountRef"]["value"] == other
        assert (row["Name"], row.get("Sku")) == ("Gutter Cleaning", "GUT-1")
        assert len(books["Item"]) == 1
    else:
        row = _xero_item(books, provider_item)
        assert row["SalesDetails"]["AccountCode"] == other
        assert (row["Name"], row["Code"]) == ("Gutter Cleaning", "GUT-1")
        assert len(books["Items"]) == 1
    assert acct.mappings() == {item_id: other}


def test_freshbooks_step_3_says_mappings_do_not_apply_and_refuses_them(
        api: TestClient, services: Services, sandbox_url: str) -> None:
    acct = Account(api, services, sandbox_url, "freshbooks")
    acct.seed({"items": [{"name": "Window Washing", "sku": "WIN-1",
                          "unit_cost": {"amount": "60.00", "code": "USD"}}]})
    item_id, _ = acct.import_item("Window Washing")

    step3 = acct.call("GET", "/wizard/income-accounts")
    assert step3["mappings_apply"] is False
    assert "FreshBooks items have no income account; mappings are not used" in step3["message"]
    assert f"blueclerk-sync wizard skip --account {acct.id} --step accounts" in step3["message"]
    assert step3["unmapped"] == []

    for method, path in (("PUT", f"/mappings/{item_id}"),
                         ("POST", "/mappings/apply-to-unmapped")):
        refused = acct.call(method, path, status=409, json={"income_account_id": "1"})
        assert refused["error"]["code"] == "mapping_not_applicable"
        message = refused["error"]["message"]
        assert "FreshBooks items have no income account; mappings are not used" in message
        assert "Nothing is needed" in message
        assert f"blueclerk-sync wizard skip --account {acct.id} --step accounts" in message
    assert acct.mappings() == {}
    assert acct.call("GET", "/wizard")["steps"]["accounts"] != "done"
    skipped = acct.call("POST", "/wizard/steps/accounts/skip")
    assert skipped["steps"]["accounts"] == "skipped"


def test_a_mapping_the_books_refuse_is_not_saved_and_nothing_is_redriven(
        api: TestClient, services: Services, sandbox_url: str) -> None:
    """Xero answers the item update with a 5xx (the simulator fails every write): the mapping
    is not saved, the invoice keeps waiting, and saving again later goes through."""
    acct = Account(api, services, sandbox_url, "xero")
    acct.seed({"Items": [{"Code": "CHIM-1", "Name": "Chimney Sweep",
                          "SalesDetails": {"UnitPrice": 80}}]})
    item_id, xero_item = acct.import_item("Chimney Sweep")
    assert acct.process(acct.events.customer("cust-ch", "Chimney Client")).status \
        is SyncStatus.SYNCED
    invoice = build_invoice("inv-ch", "cust-ch", "MAP-2001", "NZD", "none",
                            [(item_id, "1", "80", "0", "0")])
    assert acct.process(acct.events.event(invoice)).error_code is ErrorCode.UNMAPPED_ITEM
    account = acct.call("GET", "/wizard/income-accounts")["income_accounts"][0]["id"]

    _faults(acct, error_after_apply_rate=1.0)
    try:
        refused = acct.call("PUT", f"/mappings/{item_id}", status=502,
                            json={"income_account_id": account})
    finally:
        _faults(acct)
    assert item_id in refused["error"]["message"]
    assert "no mapping was saved" in refused["error"]["message"]
    assert acct.mappings() == {}
    assert [p.reason for p in acct.parked()] == ["unmapped_item"]
    assert acct.books()["Invoices"] == []

    assert acct.call("PUT", f"/mappings/{item_id}",
                     json={"income_account_id": account})["redriven"] == {"synced": 1}
    assert _xero_item(acct.books(), xero_item)["SalesDetails"]["AccountCode"] == account
    assert [li["AccountCode"] for li in acct.books()["Invoices"][0]["LineItems"]] == [account]


def _faults(acct: Account, **rates: float) -> None:
    r = httpx.put(f"{acct.sandbox}/{acct.provider}/_sandbox/faults/{acct.tenant}",
                   json=rates, timeout=10)
    assert r.status_code == 200, r.text
