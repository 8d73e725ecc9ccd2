"""The five-step setup wizard through the control API, per provider, against the simulators.

Each walk connects through OAuth, seeds the provider's books and BlueClerk's own records
(snapshots), then imports, links, maps, sets and summarises, with a skipped step, a
closed wizard and a re-run in between; it checks links, mappings, settings, progress,
the inbound AccountingChangeEvents (outbox rows and the Kafka topic) and the books.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from fastapi.testclient import TestClient
from sqlalchemy import select

from control.oauth_flow import sandbox_consent
from sandbox.scenario import EventFactory
from schemas.codec import AvroCodec
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent, Customer, Item
from service.bootstrap import Services
from service.config import Topics
from state import repository as repo
from state.models import EntityLink, IncomeAccountMapping, OutboxMessage, ParkedEvent

TOKEN = "control-tests-token"  # tests/integration/control/conftest.py
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# (display name, given, family, company, email, phone)
CUSTOMERS = [
    ("Maria Rivera", "Maria", "Rivera", None, "maria.rivera@gmail.com"),
    ("Hillside Builders LLC", None, None, "Hillside Builders LLC", "office@hillsidebuild.com"),
    ("Ng Dental LLC", None, None, "Ng Dental LLC", "frontdesk@ngdental.com"),
    ("Jon Smith", "Jon", "Smith", None, "jsmith@example.com"),
]
# (name, sku, price)
ITEMS = [("Drain Cleaning", "DRN-1", "120.00"), ("Water Heater Install", "WHI-1", "450.00"),
         ("Service Call", "SVC-1", "89.00")]


def _tenant(provider: str) -> str:
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


def _seed_body(provider: str) -> dict[str, Any]:
    if provider == "quickbooks":
        return {
            "Customer": [{k: v for k, v in {
                "DisplayName": d, "GivenName": g, "FamilyName": f, "CompanyName": c,
                "PrimaryEmailAddr": {"Address": e}}.items() if v}
                for d, g, f, c, e in CUSTOMERS],
            "Item": [{"Name": n, "Sku": s, "Type": "Service", "UnitPrice": float(p),
                      "IncomeAccountRef": {"value": "1"}} for n, s, p in ITEMS]}
    if provider == "xero":
        return {
            "Contacts": [{k: v for k, v in {"Name": d, "FirstName": g, "LastName": f,
                                             "EmailAddress": e}.items() if v}
                         for d, g, f, _c, e in CUSTOMERS],
            "Items": [{"Code": s, "Name": n, "SalesDetails": {"UnitPrice": float(p),
                                                              "AccountCode": "200"}}
                      for n, s, p in ITEMS]}
    return {
        "clients": [{k: v for k, v in {"fname": g, "lname": f, "organization": c,
                                        "email": e}.items() if v}
                    for _d, g, f, c, e in CUSTOMERS],
        "items": [{"name": n, "sku": s, "unit_cost": {"amount": p, "code": "USD"}}
                  for n, s, p in ITEMS]}


def _provider_item(books: dict[str, Any], provider: str, provider_id: str
                   ) -> tuple[str, Decimal]:
    if provider == "quickbooks":
        row = next(i for i in books["Item"] if str(i["Id"]) == provider_id)
        return row["Name"], Decimal(str(row["UnitPrice"]))
    if provider == "xero":
        row = next(i for i in books["Items"] if i["ItemID"] == provider_id)
        return row["Name"], Decimal(str(row["SalesDetails"]["UnitPrice"]))
    row = next(i for i in books["items"] if str(i["id"]) == provider_id)
    return row["name"], Decimal(row["unit_cost"]["amount"])


def _item_names(books: dict[str, Any], provider: str) -> list[str]:
    rows = books.get({"quickbooks": "Item", "xero": "Items", "freshbooks": "items"}[provider])
    return [r.get("Name") or r.get("name") for r in rows or []]


def _customer_names(books: dict[str, Any], provider: str) -> list[str]:
    if provider == "quickbooks":
        return [c["DisplayName"] for c in books["Customer"]]
    if provider == "xero":
        return [c["Name"] for c in books["Contacts"]]
    return [c.get("organization") or f"{c.get('fname')} {c.get('lname')}"
            for c in books["clients"]]


class World:
    """One BlueClerk account connected to one simulated provider, through the API."""

    def __init__(self, api: TestClient, services: Services, sandbox: str, provider: str,
                 topics: Topics) -> None:
        self.api, self.services, self.sandbox, self.provider = api, services, sandbox, provider
        self.topics = topics
        self.account = f"acct-{uuid.uuid4().hex[:10]}"
        self.tenant = _tenant(provider)
        self.codec = AvroCodec()

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.api.request(method, f"/v1/accounts/{self.account}{path}", headers=AUTH,
                             **kwargs)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def connect(self) -> None:
        start = self.call("POST", "/connection", json={"provider": self.provider})
        redirect = sandbox_consent(start["authorization_url"], tenant=self.tenant)
        r = self.api.get("/oauth/callback", params=redirect)
        assert r.status_code == 200, r.text

    def seed_provider(self) -> None:
        r = httpx.post(f"{self.sandbox}/{self.provider}/_sandbox/seed/{self.tenant}",
                       json=_seed_body(self.provider), timeout=10)
        assert r.status_code == 200, r.text

    def books(self) -> dict[str, Any]:
        r = httpx.get(f"{self.sandbox}/{self.provider}/_sandbox/books/{self.tenant}",
                      timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def payload(self, event: ChangeEvent) -> bytes:
        return self.codec.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))

    def existing(self, *records: Customer | Item) -> list[ChangeEvent]:
        """BlueClerk records created before the connection, as the engine keeps them."""
        factory = EventFactory(self.account, dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
        events = [factory.event(r) for r in records]
        with self.services.db.transaction() as s:
            for e in events:
                repo.save_snapshot(s, self.account, e.entity_type.value, e.entity_id,
                                   e.entity_version, self.payload(e), e.record_created_at)
        return events

    def process(self, event: ChangeEvent) -> str:
        engine = self.api.app.state.control.engine()  # type: ignore[attr-defined]
        result = engine.process(event, self.payload(event))
        return str(result.statuses[-1].status.value)

    def links(self, entity_type: str) -> dict[str, str]:
        with self.services.db.transaction() as s:
            rows = s.execute(select(EntityLink).where(
                EntityLink.account_id == self.account,
                EntityLink.entity_type == entity_type)).scalars()
            return {r.entity_id: r.provider_id for r in rows}

    def inbound_rows(self) -> list[dict[str, Any]]:
        with self.services.db.transaction() as s:
            rows = s.execute(select(OutboxMessage).where(
                OutboxMessage.account_id == self.account,
                OutboxMessage.topic_kind == "inbound").order_by(OutboxMessage.id)).scalars()
            return [{**self.codec.decode(r.value, "AccountingChangeEvent").value,
                     "_published": r.published_at is not None} for r in rows]


def _consume(bootstrap: str, topic: str, want: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < want and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = message.value()
            assert isinstance(value, bytes)
            values.append(value)
    finally:
        consumer.close()
    return values


@pytest.fixture
def services(control_services: Services) -> Services:
    return control_services


@pytest.fixture
def api(control_api: TestClient) -> TestClient:
    return control_api


@pytest.mark.parametrize("provider", ["quickbooks", "xero", "freshbooks"])
def test_wizard_walk(api: TestClient, services: Services, sandbox_url: str,
                     kafka_bootstrap: str, topics: Topics, provider: str) -> None:
    w = World(api, services, sandbox_url, provider, topics)
    w.connect()
    w.seed_provider()
    john = Customer(id="cust-js", display_name="John Smith", given_name="John",
                    family_name="Smith", email="jsmith@example.com", customer_type="Homeowner")
    service_call = Item(id="item-svc", name="Service Call", sku="SVC-1",
                        unit_price=Decimal("85.00"))
    gutter = Item(id="item-gutter", name="Gutter Guard", unit_price=Decimal("30.00"))
    w.existing(john, service_call, gutter)

    progress = w.call("GET", "/wizard")
    assert progress["next_step"] == "customers" and progress["runs"] == 0
    assert w.call("POST", "/wizard/start")["runs"] == 1

    # -- step 1: customers ---------------------------------------------------------------
    listed = w.call("GET", "/wizard/customers")
    rows = {r["display_name"]: r for r in listed["customers"]}
    assert set(rows) >= {c[0] for c in CUSTOMERS}
    for row in rows.values():
        assert row["suggested_type"] in ("Homeowner", "Business", "Builder")
        assert 0 <= row["confidence"] <= 1 and row["reasons"]
    assert rows["Hillside Builders LLC"]["suggested_type"] == "Builder"
    assert rows["Ng Dental LLC"]["suggested_type"] == "Business"
    dup = rows["Jon Smith"]["duplicates"]
    assert dup and dup[0]["blueclerk_id"] == "cust-js" and dup[0]["reasons"]
    assert any("mail" in reason.lower() for reason in dup[0]["reasons"])
    assert not rows["Ng Dental LLC"]["duplicates"]

    rivera, hillside, smith = (rows[n]["provider_id"] for n in
                               ("Maria Rivera", "Hillside Builders LLC", "Jon Smith"))
    selection = [{"provider_id": rivera, "customer_type": "Homeowner"},
                 {"provider_id": hillside},
                 {"provider_id": smith, "action": "link", "link_to": "cust-js"}]
    done = w.call("POST", "/wizard/customers/import", json={"selections": selection})
    assert {r["blueclerk_id"] for r in done["imported"]} == {
        f"imp-{provider}-{rivera}", f"imp-{provider}-{hillside}"}
    assert done["linked"] == [{"provider_id": smith, "blueclerk_id": "cust-js",
                               "customer_type": "Homeowner"}]
    assert w.links("customer") == {f"imp-{provider}-{rivera}": rivera,
                                   f"imp-{provider}-{hillside}": hillside, "cust-js": smith}
    # Importing again never creates twice.
    again = w.call("POST", "/wizard/customers/import", json={"selections": selection})
    assert again["imported"] == [] and again["linked"] == [] and len(again["unchanged"]) == 3
    assert len(w.inbound_rows()) == 3
    # A bad link target and an unknown record are refused with what to do.
    bad = w.call("POST", "/wizard/customers/import", status=404, json={"selections": [
        {"provider_id": rows["Ng Dental LLC"]["provider_id"], "action": "link",
         "link_to": "cust-nope"}]})
    assert bad["error"]["code"] == "unknown_customer"
    bad = w.call("POST", "/wizard/customers/import", status=422,
                 json={"selections": [{"provider_id": rivera, "customer_type": "Alien"}]})
    assert bad["error"]["code"] == "invalid_request"

    # Close the wizard, come back later: progress is kept.
    closed = w.call("POST", "/wizard/close")
    assert closed["closed"] is True and closed["steps"]["customers"] == "done"
    assert w.call("GET", "/wizard")["next_step"] == "items"

    # -- step 2: skip it, re-run the wizard, then do it ----------------------------------
    skipped = w.call("POST", "/wizard/steps/items/skip")
    assert skipped["steps"]["items"] == "skipped" and skipped["next_step"] == "accounts"
    rerun = w.call("POST", "/wizard/start")
    assert rerun["runs"] == 2 and rerun["closed"] is False
    assert rerun["steps"]["customers"] == "done" and rerun["steps"]["items"] == "skipped"

    items = {r["name"]: r for r in w.call("GET", "/wizard/items")["items"]}
    assert set(items) >= {i[0] for i in ITEMS}
    svc_match = items["Service Call"]["matches"]
    assert svc_match and svc_match[0]["blueclerk_id"] == "item-svc"
    assert any("SKU" in r or "name" in r for r in svc_match[0]["reasons"])
    drain, svc = items["Drain Cleaning"]["provider_id"], items["Service Call"]["provider_id"]
    done = w.call("POST", "/wizard/items/import", json={"selections": [
        {"provider_id": drain}, {"provider_id": svc, "action": "link", "link_to": "item-svc"}]})
    assert [r["blueclerk_id"] for r in done["imported"]] == [f"imp-{provider}-{drain}"]
    assert [r["blueclerk_id"] for r in done["linked"]] == ["item-svc"]
    assert w.links("item") == {f"imp-{provider}-{drain}": drain, "item-svc": svc}
    if provider != "freshbooks":  # the item's own income account becomes its mapping
        assert sorted(done["mapped_from_provider"]) == sorted(
            [f"imp-{provider}-{drain}", "item-svc"])
    assert w.call("GET", "/wizard")["steps"]["items"] == "done"

    # -- step 3: income accounts ---------------------------------------------------------
    # A new BlueClerk item arrives before it is mapped: it waits for its mapping.
    new_item = EventFactory(w.account).event(Item(id="item-pipe", name="Pipe Repair",
                                                  unit_price=Decimal("210.00")))
    parked = w.process(new_item)
    accounts = w.call("GET", "/wizard/income-accounts")
    if provider == "freshbooks":
        # FreshBooks items carry no income account: nothing waits, and step 3 says that
        # mappings do not apply instead of accepting them to no effect.
        assert parked == "synced"
        assert accounts["mappings_apply"] is False
        assert "FreshBooks items have no income account; mappings are not used" in \
            accounts["message"]
        assert accounts["unmapped"] == [] and accounts["income_accounts"] == []
        for method, path in (("PUT", "/mappings/item-pipe"),
                             ("POST", "/mappings/apply-to-unmapped")):
            refused = w.call(method, path, status=409, json={"income_account_id": "1"})
            assert refused["error"]["code"] == "mapping_not_applicable"
            assert (f"blueclerk-sync wizard skip --account {w.account} --step accounts"
                    in refused["error"]["message"])
        with services.db.transaction() as s:
            assert s.execute(select(IncomeAccountMapping).where(
                IncomeAccountMapping.account_id == w.account)).scalars().all() == []
        skipped = w.call("POST", "/wizard/steps/accounts/skip")
        assert skipped["steps"]["accounts"] == "skipped"
    else:
        assert accounts["mappings_apply"] is True
        assert len(accounts["income_accounts"]) >= 2
        first, second = (a["id"] for a in accounts["income_accounts"][:2])
        unmapped = {u["item_id"] for u in accounts["unmapped"]}
        assert {"item-gutter", "item-pipe"} <= unmapped
        assert parked == "waiting_dependency"
        with services.db.transaction() as s:
            assert s.execute(select(ParkedEvent).where(
                ParkedEvent.account_id == w.account,
                ParkedEvent.reason == "unmapped_item")).scalars().all()
        mapped = w.call("PUT", "/mappings/item-pipe", json={"income_account_id": first})
        assert mapped["mapped"] == ["item-pipe"]
        assert mapped["redriven"] == {"synced": 1}
        assert "Pipe Repair" in _item_names(w.books(), provider)
        bad = w.call("PUT", "/mappings/item-pipe", status=400,
                     json={"income_account_id": "no-such-account"})
        assert bad["error"]["code"] == "unknown_income_account"
        assert w.call("PUT", "/mappings/item-nope", status=404,
                      json={"income_account_id": first})["error"]["code"] == "unknown_item"
        applied = w.call("POST", "/mappings/apply-to-unmapped",
                         json={"income_account_id": first})
        assert "item-gutter" in applied["mapped"] and "item-pipe" not in applied["mapped"]
        assert w.call("GET", "/wizard/income-accounts")["unmapped"] == []
        # Change one mapping later.
        w.call("PUT", "/mappings/item-gutter", json={"income_account_id": second})
        with services.db.transaction() as s:
            row = s.get(IncomeAccountMapping, (w.account, "item-gutter"))
            assert row is not None and row.provider_account_id == second

    # -- step 4: settings (auto-sync off): changes wait for Sync Now ---------------------
    assert w.call("GET", "/settings")["auto_sync"] is True
    settings = w.call("PUT", "/settings", json={"auto_sync": False, "sync_payments": False})
    assert settings["auto_sync"] is False and settings["sync_payments"] is False
    assert settings["sync_customers"] is True
    bad = w.call("PUT", "/settings", status=422, json={"auto_sync": "maybe"})
    assert bad["error"]["code"] == "invalid_request"
    newcomer = EventFactory(w.account).customer("cust-new", "Avery Quinn Plumbing Client",
                                                email="avery@example.org")
    assert w.process(newcomer) == "pending_manual"
    assert "Avery Quinn Plumbing Client" not in _customer_names(w.books(), provider)
    status = w.call("GET", "/status")
    assert status["parked"].get("pending_manual") == 1

    # -- step 5: summary -----------------------------------------------------------------
    summary = w.call("GET", "/wizard/summary")
    assert {p["blueclerk_id"] for p in summary["customers"]["imported"]} == {
        f"imp-{provider}-{rivera}", f"imp-{provider}-{hillside}"}
    assert summary["customers"]["linked"] == [{"blueclerk_id": "cust-js",
                                               "provider_id": smith}]
    assert summary["items"]["imported"] == [{"blueclerk_id": f"imp-{provider}-{drain}",
                                             "provider_id": drain}]
    assert summary["items"]["linked"] == [{"blueclerk_id": "item-svc", "provider_id": svc}]
    if provider != "freshbooks":
        assert summary["unmapped"] == []
        assert {m["item_id"] for m in summary["mappings"]} >= {"item-pipe", "item-gutter"}
    else:
        assert summary["mappings"] == []
    assert summary["settings"]["auto_sync"] is False
    assert summary["progress"]["complete"] is True
    assert summary["progress"]["steps"] == {
        "customers": "done", "items": "done",
        "accounts": "skipped" if provider == "freshbooks" else "done", "settings": "done",
        "summary": "done"}

    # -- inbound events: outbox rows, published to the inbound topic ----------------------
    events = w.inbound_rows()
    assert len(events) == 5 and all(e["_published"] for e in events)
    by_entity = {(e["entity_type"], e["entity_id"]): e for e in events}
    rivera_event = by_entity["customer", f"imp-{provider}-{rivera}"]
    assert rivera_event["operation"] == "imported" and rivera_event["provider"] == provider
    assert rivera_event["provider_record_id"] == rivera
    assert rivera_event["customer"]["customer_type"] == "Homeowner"
    assert rivera_event["customer"]["id"] == f"imp-{provider}-{rivera}"
    hillside_event = by_entity["customer", f"imp-{provider}-{hillside}"]
    assert hillside_event["customer"]["customer_type"] == "Builder"
    assert by_entity["customer", "cust-js"]["operation"] == "linked"
    assert by_entity["item", "item-svc"]["operation"] == "linked"
    assert by_entity["item", "item-svc"]["item"]["name"] == "Service Call"
    assert by_entity["item", f"imp-{provider}-{drain}"]["item"]["unit_price"] == Decimal("120.0000")
    values = _consume(kafka_bootstrap, topics.inbound, 5)
    consumed = [AvroCodec().decode(v, "AccountingChangeEvent").value for v in values]
    assert sorted((e["entity_type"], e["entity_id"]) for e in consumed) == sorted(by_entity)

    # -- status; then auto-sync back on sends what waited ---------------------------------
    status = w.call("GET", "/status")
    assert status["health"] == "healthy" and status["last_sync_at"]
    assert status["counts_by_status"]["synced"] >= 1
    assert status["counts_by_status"]["pending_manual"] == 1
    assert status["parked"] == {"pending_manual": 1}
    back_on = w.call("PUT", "/settings", json={"auto_sync": True})
    assert back_on["redriven"] == {"synced": 1}
    assert "Avery Quinn Plumbing Client" in _customer_names(w.books(), provider)
    assert w.call("GET", "/status")["parked"] == {}
    # Re-running a completed wizard offers every step again and keeps what was done.
    rerun = w.call("POST", "/wizard/start")
    assert rerun["next_step"] == "customers" and rerun["counts"]["customers_imported"] == 2


@pytest.mark.parametrize("provider", ["quickbooks", "xero", "freshbooks"])
def test_linked_item_stays_in_sync(api: TestClient, services: Services, sandbox_url: str,
                                   topics: Topics, provider: str) -> None:
    """A BlueClerk item linked in step 2 is updated in the books by its next version."""
    w = World(api, services, sandbox_url, provider, topics)
    w.connect()
    w.seed_provider()
    (existing,) = w.existing(Item(id="item-svc", name="Service Call", sku="SVC-1",
                                  unit_price=Decimal("85.00")))
    svc = next(r["provider_id"] for r in w.call("GET", "/wizard/items")["items"]
               if r["name"] == "Service Call")
    w.call("POST", "/wizard/items/import", json={"selections": [
        {"provider_id": svc, "action": "link", "link_to": "item-svc"}]})
    if provider != "freshbooks":  # FreshBooks items have no income account to map
        w.call("POST", "/mappings/apply-to-unmapped",
               json={"income_account_id": w.call("GET", "/wizard/income-accounts")
                     ["income_accounts"][0]["id"]})
    update = EventFactory(w.account, existing.record_created_at).event(
        Item(id="item-svc", name="Service Call", sku="SVC-1", unit_price=Decimal("95.00")),
        version=2)
    assert w.process(update) == "synced"
    assert _provider_item(w.books(), provider, svc) == ("Service Call", Decimal("95.00"))
    assert _item_names(w.books(), provider).count("Service Call") == 1


@pytest.mark.parametrize("provider", ["quickbooks", "freshbooks"])
def test_sync_now(api: TestClient, services: Services, sandbox_url: str, topics: Topics,
                  provider: str) -> None:
    """With auto-sync off, changes wait; Sync Now sends them in order."""
    w = World(api, services, sandbox_url, provider, topics)
    w.connect()
    w.call("PUT", "/settings", json={"auto_sync": False})
    factory = EventFactory(w.account)
    first = factory.customer("cust-a", "Sync Now Customer A")
    second = factory.customer("cust-a", "Sync Now Customer A2")
    assert [w.process(first), w.process(second)] == ["pending_manual", "pending_manual"]
    synced = w.call("POST", "/sync-now")
    assert synced["results"] == {"synced": 2} and synced["still_waiting"] == 0
    names = _customer_names(w.books(), provider)
    assert "Sync Now Customer A2" in names and "Sync Now Customer A" not in names


def test_duplicates_read_phones_in_the_company_country(
        api: TestClient, services: Services, sandbox_url: str, kafka_bootstrap: str,
        topics: Topics) -> None:
    """A UK Xero organisation: its contacts' addresses say GB, so a BlueClerk customer's
    national "020 7946 0958" is read as the London number the contact writes as
    "+44 20 7946 0958" (read as US, it would be a different number and no likely match)."""
    w = World(api, services, sandbox_url, "xero", topics)
    w.connect()
    uk_street = {"AddressType": "STREET", "City": "London", "Country": "GB"}
    contacts = [
        {"Name": "Eleanor Voss", "FirstName": "Eleanor", "LastName": "Voss",
         "Phones": [{"PhoneType": "DEFAULT", "PhoneCountryCode": "44",
                     "PhoneAreaCode": "20", "PhoneNumber": "7946 0958"}],
         "Addresses": [dict(uk_street, AddressLine1="4 Elm Row", PostalCode="NW3 1AA")]},
        {"Name": "Harrow Road Dental", "Addresses": [dict(uk_street, PostalCode="W9 3RJ")]},
    ]
    r = httpx.post(f"{sandbox_url}/xero/_sandbox/seed/{w.tenant}",
                   json={"Contacts": contacts}, timeout=10)
    assert r.status_code == 200, r.text
    voss = Customer(id="cust-voss", display_name="E. Voss", phone="020 7946 0958",
                    customer_type="Homeowner")
    w.existing(voss)

    rows = {r["display_name"]: r for r in w.call("GET", "/wizard/customers")["customers"]}
    dup = rows["Eleanor Voss"]["duplicates"]
    assert [(d["blueclerk_id"], d["tier"]) for d in dup] == [("cust-voss", "likely")]
    assert any("+44 20 7946 0958" in reason for reason in dup[0]["reasons"])
