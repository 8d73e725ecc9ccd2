"""End to end on the real broker, for each provider: changes made in the books come back
complete and the same way from every provider.

BlueClerk's customer, item and invoices go through a worker process into the simulated
books. Then a person, in the accounting system, edits the customer's email and address
and the item's price, records a payment, voids (or deletes) an invoice and creates a
customer. A signed webhook triggers the poll; the AccountingChangeEvents are published to
the broker and read back from it. Every event carries the new values and the same
operation as on the other providers; a second poll and the same webhook again add
nothing; an edit made in the books the moment after our own write to the same record
comes back. Finally the example consumer (docs/accounting_changes_consumer.py) reads the
topic and applies the email and price changes to BlueClerk's side.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consumers.inbound import InboundPoller
from control import webhooks
from control.webhooks import WebhookSecrets
from producers.kafka import make_producer
from producers.outbox import OutboxPublisher
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, build_invoice, publish
from schemas.codec import AvroCodec
from schemas.records import Address, ChangeEvent, Customer, Item
from schemas.status import FINAL_STATUSES, SyncStatus, SyncStatusEvent
from service.bootstrap import Services, build_services
from service.config import Settings, Topics
from state.crypto import generate_key
from state.db import migrate
from state.models import IncomeAccountMapping

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PROVIDERS = ["quickbooks", "xero", "freshbooks"]
CURRENCY = {"quickbooks": "USD", "xero": "NZD", "freshbooks": "USD"}
QBO = {"minorversion": "75"}
SECRETS = WebhookSecrets("qbo-verifier-e2e", "xero-webhook-key-e2e", "fb-verifier-e2e")
NEW_ADDRESS = Address("48 Harbour Rd", None, "Springfield", "OR", "97477", "US")

Event = dict[str, Any]


def _tenant(provider: str) -> str:
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


class Books:
    """A person working in the accounting system: the provider's API, its own grant."""

    def __init__(self, sandbox: str, provider: str, tenant: str) -> None:
        self.provider = provider
        grant = httpx.post(f"{sandbox}/{provider}/_sandbox/grants", json={"tenant": tenant},
                           timeout=10)
        assert grant.status_code == 200, grant.text
        headers = {"Authorization": f"Bearer {grant.json()['access_token']}",
                   "Accept": "application/json"}
        base = {"quickbooks": f"{sandbox}/quickbooks/v3/company/{tenant}",
                "xero": f"{sandbox}/xero/api.xro/2.0",
                "freshbooks": f"{sandbox}/freshbooks/accounting/account/{tenant}"}[provider]
        if provider == "xero":
            headers["xero-tenant-id"] = tenant
        self.http = httpx.Client(base_url=base, headers=headers, timeout=10)

    def _ok(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, f"{response.request.url}: {response.text}"
        body: dict[str, Any] = response.json()
        return body

    def _qbo(self, entity: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
        row: dict[str, Any] = self._ok(self.http.post(
            f"/{entity.lower()}", json=body, params={**QBO, **params}))[entity]
        return row

    def _qbo_token(self, entity: str, pid: str) -> str:
        return str(self._ok(self.http.get(f"/{entity.lower()}/{pid}", params=QBO)
                            )[entity]["SyncToken"])

    def _xero(self, path: str, collection: str, element: dict[str, Any],
              method: str = "POST") -> dict[str, Any]:
        row: dict[str, Any] = self._ok(self.http.request(
            method, path, json={collection: [element]}))[collection][0]
        assert not row.get("ValidationErrors"), row
        return row

    def _fb(self, method: str, path: str, key: str, element: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = self._ok(self.http.request(
            method, path, json={key: element}))["response"]["result"][key]
        return row

    def create_customer(self, name: str) -> str:
        if self.provider == "quickbooks":
            return str(self._qbo("Customer", {"DisplayName": name})["Id"])
        if self.provider == "xero":
            return str(self._xero("/Contacts", "Contacts", {"Name": name}, "PUT")["ContactID"])
        return str(self._fb("POST", "/users/clients", "client", {"organization": name})["id"])

    def edit_contact(self, pid: str, *, email: str | None = None,
                     address: Address | None = None, phone: str | None = None) -> None:
        a = address
        if self.provider == "quickbooks":
            body: dict[str, Any] = {"Id": pid, "SyncToken": self._qbo_token("Customer", pid),
                                    "sparse": True}
            if email is not None:
                body["PrimaryEmailAddr"] = {"Address": email}
            if phone is not None:
                body["PrimaryPhone"] = {"FreeFormNumber": phone}
            if a is not None:
                body["BillAddr"] = {"Line1": a.line1, "City": a.city,
                                    "CountrySubDivisionCode": a.region,
                                    "PostalCode": a.postal_code, "Country": a.country}
            self._qbo("Customer", body)
        elif self.provider == "xero":
            element: dict[str, Any] = {"ContactID": pid}
            if email is not None:
                element["EmailAddress"] = email
            if phone is not None:
                element["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": phone}]
            if a is not None:
                element["Addresses"] = [{"AddressType": "POBOX", "AddressLine1": a.line1,
                                         "City": a.city, "Region": a.region,
                                         "PostalCode": a.postal_code, "Country": a.country}]
            self._xero(f"/Contacts/{pid}", "Contacts", element)
        else:
            fields: dict[str, Any] = {}
            if email is not None:
                fields["email"] = email
            if phone is not None:
                fields["bus_phone"] = phone
            if a is not None:
                fields.update(p_street=a.line1, p_city=a.city, p_province=a.region,
                              p_code=a.postal_code, p_country=a.country)
            self._fb("PUT", f"/users/clients/{pid}", "client", fields)

    def set_price(self, pid: str, price: str) -> None:
        if self.provider == "quickbooks":
            self._qbo("Item", {"Id": pid, "SyncToken": self._qbo_token("Item", pid),
                               "sparse": True, "UnitPrice": price})
        elif self.provider == "xero":
            current = self._ok(self.http.get(f"/Items/{pid}"))["Items"][0]
            sales = {**(current.get("SalesDetails") or {}), "UnitPrice": float(price)}
            self._xero(f"/Items/{pid}", "Items", {"Code": current["Code"],
                                                  "SalesDetails": sales})
        else:
            self._fb("PUT", f"/items/items/{pid}", "item",
                     {"unit_cost": {"amount": price, "code": CURRENCY["freshbooks"]}})

    def pay(self, invoice: str, customer: str, amount: str) -> str:
        if self.provider == "quickbooks":
            return str(self._qbo("Payment", {
                "CustomerRef": {"value": customer}, "TotalAmt": amount,
                "TxnDate": "2026-11-20",
                "Line": [{"Amount": amount,
                          "LinkedTxn": [{"TxnId": invoice, "TxnType": "Invoice"}]}]})["Id"])
        if self.provider == "xero":
            return str(self._xero("/Payments", "Payments", {
                "Invoice": {"InvoiceID": invoice}, "Account": {"Code": "090"},
                "Amount": float(amount), "Date": "2026-11-20"}, "PUT")["PaymentID"])
        return str(self._fb("POST", "/payments/payments", "payment", {
            "invoiceid": int(invoice), "amount": {"amount": amount}, "date": "2026-11-20",
            "type": "Check"})["id"])

    def void(self, invoice: str) -> None:
        if self.provider == "quickbooks":
            self._qbo("Invoice", {"Id": invoice,
                                  "SyncToken": self._qbo_token("Invoice", invoice)},
                      operation="void")
        else:
            assert self.provider == "xero"
            self._xero(f"/Invoices/{invoice}", "Invoices",
                       {"InvoiceID": invoice, "Status": "VOIDED"})

    def delete(self, invoice: str) -> None:
        if self.provider == "quickbooks":
            self._qbo("Invoice", {"Id": invoice,
                                  "SyncToken": self._qbo_token("Invoice", invoice)},
                      operation="delete")
        else:  # FreshBooks' SDK deletes with HTTP DELETE (vis_state 1)
            assert self.provider == "freshbooks"
            self._ok(self.http.delete(f"/invoices/invoices/{invoice}"))

    def close(self) -> None:
        self.http.close()


def _read_topic(bootstrap: str, topic: str, account: str, want: int,
                timeout: float = 60) -> list[Event]:
    codec = AvroCodec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Event] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if len(out) >= want:
                    quiet_until = quiet_until or time.monotonic() + 3
                    if time.monotonic() > quiet_until:
                        break
                continue
            assert message.key() == account.encode()
            value = message.value()
            assert isinstance(value, bytes)
            out.append(codec.decode(value).value)
    finally:
        consumer.close()
    return out


def _wait_synced(reader: StatusReader, events: list[ChangeEvent]) -> None:
    wanted = {e.event_id for e in events}

    def done(statuses: list[SyncStatusEvent]) -> bool:
        final = {s.source_event_id: s for s in statuses if s.status in FINAL_STATUSES}
        return wanted <= set(final)

    assert reader.wait_for(done, timeout=120), "BlueClerk's events did not settle"
    for s in reader.statuses:
        if s.source_event_id in wanted and s.status in FINAL_STATUSES:
            assert s.status == SyncStatus.SYNCED, (s.entity_type, s.error_code, s.message)


def _link(services: Services, account: str, entity_type: str, entity_id: str) -> str:
    from state.models import EntityLink

    with services.db.transaction() as s:
        link = s.get(EntityLink, (account, entity_type, entity_id))
        assert link is not None, (entity_type, entity_id)
        return link.provider_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_changes_in_the_books_come_back_complete_and_alike(
        provider: str, kafka_bootstrap: str, sandbox_url: str, topics: Topics,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_url = f"sqlite:///{tmp_path / 'inbound.db'}"
    migrate(db_url)
    key = generate_key()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": f"inbound-{uuid.uuid4().hex[:6]}",
           "LOG_LEVEL": "warning", "XERO_RATE_PER_MINUTE": "100000",
           "FRESHBOOKS_RATE_PER_MINUTE": "100000"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    account, tenant = f"acct-{uuid.uuid4().hex[:10]}", _tenant(provider)
    connect_sandbox_account(db_url, key, sandbox_url, provider, account, tenant,
                            connected_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    services = build_services(Settings.from_env(), run_migrations=False)
    currency = CURRENCY[provider]
    info = services.connections.get(account)
    assert info is not None
    income = services.providers.adapter(info).list_income_accounts()[0]
    with services.db.transaction() as s:
        s.add(IncomeAccountMapping(account_id=account, item_id="itm-1",
                                   provider_account_id=income.id,
                                   provider_account_name=income.name))

    factory = EventFactory(account)
    customer = Customer("cus-1", "Rivera Plumbing", given_name="Maria", family_name="Rivera",
                        email="maria@rivera.example", phone="555 0100",
                        billing_address=Address("12 Main St", None, "Austin", "TX", "78701",
                                                "US"), currency=currency)
    item = Item("itm-1", "Drain Cleaning", sku="DRAIN-1", unit_price=Decimal("120.00"),
                currency=currency)
    invoices = [build_invoice(f"inv-{n}", "cus-1", f"BC-{uuid.uuid4().hex[:6]}-{n}",
                              currency, "none", [("itm-1", "1", "120.00", "0", "0")])
                for n in ("pay", "void", "del")]
    ours = [factory.event(customer), factory.event(item), *map(factory.event, invoices)]
    producer = make_producer(kafka_bootstrap)
    codec = AvroCodec()
    books = Books(sandbox_url, provider, tenant)
    reader = StatusReader(kafka_bootstrap, topics.status)
    receiver = webhooks.router(services, secrets=SECRETS)
    app = FastAPI()
    app.include_router(receiver)
    hooks = TestClient(app)
    try:
        with WorkerProcess(env, tmp_path / "worker.log"):
            publish(producer, codec, topics, ours)
            _wait_synced(reader, ours)
            pid = {e.entity_id: _link(services, account, e.entity_type.value, e.entity_id)
                   for e in ours}
            poller = InboundPoller.from_services(services)
            first = poller.poll(account)
            assert first.emitted == 0 and first.suppressed >= 5, first  # ours: silent

            # A person in the accounting system.
            books.edit_contact(pid["cus-1"], email="maria@riverapipes.example",
                               address=NEW_ADDRESS)
            books.set_price(pid["itm-1"], "135.00")
            their_payment = books.pay(pid["inv-pay"], pid["cus-1"], "25.00")
            removals: dict[str, str] = {}  # invoice provider id -> what the person did
            if provider in ("quickbooks", "xero"):
                books.void(pid["inv-void"])
                removals[pid["inv-void"]] = "void"
            if provider in ("quickbooks", "freshbooks"):
                books.delete(pid["inv-del"])
                removals[pid["inv-del"]] = "delete"
            walk_in = books.create_customer("Walk-in Customer")

            # A signed notification triggers the poll; the same notification again and a
            # second poll add nothing.
            body, headers = _notification(provider, tenant)
            assert hooks.post(f"/webhooks/{provider}", content=body,
                              headers=headers).status_code == 200
            assert receiver.scheduler.wait_idle(60)
            changed = _outbox_count(services, account)
            assert changed == 5 + len(removals)  # the records the person touched
            assert hooks.post(f"/webhooks/{provider}", content=body,
                              headers=headers).status_code == 200
            assert receiver.scheduler.wait_idle(60)
            assert InboundPoller.from_services(services).poll(account).emitted == 0
            assert _outbox_count(services, account) == changed

            # Our own write, and a person's edit of the same record the moment after.
            moved = replace_customer(customer, display_name="Rivera Plumbing & Heating")
            update = factory.event(moved)
            publish(producer, codec, topics, [update])
            _wait_synced(reader, [update])
            books.edit_contact(pid["cus-1"], phone="555 0199")  # at once
            moment = InboundPoller.from_services(services).poll(account)
            assert moment.emitted == 1, moment
    finally:
        hooks.close()
        receiver.scheduler.close()
        reader.close()
        books.close()

    OutboxPublisher(services.db, producer, topics).publish_all()
    producer.flush(10)
    events = _read_topic(kafka_bootstrap, topics.inbound, account, changed + 1)
    assert len(events) == changed + 1
    assert len({e["change_id"] for e in events}) == len(events)  # nothing twice
    seen: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        assert e["account_id"] == account and e["provider"] == provider
        seen.setdefault((e["entity_type"], e["provider_record_id"]), []).append(e)
    # nothing of ours came back: only the records the person touched
    assert set(seen) == {("customer", pid["cus-1"]), ("item", pid["itm-1"]),
                         ("invoice", pid["inv-pay"]), ("payment", their_payment),
                         ("customer", walk_in), *(("invoice", i) for i in removals)}, seen

    edited, moment_event = seen[("customer", pid["cus-1"])]
    assert edited["operation"] == "updated" and edited["entity_id"] == "cus-1"
    assert edited["customer"]["email"] == "maria@riverapipes.example"
    address = edited["customer"]["billing_address"]
    assert (address["line1"], address["city"], address["postal_code"]) == (
        "48 Harbour Rd", "Springfield", "97477")
    assert {"email", "billing_address.line1", "billing_address.city",
            "billing_address.postal_code"} <= set(edited["changed_fields"])
    assert edited["previous"]["email"] == "maria@rivera.example"
    assert edited["customer"]["display_name"] == "Rivera Plumbing"  # the full snapshot

    # The edit one moment after our write: the person's phone, on top of our new name;
    # only the phone is their change.
    assert moment_event["operation"] == "updated"
    assert moment_event["customer"]["phone"] == "555 0199"
    assert moment_event["customer"]["display_name"] == "Rivera Plumbing & Heating"
    assert moment_event["changed_fields"] == ["phone"], moment_event["changed_fields"]

    [price] = seen[("item", pid["itm-1"])]
    assert price["operation"] == "updated" and price["entity_id"] == "itm-1"
    assert price["item"]["unit_price"] == Decimal("135.0000")
    assert price["item"]["name"] == "Drain Cleaning"
    assert price["changed_fields"] == ["unit_price"]
    assert price["previous"] == {"unit_price": "120.00"}
    if provider != "freshbooks":  # FreshBooks items have no income account
        assert price["item"]["income_account_id"] == income.id

    [paid] = seen[("invoice", pid["inv-pay"])]
    assert paid["operation"] == "updated" and paid["entity_id"] == "inv-pay"
    assert (paid["invoice"]["balance"], paid["invoice"]["status"]) == (
        Decimal("95.0000"), "partially_paid")
    assert paid["invoice"]["total"] == Decimal("120.0000")
    assert paid["invoice"]["customer_entity_id"] == "cus-1"
    assert {"balance", "status"} <= set(paid["changed_fields"])
    [payment] = seen[("payment", their_payment)]
    assert payment["operation"] == "payment_received" and payment["entity_id"] is None
    p = payment["payment"]
    assert (p["amount"], p["date"], p["invoice_provider_id"], p["invoice_entity_id"]) == (
        Decimal("25.0000"), dt.date(2026, 11, 20), pid["inv-pay"], "inv-pay")
    assert (p["invoice_balance"], p["invoice_status"]) == (Decimal("95.0000"),
                                                           "partially_paid")
    assert p["method"] in ("check", "other", "bank_transfer")

    for invoice_pid, action in removals.items():
        [removed] = seen[("invoice", invoice_pid)]
        operation, status = {"void": ("voided", "void"), "delete": ("deleted", "deleted")}[
            action]
        assert removed["operation"] == operation, (action, removed["operation"])
        assert removed["invoice"]["status"] == status
        assert removed["invoice"]["number"], removed  # even a QuickBooks deletion
        assert removed["entity_id"] in ("inv-void", "inv-del")

    [new] = seen[("customer", walk_in)]
    assert new["operation"] == "created" and new["entity_id"] is None
    assert new["customer"]["display_name"] == "Walk-in Customer"
    assert "display_name" in new["changed_fields"] and new["previous"] == {}

    # The example consumer applies the email and the price to BlueClerk's side.
    store = tmp_path / "blueclerk.json"
    store.write_text(json.dumps({
        "customers": {"cus-1": {"display_name": "Rivera Plumbing & Heating",
                                "email": "maria@rivera.example", "phone": "555 0100"}},
        "items": {"itm-1": {"name": "Drain Cleaning", "unit_price": "120.00"}}}))
    run = subprocess.run(
        [sys.executable, str(REPO / "docs" / "accounting_changes_consumer.py"),
         "--bootstrap", kafka_bootstrap, "--topic", topics.inbound, "--store", str(store),
         "--idle-seconds", "5"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    after = json.loads(store.read_text())
    assert after["customers"]["cus-1"]["email"] == "maria@riverapipes.example"
    assert after["customers"]["cus-1"]["phone"] == "555 0199"
    assert after["items"]["itm-1"]["unit_price"] == "135.00"
    services.close()


def replace_customer(customer: Customer, **changes: Any) -> Customer:
    from dataclasses import replace

    return replace(customer, **changes)


def _outbox_count(services: Services, account: str) -> int:
    from sqlalchemy import func, select

    from state.models import OutboxMessage

    with services.db.transaction() as s:
        return int(s.execute(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.account_id == account,
            OutboxMessage.topic_kind == "inbound")).scalar_one())


def _notification(provider: str, tenant: str) -> tuple[bytes, dict[str, str]]:
    """A signed change notification about `tenant`, as the provider sends it."""
    if provider == "freshbooks":
        form = {"name": "invoice.update", "object_id": "1", "account_id": tenant,
                "business_id": "1", "identity_id": "1", "user_id": "1"}
        from urllib.parse import urlencode

        assert SECRETS.freshbooks_verifier
        signature = webhooks.sign(SECRETS.freshbooks_verifier,
                                  json.dumps(form).encode("utf-8"))
        return urlencode(form).encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-FreshBooks-Hmac-SHA256": signature}
    if provider == "quickbooks":
        payload: Any = {"eventNotifications": [{"realmId": tenant, "dataChangeEvent": {
            "entities": [{"name": "Customer", "id": "1", "operation": "Update",
                          "lastUpdated": "2026-11-20T10:00:00.000Z"}]}}]}
        secret, header = SECRETS.quickbooks_verifier, "intuit-signature"
    else:
        payload = {"events": [{"resourceUrl": "https://api.xero.com/api.xro/2.0/Contacts/1",
                               "resourceId": str(uuid.uuid4()),
                               "eventDateUtc": "2026-11-20T10:00:00.000",
                               "eventType": "UPDATE", "eventCategory": "CONTACT",
                               "tenantId": tenant, "tenantType": "ORGANISATION"}],
                   "firstEventSequence": 1, "lastEventSequence": 1, "entropy": "e2e"}
        secret, header = SECRETS.xero_key, "x-xero-signature"
    assert secret
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", header: webhooks.sign(secret, body)}
