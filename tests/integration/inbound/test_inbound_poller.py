"""The inbound poller against the three simulators, on SQLite and PostgreSQL.

Each test connects a BlueClerk account to a fresh simulated company, writes some records
the way the service does (through the adapter, with links saved), then changes the books
the way a person does in the accounting system's UI (direct API calls with a token of its
own), polls, and reads the AccountingChangeEvents back from the outbox (and once from
Kafka).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from sqlalchemy import select

from consumers.inbound import InboundPoller, written_state
from producers.kafka import make_producer
from producers.outbox import OutboxPublisher
from providers.port import AccountingProvider, ProviderRecord, WriteIntent
from sandbox.harness import connect_sandbox_account
from sandbox.scenario import EventFactory, build_invoice
from schemas.codec import AvroCodec
from schemas.records import (
    ChangeEvent,
    Customer,
    EntityType,
    EventType,
    Item,
    Payment,
    Record,
)
from service.bootstrap import Services, build_services
from service.config import Settings, Topics
from state import repository as repo
from state.connections import connection_info
from state.crypto import generate_key
from state.models import EntityLink, InboundCursor, OutboxMessage

PROVIDERS = ["quickbooks", "xero", "freshbooks"]
CURRENCY = {"quickbooks": "USD", "xero": "NZD", "freshbooks": "USD"}
# An invoice taken out of the books: voided where the provider can void, deleted in
# FreshBooks (no void there: "delete" is vis_state 1).
REMOVED_OPERATION = {"quickbooks": "voided", "xero": "voided", "freshbooks": "deleted"}
QBO_MINOR = {"minorversion": "75"}

Event = dict[str, Any]


def _tenant(provider: str) -> str:
    if provider == "quickbooks":
        return f"9341{uuid.uuid4().int % 10**12:012d}"
    if provider == "xero":
        return str(uuid.uuid4())
    return f"FB{uuid.uuid4().hex[:10]}"


class AccountingUi:
    """A person working in the accounting system: the provider's API with its own grant."""

    def __init__(self, sandbox: str, provider: str, tenant: str) -> None:
        self.provider, self.tenant = provider, tenant
        grant = httpx.post(f"{sandbox}/{provider}/_sandbox/grants", json={"tenant": tenant},
                           timeout=10)
        assert grant.status_code == 200, grant.text
        headers = {"Authorization": f"Bearer {grant.json()['access_token']}",
                   "Accept": "application/json"}
        if provider == "quickbooks":
            base = f"{sandbox}/quickbooks/v3/company/{tenant}"
        elif provider == "xero":
            base = f"{sandbox}/xero/api.xro/2.0"
            headers["xero-tenant-id"] = tenant
        else:
            base = f"{sandbox}/freshbooks/accounting/account/{tenant}"
        self.http = httpx.Client(base_url=base, headers=headers, timeout=10)

    def _ok(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, f"{response.request.url}: {response.text}"
        body: dict[str, Any] = response.json()
        return body

    def _xero(self, method: str, path: str, collection: str, element: dict[str, Any]
              ) -> dict[str, Any]:
        body = self._ok(self.http.request(method, path, json={collection: [element]}))
        row: dict[str, Any] = body[collection][0]
        assert not row.get("ValidationErrors"), row
        return row

    def _fb(self, method: str, path: str, key: str, element: dict[str, Any] | None = None
            ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"json": {key: element}} if element is not None else {}
        row: dict[str, Any] = self._ok(self.http.request(method, path, **kwargs)
                                       )["response"]["result"][key]
        return row

    def _qbo_read(self, entity: str, pid: str) -> dict[str, Any]:
        row: dict[str, Any] = self._ok(self.http.get(f"/{entity.lower()}/{pid}",
                                                     params=QBO_MINOR))[entity]
        return row

    def _qbo_write(self, entity: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
        row: dict[str, Any] = self._ok(self.http.post(
            f"/{entity.lower()}", json=body, params={**QBO_MINOR, **params}))[entity]
        return row

    def create_customer(self, name: str) -> str:
        if self.provider == "quickbooks":
            return str(self._qbo_write("Customer", {"DisplayName": name})["Id"])
        if self.provider == "xero":
            return str(self._xero("PUT", "/Contacts", "Contacts", {"Name": name})["ContactID"])
        return str(self._fb("POST", "/users/clients", "client", {"organization": name})["id"])

    def rename_customer(self, pid: str, name: str) -> None:
        if self.provider == "quickbooks":
            current = self._qbo_read("Customer", pid)
            self._qbo_write("Customer", {"Id": pid, "SyncToken": current["SyncToken"],
                                         "sparse": True, "DisplayName": name})
        elif self.provider == "xero":
            self._xero("POST", f"/Contacts/{pid}", "Contacts", {"ContactID": pid, "Name": name})
        else:
            self._fb("PUT", f"/users/clients/{pid}", "client", {"organization": name})

    def edit_contact(self, pid: str, email: str, phone: str) -> None:
        if self.provider == "quickbooks":
            current = self._qbo_read("Customer", pid)
            self._qbo_write("Customer", {"Id": pid, "SyncToken": current["SyncToken"],
                                         "sparse": True, "PrimaryEmailAddr": {"Address": email},
                                         "PrimaryPhone": {"FreeFormNumber": phone}})
        elif self.provider == "xero":
            self._xero("POST", f"/Contacts/{pid}", "Contacts", {
                "ContactID": pid, "EmailAddress": email,
                "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": phone}]})
        else:
            self._fb("PUT", f"/users/clients/{pid}", "client",
                     {"email": email, "bus_phone": phone})

    def pay(self, invoice_pid: str, customer_pid: str, amount: str) -> str:
        if self.provider == "quickbooks":
            row = self._qbo_write("Payment", {
                "CustomerRef": {"value": customer_pid}, "TotalAmt": amount, "TxnDate": "2026-11-20",
                "Line": [{"Amount": amount,
                          "LinkedTxn": [{"TxnId": invoice_pid, "TxnType": "Invoice"}]}]})
            return str(row["Id"])
        if self.provider == "xero":
            row = self._xero("PUT", "/Payments", "Payments", {
                "Invoice": {"InvoiceID": invoice_pid}, "Account": {"Code": "090"},
                "Amount": float(amount), "Date": "2026-11-20"})
            return str(row["PaymentID"])
        row = self._fb("POST", "/payments/payments", "payment", {
            "invoiceid": int(invoice_pid), "amount": {"amount": amount},
            "date": "2026-11-20", "type": "Check"})
        return str(row["id"])

    def void(self, invoice_pid: str) -> None:
        if self.provider == "quickbooks":
            current = self._qbo_read("Invoice", invoice_pid)
            self._qbo_write("Invoice", {"Id": invoice_pid, "SyncToken": current["SyncToken"]},
                            operation="void")
        elif self.provider == "xero":
            self._xero("POST", f"/Invoices/{invoice_pid}", "Invoices",
                       {"InvoiceID": invoice_pid, "Status": "VOIDED"})
        else:  # FreshBooks has no void: deleting (vis_state 1) takes it out of the books
            self._fb("PUT", f"/invoices/invoices/{invoice_pid}", "invoice", {"vis_state": 1})

    def close(self) -> None:
        self.http.close()


class World:
    """One BlueClerk account connected to a fresh simulated company."""

    def __init__(self, services: Services, sandbox: str, provider: str) -> None:
        self.services, self.sandbox, self.provider = services, sandbox, provider
        self.account = f"acct-{uuid.uuid4().hex[:10]}"
        self.tenant = _tenant(provider)
        self.codec = AvroCodec()
        connect_sandbox_account(services.settings.database_url, services.settings.token_key,
                                sandbox, provider, self.account, self.tenant,
                                connected_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        self.ui = AccountingUi(sandbox, provider, self.tenant)
        self.records: dict[str, ProviderRecord] = {}  # BlueClerk id -> provider record

    @property
    def info(self) -> Any:
        info = self.services.connections.get(self.account)
        assert info is not None
        return info

    @property
    def adapter(self) -> AccountingProvider:
        return self.services.providers.adapter(self.info)

    def poller(self) -> InboundPoller:
        """A new poller each time: nothing survives between instances but the database."""
        return InboundPoller.from_services(self.services)

    def link(self, entity_type: str, entity_id: str, record: ProviderRecord,
             written: Record | None = None, event_type: EventType = EventType.CREATED
             ) -> None:
        """Save the link as the engine does after a write: with what the write left in
        the books (`written_state`) when `written` (the BlueClerk record) is given."""
        with self.services.db.transaction() as s:
            company = connection_info(s, self.account)
            assert company is not None
            link = repo.save_link(s, company, entity_type, entity_id, record.id,
                                  record.version, 1, None)
            if written is not None:
                now = dt.datetime.now(dt.UTC)
                event = ChangeEvent(f"evt-{uuid.uuid4()}", event_type, now, self.account,
                                    EntityType(entity_type), entity_id, 1, now, written)
                link.written_state, link.written_hash = written_state(self.provider, event)
        self.records[entity_id] = record

    # -- what the sync service writes (through the adapter, with its links) -----------

    def sync_customer(self, cid: str, name: str) -> ProviderRecord:
        customer = Customer(cid, name, currency=CURRENCY[self.provider])
        rec = self.adapter.upsert_customer(customer, None, WriteIntent(f"c-{cid}"))
        self.link("customer", cid, rec, customer)
        return rec

    def sync_item(self, iid: str, name: str) -> ProviderRecord:
        income = self.adapter.list_income_accounts()[0].id
        item = Item(iid, name, unit_price=Decimal("120"), currency=CURRENCY[self.provider])
        rec = self.adapter.upsert_item(item, income, None, WriteIntent(f"i-{iid}"))
        self.link("item", iid, rec, item)
        return rec

    def sync_invoice(self, inv_id: str, number: str, cid: str, iid: str) -> ProviderRecord:
        invoice = build_invoice(inv_id, cid, number, CURRENCY[self.provider], "none",
                                [(iid, "1", "120.00", "0", "0")])
        rec = self.adapter.upsert_invoice(invoice, self.records[cid], {iid: self.records[iid]},
                                          None, WriteIntent(f"v-{inv_id}"))
        self.link("invoice", inv_id, rec, invoice)
        return rec

    def sync_payment(self, pay_id: str, inv_id: str, cid: str, amount: str) -> ProviderRecord:
        payment = Payment(pay_id, inv_id, cid, Decimal(amount), CURRENCY[self.provider],
                          dt.date(2026, 11, 10))
        rec = self.adapter.record_payment(payment, self.records[inv_id], self.records[cid],
                                          None, WriteIntent(f"p-{pay_id}"))
        self.link("payment", pay_id, rec, payment)
        return rec

    # -- what was emitted --------------------------------------------------------------

    def events(self) -> list[Event]:
        with self.services.db.transaction() as s:
            rows = list(s.execute(select(OutboxMessage).where(
                OutboxMessage.account_id == self.account,
                OutboxMessage.topic_kind == "inbound").order_by(OutboxMessage.id)).scalars())
        out: list[Event] = []
        for row in rows:
            assert row.key == self.account
            decoded = self.codec.decode(row.value)
            assert decoded.schema_name.endswith("AccountingChangeEvent")
            out.append(decoded.value)
        return out

    def cursor(self) -> InboundCursor | None:
        with self.services.db.transaction() as s:
            return s.get(InboundCursor, self.account)

    def close(self) -> None:
        self.ui.close()


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, sandbox_url: str,
             database_url: str) -> Iterator[Services]:
    for name, value in {"SANDBOX_URL": sandbox_url, "DATABASE_URL": database_url,
                        "TOKEN_ENCRYPTION_KEY": generate_key()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    built = build_services(Settings.from_env())
    yield built
    built.close()


def _world(services: Services, sandbox_url: str, provider: str) -> World:
    return World(services, sandbox_url, provider)


def _by_record(events: list[Event]) -> dict[tuple[str, str], list[Event]]:
    out: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        out.setdefault((e["entity_type"], e["provider_record_id"]), []).append(e)
    return out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_changes_made_in_the_books_come_back_as_events(
        services: Services, sandbox_url: str, provider: str) -> None:
    """People's changes become events with the right operation and ids; ours do not."""
    w = _world(services, sandbox_url, provider)
    try:
        # What the service synced: a customer, an item, three invoices, one payment.
        cust = w.sync_customer("cus-1", "Maria Rivera")
        item = w.sync_item("itm-1", "Drain Cleaning")
        paid_by_person = w.sync_invoice("inv-a", "BC-1001", "cus-1", "itm-1")
        voided_by_person = w.sync_invoice("inv-b", "BC-1002", "cus-1", "itm-1")
        paid_by_us = w.sync_invoice("inv-c", "BC-1003", "cus-1", "itm-1")
        our_payment = w.sync_payment("pay-1", "inv-c", "cus-1", "40.00")
        # No waiting: our writes are told from a person's by content, not by time.

        # What a person does in the accounting system afterwards.
        walk_in = w.ui.create_customer("Walk-in Customer")
        w.ui.rename_customer(cust.id, "Maria Rivera-Lopez")
        their_payment = w.ui.pay(paid_by_person.id, cust.id, "25.00")
        w.ui.void(voided_by_person.id)

        result = w.poller().poll(w.account)
        events = w.events()
        assert result.emitted == len(events) > 0
        assert result.suppressed >= 3  # the item, invoice C and our payment at least
        seen = _by_record(events)

        # our own writes are not echoed back
        for entity_type, rec in (("item", item), ("invoice", paid_by_us),
                                 ("payment", our_payment)):
            assert (entity_type, rec.id) not in seen, seen.get((entity_type, rec.id))

        [new] = seen[("customer", walk_in)]
        assert new["entity_id"] is None and new["operation"] == "created"
        assert new["details"]["display_name"] == "Walk-in Customer"

        [renamed] = seen[("customer", cust.id)]
        assert renamed["entity_id"] == "cus-1" and renamed["operation"] == "updated"
        assert renamed["details"]["display_name"] == "Maria Rivera-Lopez"
        assert renamed["customer"]["display_name"] == "Maria Rivera-Lopez"
        assert renamed["customer"]["id"] == "cus-1"
        assert "display_name" in renamed["changed_fields"]
        assert renamed["previous"]["display_name"] == "Maria Rivera"

        [payment] = seen[("payment", their_payment)]
        assert payment["operation"] == "payment_received" and payment["entity_id"] is None
        assert payment["details"]["amount"] == "25.00"
        assert payment["details"]["invoice_provider_id"] == paid_by_person.id
        assert payment["details"]["invoice_entity_id"] == "inv-a"
        assert payment["details"]["date"] == "2026-11-20"

        voided = seen[("invoice", voided_by_person.id)]
        assert [e["operation"] for e in voided] == [REMOVED_OPERATION[provider]]
        assert voided[0]["entity_id"] == "inv-b"
        assert voided[0]["invoice"]["number"] == "BC-1002"

        # the paid invoice's balance changed in the books: an update of the linked
        # invoice, on every provider, and the payment carries the same balance
        [paid] = seen[("invoice", paid_by_person.id)]
        assert paid["entity_id"] == "inv-a" and paid["operation"] == "updated"
        assert paid["invoice"]["balance"] == Decimal("95.0000")
        assert paid["invoice"]["status"] == "partially_paid"
        assert set(paid["changed_fields"]) >= {"balance", "status"}
        assert payment["payment"]["invoice_balance"] == Decimal("95.0000")
        assert payment["payment"]["invoice_status"] == "partially_paid"

        for e in events:
            assert e["account_id"] == w.account and e["provider"] == provider
            assert e["change_id"]
        assert len({e["change_id"] for e in events}) == len(events)
        # ordered by change time, as the consumers of the topic apply them
        stamps = [e["changed_at"] for e in events]
        assert stamps == sorted(stamps)

        # A second poll re-reads the boundary (lag window, FreshBooks' whole day) but
        # emits nothing new.
        again = w.poller().poll(w.account)
        assert again.emitted == 0 and again.repeated == again.fetched > 0
        assert len(w.events()) == len(events)
    finally:
        w.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cursor_persists_across_poller_instances(
        services: Services, sandbox_url: str, provider: str) -> None:
    """The cursor and its boundary live in the database; a new poller carries on."""
    w = _world(services, sandbox_url, provider)
    try:
        assert w.cursor() is None
        first = w.ui.create_customer("First Caller LLC")
        assert w.poller().poll_account(w.account) == 1
        cursor = w.cursor()
        assert cursor is not None
        assert cursor.polled_through >= w.info.connected_at.replace(microsecond=0)
        assert cursor.polled_through.microsecond == 0
        keys = json.loads(cursor.boundary_keys)
        assert ["customer", first] in [k[:2] for k in keys]

        assert w.poller().poll_account(w.account) == 0  # a new instance, nothing new
        assert w.poller().poll_all() >= 0
        assert len(w.events()) == 1

        second = w.ui.create_customer("Second Caller LLC")
        assert w.poller().poll_account(w.account) == 1
        assert [(e["provider_record_id"], e["entity_id"]) for e in w.events()] == [
            (first, None), (second, None)]
    finally:
        w.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_own_writes_are_suppressed_and_later_edits_are_not(
        services: Services, sandbox_url: str, provider: str) -> None:
    """A record we wrote and linked is silent until someone changes it in the books."""
    w = _world(services, sandbox_url, provider)
    try:
        cust = w.sync_customer("cus-9", "Ng Dental LLC")
        w.sync_item("itm-9", "Service Call")
        result = w.poller().poll(w.account)
        assert result.emitted == 0 and result.suppressed >= 2
        assert w.events() == []

        # The service updates the record again (a new version, link saved): still silent.
        again = Customer("cus-9", "Ng Dental PLLC", currency=CURRENCY[provider])
        rec = w.adapter.upsert_customer(again, cust, WriteIntent("c-cus-9-v2"))
        w.link("customer", "cus-9", rec, again, EventType.UPDATED)
        assert w.poller().poll_account(w.account) == 0

        w.ui.rename_customer(cust.id, "Ng Family Dental")
        assert w.poller().poll_account(w.account) == 1
        [event] = w.events()
        assert event["entity_id"] == "cus-9" and event["operation"] == "updated"
        assert event["provider_record_id"] == cust.id
    finally:
        w.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_edit_one_moment_after_our_write_comes_back(
        services: Services, sandbox_url: str, provider: str) -> None:
    """No time window: a person's edit right after our write (same second, no poll in
    between) is told from our write by content and comes back; ours stays silent."""
    w = _world(services, sandbox_url, provider)
    try:
        cust = w.sync_customer("cus-m", "Moment Plumbing")
        w.ui.rename_customer(cust.id, "Moment Plumbing & Heating")  # at once
        result = w.poller().poll(w.account)
        [event] = w.events()
        assert result.emitted == 1
        assert event["operation"] == "updated" and event["entity_id"] == "cus-m"
        assert event["customer"]["display_name"] == "Moment Plumbing & Heating"
        # (FreshBooks' organization is both its display and its company name)
        assert set(event["changed_fields"]) - {"company_name"} == {"display_name"}
        assert event["previous"]["display_name"] == "Moment Plumbing"
        assert w.poller().poll(w.account).emitted == 0
    finally:
        w.close()


def test_inactive_connection_is_not_polled(services: Services, sandbox_url: str) -> None:
    w = _world(services, sandbox_url, "xero")
    try:
        w.ui.create_customer("Unseen Co")
        services.connections.set_status(w.account, "disconnected")
        assert w.poller().poll_account(w.account) == 0
        assert w.poller().poll_all() == 0
        assert w.events() == [] and w.cursor() is None
        assert w.poller().poll_account("acct-never-connected") == 0
    finally:
        w.close()


def test_poll_changes_cli(services: Services, sandbox_url: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """`blueclerk-sync poll-changes --account A` polls once and reports what it wrote."""
    from control.cli import main

    w = _world(services, sandbox_url, "freshbooks")
    try:
        w.ui.create_customer("Hillside Builders LLC")
        assert main(["poll-changes", "--account", w.account]) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert report == {"account": w.account, "events": 1, "published": None}
        assert main(["poll-changes", "--account", w.account, "--loop", "0"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["events"] == 0
        assert len(w.events()) == 1
    finally:
        w.close()


def test_published_to_the_inbound_topic(services: Services, sandbox_url: str,
                                        kafka_bootstrap: str, topics: Topics) -> None:
    """The outbox rows reach the real broker's inbound topic, keyed by account."""
    w = _world(services, sandbox_url, "quickbooks")
    try:
        cust = w.sync_customer("cus-k", "Kafka Plumbing")
        w.sync_item("itm-k", "Pipe Repair")
        inv = w.sync_invoice("inv-k", "BC-2001", "cus-k", "itm-k")
        w.ui.create_customer("Broker Walk-in")
        w.ui.pay(inv.id, cust.id, "30.00")
        assert w.poller().poll_account(w.account) >= 2
        expected = w.events()

        producer = make_producer(kafka_bootstrap)
        published = OutboxPublisher(services.db, producer, topics).publish_all()
        producer.flush(10)
        assert published >= len(expected)

        consumer = Consumer({"bootstrap.servers": kafka_bootstrap,
                             "group.id": f"inbound-test-{uuid.uuid4()}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topics.inbound])
        received: list[tuple[bytes | None, Event]] = []
        deadline = time.monotonic() + 60
        try:
            while len(received) < len(expected) and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                value = message.value()
                assert isinstance(value, bytes)
                key = message.key()
                received.append((key if isinstance(key, bytes) else None,
                                 w.codec.decode(value).value))
        finally:
            consumer.close()
        assert {k for k, _ in received} == {w.account.encode()}
        assert [e["change_id"] for _, e in received] == [e["change_id"] for e in expected]
        operations = {e["operation"] for _, e in received}
        assert {"created", "payment_received"} <= operations
        [payment] = [e for _, e in received if e["operation"] == "payment_received"]
        assert payment["details"]["invoice_entity_id"] == "inv-k"
        assert payment["details"]["amount"] == "30.00"
    finally:
        w.close()


class _NoDeadLetters:
    def dead_letter(self, payload: bytes | None, key: str | None, origin: Any,
                    error: BaseException, code: Any) -> None:
        raise AssertionError(f"unexpected dead letter: {code}: {error}")


def _example_consumer() -> Any:
    """docs/accounting_changes_consumer.py, the example BlueClerk-side consumer."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "docs" / "accounting_changes_consumer.py"
    spec = importlib.util.spec_from_file_location("accounting_changes_consumer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("provider", PROVIDERS)
def test_conflict_policy_per_field(services: Services, sandbox_url: str,
                                   provider: str) -> None:
    """README, "Conflicts between BlueClerk and the books": a field changed on both sides
    between two syncs keeps BlueClerk's value (the event lists it in conflicting_fields,
    the engine's write of BlueClerk's change is `synced` and overwrites it); a field
    changed only in the books is reported, applied by BlueClerk and kept."""
    from consumers.engine import SyncEngine
    from schemas.events import event_to_avro
    from schemas.status import SyncStatus

    w = _world(services, sandbox_url, provider)
    engine = SyncEngine(services.db, services.connections, services.providers.adapter,
                        services.codec, _NoDeadLetters())
    factory = EventFactory(w.account)

    def write(event: ChangeEvent) -> None:
        payload = services.codec.encode("CustomerChangeEvent", event_to_avro(event))
        statuses = engine.process(event, payload).statuses
        assert [s.status for s in statuses][-1] == SyncStatus.SYNCED, statuses

    def books() -> Any:
        [found] = [c for c in w.adapter.list_customers() if c.id == pid]
        return found

    try:
        v1 = factory.customer("cus-x", "Harbor Cafe", email="owner@harbor.example",
                              phone="555 0101", currency=CURRENCY[provider])
        write(v1)
        with services.db.transaction() as s:
            link = s.get(EntityLink, (w.account, "customer", "cus-x"))
            assert link is not None and link.written_hash is not None  # set by the engine
            pid = link.provider_id
        assert w.poller().poll(w.account).emitted == 0  # our write

        # Between two syncs: BlueClerk changes the email (received, not yet written) ...
        v2 = factory.customer("cus-x", "Harbor Cafe", email="billing@harbor.example",
                              phone="555 0101", currency=CURRENCY[provider])
        with services.db.transaction() as s:
            repo.save_snapshot(s, w.account, "customer", "cus-x", 2, services.codec.encode(
                "CustomerChangeEvent", event_to_avro(v2)), v2.record_created_at)
        # ... and a person changes the email and the phone in the books.
        w.ui.edit_contact(pid, "books@harbor.example", "555 0199")
        assert w.poller().poll(w.account).emitted == 1
        [event] = w.events()
        assert event["operation"] == "updated" and event["entity_id"] == "cus-x"
        assert {"email", "phone"} <= set(event["changed_fields"])
        assert event["conflicting_fields"] == ["email"]
        assert event["details"]["conflict"] == "blueclerk_wins"
        assert event["previous"]["email"] == "owner@harbor.example"

        # BlueClerk's change is written: synced, and the books hold BlueClerk's email.
        write(v2)
        assert books().email == "billing@harbor.example"
        assert w.poller().poll(w.account).emitted == 0  # that write is ours

        # BlueClerk applies the event (the example consumer's rules): the conflicting
        # email is kept, the phone changed only in the books is taken, and sent back.
        store = {"customers": {"cus-x": {"display_name": "Harbor Cafe",
                                         "email": "billing@harbor.example",
                                         "phone": "555 0101"}}}
        done = _example_consumer().apply_change(store, event)
        assert "kept email: changed in BlueClerk too" in done
        assert "set phone=555 0199" in done
        mine = store["customers"]["cus-x"]
        write(factory.customer("cus-x", "Harbor Cafe", email=mine["email"],
                               phone=mine["phone"], currency=CURRENCY[provider]))
        assert w.poller().poll(w.account).emitted == 0
        final = books()
        assert (final.email, final.phone) == ("billing@harbor.example", "555 0199")
        assert len(w.events()) == 1
    finally:
        w.close()


@pytest.mark.parametrize("provider", ["quickbooks", "xero"])
def test_the_wizards_income_account_rewrite_is_ours_a_persons_is_not(
        services: Services, sandbox_url: str, provider: str) -> None:
    """control/mappings.py gives linked items a newly mapped income account outside the
    engine: the item then reads as BlueClerk has it, so nothing comes back; a person
    moving it to another income account in the books does come back."""
    from consumers.engine import SyncEngine
    from schemas.events import event_to_avro
    from state.models import IncomeAccountMapping

    w = _world(services, sandbox_url, provider)
    engine = SyncEngine(services.db, services.connections, services.providers.adapter,
                        services.codec, _NoDeadLetters())
    try:
        first, second, third = w.adapter.list_income_accounts()[:3]
        with services.db.transaction() as s:
            s.add(IncomeAccountMapping(account_id=w.account, item_id="itm-w",
                                       provider_account_id=first.id))
        item = Item("itm-w", "Water Heater Flush", sku="WHF-1", unit_price=Decimal("89.00"),
                    currency=CURRENCY[provider])
        event = EventFactory(w.account).event(item)
        engine.process(event, services.codec.encode("ItemChangeEvent", event_to_avro(event)))
        assert w.poller().poll(w.account).emitted == 0
        with services.db.transaction() as s:
            link = s.get(EntityLink, (w.account, "item", "itm-w"))
            assert link is not None
            pid, version, applied = link.provider_id, link.provider_version, \
                link.last_applied_version
        # What control/mappings.py does: write the item with the new account, save the
        # link (no written state), save the mapping.
        rec = w.adapter.upsert_item(item, second.id, ProviderRecord(pid, version),
                                    WriteIntent(uuid.uuid4().hex))
        with services.db.transaction() as s:
            company = connection_info(s, w.account)
            assert company is not None
            repo.save_link(s, company, "item", "itm-w", rec.id, rec.version, applied, None)
            mapping = s.get(IncomeAccountMapping, (w.account, "itm-w"))
            assert mapping is not None
            mapping.provider_account_id = second.id
        assert w.poller().poll(w.account).emitted == 0

        # A person moves it to a third account in the books.
        if provider == "quickbooks":
            current = w.ui._qbo_read("Item", pid)
            w.ui._qbo_write("Item", {"Id": pid, "SyncToken": current["SyncToken"],
                                     "sparse": True, "IncomeAccountRef": {"value": third.id}})
        else:
            row = w.ui._ok(w.ui.http.get(f"/Items/{pid}"))["Items"][0]
            w.ui._xero("POST", f"/Items/{pid}", "Items", {
                "Code": row["Code"], "SalesDetails": {**row["SalesDetails"],
                                                      "AccountCode": third.id}})
        assert w.poller().poll(w.account).emitted == 1
        [moved] = w.events()
        assert moved["changed_fields"] == ["income_account_id"]
        assert moved["item"]["income_account_id"] == third.id
        assert moved["previous"] == {"income_account_id": second.id}
    finally:
        w.close()
